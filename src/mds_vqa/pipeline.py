"""The whole MDS-VQA loop, stage by stage, each stage being the recipe a user can also run alone.

For every round: score the source pool with f → train g → score the unlabelled target pool with g → (once) frame
features → select with each strategy → the simulated annotator reveals the MOS of the ``mds`` selection → GRPO + LoRA
on source + everything labelled so far → score the test splits → evaluate. The next round uses the fine-tuned model
(adapter merged) as f and never selects a labelled video again.

Each recipe stage writes its YAML to ``<output_dir>/configs/`` and its log to ``<output_dir>/logs/``, and runs as a
subprocess (``launcher``: ``python`` or ``accelerate launch --config_file …``). A stage whose completion marker
(``<output_dir>/state/<stage>.json``) and output exist is skipped: re-running the pipeline resumes it.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)

__all__ = ["PipelineConfig", "Pipeline", "StageError"]

REPO_RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@dataclass
class PipelineConfig:
    """One config for the whole loop (``recipes/pipeline.py --config …``)."""

    output_dir: str = field(default="outputs/pipeline", metadata={"help": "Everything goes here."})
    source_pool: str | None = field(default=None, metadata={"help": "Labelled source pool (with train/test split)."})
    target_pool: str | None = field(
        default=None, metadata={"help": "Target pool; its MOS is the simulated annotator's oracle, hidden otherwise."}
    )
    model_name_or_path: str = field(default="hollow404/VQR1-7B-YouTubeUGC", metadata={"help": "The quality model f."})
    dtype: str = field(default="bfloat16", metadata={"help": "Model dtype for every stage."})
    clip_model_name: str = field(default="ViT-B-32", metadata={"help": "open_clip model for the diversity features."})
    clip_pretrained: str | None = field(default="laion2b_s34b_b79k", metadata={"help": "open_clip pretrained tag."})
    num_frames: str = field(default="8", metadata={"help": "Frames per video for the features."})
    strategies: list[str] = field(
        default_factory=lambda: ["mds", "difficulty", "diversity", "coreset", "random"],
        metadata={"help": "Selection strategies; the first one is annotated and used for fine-tuning."},
    )
    budget: str = field(default="0.05", metadata={"help": "Per round: a count, a fraction or a percentage."})
    lam: float = field(default=0.25, metadata={"help": "λ of the diversity term."})
    rounds: int = field(default=1, metadata={"help": "Select → annotate → fine-tune rounds."})
    annotator_noise: float = field(default=0.0, metadata={"help": "Rater noise std of the simulated annotator."})
    seed: int = field(default=0, metadata={"help": "Seed of selection, annotation noise and training."})
    launcher: str = field(default="python", metadata={"help": "How training stages run, e.g. 'accelerate launch'."})
    score_launcher: str | None = field(default=None, metadata={"help": "How scoring/feature stages run."})
    sampling: dict[str, Any] | None = field(default=None, metadata={"help": "VideoSamplingConfig fields (YAML)."})
    score_args: dict[str, Any] | None = field(default=None, metadata={"help": "Extra recipes/score.py fields."})
    failure_predictor_args: dict[str, Any] | None = field(default=None, metadata={"help": "Extra g training fields."})
    features_args: dict[str, Any] | None = field(default=None, metadata={"help": "Extra extract_features fields."})
    select_args: dict[str, Any] | None = field(default=None, metadata={"help": "Extra recipes/select.py fields."})
    finetune_args: dict[str, Any] | None = field(default=None, metadata={"help": "Extra recipes/finetune.py fields."})
    stage_hub: bool = field(default=True, metadata={"help": "Stage the last adapter and selection with their cards."})
    push_to_hub: bool = field(default=False, metadata={"help": "Also push them (needs the two ids below)."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Hub repo of the adapter."})
    hub_dataset_id: str | None = field(default=None, metadata={"help": "Hub repo of the selected subset."})

    def __post_init__(self):
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if not self.strategies:
            raise ValueError("strategies must name at least one strategy")


class StageError(RuntimeError):
    """A stage failed; names the stage, the command and its log."""


class Pipeline:
    """Runs :class:`PipelineConfig` (see the module docstring). ``python`` is the interpreter of the stages."""

    def __init__(self, config: PipelineConfig, *, python: str = sys.executable, env: dict[str, str] | None = None):
        if not config.source_pool or not config.target_pool:
            raise ValueError("source_pool and target_pool are required (pool Datasets from recipes/build_pool.py).")
        self.cfg = config
        self.out = Path(config.output_dir)
        self.python = python
        self.env = dict(os.environ if env is None else env)
        self.env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        self.timings: list[dict[str, Any]] = []
        for sub in ("configs", "logs", "state"):
            (self.out / sub).mkdir(parents=True, exist_ok=True)

    # -- stage machinery -------------------------------------------------------------------------------------------
    def _marker(self, name: str) -> Path:
        return self.out / "state" / f"{name}.json"

    def _done(self, name: str, output: Path) -> bool:
        return self._marker(name).exists() and output.exists()

    def _record(self, name: str, seconds: float, skipped: bool, output: Path) -> None:
        self.timings.append({"stage": name, "seconds": round(seconds, 2), "skipped": skipped, "output": str(output)})
        if not skipped:
            self._marker(name).write_text(json.dumps({"seconds": seconds, "output": str(output)}))

    def _launcher(self, kind: str) -> list[str]:
        text = self.cfg.launcher if kind == "train" else (self.cfg.score_launcher or "python")
        parts = shlex.split(text)
        if parts and parts[0] in ("python", "python3"):
            parts[0] = self.python
        elif parts and parts[0] == "accelerate":
            parts[0] = str(Path(self.python).parent / "accelerate")
        return parts

    def recipe(self, name: str, recipe: str, args: dict[str, Any], output: Path, *, kind: str = "score") -> Path:
        """Run ``recipes/<recipe>.py`` with ``args`` (written as YAML) unless the stage is done; returns ``output``."""
        if self._done(name, output):
            logger.info("[skip] %s (done: %s)", name, output)
            self._record(name, 0.0, True, output)
            return output
        config = self.out / "configs" / f"{name}.yaml"
        config.write_text(yaml.safe_dump(args, sort_keys=False))
        cmd = [*self._launcher(kind), str(REPO_RECIPES / f"{recipe}.py"), "--config", str(config)]
        log = self.out / "logs" / f"{name}.log"
        logger.info("[run] %s: %s", name, " ".join(cmd))
        start = time.perf_counter()
        with open(log, "w") as fh:
            proc = subprocess.run(cmd, env=self.env, stdout=fh, stderr=subprocess.STDOUT, cwd=os.getcwd())
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-25:])
            raise StageError(
                f"Stage {name!r} failed (exit {proc.returncode}); command: {' '.join(cmd)}\nlog: {log}\n{tail}"
            )
        self._record(name, seconds, False, output)
        return output

    def step(self, name: str, output: Path, fn: Callable[[], Any]) -> Path:
        """Run an in-process stage ``fn`` unless done; returns ``output``."""
        if self._done(name, output):
            logger.info("[skip] %s (done: %s)", name, output)
            self._record(name, 0.0, True, output)
            return output
        logger.info("[run] %s", name)
        start = time.perf_counter()
        fn()
        self._record(name, time.perf_counter() - start, False, output)
        return output

    # -- stages ----------------------------------------------------------------------------------------------------
    def _score(self, name, pool, output, model, *, adapter=None, task="scoring", column="score", split=None):
        args = {
            "dataset_path": str(pool),
            "output_dir": str(output),
            "model_name_or_path": str(model),
            "adapter": adapter,
            "dtype": self.cfg.dtype,
            "score_column": column,
            "split": split,
            "mode": "expectation",
            "task": task,
            "overwrite": True,
            **(self.cfg.sampling or {}),
            **(self.cfg.score_args or {}),
        }
        return self.recipe(name, "score", {k: v for k, v in args.items() if v is not None}, Path(output))

    def run(self) -> dict[str, Any]:
        """Run every round; returns the summary (also written to ``<output_dir>/report/summary.json``)."""
        from datasets import load_from_disk

        from .annotation import SimulatedAnnotator, hide_mos

        cfg, out = self.cfg, self.out
        target = load_from_disk(cfg.target_pool)
        annotator = SimulatedAnnotator(
            target, noise_std=cfg.annotator_noise, seed=cfg.seed, log_path=out / "annotation_log.jsonl"
        )
        labelled: list[str] = []
        # the annotator's state is rebuilt from earlier rounds' labelled sets on resume
        model = cfg.model_name_or_path
        base_source = self._score("base_score_source", cfg.source_pool, out / "base" / "scored_source", model)
        base_target = self._score("base_score_target", cfg.target_pool, out / "base" / "scored_target", model)
        features = self.recipe(
            "features",
            "extract_features",
            {
                "pool_path": str(
                    self.step(
                        "target_train_unlabelled",
                        out / "target_train",
                        lambda: hide_mos(target.filter(lambda s: s == "train", input_columns="split")).save_to_disk(
                            str(out / "target_train")
                        ),
                    )
                ),
                "output_dir": str(out / "features"),
                "model_name": cfg.clip_model_name,
                "pretrained": cfg.clip_pretrained,
                "num_frames": cfg.num_frames,
                "overwrite": True,
                **(cfg.features_args or {}),
            },
            out / "features",
        )
        round_results = []
        eval_models = [
            {"name": "base", "dataset_path": str(base_source), "column": "score"},
            {"name": "base", "dataset_path": str(base_target), "column": "score"},
        ]
        for r in range(1, cfg.rounds + 1):
            rd = out / f"round_{r}"
            fp_args = {
                "dataset_path": str(base_source if r == 1 else rd / "scored_source"),
                "pred_column": "score",
                "eval_split": "test",
                "model_name_or_path": str(model),
                "dtype": cfg.dtype,
                "output_dir": str(rd / "g"),
                "seed": cfg.seed,
                "report_to": "none",
                **(cfg.sampling or {}),
                **(cfg.failure_predictor_args or {}),
            }
            if r > 1:
                self._score(f"r{r}_score_source", cfg.source_pool, rd / "scored_source", model)
            g = self.recipe(f"r{r}_failure_predictor", "train_failure_predictor", fp_args, rd / "g", kind="train")

            def unlabelled_pool(rd=rd):
                known = set(labelled)
                pool = load_from_disk(str(out / "target_train")).filter(
                    lambda v: v not in known, input_columns="video_id"
                )
                pool.save_to_disk(str(rd / "unlabelled"))

            self.step(f"r{r}_unlabelled", rd / "unlabelled", unlabelled_pool)
            difficulty = self._score(
                f"r{r}_difficulty",
                rd / "unlabelled",
                rd / "difficulty",
                model,
                adapter=str(g),
                task="difficulty",
                column="difficulty",
            )

            def candidates(rd=rd, difficulty=difficulty):
                feats = load_from_disk(str(features))
                dif = load_from_disk(str(difficulty))
                g_of = dict(zip(dif["video_id"], dif["difficulty"]))
                pool = feats.filter(lambda v: v in g_of, input_columns="video_id")
                pool = pool.add_column("difficulty", [g_of[v] for v in pool["video_id"]])
                pool.save_to_disk(str(rd / "candidates"))
                # provenance for the selection's dataset card: how the features and g were made
                for side in (Path(features) / "feature_extraction.json", Path(difficulty) / "scoring_summary.json"):
                    if side.is_file():
                        shutil.copy(side, rd / "candidates" / side.name)

            self.step(f"r{r}_candidates", rd / "candidates", candidates)
            selections = {}
            for strategy in cfg.strategies:
                selections[strategy] = self.recipe(
                    f"r{r}_select_{strategy}",
                    "select",
                    {
                        "pool_path": str(rd / "candidates"),
                        "output_dir": str(rd / "selection" / strategy),
                        "strategy": strategy,
                        "budget": cfg.budget,
                        "lam": cfg.lam,
                        "seed": cfg.seed + r,
                        "overwrite": True,
                        **(cfg.select_args or {}),
                    },
                    rd / "selection" / strategy,
                )
            chosen = cfg.strategies[0]

            def annotate(rd=rd, chosen=chosen, selected=selections[chosen], r=r):
                ids = list(load_from_disk(str(selected))["video_id"])
                annotator.annotate(ids, note=f"round {r}, strategy {chosen}").save_to_disk(str(rd / "labelled"))

            if self._done(f"r{r}_annotate", rd / "labelled"):
                annotator.revealed.extend(load_from_disk(str(rd / "labelled"))["video_id"])
            self.step(f"r{r}_annotate", rd / "labelled", annotate)
            labelled.extend(load_from_disk(str(rd / "labelled"))["video_id"])
            ft_args = {
                "dataset_paths": [cfg.source_pool, *[str(out / f"round_{k}" / "labelled") for k in range(1, r + 1)]],
                "model_name_or_path": str(model),
                "dtype": cfg.dtype,
                "output_dir": str(rd / "adapter"),
                "seed": cfg.seed,
                "report_to": "none",
                **(cfg.sampling or {}),
                **(cfg.finetune_args or {}),
            }
            adapter = self.recipe(f"r{r}_finetune", "finetune", ft_args, rd / "adapter", kind="train")
            src = self._score(
                f"r{r}_score_source_test",
                cfg.source_pool,
                rd / "eval" / "source",
                model,
                adapter=str(adapter),
                split="test",
            )
            tgt = self._score(
                f"r{r}_score_target_test",
                cfg.target_pool,
                rd / "eval" / "target",
                model,
                adapter=str(adapter),
                split="test",
            )
            name = f"round {r}" if cfg.rounds > 1 else f"base+{chosen}"
            eval_models += [
                {"name": name, "dataset_path": str(src), "column": "score"},
                {"name": name, "dataset_path": str(tgt), "column": "score"},
            ]
            round_results.append({"round": r, "labelled_total": len(labelled), "adapter": str(adapter)})
            if r < cfg.rounds:
                model = self.step(
                    f"r{r}_merge",
                    rd / "model",
                    lambda rd=rd, adapter=adapter, m=model: _merge(m, adapter, rd / "model", cfg.dtype),
                )

        report = out / "report"
        self.recipe(
            "evaluate",
            "evaluate",
            {
                "output_dir": str(report),
                "models": eval_models,
                "split": "test",
                "failure_scores": [{"dataset_path": str(base_target), "column": "score"}],
                # the paper's Table 1: what each strategy picked from the untouched pool (round 1)
                "failure_subsets": [
                    {"name": s, "dataset_path": str(out / "round_1" / "selection" / s)} for s in cfg.strategies
                ],
            },
            report / "correlation_table.json",
        )
        if cfg.stage_hub:
            self._publish(adapter, selections[chosen])
        return self._summary(report, round_results, annotator)

    def _publish(self, adapter: Path, selection: Path) -> None:
        from .hub import HubArguments, publish_adapter, publish_dataset

        cfg = self.cfg
        model_hub = HubArguments(
            push_to_hub=cfg.push_to_hub, hub_model_id=cfg.hub_model_id, stage_dir=str(self.out / "hub" / "adapter")
        )
        data_hub = HubArguments(
            push_to_hub=cfg.push_to_hub,
            hub_dataset_id=cfg.hub_dataset_id,
            stage_dir=str(self.out / "hub" / "selection"),
        )

        def publish():
            publish_adapter(
                adapter, model_hub, kind="grpo", base_model=cfg.model_name_or_path, source_data=cfg.source_pool
            )
            publish_dataset(str(selection), data_hub)

        self.step("publish", self.out / "hub", publish)

    def _summary(self, report: Path, rounds: list[dict[str, Any]], annotator) -> dict[str, Any]:
        table = (
            json.loads((report / "correlation_table.json").read_text())
            if (report / "correlation_table.json").exists()
            else None
        )
        summary = {
            "config": asdict(self.cfg),
            "stages": self.timings,
            "total_seconds": round(sum(t["seconds"] for t in self.timings), 2),
            "rounds": rounds,
            "annotations_spent": annotator.spent,
            "report_dir": str(report),
            "correlation_table": table,
        }
        (report / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        lines = ["# MDS-VQA run", "", "| stage | seconds | |", "|---|---:|---|"]
        lines += [
            f"| {t['stage']} | {t['seconds']:.1f} | {'skipped (done)' if t['skipped'] else ''} |" for t in self.timings
        ]
        lines += ["", f"Total: {summary['total_seconds']:.1f} s; videos annotated: {annotator.spent}.", ""]
        for name in ("correlation_table.md", "failure_identification.md"):
            if (report / name).exists():
                lines += [(report / name).read_text(), f"![{name[:-3]}]({name[:-3]}.png)", ""]
        selections = sorted(self.out.glob("round_*/selection/*/report.md"))
        if selections:
            lines += ["## Selection reports", ""]
            lines += [
                f"- [{p.parent.parent.parent.name} / {p.parent.name}]({os.path.relpath(p, report)})"
                for p in selections
            ]
        if rounds:
            lines += ["", "## Rounds", "", "| round | videos labelled so far | adapter |", "|---:|---:|---|"]
            lines += [f"| {r['round']} | {r['labelled_total']} | `{r['adapter']}` |" for r in rounds]
        (report / "README.md").write_text("\n".join(lines))
        return summary


def _merge(model: str, adapter: Path, output: Path, dtype: str) -> None:
    """Merge ``adapter`` into ``model`` and save model + processor to ``output`` (f for the next round)."""
    from .modeling import load_model_and_processor

    merged, processor = load_model_and_processor(str(model), adapter=str(adapter), dtype=dtype, merge_adapter=True)
    tmp = output.with_name(output.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    merged.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    os.replace(tmp, output)
