"""Train the failure predictor g: LoRA on f under the difficulty prompt, fidelity loss on error-ranking pairs.

Usage:
    accelerate launch --config_file accelerate_configs/zero2.yaml recipes/train_failure_predictor.py \
        --config recipes/configs/youtube_sfv_sdr/failure_predictor.yaml

Input: the labelled source pool scored by f (``recipes/score.py``: a score column next to ``mos``). The MOS is
normalised per dataset to [1, 5] (f's scale), the error is ``|f(x) − MOS(x)|``, and pairs are formed within each dataset
(in the batch, or as an explicit pair Dataset with ``--pairing pairs``). Held-out videos (``eval_split`` or a seeded
``eval_size`` fraction) report pairwise accuracy and SRCC between g and the error. The adapter is saved to
``output_dir`` and loads with ``PeftModel.from_pretrained(base, output_dir)``. ``dataset_path`` is a ``save_to_disk``
folder, a staged (Hub-layout) folder or a Hub id (``--revision``); relative video paths are joined with
``--video_root``, and a relative path of a scored video that is not a file stops the run before the model loads.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field

import numpy as np
from trl import TrlParser

from mds_vqa.cli import run_recipe
from mds_vqa.configs import VQAModelConfig, peft_config_from, train_and_save
from mds_vqa.data import error_pairs, normalize_mos
from mds_vqa.failure_predictor import FailurePredictorConfig, FailurePredictorTrainer
from mds_vqa.hub import (
    TrainerHubArguments,
    failure_predictor_eval_rows,
    hub_arguments_for_trainer,
    print_published,
    publish_adapter,
    write_provenance,
)
from mds_vqa.loading import load_pool, resolve_videos
from mds_vqa.modeling import VideoSamplingConfig, load_model_and_processor

logger = logging.getLogger("mds_vqa.train_failure_predictor")


@dataclass
class FailurePredictorScriptArguments:
    """Data of the failure-predictor run."""

    dataset_path: str = field(
        metadata={"help": "Source pool scored by f: a save_to_disk folder, a staged folder or a Hub id."}
    )
    revision: str | None = field(default=None, metadata={"help": "Hub revision of a Hub id dataset_path."})
    video_root: str | None = field(
        default=None, metadata={"help": "Folder that relative video paths are relative to (absolute paths are kept)."}
    )
    pred_column: str = field(default="score", metadata={"help": "Column holding f's scores."})
    mos_column: str = field(default="mos", metadata={"help": "Column holding the MOS."})
    normalize: bool = field(default=True, metadata={"help": "Min-max the MOS to [1, 5] per dataset (f's scale)."})
    train_split: str | None = field(default=None, metadata={"help": "Train on rows of this split (None: all)."})
    eval_split: str | None = field(default=None, metadata={"help": "Evaluate on rows of this split."})
    eval_size: float = field(default=0.1, metadata={"help": "Else hold out this seeded fraction (0: no eval)."})
    max_pairs_per_dataset: int | None = field(default=100_000, metadata={"help": "pairing=pairs: cap per dataset."})


def prepare_datasets(script_args: FailurePredictorScriptArguments, training_args: FailurePredictorConfig):
    """Load the scored pool, normalise the MOS, add ``error``, drop unscored rows (then resolve and check the videos'
    relative paths), split train/eval, make pairs."""
    pool = load_pool(script_args.dataset_path, revision=script_args.revision)
    for col in (script_args.pred_column, script_args.mos_column, "video", "dataset"):
        if col not in pool.column_names:
            raise ValueError(
                f"{script_args.dataset_path} has no column {col!r} (columns: {pool.column_names}); score it with recipes/score.py first."
            )
    if script_args.normalize and "mos_raw" not in pool.column_names:
        pool = normalize_mos(pool, mos_column=script_args.mos_column)
    preds = pool[script_args.pred_column]
    keep = [i for i, s in enumerate(preds) if s is not None and not math.isnan(s)]
    if len(keep) < len(pool):
        logger.warning(
            "Dropping %d of %d videos without a score from f (unreadable or unparseable).",
            len(pool) - len(keep),
            len(pool),
        )
        pool = pool.select(keep)
    pool = resolve_videos(pool, script_args.video_root, check="relative", source=script_args.dataset_path)
    pool = pool.map(
        lambda r: {training_args.error_column: abs(r[script_args.pred_column] - r[script_args.mos_column])},
        desc="error |f − MOS|",
    )
    if script_args.eval_split is not None:
        train = pool.filter(lambda s: s != script_args.eval_split, input_columns="split")
        evaluation = pool.filter(lambda s: s == script_args.eval_split, input_columns="split")
    elif script_args.eval_size > 0:
        order = np.random.default_rng(training_args.seed).permutation(len(pool))
        n_eval = max(3, int(round(script_args.eval_size * len(pool))))
        evaluation, train = pool.select(sorted(order[:n_eval].tolist())), pool.select(sorted(order[n_eval:].tolist()))
    else:
        train, evaluation = pool, None
    if script_args.train_split is not None:
        train = train.filter(lambda s: s == script_args.train_split, input_columns="split")
    if len(train) < 2:
        raise ValueError(f"Only {len(train)} training videos left in {script_args.dataset_path}: need at least 2.")
    if training_args.pairing == "pairs":
        train = error_pairs(
            train,
            script_args.pred_column,
            script_args.mos_column,
            max_pairs_per_dataset=script_args.max_pairs_per_dataset,
            seed=training_args.seed,
        )
    return train, evaluation


def _card_facts(
    script_args, training_args, model_args, sampling, hub_card, trainer, train, evaluation, metrics
) -> dict:
    """What the model card says about this run, recorded in provenance.json."""
    domains = sorted(set(evaluation["dataset"])) if evaluation is not None else []
    held_out = script_args.eval_split or f"held-out {script_args.eval_size:.0%} of the source"
    return dict(
        base_model=model_args.model_name_or_path,
        datasets=(hub_card.card_datasets if hub_card else None) or [],
        source_data=script_args.dataset_path,
        num_train_examples=len(train),
        training={
            "pairing": training_args.pairing,
            "learning rate": training_args.learning_rate,
            "epochs": training_args.num_train_epochs if training_args.max_steps <= 0 else None,
            "max steps": training_args.max_steps if training_args.max_steps > 0 else None,
            "batch size per device": training_args.per_device_train_batch_size,
            "gradient accumulation": training_args.gradient_accumulation_steps,
            "processes": training_args.world_size,
            "fidelity ε": training_args.fidelity_eps,
            "vision tower frozen": training_args.freeze_vision_tower,
            "weights dtype": model_args.dtype,
            "seed": training_args.seed,
        },
        eval_results=failure_predictor_eval_rows(metrics, ", ".join(domains) or "held-out source", held_out),
        eval_description="g against f's error on held-out source videos.",
        prompt_variant=training_args.prompt_variant,
        answer_prefix=training_args.answer_prefix,
        sampling=asdict(sampling),
        tags=list(trainer.model.model_tags or []),
    )


def main(
    script_args: FailurePredictorScriptArguments,
    training_args: FailurePredictorConfig,
    model_args: VQAModelConfig,
    sampling: VideoSamplingConfig,
    hub_card: TrainerHubArguments | None = None,
):
    """Train g and save the adapter, then stage (and push) it with its model card when asked (``--stage_dir``, or
    ``--push_to_hub`` with ``--hub_model_id``); returns the final evaluation metrics (empty without an eval set)."""
    hub = hub_arguments_for_trainer(training_args, hub_card)  # checks the repo id now, not after training
    train, evaluation = prepare_datasets(script_args, training_args)
    logger.info(
        "Training on %d %s, evaluating on %s videos.",
        len(train),
        "pairs" if training_args.pairing == "pairs" else "videos",
        len(evaluation) if evaluation is not None else 0,
    )
    model, processor = load_model_and_processor(
        model_args.model_name_or_path,
        dtype=model_args.dtype,
        attn_implementation=model_args.attn_implementation,
        revision=model_args.model_revision,
        trust_remote_code=False,
    )
    model.config.use_cache = not training_args.gradient_checkpointing
    trainer = FailurePredictorTrainer(
        model,
        training_args,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=processor,
        peft_config=peft_config_from(model_args),
        sampling=sampling,
    )
    train_and_save(trainer, training_args.output_dir)
    metrics = {}
    if evaluation is not None:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
    if trainer.accelerator.is_main_process:
        print(f"Saved the failure-predictor adapter to {training_args.output_dir}")
        card = _card_facts(
            script_args, training_args, model_args, sampling, hub_card, trainer, train, evaluation, metrics
        )
        write_provenance(
            training_args.output_dir,
            recipe="train_failure_predictor",
            arguments=[script_args, training_args, model_args, sampling, hub_card],
            summary={**card, "eval_metrics": metrics},
            inputs=[script_args.dataset_path],
        )
        published = publish_adapter(training_args.output_dir, hub)
        print_published(published, "the adapter with its model card")
    return metrics


def make_parser() -> TrlParser:
    """The recipe's parser: YAML via ``--config``, CLI flags override it."""
    parser = TrlParser(
        (
            FailurePredictorScriptArguments,
            FailurePredictorConfig,
            VQAModelConfig,
            VideoSamplingConfig,
            TrainerHubArguments,
        )
    )
    return parser


if __name__ == "__main__":
    run_recipe(main, make_parser)
