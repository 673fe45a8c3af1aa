"""One call for recipes: stage an artifact with its card (facts from its ``provenance.json``) and push it when asked."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .adapter_card import AdapterCardInfo
from .arguments import HubArguments
from .command import config_from_argv, reproduce_command
from .dataset_card import DatasetCardInfo
from .facts import adapter_card_facts, dataset_settings
from .kinds import DATASET_KINDS, adapter_kind
from .provenance import Provenance, read_provenance
from .pushing import PushedRepo, push_to_hub
from .staging import as_splits, stage_adapter, stage_dataset

logger = logging.getLogger(__name__)

__all__ = ["Published", "publish_adapter", "publish_dataset"]


@dataclass
class Published:
    """A staged repository, and where it was pushed (``None`` when it was only staged)."""

    stage_dir: Path
    pushed: PushedRepo | None


def print_published(published: Published | None, what: str) -> None:
    """Print where ``what`` (e.g. "the pool with its dataset card") was staged and, when it was, pushed."""
    if published is None:
        return
    print(f"Staged {what} -> {published.stage_dir}")
    if published.pushed is not None:
        print(f"Pushed to {published.pushed.repo_url} ({published.pushed.commit_url})")


def publish_adapter(
    adapter_dir: str | os.PathLike,
    hub_args: HubArguments,
    *,
    kind: str | None = None,
    api: Any = None,
    **card: Any,
) -> Published | None:
    """Stage an adapter folder with its model card into ``hub_args.stage_dir`` (default ``<adapter_dir>.hub``) and
    push it when ``hub_args.push_to_hub``.

    The card's facts come from the folder's ``provenance.json`` (written by ``recipes/train_failure_predictor.py``
    and ``recipes/finetune.py``: kind, base model, training data and settings, evaluation rows, prompt, frame
    sampling, the trainer's tags, the command). ``kind`` (``"failure-predictor"`` or ``"grpo"``; default: detected)
    and ``card`` (other :class:`AdapterCardInfo` fields) add to or override them; ``None`` or empty values do not.
    Returns ``None`` (and does nothing) unless staging or pushing was asked. Run it on the main process only."""
    if not hub_args.wants_publishing:
        return None
    hub_args.check("model")
    record = read_provenance(adapter_dir)
    info = AdapterCardInfo(
        kind=kind or adapter_kind(adapter_dir),
        repo_id=card.pop("repo_id", None) or hub_args.hub_model_id,
        license=card.pop("license", None) or hub_args.hub_license,
        **{**(adapter_card_facts(record) if record else {}), **_given(card), **_origin(record, card)},
    )
    stage = stage_adapter(adapter_dir, hub_args.stage_dir_for(adapter_dir), info)
    logger.info("Staged the %s adapter with its model card in %s", info.kind, stage)
    message = f"Upload mds-vqa {info.kind} adapter with its model card"
    return _push_if_asked(stage, hub_args, hub_args.hub_model_id, "model", message, api)


def publish_dataset(
    dataset: Any,
    hub_args: HubArguments,
    *,
    kind: str | None = None,
    settings: Mapping[str, Any] | None = None,
    api: Any = None,
    **card: Any,
) -> Published | None:
    """Stage a Dataset with its dataset card into ``hub_args.stage_dir`` and push it when ``hub_args.push_to_hub``.

    ``dataset`` is a folder written with ``save_to_disk`` by a recipe (its kind and settings are then read from its
    ``provenance.json``, :func:`mds_vqa.hub.dataset_provenance`, and its side files are published too; the default
    stage is ``<folder>.hub``), or a ``Dataset``/``DatasetDict`` (then ``kind`` and ``hub_args.stage_dir`` are
    needed). ``settings`` adds to or overrides the recorded settings (e.g. ``{"g_adapter": "user/g"}``); ``card``
    holds the other :class:`DatasetCardInfo` fields. Returns ``None`` (and does nothing) unless staging or pushing
    was asked.
    """
    if not hub_args.wants_publishing:
        return None
    hub_args.check("dataset")
    dataset, source_dir, stage_dir = _dataset_source(dataset, hub_args)
    record = read_provenance(source_dir) if source_dir is not None else None
    detected, recorded = dataset_settings(record) if record is not None else ("pool", {})
    kind = kind or (detected if source_dir is not None else None)
    if kind is None:
        raise ValueError(f"Say which Dataset this is: kind must be one of {sorted(DATASET_KINDS)}.")
    origin = _origin(record, card)
    info = DatasetCardInfo(
        kind=kind,
        repo_id=card.pop("repo_id", None) or hub_args.hub_dataset_id,
        license=card.pop("license", None) or hub_args.hub_license,
        settings={**recorded, **dict(settings or {})},
        **{**card, **origin},
    )
    stage = stage_dataset(dataset, stage_dir, info, source_dir=source_dir)
    logger.info("Staged the %s Dataset with its card in %s", kind, stage)
    rows = sum(len(ds) for ds in as_splits(dataset).values())
    message = f"Upload mds-vqa {DATASET_KINDS[kind]} ({rows} rows) with its dataset card"
    return _push_if_asked(stage, hub_args, hub_args.hub_dataset_id, "dataset", message, api)


def _push_if_asked(stage, hub_args: HubArguments, repo_id: str | None, repo_type: str, message: str, api) -> Published:
    """Push the staged folder when ``hub_args.push_to_hub`` asks for it; the staged copy is kept either way."""
    pushed = None
    if hub_args.push_to_hub:
        pushed = push_to_hub(
            stage,
            repo_id,
            repo_type=repo_type,
            private=hub_args.hub_private,
            revision=hub_args.hub_revision,
            commit_message=message,
            api=api,
        )
        logger.info("Pushed %s to %s (%s)", stage, pushed.repo_url, pushed.commit_url)
    return Published(stage_dir=Path(stage), pushed=pushed)


def _dataset_source(dataset: Any, hub_args: HubArguments) -> tuple[Any, Path | None, Path]:
    """``(dataset, its save_to_disk folder or None, stage_dir)``; a folder is loaded."""
    if isinstance(dataset, (str, os.PathLike)):
        from datasets import load_from_disk

        source_dir = Path(dataset)
        if not source_dir.is_dir():
            raise FileNotFoundError(f"Dataset folder not found: {source_dir}")
        return load_from_disk(str(source_dir)), source_dir, hub_args.stage_dir_for(source_dir)
    if hub_args.stage_dir is None:
        raise ValueError("publish_dataset of an in-memory Dataset needs hub_args.stage_dir.")
    return dataset, None, Path(hub_args.stage_dir)


def _given(card: Mapping[str, Any]) -> dict[str, Any]:
    """The card fields a caller set (neither ``None`` nor empty), without the command and config."""
    return {
        k: v
        for k, v in card.items()
        if k not in ("command", "config") and v is not None and not (isinstance(v, (list, dict)) and not v)
    }


def _origin(record: Provenance | None, card: Mapping[str, Any]) -> dict[str, Any]:
    """The command and ``--config`` YAML shown under "Reproduce": the caller's, else the recorded ones, else (no
    record, and the caller did not pass ``command=None`` to say this run did not make the artifact) this run's."""
    if record is not None:
        fallback = {"command": record.command, "config": record.config_file}
    else:
        fallback = {"command": reproduce_command(), "config": config_from_argv()}
        fallback = {k: card[k] if k in card else v for k, v in fallback.items()}
    return {k: card.get(k) if card.get(k) is not None else fallback[k] for k in ("command", "config")}
