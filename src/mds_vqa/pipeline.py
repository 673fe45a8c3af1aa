"""The whole MDS-VQA loop, stage by stage, each stage being the recipe a user can also run alone.

For every round: score the source pool with f → train g → score the unlabelled target pool with g → (once) frame
features → select with each strategy → the simulated annotator reveals the MOS of the ``mds`` selection → GRPO + LoRA
on source + everything labelled so far → score the test splits → evaluate. The next round uses the fine-tuned model
(adapter merged) as f and never selects a labelled video again.

Each recipe stage writes its YAML to ``<output_dir>/configs/`` and its log to ``<output_dir>/logs/``, and runs as a
subprocess (``launcher``: ``python`` or ``accelerate launch --config_file …``).

Resuming: each stage has a key, the hash of its resolved arguments (a recipe's YAML, an in-process step's declared
parameters) and of the keys of the earlier stages whose outputs appear in them. A finished stage writes its key,
arguments and inputs to ``<output_dir>/state/<stage>.json``; a re-run skips it only when that key matches and its
output exists, and otherwise runs it again, logging what changed (``[rerun] r1_select_mds: arguments changed: lam
0.25 -> 0.5``, ``input r1_difficulty changed``). A change therefore re-runs its stage and everything downstream.
"""

from __future__ import annotations

import hashlib
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

__all__ = ["PipelineConfig", "Pipeline", "StageError", "StagePlan"]

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
    select_args: dict[str, Any] | None = field(
        default=None, metadata={"help": "Extra recipes/select_subset.py fields."}
    )
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


@dataclass
class StagePlan:
    """A stage's key (hash of ``args`` and the keys of its ``inputs``, the earlier stages it reads), whether it is done
    (``skip``) and otherwise why it runs (``reason``)."""

    name: str
    output: Path
    key: str
    args: dict[str, Any]
    inputs: dict[str, str]
    skip: bool
    reason: str | None


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
        self._outputs: dict[str, tuple[str, str]] = {}  # absolute output path -> (stage, key), this run's stages
        for sub in ("configs", "logs", "state"):
            (self.out / sub).mkdir(parents=True, exist_ok=True)

    # -- stage machinery -------------------------------------------------------------------------------------------
    def _marker(self, name: str) -> Path:
        return self.out / "state" / f"{name}.json"

    def _inputs(self, args: dict[str, Any]) -> dict[str, str]:
        """``{stage: key}`` of the earlier stages whose output (or a path inside it) appears in ``args``."""
        found: dict[str, str] = {}
        for value in _strings(args):
            path = os.path.abspath(value)
            for output, (stage, key) in self._outputs.items():
                if path == output or path.startswith(output + os.sep):
                    found[stage] = key
        return dict(sorted(found.items()))

    def plan(self, name: str, output: Path, args: dict[str, Any]) -> StagePlan:
        """Whether stage ``name`` (writing ``output``, resolved ``args``) is done: its key, and why it must run."""
        args = _jsonable(args)
        inputs = self._inputs(args)
        key = hashlib.sha256(json.dumps({"args": args, "inputs": inputs}, sort_keys=True).encode()).hexdigest()[:16]
        marker = self._marker(name)
        if not marker.exists():
            return StagePlan(name, output, key, args, inputs, False, "not run before")
        try:
            done = json.loads(marker.read_text())
        except json.JSONDecodeError as err:
            return StagePlan(name, output, key, args, inputs, False, f"its marker {marker} is unreadable ({err})")
        if not output.exists():
            return StagePlan(name, output, key, args, inputs, False, f"its output {output} is missing")
        if done.get("key") == key:
            return StagePlan(name, output, key, args, inputs, True, None)
        return StagePlan(name, output, key, args, inputs, False, _what_changed(done, args, inputs))

    def _start(self, plan: StagePlan, command: str = "") -> None:
        # a stage that fails half-way must not look done under its old key (its output may be half-overwritten)
        self._marker(plan.name).unlink(missing_ok=True)
        if plan.reason == "not run before":
            logger.info("[run] %s%s", plan.name, f": {command}" if command else "")
        else:
            logger.info("[rerun] %s: %s%s", plan.name, plan.reason, f"; running: {command}" if command else "")

    def _record(self, plan: StagePlan, seconds: float) -> None:
        self._outputs[os.path.abspath(plan.output)] = (plan.name, plan.key)
        self.timings.append(
            {
                "stage": plan.name,
                "seconds": round(seconds, 2),
                "skipped": plan.skip,
                "output": str(plan.output),
                "key": plan.key,
                "reason": plan.reason,
            }
        )
        if not plan.skip:
            record = {
                "seconds": seconds,
                "output": str(plan.output),
                "key": plan.key,
                "args": plan.args,
                "inputs": plan.inputs,
            }
            self._marker(plan.name).write_text(json.dumps(record, indent=2))

    def _skip(self, plan: StagePlan) -> Path:
        logger.info("[skip] %s (done: %s)", plan.name, plan.output)
        self._record(plan, 0.0)
        return plan.output

    def _launcher(self, kind: str) -> list[str]:
        text = self.cfg.launcher if kind == "train" else (self.cfg.score_launcher or "python")
        parts = shlex.split(text)
        if parts and parts[0] in ("python", "python3"):
            parts[0] = self.python
        elif parts and parts[0] == "accelerate":
            parts[0] = str(Path(self.python).parent / "accelerate")
        return parts

    def recipe(self, name: str, recipe: str, args: dict[str, Any], output: Path, *, kind: str = "score") -> Path:
        """Run ``recipes/<recipe>.py`` with ``args`` (written as YAML) unless done with these ``args`` and inputs (see
        :meth:`plan`); returns ``output``."""
        plan = self.plan(name, output, args)
        if plan.skip:
            return self._skip(plan)
        config = self.out / "configs" / f"{name}.yaml"
        config.write_text(yaml.safe_dump(args, sort_keys=False))
        cmd = [*self._launcher(kind), str(REPO_RECIPES / f"{recipe}.py"), "--config", str(config)]
        log = self.out / "logs" / f"{name}.log"
        self._start(plan, " ".join(cmd))
        start = time.perf_counter()
        with open(log, "w") as fh:
            proc = subprocess.run(cmd, env=self.env, stdout=fh, stderr=subprocess.STDOUT, cwd=os.getcwd())
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-25:])
            raise StageError(
                f"Stage {name!r} failed (exit {proc.returncode}); command: {' '.join(cmd)}\nlog: {log}\n{tail}"
            )
        self._record(plan, seconds)
        return output

    def step(self, name: str, output: Path, fn: Callable[[], Any], *, params: dict[str, Any]) -> Path:
        """Run the in-process stage ``fn`` unless done with these ``params`` (everything ``fn`` reads: settings and
        input paths, see :meth:`plan`); a stale ``output`` is removed first. Returns ``output``."""
        plan = self.plan(name, output, params)
        if plan.skip:
            return self._skip(plan)
        self._start(plan)
        if output.is_dir():
            shutil.rmtree(output)
        elif output.exists():
            output.unlink()
        start = time.perf_counter()
        fn()
        self._record(plan, time.perf_counter() - start)
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
                        params={"target_pool": cfg.target_pool, "split": "train"},
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

            earlier = [str(out / f"round_{k}" / "labelled") for k in range(1, r)]
            self.step(
                f"r{r}_unlabelled",
                rd / "unlabelled",
                unlabelled_pool,
                params={"target_train": str(out / "target_train"), "labelled": earlier},
            )
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

            self.step(
                f"r{r}_candidates",
                rd / "candidates",
                candidates,
                params={"features": str(features), "difficulty": str(difficulty)},
            )
            selections = {}
            for strategy in cfg.strategies:
                selections[strategy] = self.recipe(
                    f"r{r}_select_{strategy}",
                    "select_subset",
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

            annotate_params = {
                "selection": str(selections[chosen]),
                "strategy": chosen,
                "labelled_before": earlier,
                "noise_std": cfg.annotator_noise,
                "seed": cfg.seed,
                "target_pool": cfg.target_pool,
            }
            if self.plan(f"r{r}_annotate", rd / "labelled", annotate_params).skip:
                annotator.revealed.extend(load_from_disk(str(rd / "labelled"))["video_id"])
            self.step(f"r{r}_annotate", rd / "labelled", annotate, params=annotate_params)
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
                    params={"model": str(model), "adapter": str(adapter), "dtype": cfg.dtype},
                )

        report = out / "report"
        self.recipe(
            "evaluate",
            "evaluate_models",
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

        self.step(
            "publish",
            self.out / "hub",
            publish,
            params={
                "adapter": str(adapter),
                "selection": str(selection),
                "base_model": cfg.model_name_or_path,
                "source_data": cfg.source_pool,
                "push_to_hub": cfg.push_to_hub,
                "hub_model_id": cfg.hub_model_id,
                "hub_dataset_id": cfg.hub_dataset_id,
            },
        )

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
        lines += [f"| {t['stage']} | {t['seconds']:.1f} | {_status(t)} |" for t in self.timings]
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


def _status(timing: dict[str, Any]) -> str:
    """The report's note on a stage: done before, or why it ran again."""
    if timing["skipped"]:
        return "skipped (done)"
    reason = timing.get("reason")
    return "" if reason in (None, "not run before") else f"re-run: {reason}".replace("|", "\\|")


def _jsonable(value: Any) -> Any:
    """``value`` as it reads back from JSON (paths and other objects as strings, tuples as lists)."""
    return json.loads(json.dumps(value, default=str))


def _strings(value: Any):
    """Every string inside ``value`` (nested dicts and lists)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def _show(value: Any, unset: bool = False) -> str:
    """A short view of an argument's value for the log: JSON, or its size / the end of a long path."""
    if unset:
        return "(unset)"
    text = json.dumps(value)
    if len(text) <= 80:
        return text
    if isinstance(value, list):
        return f"[{len(value)} item{'s' if len(value) != 1 else ''}]"
    if isinstance(value, str):
        return json.dumps("..." + value[-60:])
    return text[:77] + "..."


def _what_changed(done: dict[str, Any], args: dict[str, Any], inputs: dict[str, str]) -> str:
    """Why a finished stage runs again: its changed arguments (old -> new) and changed inputs."""
    if "key" not in done or "args" not in done:
        return "its marker records no key (written by an older version)"
    old, new = _flatten(done["args"]), _flatten(args)
    changes = [
        f"{k} {_show(old.get(k), k not in old)} -> {_show(new.get(k), k not in new)}"
        for k in sorted(set(old) | set(new))
        if k not in old or k not in new or old[k] != new[k]
    ]
    reasons = [f"arguments changed: {', '.join(changes)}"] if changes else []
    before = done.get("inputs", {})
    for stage in sorted(set(before) | set(inputs)):
        if before.get(stage) != inputs.get(stage):
            how = "changed" if stage in before and stage in inputs else "added" if stage in inputs else "removed"
            reasons.append(f"input {stage} {how}")
    return "; ".join(reasons) or "its key changed"


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
