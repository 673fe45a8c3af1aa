"""MDS-VQA on the embedded toy world: does selecting hard and diverse videos beat the other strategies? Offline, CPU.

    python recipes/demo.py                      # three seeds: outputs/demo/report/README.md
    python recipes/demo.py --seeds 1            # one seed (no interval)
    python recipes/demo.py --pretrain false     # random tiny f: only shows that every stage runs and connects

Per seed (new videos, new initialisation, new rater noise): generate a source and a target domain of short videos
with known quality (:mod:`mds_vqa.toy_world`: the target has kinds of distortion the source never shows), build a tiny
Qwen2.5-VL and train it on the source (``recipes/pretrain_quality.py``: the base f), then run the pipeline with every
strategy compared (``finetune_strategies: all``): f scores the source, g learns f's errors, g, f's sampled-score spread
and f's weight-noise instability score the target pool, each strategy selects the same budget, the simulated annotator
reveals each selection's MOS, f is fine-tuned with GRPO + LoRA on source + each selection, and every model is scored
on both test splits. ``report/`` gets the design (written before anything runs), ``experiment.json`` (mean, 95% CI
and per-seed values of every number) and a README with the tables and a plot. Every stage resumes.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from trl import TrlParser

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


from mds_vqa.log import setup_logging  # noqa: E402
from mds_vqa.pipeline import StageError  # noqa: E402
from mds_vqa.pipeline.config import load_recipe  # noqa: E402

ALL_STRATEGIES = ["mds", "difficulty", "diversity", "coreset", "random", "uncertainty", "noise_stability"]


@dataclass
class DemoArguments:
    """The experiment on the embedded default: its seeds, world sizes and training budgets."""

    output_dir: str = field(default="outputs/demo", metadata={"help": "Everything goes here."})
    seeds: int = field(default=3, metadata={"help": "Seeds (worlds) to run: first_seed, first_seed + 1, …"})
    first_seed: int = field(default=0, metadata={"help": "The first seed."})
    source_videos: int = field(default=96, metadata={"help": "Generated source videos per seed."})
    target_videos: int = field(default=160, metadata={"help": "Generated target videos per seed."})
    budget: str = field(default="0.1", metadata={"help": "Videos each strategy selects from the target train split."})
    strategies: list[str] = field(default_factory=lambda: list(ALL_STRATEGIES), metadata={"help": "Compared."})
    pretrain: bool = field(
        default=True, metadata={"help": "Train f on the source first (false: random tiny f, plumbing only)."}
    )
    pretrain_steps: int = field(default=500, metadata={"help": "Quality pretraining steps of f."})
    fp_steps: int = field(default=40, metadata={"help": "Failure-predictor (g) training steps."})
    grpo_steps: int = field(
        default=42, metadata={"help": "GRPO steps per strategy (4 prompts each: 2 epochs of source + selection)."}
    )
    score_mode: str = field(
        default="expectation",
        metadata={"help": "How f is read for its errors (g's labels) and for the evaluation."},
    )


def design(args: DemoArguments) -> str:
    """The experiment's design as Markdown: the world, the protocol and the budgets, fixed before it runs."""
    from mds_vqa.toy_world import describe_world

    f_line = (
        f"- f: a tiny Qwen2.5-VL (text hidden 64, 2 layers; vision depth 2) initialised per seed and trained on the "
        f"source train split for {args.pretrain_steps} steps (`recipes/pretrain_quality.py` with "
        "`recipes/configs/demo/pretrain_quality.yaml`: fidelity loss on MOS pairs through the expectation score + "
        "supervised `<think>…</think><answer>x.xx</answer>` answers, the vision tower warmed up first)."
        if args.pretrain
        else "- f: a tiny Qwen2.5-VL with random weights (`--pretrain false`): the numbers mean nothing."
    )
    return "\n".join(
        [
            describe_world(_world(args)),
            f_line,
            f"- g: LoRA on f trained {args.fp_steps} steps on f's errors on the source train split (fidelity loss).",
            f"- Strategies: {', '.join(args.strategies)}; each selects {args.budget} of the target train split "
            "(λ = 0.25; features from a tiny random open_clip ViT). `uncertainty`: spread of f's 8 sampled "
            "answers; `noise_stability`: mean change of f's score under 4 weight perturbations (std 2 %).",
            f"- Fine-tuning per strategy: GRPO + LoRA on source train + the selection, {args.grpo_steps} steps; "
            "the simulated annotator adds rater noise (std 0.05) to the revealed MOS, the same per video in every arm.",
            f"- f is read with mode `{args.score_mode}` for its errors and for the evaluation; the test splits are "
            "never selected from.",
            f"- Seeds: {list(_seeds(args))}; each seed draws new videos, a new f and new rater noise. Every number is "
            "reported as mean, 95 % Student-t interval over seeds and per-seed values, whatever it says.",
        ]
    )


def _seeds(args: DemoArguments) -> range:
    return range(args.first_seed, args.first_seed + args.seeds)


def _world(args: DemoArguments):
    from mds_vqa.toy_world import ToyWorld

    return ToyWorld(source_videos=args.source_videos, target_videos=args.target_videos)


def prepare_seed(args: DemoArguments, seed: int, seed_dir: Path) -> dict[str, str]:
    """One seed's world, pools, tiny models and (``pretrain``) trained f, each a resumable step; returns their
    paths."""
    import torch

    from mds_vqa.features import save_open_clip
    from mds_vqa.pipeline.stages import StageRunner
    from mds_vqa.testing import build_tiny_qwen2_5_vl, register_tiny_open_clip, tiny_open_clip_config
    from mds_vqa.toy_world import write_world

    runner = StageRunner(seed_dir / "prep")
    assets = seed_dir / "assets"
    world = _world(args)

    def write():
        configs = write_world(assets / "world", world, seed=seed)
        build = load_recipe("build_pool")
        for config in configs.values():
            (cfg,) = TrlParser(build.BuildPoolArguments).parse_yaml_file(str(config))
            build.main(cfg)

    world_params = {"world": asdict(world), "seed": seed}
    runner.step("world", assets / "world", write, params=world_params)
    pools = {d: str(assets / "world" / "pools" / d) for d in ("source", "target")}
    qwen = assets / "tiny_qwen2_5_vl"
    runner.step("tiny_qwen2_5_vl", qwen, lambda: build_tiny_qwen2_5_vl(qwen, seed=seed), params={"seed": seed})
    clip_dir = assets / "tiny_open_clip"

    def write_clip():
        import open_clip

        torch.manual_seed(seed)
        model = open_clip.create_model(register_tiny_open_clip(), pretrained=None)
        save_open_clip(model, clip_dir, model_config=tiny_open_clip_config())

    runner.step("tiny_open_clip", clip_dir, write_clip, params={"seed": seed, "config": tiny_open_clip_config()})
    model = str(qwen)
    if args.pretrain:
        f_dir = assets / "f"
        pretrain_args = {
            "dataset_path": pools["source"],
            "model_name_or_path": str(qwen),
            "output_dir": str(f_dir),
            "dtype": "float32",
            "resized_height": 56,
            "resized_width": 56,
            "nframes": 2,
            "max_steps": args.pretrain_steps,
            "seed": seed,
            "use_cpu": True,
            "bf16": False,
            "report_to": "none",
            "eval_strategy": "no",
            "save_strategy": "no",
        }
        base = yaml.safe_load((Path(load_recipe("pretrain_quality").__file__).parent / PRETRAIN_CONFIG).read_text())
        runner.recipe("pretrain_f", "pretrain_quality", {**base, **pretrain_args}, f_dir, kind="train")
        model = str(f_dir)
    return {"model": model, "clip": str(clip_dir), **pools}


PRETRAIN_CONFIG = "configs/demo/pretrain_quality.yaml"


def pipeline_config(args: DemoArguments, seed: int, seed_dir: Path, paths: dict[str, str]):
    """The pipeline config of one seed: every strategy compared, each fine-tuned on."""
    from mds_vqa.pipeline import PipelineConfig

    return PipelineConfig(
        output_dir=str(seed_dir / "run"),
        source_pool=paths["source"],
        target_pool=paths["target"],
        model_name_or_path=paths["model"],
        dtype="float32",
        clip_model_name=f"local-dir:{paths['clip']}",
        clip_pretrained=None,
        num_frames="4",
        strategies=list(args.strategies),
        finetune_strategies="all",
        budget=args.budget,
        rounds=1,
        annotator_noise=0.05,
        seed=seed,
        launcher="inprocess",  # tiny models: an interpreter start-up per stage would cost more than the stage
        score_launcher="inprocess",
        source_score_mode=args.score_mode,
        eval_score_mode=args.score_mode,
        sampling={"resized_height": 56, "resized_width": 56, "nframes": 2},
        score_args={"batch_size": 16, "max_new_tokens": 32, "num_workers": 0},
        features_args={"batch_size": 16, "num_workers": 0},
        failure_predictor_args={
            "use_cpu": True,
            "bf16": False,
            "gradient_checkpointing": False,
            "lora_r": 8,
            "lora_alpha": 16,
            "lora_dropout": 0.0,
            "per_device_train_batch_size": 8,
            "per_device_eval_batch_size": 8,
            "learning_rate": 1.0e-3,
            "lr_scheduler_type": "constant",
            "max_steps": args.fp_steps,
            "logging_steps": 10,
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
            "num_generations": 4,
            "per_device_train_batch_size": 16,
            "max_completion_length": 24,
            "learning_rate": 5.0e-4,
            "max_steps": args.grpo_steps,
            "logging_steps": 4,
            "save_strategy": "no",
        },
        stage_hub=False,
    )


def main(args: DemoArguments) -> dict:
    """Run every seed and write the report; returns ``experiment.json``'s content."""
    from mds_vqa.experiment import aggregate, seed_metrics, write_experiment_report

    out = Path(args.output_dir).resolve()
    report = out / "report"
    report.mkdir(parents=True, exist_ok=True)
    text = design(args)
    (report / "design.md").write_text(text + "\n")  # fixed before any comparison runs
    per_seed, timings = [], {}
    for seed in _seeds(args):
        start = time.perf_counter()
        seed_dir = out / "seeds" / f"seed_{seed}"
        paths = prepare_seed(args, seed, seed_dir)
        config = pipeline_config(args, seed, seed_dir, paths)
        (seed_dir / "pipeline.yaml").write_text(yaml.safe_dump(asdict(config), sort_keys=False))
        load_recipe("pipeline").main(config)
        per_seed.append(seed_metrics(seed_dir / "run", args.strategies))
        timings[seed] = time.perf_counter() - start
    experiment = aggregate(list(_seeds(args)), per_seed)
    experiment["design"] = {"pretrain": args.pretrain, **{k: v for k, v in asdict(args).items() if k != "output_dir"}}
    readme = write_experiment_report(report, experiment, design=text, timings=timings)
    print(f"report: {readme}")
    return experiment


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
