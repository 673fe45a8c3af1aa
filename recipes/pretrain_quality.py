"""Quality pretraining: train a Qwen2.5-VL on a labelled source pool until it scores video quality (the base model f).

Usage:
    python recipes/pretrain_quality.py --config recipes/configs/demo/pretrain_quality.yaml
    accelerate launch recipes/pretrain_quality.py --dataset_path pools/source --model_name_or_path <model> \
        --output_dir outputs/f

All weights train (the vision tower too, unless ``--freeze_vision_tower true``) with the in-batch fidelity loss of the
expectation score under the direct scoring prompt plus the cross-entropy of supervised answers under both scoring
prompts (see :mod:`mds_vqa.quality_pretraining`). The MOS is min-max normalised per dataset to f's 1–5 scale
(``--normalize``). Training uses the rows of ``train_split``; ``eval_split`` reports SRCC / PLCC of the expectation
score during and after training and, at the end, what the pipeline will read from the saved model: the
``first_digit`` expectation score of ``recipes/score.py`` and greedy thinking generation (parse and format rates,
correlations). The full model and its processor are saved to ``output_dir`` (load them with
``mds_vqa.modeling.load_model_and_processor(output_dir)`` like any f), the final metrics to
``output_dir/pretrain_metrics.json``. ``dataset_path`` is a ``save_to_disk`` folder, a staged (Hub-layout) folder or a
Hub id (``--revision``); relative video paths are joined with ``--video_root``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from trl import TrlParser

from mds_vqa.cli import run_recipe
from mds_vqa.configs import train_and_save
from mds_vqa.data import normalize_mos
from mds_vqa.hub import write_provenance
from mds_vqa.loading import load_pool, resolve_videos
from mds_vqa.modeling import VideoSamplingConfig, load_model_and_processor
from mds_vqa.quality_pretraining import (
    QualityPretrainConfig,
    QualityPretrainTrainer,
    quality_readings_metrics,
    write_pretrain_metrics,
)

logger = logging.getLogger("mds_vqa.pretrain_quality")


@dataclass
class PretrainQualityScriptArguments:
    """Data and model of the quality-pretraining run."""

    dataset_path: str = field(
        metadata={"help": "Labelled source pool: a save_to_disk folder, a staged folder or a Hub id."}
    )
    model_name_or_path: str = field(metadata={"help": "Hub id or folder of the Qwen2.5-VL to train."})
    revision: str | None = field(default=None, metadata={"help": "Hub revision of a Hub id dataset_path."})
    video_root: str | None = field(
        default=None, metadata={"help": "Folder that relative video paths are relative to (absolute paths are kept)."}
    )
    train_split: str | None = field(default="train", metadata={"help": "Train on rows of this split (None: all)."})
    eval_split: str | None = field(default="test", metadata={"help": "Evaluate on rows of this split (None: none)."})
    normalize: bool = field(default=True, metadata={"help": "Min-max the MOS to [1, 5] per dataset (f's scale)."})
    dtype: str = field(default="auto", metadata={"help": "'auto', 'bfloat16', 'float16' or 'float32'."})
    attn_implementation: str | None = field(
        default=None, metadata={"help": "'flash_attention_2', 'sdpa' or 'eager' (None: transformers' default)."}
    )
    generation_eval: bool = field(
        default=True, metadata={"help": "At the end, also score the eval videos by greedy thinking generation."}
    )
    generation_max_new_tokens: int = field(default=128, metadata={"help": "Token budget of that generation."})


def prepare_datasets(script_args: PretrainQualityScriptArguments, mos_column: str):
    """Load the pool, normalise the MOS per dataset, resolve (and check) relative video paths, split train/eval."""
    pool = load_pool(script_args.dataset_path, revision=script_args.revision)
    needed = ["video", mos_column, "dataset"] + (
        ["split"] if script_args.train_split or script_args.eval_split else []
    )
    missing = [c for c in needed if c not in pool.column_names]
    if missing:
        raise ValueError(f"{script_args.dataset_path} has no column(s) {missing} (columns: {pool.column_names}).")
    if script_args.normalize and "mos_raw" not in pool.column_names:
        pool = normalize_mos(pool, mos_column=mos_column)
    pool = resolve_videos(pool, script_args.video_root, check="relative", source=script_args.dataset_path)
    train = pool
    if script_args.train_split is not None:
        train = pool.filter(lambda s: s == script_args.train_split, input_columns="split")
    evaluation = None
    if script_args.eval_split is not None:
        evaluation = pool.filter(lambda s: s == script_args.eval_split, input_columns="split")
        if len(evaluation) == 0:
            raise ValueError(f"No rows of split {script_args.eval_split!r} in {script_args.dataset_path}.")
    if len(train) < 2:
        raise ValueError(f"Only {len(train)} training videos in {script_args.dataset_path}: need at least 2.")
    return train, evaluation


def main(
    script_args: PretrainQualityScriptArguments,
    training_args: QualityPretrainConfig,
    sampling: VideoSamplingConfig,
) -> dict:
    """Pretrain, save the model + processor and the final metrics to ``output_dir``; return the metrics (empty
    without an eval split)."""
    train, evaluation = prepare_datasets(script_args, training_args.mos_column)
    logger.info(
        "Pretraining on %d videos, evaluating on %s.", len(train), len(evaluation) if evaluation is not None else 0
    )
    model, processor = load_model_and_processor(
        script_args.model_name_or_path, dtype=script_args.dtype, attn_implementation=script_args.attn_implementation
    )
    model.config.use_cache = not training_args.gradient_checkpointing
    trainer = QualityPretrainTrainer(
        model,
        training_args,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=processor,
        sampling=sampling,
    )
    train_and_save(trainer, training_args.output_dir)
    metrics: dict = {}
    if evaluation is not None:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
    if trainer.accelerator.is_main_process:
        if evaluation is not None:
            readings = quality_readings_metrics(
                trainer.model,
                processor,
                evaluation["video"],
                evaluation[training_args.mos_column],
                sampling=sampling,
                batch_size=training_args.per_device_eval_batch_size,
                max_new_tokens=script_args.generation_max_new_tokens,
                generate=script_args.generation_eval,
            )
            metrics.update({f"eval_{k}": v for k, v in readings.items()})
        path = write_pretrain_metrics(training_args.output_dir, metrics)
        write_provenance(
            training_args.output_dir,
            recipe="pretrain_quality",
            arguments=[script_args, training_args, sampling],
            summary={"num_train_videos": len(train), "eval_metrics": metrics},
            inputs=[script_args.dataset_path, script_args.model_name_or_path],
        )
        print(f"Saved the pretrained quality model to {training_args.output_dir} (metrics: {path})")
    return metrics


def make_parser() -> TrlParser:
    """The recipe's parser: YAML via ``--config``, CLI flags override it."""
    return TrlParser((PretrainQualityScriptArguments, QualityPretrainConfig, VideoSamplingConfig))


if __name__ == "__main__":
    run_recipe(main, make_parser)
