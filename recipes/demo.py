"""The whole MDS-VQA loop on an embedded default: offline, on CPU, in a few minutes.

    python recipes/demo.py                                   # everything under outputs/demo
    python recipes/demo.py --output_dir /tmp/mds --rounds 2  # two select → annotate → fine-tune rounds

Generates a source and a target pool of short videos with known quality (different distortion mixes per domain),
builds a tiny Qwen2.5-VL (f) and a tiny open_clip model locally, then runs the pipeline: score the source pool with f,
train g, score the target pool with g, extract features, select (mds and the baselines), let the simulated annotator
reveal the selected videos' MOS, fine-tune f with GRPO + LoRA, evaluate base vs fine-tuned per domain, and stage the
adapter and the selected subset with their cards. The numbers come from random tiny models: they show that every
stage runs and connects, not what the method achieves on real data.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from trl import TrlParser

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


from mds_vqa.log import setup_logging  # noqa: E402
from mds_vqa.pipeline import StageError  # noqa: E402
from mds_vqa.pipeline.config import load_recipe  # noqa: E402


@dataclass
class DemoArguments:
    """Sizes of the embedded default."""

    output_dir: str = field(default="outputs/demo", metadata={"help": "Everything goes here."})
    videos_per_domain: int = field(default=32, metadata={"help": "Generated videos per domain."})
    budget: str = field(default="0.25", metadata={"help": "Per-round budget (the toy pool is tiny: 25%% = 6 videos)."})
    rounds: int = field(default=1, metadata={"help": "Select → annotate → fine-tune rounds."})
    fp_steps: int = field(default=20, metadata={"help": "Failure-predictor training steps."})
    grpo_steps: int = field(default=4, metadata={"help": "GRPO steps per round."})
    seed: int = field(default=0, metadata={"help": "Seed of everything."})


def main(args: DemoArguments) -> dict:
    """Generate the toy assets, write the pipeline config, run it; returns the pipeline summary."""
    from mds_vqa.features import save_open_clip
    from mds_vqa.pipeline import PipelineConfig
    from mds_vqa.testing import register_tiny_open_clip, tiny_open_clip_config

    out = Path(args.output_dir).resolve()
    assets = out / "assets"
    if not (assets / "tiny_qwen2_5_vl" / "config.json").exists():
        load_recipe("make_toy_data").main(
            load_recipe("make_toy_data").ToyDataArguments(
                output_dir=str(assets), videos_per_domain=args.videos_per_domain, seed=args.seed
            )
        )
    build = load_recipe("build_pool")
    for domain in ("source", "target"):
        if not (assets / "pools" / domain / "dataset_info.json").exists():
            (cfg,) = TrlParser(build.BuildPoolArguments).parse_yaml_file(str(assets / domain / "build_pool.yaml"))
            build.main(cfg)
    clip_dir = assets / "tiny_open_clip"
    if not (clip_dir / "open_clip_config.json").exists():
        import open_clip

        model = open_clip.create_model(register_tiny_open_clip(), pretrained=None)
        save_open_clip(model, clip_dir, model_config=tiny_open_clip_config())
    config = PipelineConfig(
        output_dir=str(out / "run"),
        source_pool=str(assets / "pools" / "source"),
        target_pool=str(assets / "pools" / "target"),
        model_name_or_path=str(assets / "tiny_qwen2_5_vl"),
        dtype="float32",
        clip_model_name=f"local-dir:{clip_dir}",
        clip_pretrained=None,
        num_frames="4",
        budget=args.budget,
        rounds=args.rounds,
        annotator_noise=0.05,
        seed=args.seed,
        sampling={"resized_height": 56, "resized_width": 56, "nframes": 2},
        score_args={"batch_size": 8},
        features_args={"batch_size": 8, "num_workers": 0},
        failure_predictor_args={
            "use_cpu": True,
            "bf16": False,
            "gradient_checkpointing": False,
            "lora_r": 8,
            "lora_alpha": 16,
            "lora_dropout": 0.0,
            "per_device_train_batch_size": 6,
            "per_device_eval_batch_size": 6,
            "learning_rate": 1.0e-3,
            "lr_scheduler_type": "constant",
            "max_steps": args.fp_steps,
            "logging_steps": 5,
            "eval_strategy": "no",
            "save_strategy": "no",
        },
        finetune_args={
            "use_cpu": True,
            "bf16": False,
            "gradient_checkpointing": False,
            "lora_r": 8,
            "lora_alpha": 16,
            "lora_dropout": 0.0,
            "num_generations": 2,
            "per_device_train_batch_size": 4,
            "max_completion_length": 16,
            "learning_rate": 1.0e-4,
            "max_steps": args.grpo_steps,
            "logging_steps": 1,
            "save_strategy": "no",
        },
    )
    (out / "pipeline.yaml").write_text(yaml.safe_dump({k: v for k, v in config.__dict__.items()}, sort_keys=False))
    return load_recipe("pipeline").main(config)


def make_parser() -> TrlParser:
    """The recipe's parser: YAML via ``--config``, CLI flags override it."""
    return TrlParser(DemoArguments)


if __name__ == "__main__":
    setup_logging()
    (demo_args,) = make_parser().parse_args_and_config()
    try:
        main(demo_args)
    except StageError as err:  # names the stage, its command and its log
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
