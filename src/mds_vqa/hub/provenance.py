"""One provenance record per artifact, ``<output_dir>/provenance.json``, written by every recipe that saves one.

Schema 1 (every key is always written)::

    {
      "schema": 1,
      "recipe": "score",                                  # recipes/<recipe>.py
      "created": "2026-03-01T12:00:00+00:00",             # UTC
      "mds_vqa_version": "0.1.0",
      "versions": {"torch": ..., "transformers": ..., "trl": ..., "datasets": ..., "peft": ...},
      "command": "python recipes/score.py --config c.yaml",   # tokens redacted
      "config": {"path": "c.yaml", "text": "..."} | null,     # the --config YAML, tokens redacted
      "arguments": {"ScoreScriptArguments": {...}, ...},      # the resolved dataclasses, tokens redacted
      "summary": {...},                                       # the recipe's own counts and settings
      "inputs": [{"path": "pools/sdr", "provenance": {...} | null}]
    }

Each input's own record is **embedded** when the record is written (recursively, since the parent's record embeds
its own inputs), so a record is complete on its own: moving or deleting a parent folder changes nothing downstream.
Cards read one folder's record and walk the embedded ones (:meth:`Provenance.ancestors`), never a path.
"""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, is_dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from .. import __version__
from .command import REDACTED, config_from_argv, redact, reproduce_command

logger = logging.getLogger(__name__)

__all__ = ["PROVENANCE_FILE", "PROVENANCE_SCHEMA", "Provenance", "read_provenance", "write_provenance"]

PROVENANCE_FILE = "provenance.json"
PROVENANCE_SCHEMA = 1
_VERSIONED = ("torch", "transformers", "trl", "datasets", "peft")


@dataclass(frozen=True)
class Provenance:
    """A provenance record (see the module docstring for the schema)."""

    recipe: str
    created: str
    mds_vqa_version: str | None
    versions: dict[str, str | None]
    command: str | None
    config: dict[str, str] | None
    arguments: dict[str, dict[str, Any]]
    summary: dict[str, Any]
    inputs: list[dict[str, Any]]
    schema: int = PROVENANCE_SCHEMA

    @classmethod
    def from_dict(cls, data: Any, where: str = "provenance record") -> Provenance:
        """A record from its JSON object; a clear error for another schema or a missing key."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{where} should hold a JSON object, got {type(data).__name__}")
        if data.get("schema") != PROVENANCE_SCHEMA:
            raise ValueError(
                f"{where} has schema {data.get('schema')!r}; this mds-vqa reads schema {PROVENANCE_SCHEMA}"
            )
        missing = [f.name for f in fields(cls) if f.name not in data]
        if missing:
            raise ValueError(f"{where} lacks {missing}")
        for i, entry in enumerate(data["inputs"]):
            if not isinstance(entry, Mapping) or "path" not in entry or "provenance" not in entry:
                raise ValueError(f"{where}: inputs[{i}] should be {{'path', 'provenance'}}, got {entry!r}")
        return cls(**{f.name: data[f.name] for f in fields(cls)})

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the record, ``schema`` first."""
        record = asdict(self)
        return {"schema": record.pop("schema"), **record}

    @property
    def config_file(self) -> tuple[str, str] | None:
        """``(path, text)`` of the recorded ``--config`` YAML."""
        return (self.config["path"], self.config["text"]) if self.config else None

    def parents(self) -> list[Provenance]:
        """The embedded records of the inputs that had one, in input order."""
        return [
            Provenance.from_dict(entry["provenance"], f"the record of input {entry['path']}")
            for entry in self.inputs
            if entry["provenance"] is not None
        ]

    def ancestors(self) -> Iterator[Provenance]:
        """Every embedded record upstream, nearest first (breadth-first over the inputs)."""
        queue = deque(self.parents())
        while queue:
            record = queue.popleft()
            yield record
            queue.extend(record.parents())

    def nearest(self, recipe: str, where: Callable[[Provenance], bool] = lambda _: True) -> Provenance | None:
        """The nearest upstream record written by ``recipe`` (and satisfying ``where``), or ``None``."""
        return next((r for r in self.ancestors() if r.recipe == recipe and where(r)), None)


def read_provenance(folder: str | os.PathLike) -> Provenance | None:
    """The record in ``<folder>/provenance.json``; ``None`` when the folder has none."""
    path = Path(folder) / PROVENANCE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    return Provenance.from_dict(data, str(path))


def write_provenance(
    output_dir: str | os.PathLike,
    *,
    recipe: str,
    arguments: Sequence[Any] = (),
    summary: Mapping[str, Any] | None = None,
    inputs: Sequence[str | os.PathLike | None] = (),
    argv: Sequence[str] | None = None,
) -> Path:
    """Write ``<output_dir>/provenance.json`` for an artifact that ``recipes/<recipe>.py`` saved there; returns its path.

    ``arguments`` are the recipe's resolved dataclasses (``None`` entries skipped), recorded by class name;
    ``summary`` the recipe's own counts and settings; ``inputs`` the folders (or Hub ids) it read, each with its own
    record embedded when it has one. The command line and ``--config`` YAML are those of this run (``argv``, default
    ``sys.argv``). Tokens are redacted everywhere.
    """
    config = config_from_argv(argv)
    record = Provenance(
        recipe=recipe,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        mds_vqa_version=__version__,
        versions={name: _version(name) for name in _VERSIONED},
        command=reproduce_command(argv) or None,
        config={"path": config[0], "text": config[1]} if config else None,
        arguments=_jsonable(_arguments(arguments)),
        summary=_jsonable(dict(summary or {})),
        inputs=[{"path": str(p), "provenance": _embedded(p)} for p in inputs if p is not None],
    )
    path = Path(output_dir) / PROVENANCE_FILE
    partial = path.with_name(path.name + ".partial")
    partial.write_text(redact(json.dumps(record.to_dict(), indent=2, ensure_ascii=False)) + "\n")
    partial.replace(path)
    return path


def _embedded(path: str | os.PathLike) -> dict[str, Any] | None:
    """The record of an input folder, to embed; ``None`` for a Hub id, a file or a folder without one."""
    if not Path(path).is_dir():
        return None
    try:
        record = read_provenance(path)
    except ValueError as err:  # a damaged parent record must not fail the run that just saved its artifact
        logger.warning("Not embedding the provenance of %s: %s", path, err)
        return None
    return record.to_dict() if record is not None else None


def _arguments(arguments: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """``{class name: {field: value}}`` of dataclass instances, values of ``*_token`` fields redacted."""
    out: dict[str, dict[str, Any]] = {}
    for args in arguments:
        if args is None:
            continue
        if not is_dataclass(args) or isinstance(args, type):
            raise TypeError(f"arguments should be dataclass instances, got {type(args).__name__}")
        # TrainingArguments.to_dict turns enums into their values and hides its own tokens
        values = args.to_dict() if hasattr(args, "to_dict") else {f.name: getattr(args, f.name) for f in fields(args)}
        out[type(args).__name__] = {
            k: REDACTED if (k == "token" or k.endswith("_token")) and isinstance(v, str) else v
            for k, v in values.items()
        }
    return out


def _jsonable(value: Any) -> Any:
    """``value`` as it reads back from JSON (paths and other objects as strings, tuples as lists)."""
    return json.loads(json.dumps(value, default=str))


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
