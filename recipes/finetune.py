"""Active fine-tuning: VisualQuality-R1-style GRPO with LoRA on videos (source pool + the newly labelled selection).

Usage:
    accelerate launch --config_file accelerate_configs/zero2.yaml recipes/finetune.py \
        --config recipes/configs/youtube_sfv_sdr/finetune.yaml

The training set is the union of pool Datasets with a MOS (the labelled source pool and the labelled selected subset),
each MOS min-max normalised to [1, 5] within its dataset. Every row becomes the scoring prompt (thinking variant by
default) with its video; the rewards are picked by name (``reward_funcs: [thurstone, format]``, weighted by
``reward_weights``). Batches are drawn one dataset at a time so the Thurstone comparisons stay on one MOS scale. The
adapter saved in ``output_dir`` loads with ``PeftModel.from_pretrained(base, output_dir)`` and scores videos through
``recipes/score.py --adapter output_dir``.

Pair Datasets train next to the pools (``pair_dataset_paths``: weak pairs from ``recipes/make_weak_pairs.py``, or any
pair Dataset of ``mos_to_pairs``; ``p`` = probability that ``video_a`` is the better). Each pair becomes two prompts,
one per video, sharing a ``pair_id`` (:mod:`mds_vqa.pair_prompts`); the sampler puts both in one generation batch,
and the Thurstone reward takes their ground truth from ``p`` instead of a MOS order (:mod:`mds_vqa.rewards`). A
pair prompt's loss is weighted by ``pair_weight`` (its advantages are scaled; a MOS prompt weighs 1). With pairs,
``generation_batch_size // num_generations`` must be even. Without them, nothing changes.

Every Dataset (pool or pairs) is a ``save_to_disk`` folder, a staged (Hub-layout) folder or a Hub id; relative video
paths (``video``, ``video_a``, ``video_b``) are joined with ``--video_root``. A training video that is not a file
stops the run before the model loads, naming the first missing files (and ``--video_root`` when the paths are
relative).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

from datasets import concatenate_datasets
from trl import TrlParser

from mds_vqa.cli import run_recipe
from mds_vqa.configs import VQAModelConfig, peft_config_from, train_and_save
from mds_vqa.data import normalize_mos
from mds_vqa.grpo import VideoGRPOConfig, VideoGRPOTrainer
from mds_vqa.hub import (
    TrainerHubArguments,
    hub_arguments_for_trainer,
    publish_adapter,
    write_provenance,
)
from mds_vqa.loading import load_pool, resolve_videos
from mds_vqa.modeling import VideoSamplingConfig, load_model_and_processor
from mds_vqa.pair_prompts import concat_rows, pair_prompt_rows, with_pair_columns
from mds_vqa.prompts import get_prompt
from mds_vqa.rewards import get_reward_funcs

logger = logging.getLogger("mds_vqa.finetune")


@dataclass
class FinetuneScriptArguments:
    """Data and rewards of the GRPO run."""

    dataset_paths: list[str] = field(
        default_factory=list,
        metadata={"help": "Pool Datasets with a MOS (folders, staged folders or Hub ids): source pool, selection."},
    )
    pair_dataset_paths: list[str] = field(
        default_factory=list,
        metadata={"help": "Pair Datasets (video_a, video_b, p, dataset), e.g. weak pairs: two prompts per pair."},
    )
    video_root: str | None = field(
        default=None,
        metadata={"help": "Folder that relative video paths of every Dataset are relative to (absolute ones kept)."},
    )
    pair_weight: float = field(
        default=1.0, metadata={"help": "Loss weight of a pair prompt (its advantages are scaled); a MOS prompt: 1."}
    )
    max_train_pairs: int | None = field(
        default=None, metadata={"help": "Use at most this many pairs of each pair Dataset (a seeded sample)."}
    )
    split: str | None = field(default="train", metadata={"help": "Train on rows of this split (None: all rows)."})
    normalize: bool = field(default=True, metadata={"help": "Min-max the MOS to [1, 5] within each dataset."})
    prompt_variant: str = field(default="thinking", metadata={"help": "Scoring prompt variant: thinking or direct."})
    reward_funcs: list[str] = field(
        default_factory=lambda: ["thurstone", "format"], metadata={"help": "Rewards by name."}
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use at most this many pool videos (debugging; pairs: max_train_pairs)."}
    )


def _split_rows(ds, path: str, split: str | None):
    if split is not None and "split" in ds.column_names:
        ds = ds.filter(lambda s: s == split, input_columns="split", desc=f"{path}: split")
    return ds


def _pair_rows(script_args: FinetuneScriptArguments, seed: int):
    """The prompt rows of every pair Dataset (two per pair), filtered by split and capped by ``max_train_pairs``."""
    if script_args.pair_weight < 0:
        raise ValueError(f"pair_weight must be >= 0, got {script_args.pair_weight}")
    parts = []
    for k, path in enumerate(script_args.pair_dataset_paths):
        pairs = _split_rows(load_pool(path), path, script_args.split)
        if script_args.max_train_pairs is not None and len(pairs) > script_args.max_train_pairs:
            pairs = pairs.shuffle(seed=seed).select(range(script_args.max_train_pairs))
        pairs = resolve_videos(pairs, script_args.video_root, source=path)
        parts.append(pair_prompt_rows(pairs, tag=str(k), weight=script_args.pair_weight, where=path))
        logger.info("%s: %d pairs", path, len(pairs))
    return parts


def build_train_dataset(script_args: FinetuneScriptArguments, seed: int = 0):
    """Load, filter and merge the pools (relative video paths joined with ``video_root``); normalise the MOS per
    dataset; add the pair Datasets' rows (two per pair, after the MOS rows); add the conversational ``prompt``."""
    if not script_args.dataset_paths and not script_args.pair_dataset_paths:
        raise ValueError("Nothing to train on: give dataset_paths (MOS pools) and/or pair_dataset_paths.")
    pools = []
    for path in script_args.dataset_paths:
        ds = load_pool(path)
        missing = [c for c in ("video", "mos", "dataset") if c not in ds.column_names]
        if missing:
            raise ValueError(f"{path} lacks the column(s) {missing} (columns: {ds.column_names})")
        ds = resolve_videos(_split_rows(ds, path, script_args.split), script_args.video_root, source=path)
        keep = [c for c in ("video_id", "video", "mos", "mos_std", "dataset", "split") if c in ds.column_names]
        pools.append(ds.select_columns(keep))
        logger.info("%s: %d videos", path, len(ds))
    pair_parts = _pair_rows(script_args, seed)
    train = concatenate_datasets(pools) if pools else None
    if (train is None or len(train) == 0) and not sum(len(p) for p in pair_parts):
        raise ValueError(
            f"No training rows in {script_args.dataset_paths + script_args.pair_dataset_paths} "
            f"(split={script_args.split!r})."
        )
    if train is not None and len(train) and script_args.normalize:
        train = normalize_mos(train)
    prompt = get_prompt("scoring", script_args.prompt_variant)
    if train is not None:
        train = train.map(lambda _: {"prompt": [{"role": "user", "content": prompt}]}, desc="prompts")
        if script_args.max_train_samples is not None:
            train = train.shuffle(seed=seed).select(range(min(script_args.max_train_samples, len(train))))
    if not pair_parts:
        return train
    mos_rows = [with_pair_columns(train)] if train is not None and len(train) else []
    pairs = concat_rows(pair_parts).map(lambda _: {"prompt": [{"role": "user", "content": prompt}]}, desc="prompts")
    return concat_rows([*mos_rows, pairs])


def main(
    script_args: FinetuneScriptArguments,
    training_args: VideoGRPOConfig,
    model_args: VQAModelConfig,
    sampling: VideoSamplingConfig,
    hub_card: TrainerHubArguments | None = None,
):
    """Run GRPO and save the adapter to ``training_args.output_dir`` (staged with its model card, and pushed with
    ``--push_to_hub`` + ``--hub_model_id``); returns the train metrics."""
    hub = hub_arguments_for_trainer(training_args, hub_card)  # checks the repo id now, not after training
    train = build_train_dataset(script_args, seed=training_args.seed)
    # before the model loads: a missing video would stop the run mid-training (video_root None: a check only)
    resolve_videos(train, None, columns=("video",), check=True, source="The training rows")
    model, processor = load_model_and_processor(
        model_args.model_name_or_path,
        dtype=model_args.dtype,
        attn_implementation=model_args.attn_implementation,
        revision=model_args.model_revision,
    )
    trainer = VideoGRPOTrainer(
        model=model,
        reward_funcs=get_reward_funcs(script_args.reward_funcs, num_generations=training_args.num_generations),
        args=training_args,
        train_dataset=train,
        processing_class=processor,
        peft_config=peft_config_from(model_args),
        sampling=sampling,
    )
    train_metrics = train_and_save(trainer, training_args.output_dir)
    if trainer.accelerator.is_main_process:
        print(f"Saved the fine-tuned adapter to {training_args.output_dir}")
        card = dict(  # what the model card says, recorded in provenance.json
            base_model=model_args.model_name_or_path,
            datasets=(hub_card.card_datasets if hub_card else None) or [],
            source_data=", ".join(script_args.dataset_paths + script_args.pair_dataset_paths),
            num_train_examples=len(train),
            prompt_variant=script_args.prompt_variant,
            sampling=asdict(sampling),
            training={
                "num_generations": training_args.num_generations,
                "beta": training_args.beta,
                "learning rate": training_args.learning_rate,
                "reward functions": ", ".join(script_args.reward_funcs),
                **(
                    {"pair Datasets": len(script_args.pair_dataset_paths), "pair weight": script_args.pair_weight}
                    if script_args.pair_dataset_paths
                    else {}
                ),
                "seed": training_args.seed,
            },
            tags=list(trainer.model.model_tags or []),
        )
        write_provenance(
            training_args.output_dir,
            recipe="finetune",
            arguments=[script_args, training_args, model_args, sampling, hub_card],
            summary={**card, "train_metrics": train_metrics},
            inputs=script_args.dataset_paths + script_args.pair_dataset_paths,
        )
        publish_adapter(training_args.output_dir, hub)
    return train_metrics


def make_parser() -> TrlParser:
    """The recipe's parser: YAML via ``--config``, CLI flags override it."""
    parser = TrlParser(
        (FinetuneScriptArguments, VideoGRPOConfig, VQAModelConfig, VideoSamplingConfig, TrainerHubArguments)
    )
    return parser


if __name__ == "__main__":
    run_recipe(main, make_parser)
