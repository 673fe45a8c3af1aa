"""Stage machinery of the pipeline: run a recipe or an in-process step unless it is done, resume by key.

Each stage has a key, the hash of its resolved arguments (a recipe's fields, an in-process step's declared
parameters) and of the keys of the earlier stages whose outputs appear in them. A finished stage writes its key,
arguments and inputs to ``<output_dir>/state/<stage>.json``; a re-run skips it only when that key matches and its
output exists, and otherwise runs it again, logging what changed (``[rerun] r1_select_mds: arguments changed: lam
0.25 -> 0.5``, ``input r1_difficulty changed``). A change therefore re-runs its stage and everything downstream.
Each recipe stage writes its YAML to ``<output_dir>/configs/`` and its log to ``<output_dir>/logs/``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .config import REPO_RECIPES

logger = logging.getLogger("mds_vqa.pipeline")

__all__ = ["IN_PROCESS", "AwaitingRatings", "StageError", "StagePlan", "StageRunner"]

IN_PROCESS = "inprocess"  # the launcher that runs a recipe's main in the pipeline's own process


class StageError(RuntimeError):
    """A stage failed; names the stage, the command and its log."""


class AwaitingRatings(RuntimeError):
    """The pipeline stopped to wait for people: the message says what to rate and how; re-run it afterwards."""


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


class StageRunner:
    """Runs stages into ``output_dir`` (see the module docstring) and records their timings in ``timings``.

    Args:
        output_dir: where markers (``state/``), stage configs (``configs/``) and logs (``logs/``) go.
        launchers: how recipes of each kind run, e.g. ``{"train": "accelerate launch …", "score": "python"}``;
            ``"inprocess"`` calls the recipe's ``main`` in this process (small models: no start-up per stage).
        python: the interpreter of the stages (``python`` in a launcher means this one).
        env: the stages' environment (default: this process's).
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        *,
        launchers: dict[str, str] | None = None,
        python: str = sys.executable,
        env: dict[str, str] | None = None,
    ):
        self.out = Path(output_dir)
        self.launchers = dict(launchers or {})
        self.python = python
        self.env = dict(os.environ if env is None else env)
        self.env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        self.timings: list[dict[str, Any]] = []
        self._outputs: dict[str, tuple[str, str]] = {}  # absolute output path -> (stage, key), this run's stages
        for sub in ("configs", "logs", "state"):
            (self.out / sub).mkdir(parents=True, exist_ok=True)

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
        parts = shlex.split(self.launchers.get(kind) or "python")
        if parts and parts[0] in ("python", "python3"):
            parts[0] = self.python
        elif parts and parts[0] == "accelerate":
            parts[0] = str(Path(self.python).parent / "accelerate")
        return parts

    def recipe(
        self,
        name: str,
        recipe: str,
        args: dict[str, Any],
        output: Path,
        *,
        kind: str = "score",
        fingerprint: dict[str, Any] | None = None,
    ) -> Path:
        """Run ``recipes/<recipe>.py`` with ``args`` (written as YAML) unless done with these ``args`` and inputs (see
        :meth:`plan`); ``fingerprint`` adds to the key what the arguments cannot show (e.g. the content of a file
        people keep writing to). Returns ``output``."""
        plan = self.plan(name, output, {**args, "fingerprint": fingerprint} if fingerprint else args)
        if plan.skip:
            return self._skip(plan)
        config = self.out / "configs" / f"{name}.yaml"
        config.write_text(yaml.safe_dump(args, sort_keys=False))
        log = self.out / "logs" / f"{name}.log"
        if (self.launchers.get(kind) or "").strip() == IN_PROCESS:
            self._start(plan, f"{recipe}.main (in process) --config {config}")
            start = time.perf_counter()
            self._run_in_process(name, recipe, config, log)
            self._record(plan, time.perf_counter() - start)
            return output
        cmd = [*self._launcher(kind), str(REPO_RECIPES / f"{recipe}.py"), "--config", str(config)]
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

    def _run_in_process(self, name: str, recipe: str, config: Path, log: Path) -> None:
        """``recipes/<recipe>.py``'s ``main`` on its parsed ``config`` in this process (the launcher
        ``inprocess``: no interpreter start-up per stage), its output and log records going to ``log``."""
        from .config import load_recipe

        module = load_recipe(recipe)
        parsed = module.make_parser().parse_yaml_file(str(config))
        handler = logging.FileHandler(log, mode="w")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        try:
            with open(log, "a") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
                module.main(*parsed)
        except Exception as err:  # any failure of the stage: reported with its name, config and log
            with open(log, "a") as fh:
                traceback.print_exc(file=fh)
            raise StageError(
                f"Stage {name!r} failed in process ({type(err).__name__}: {err}); config: {config}\nlog: {log}"
            ) from err
        finally:
            root.removeHandler(handler)
            handler.close()

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
