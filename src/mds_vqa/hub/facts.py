"""What a card says about how an artifact was made, read from its folder's ``provenance.json`` alone (the records of
its inputs are embedded in it, so a moved or deleted parent folder changes nothing)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from .adapter_card import AdapterCardInfo
from .kinds import RECIPE_KINDS
from .provenance import Provenance, read_provenance

__all__ = ["adapter_card_facts", "dataset_provenance", "dataset_settings"]

# The fields of AdapterCardInfo that the adapter recipes record in their provenance summary.
_ADAPTER_FACTS = {f.name for f in fields(AdapterCardInfo)} - {"kind", "repo_id", "license", "command", "config"}


def dataset_provenance(folder: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """``(kind, settings)`` of a Dataset folder from its ``provenance.json``: the kind is the recipe's
    (``recipes/select_subset.py`` → ``"selection"``, ``score.py`` → ``"scored"``, ``extract_features.py`` →
    ``"features"``, ``build_pool.py`` or no record → ``"pool"``) and the settings are the rows of the card's settings
    table. For a selection, the CLIP model and frame count come from the nearest ``extract_features`` record upstream
    and the g adapter from the nearest ``score`` record that wrote the difficulty column; what no record holds stays
    "not recorded" in the card."""
    record = read_provenance(folder)
    if record is None:
        return "pool", {}
    return dataset_settings(record)


def dataset_settings(record: Provenance) -> tuple[str, dict[str, Any]]:
    """``(kind, settings)`` of the Dataset a provenance record describes (see :func:`dataset_provenance`)."""
    kind = RECIPE_KINDS.get(record.recipe)
    s = record.summary
    if kind == "selection":
        return kind, _selection_settings(record)
    if kind == "scored":
        scoring = s.get("scoring") or {}
        return kind, {
            "pool": s.get("dataset_path"),
            "model": s.get("model"),
            "adapter": s.get("adapter"),
            "task": scoring.get("task"),
            "mode": scoring.get("mode"),
            "prompt_variant": scoring.get("prompt_variant")
            or ("direct" if scoring.get("mode") == "expectation" else "thinking"),
            **{k: s.get(k) for k in ("score_column", "videos", "scored", "unreadable", "nan_scores")},
            "parse_failures": s.get("parse_failures"),
        }
    if kind == "features":
        missing = s.get("missing")
        return kind, {
            **_clip_settings(s),
            "pool": s.get("pool_path"),
            "dim": s.get("dim"),
            "precision": s.get("precision"),
            "column": s.get("column"),
            "missing": len(missing) if isinstance(missing, list) else missing,
        }
    if kind in ("weak-pairs", "pseudo-labels"):  # their recipes record the card's settings under "card"
        return kind, dict(s.get("card") or {})
    return "pool", dict(s) if kind == "pool" else {}  # build_pool records its settings as its summary


def _selection_settings(record: Provenance) -> dict[str, Any]:
    s = record.summary
    settings: dict[str, Any] = {k: s.get(k) for k in ("pool_size", "selected", "budget", "strategy", "lam", "seed")}
    settings["pool"] = s.get("pool_path")
    features = record.nearest("extract_features")
    if features is not None:
        settings.update(_clip_settings(features.summary))
    g_column = s.get("difficulty_column", "difficulty")
    scored = record.nearest("score", lambda r: r.summary.get("score_column") == g_column)
    if scored is not None:
        settings["g_adapter"] = scored.summary.get("adapter")
        settings["g_base_model"] = scored.summary.get("model")
    return settings


def _clip_settings(summary: Mapping[str, Any]) -> dict[str, Any]:
    name, pretrained = summary.get("model_name"), summary.get("pretrained")
    if not name:
        clip = None
    else:
        clip = f"{name} ({pretrained})" if pretrained and ":" not in str(name) else str(name)
    return {"clip_model": clip, "num_frames": summary.get("num_frames")}


def adapter_card_facts(record: Provenance) -> dict[str, Any]:
    """The :class:`AdapterCardInfo` fields an adapter recipe recorded in its provenance summary (base model, training
    data and settings, evaluation rows, prompt, frame sampling, the trainer's tags)."""
    return {k: v for k, v in record.summary.items() if k in _ADAPTER_FACTS}
