"""Argument dataclasses for the recipes (parsed by ``TrlParser`` from YAML with CLI overrides)."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import ModelConfig

__all__ = ["BuildPoolArguments", "VQAModelConfig", "peft_config_from", "train_and_save"]


@dataclass
class BuildPoolArguments:
    """Build a pool Dataset from a MOS table and a video folder (``recipes/build_pool.py``; publishing options are in
    :class:`mds_vqa.hub.HubArguments`)."""

    mos_table: str = field(metadata={"help": "MOS table: CSV, TSV or TXT (export XLSX to CSV first)."})
    video_dir: str = field(metadata={"help": "Folder holding the video files (searched recursively)."})
    output_dir: str = field(metadata={"help": "Where the pool Dataset is saved with `save_to_disk`."})
    dataset_name: str = field(metadata={"help": "Domain name written in the `dataset` column, e.g. 'konvid_1k'."})
    split: str = field(default="train", metadata={"help": "Value of the `split` column for every row."})
    split_column: str | None = field(default=None, metadata={"help": "Table column holding each row's split."})
    test_size: float | None = field(default=None, metadata={"help": "Seeded random train/test split: test fraction."})
    seed: int = field(default=0, metadata={"help": "Seed of the random split."})
    video_column: str | None = field(default=None, metadata={"help": "Video name column (None: auto-detect)."})
    mos_column: str | None = field(default=None, metadata={"help": "MOS column (None: auto-detect)."})
    mos_std_column: str | None = field(default=None, metadata={"help": "Per-video MOS standard deviation column."})
    video_extension: str | None = field(
        default=None, metadata={"help": "Appended verbatim to names without an extension, e.g. '.mp4'."}
    )
    delimiter: str | None = field(default=None, metadata={"help": "Column separator (None: auto-detect)."})
    has_header: bool = field(default=True, metadata={"help": "The table's first line is a header."})
    higher_is_better: bool = field(default=True, metadata={"help": "False for DMOS tables: the scale is flipped."})
    relative_paths: bool = field(
        default=False,
        metadata={"help": "Record video paths relative to video_dir (load with video_root) instead of absolute."},
    )
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing pool in output_dir."})


@dataclass
class VQAModelConfig(ModelConfig):
    """TRL's ``ModelConfig`` with mds-vqa's defaults: LoRA r 64, α 128, dropout 0.05 on the language model's linear
    layers (``lora_target_modules`` None = that default), bf16 weights."""

    model_name_or_path: str | None = field(
        default="hollow404/VQR1-7B-YouTubeUGC", metadata={"help": "Hub id or folder of the Qwen2.5-VL quality model."}
    )
    dtype: str | None = field(default="bfloat16", metadata={"help": "'auto', 'bfloat16', 'float16' or 'float32'."})
    use_peft: bool = field(
        default=True, metadata={"help": "Train a LoRA adapter (the default) instead of all weights."}
    )
    lora_r: int = field(default=64, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=128, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})


def peft_config_from(model_args: ModelConfig):
    """The LoRA config of ``model_args`` (``None`` when ``use_peft`` is off), targeting the language model's linear
    layers unless ``lora_target_modules`` is set."""
    from .modeling import lora_config

    if not model_args.use_peft:
        return None
    return lora_config(
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=model_args.lora_target_modules,
        use_rslora=model_args.use_rslora,
        use_dora=model_args.use_dora,
        modules_to_save=model_args.lora_modules_to_save,
    )


def train_and_save(trainer, output_dir: str) -> dict:
    """Train (resuming from ``args.resume_from_checkpoint`` or the last checkpoint in ``output_dir``), log and save
    the train metrics and state, save the model (the adapter for PEFT models); returns the train metrics."""
    import logging
    import os

    from transformers.trainer_utils import get_last_checkpoint

    checkpoint = trainer.args.resume_from_checkpoint
    if checkpoint is None and os.path.isdir(output_dir):
        checkpoint = get_last_checkpoint(output_dir)
        if checkpoint:
            logging.getLogger(__name__).info("Resuming from %s", checkpoint)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()
    trainer.save_model(output_dir)
    return result.metrics
