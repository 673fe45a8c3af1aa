"""The dataset card of a pool, scored pool, frame-feature Dataset or selected subset, rendered from
``templates/dataset_card.md``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .cards import BASE_TAGS, DEFAULT_DATASET_LICENSE, finite, fmt, hub_link, render_card
from .kinds import DATASET_KINDS

__all__ = ["DatasetCardInfo", "dataset_card"]

_TITLES = {
    "selection": "mds-vqa selected subset",
    "scored": "mds-vqa scored pool",
    "features": "mds-vqa frame features",
    "pool": "mds-vqa video pool",
    "weak-pairs": "mds-vqa weak pairs (synthetic distortions)",
    "pseudo-labels": "mds-vqa pseudo-labelled pool",
}

_STRATEGY_TEXT = {
    "mds": "greedy difficulty × diversity: first the highest g, then argmax g(x) + λ·mean Chamfer distance to the picks",
    "difficulty": "the highest g",
    "diversity": "the same greedy with g ≡ 0 (diversity alone)",
    "coreset": "k-center greedy on the minimum Chamfer distance",
    "random": "uniformly at random (seeded)",
    "uncertainty": "the largest spread of the quality model's sampled scores",
    "noise_stability": "the largest change of the quality model's score under small random weight perturbations",
}
_STRATEGY_USES = {
    "mds": ("g", "features"),
    "difficulty": ("g",),
    "diversity": ("features",),
    "coreset": ("features",),
    "random": (),
    "uncertainty": (),
    "noise_stability": (),
}

# The rows of each kind's settings table: (settings key, label).
_SETTINGS = {
    "selection": [
        ("pool", "Pool"),
        ("domains", "Domains"),
        ("pool_size", "Pool size (videos)"),
        ("budget", "Budget"),
        ("strategy", "Strategy"),
        ("lam", "λ (weight of the diversity term)"),
        ("g_adapter", "Failure predictor g (adapter)"),
        ("g_base_model", "g's base model"),
        ("clip_model", "CLIP model (frame features)"),
        ("num_frames", "Frames per video"),
        ("seed", "Seed"),
    ],
    "scored": [
        ("pool", "Pool scored"),
        ("model", "Model"),
        ("adapter", "Adapter"),
        ("task", "Prompt task"),
        ("mode", "Reading"),
        ("prompt_variant", "Prompt variant"),
        ("score_column", "Score column"),
        ("videos", "Videos"),
        ("scored", "Scored"),
        ("unreadable", "Unreadable videos"),
        ("nan_scores", "NaN scores"),
        ("parse_failures", "Unparseable answers"),
    ],
    "features": [
        ("pool", "Pool"),
        ("clip_model", "CLIP model"),
        ("num_frames", "Frames per video"),
        ("dim", "Feature dimension"),
        ("precision", "Precision"),
        ("column", "Feature column"),
        ("missing", "Videos without features"),
    ],
    "pool": [
        ("dataset_name", "Domain"),
        ("mos_table", "MOS table"),
        ("video_dir", "Video folder"),
        ("higher_is_better", "Higher MOS is better"),
        ("test_size", "Random test fraction"),
        ("seed", "Seed of the split"),
    ],
    "weak-pairs": [
        ("pool", "Pool degraded"),
        ("sources", "Source videos degraded"),
        ("distortions", "Distortion families (levels)"),
        ("variants", "Variants"),
        ("pairs", "Pairs (within one source and one family)"),
        ("random_sides", "Better video on a random side"),
        ("seed", "Seed"),
    ],
    "pseudo-labels": [
        ("pool", "Pool labelled"),
        ("teachers", "Teachers (scored pool: column)"),
        ("agreement", "Teacher agreement (pairwise SRCC)"),
        ("videos", "Videos labelled"),
        ("dropped", "Videos no teacher scored (dropped)"),
    ],
}

_COLUMN_TEXT = {
    "video_id": "Video identifier: the key that matches ratings, scores and source files.",
    "video": "Path of the video file on the machine that built this Dataset (the videos are not in this repository).",
    "mos": "Mean opinion score (higher is better; DMOS tables are flipped when the pool is built).",
    "mos_std": "Standard deviation of the ratings (null when the dataset does not ship it).",
    "mos_raw": "MOS before the per-dataset min-max normalisation to [1, 5].",
    "dataset": "Domain (source dataset) of the video.",
    "split": "The pool's own split (e.g. train/test).",
    "rank": "Pick order, 1 = first pick.",
    "g": "Difficulty from the failure predictor g at selection time (higher = f expected to err more).",
    "diversity": "Mean Chamfer distance between this pick's frame features and the earlier picks' (the term λ "
    "multiplies).",
    "pool_index": "Row of the video in the pool the selection was made from.",
    "features": "open_clip frame features (frames × dim, L2-normalised).",
    "difficulty": "Difficulty score of the failure predictor g (higher = f expected to err more).",
    "error": "f's error |f − MOS|.",
    "source_id": "The pool video this variant was made from.",
    "distortion": "Distortion family (`none`: the source itself).",
    "level": "Distortion level: 0 = the source itself, higher = worse.",
    "strength": "The family's parameter at this level (CRF, factor, sigma, noise std or frame step).",
    "p": "Probability that `video_a` is the better video (weak pairs: 1 or 0, the order is known).",
    "level_a": "Distortion level of `video_a`.",
    "level_b": "Distortion level of `video_b`.",
    "video_a": "Path of the pair's first video.",
    "video_b": "Path of the pair's second video.",
    "id_a": "`video_id` of `video_a`.",
    "id_b": "`video_id` of `video_b`.",
    "mos_original": "The pool's own MOS before pseudo-labelling (null when unrated).",
    "pseudo_teachers": "How many teachers scored this video (the pseudo-MOS averages their normalised scores).",
}
_SCORE_COLUMN_TEXT = {
    "": "Score read from the model (NaN when an answer had no number).",
    "_digit_probs": "Probabilities of the digits 1–5 at the answer position (expectation reading).",
    "_texts": "Generated answers.",
    "_parse_failures": "Generated answers without a number.",
    "_error": "Why the video could not be scored (null when it was).",
}


@dataclass
class DatasetCardInfo:
    """What the dataset card says beyond the Dataset itself. ``settings`` holds the provenance shown in the card's
    settings table (see :func:`mds_vqa.hub.dataset_provenance`); a missing entry reads "not recorded"."""

    kind: str
    repo_id: str | None = None
    license: str | None = None
    pretty_name: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    command: str | None = None
    config: tuple[str, str] | None = None
    notes: str | None = None
    extra_files: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.kind not in DATASET_KINDS:
            raise ValueError(f"Unknown Dataset kind {self.kind!r}; expected one of {sorted(DATASET_KINDS)}")


def dataset_card(splits: Mapping[str, Any], info: DatasetCardInfo):
    """The ``huggingface_hub.DatasetCard`` of a Dataset staged as ``data/<split>-*.parquet``: metadata (license,
    tags, size category, ``configs`` pointing at the data files) and body (settings, columns, and for a selected
    subset how to send it to raters and bring the MOS back)."""
    from huggingface_hub import DatasetCard, DatasetCardData

    total = sum(len(ds) for ds in splits.values())
    first = next(iter(splits.values()))
    data = DatasetCardData(
        license=info.license or DEFAULT_DATASET_LICENSE,
        pretty_name=info.pretty_name or info.repo_id,
        tags=[*BASE_TAGS, DATASET_KINDS[info.kind]],
        size_categories=[_size_category(total)],
        configs=[
            {
                "config_name": "default",
                "data_files": [{"split": name, "path": f"data/{name}-*"} for name in splits],
            }
        ],
    )
    columns = first.column_names
    domains: list[str] = []
    if "dataset" in columns:
        for ds in splits.values():
            domains += [d for d in ds.unique("dataset") if d not in domains]
    if info.kind == "selection":
        info.settings.setdefault("domains", domains or None)
    score_column = info.settings.get("score_column")
    return render_card(
        DatasetCard,
        data,
        "dataset_card.md",
        kind=info.kind,
        title=info.pretty_name or info.repo_id or _TITLES[info.kind],
        repo=info.repo_id or "path/to/this/folder",
        total=total,
        domains=domains,
        settings_rows=_settings_rows(info),
        split_counts=_split_counts(splits) if "split" in columns else [],
        mos_range=_mos_range(splits) if "mos" in columns else None,
        columns=[(n, _type_name(first.features[n]), _column_text(n, score_column)) for n in columns],
        pool=info.settings.get("pool"),
        rated_domain=domains[0] if len(domains) == 1 else "<domain>",
        extra_files=info.extra_files,
        notes=info.notes,
        command=info.command,
        config=info.config,
    )


def _settings_rows(info: DatasetCardInfo) -> list[tuple[str, str]]:
    """``(label, value)`` rows of the settings table; a value that does not apply to the strategy says so."""
    s = info.settings
    strategy = s.get("strategy")
    uses = _STRATEGY_USES.get(strategy, ("g", "features"))
    rows = []
    for key, label in _SETTINGS[info.kind]:
        value = s.get(key)
        if info.kind == "selection":
            if key == "budget" and s.get("selected") is not None:
                n, b = s.get("pool_size"), s["selected"]
                share = f", {100 * b / n:.2f} % of the pool" if n else ""
                asked = f"; asked: `{value}`" if value is not None else ""
                value = f"{b} videos{share}{asked}"
            elif key == "strategy" and strategy in _STRATEGY_TEXT:
                value = f"`{strategy}`: {_STRATEGY_TEXT[strategy]}"
            elif key == "lam" and strategy not in (None, "mds"):
                value = f"not used by `{strategy}`"
            elif key in ("g_adapter", "g_base_model") and "g" not in uses:
                value = f"not used by `{strategy}`"
            elif key in ("clip_model", "num_frames") and "features" not in uses:
                value = f"not used by `{strategy}`"
            elif key in ("g_adapter", "g_base_model") and isinstance(value, str):
                value = hub_link(value)
        if info.kind == "scored" and key in ("model", "adapter") and isinstance(value, str):
            value = hub_link(value)
        if key in ("pool", "mos_table", "video_dir") and isinstance(value, str):
            value = f"`{value}`"
        if key == "adapter" and value is None and info.kind == "scored":
            value = "none (the base model)"
        rows.append((label, fmt(value)))
    return rows


def _split_counts(splits: Mapping[str, Any]) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for ds in splits.values():
        for s in ds["split"]:
            counts[str(s)] = counts.get(str(s), 0) + 1
    return list(counts.items())


def _mos_range(splits: Mapping[str, Any]) -> tuple[str, str, int] | None:
    mos = [m for ds in splits.values() for m in ds["mos"] if finite(m) is not None]
    return (f"{min(mos):.4g}", f"{max(mos):.4g}", len(mos)) if mos else None


def _column_text(name: str, score_column: str | None) -> str:
    if name in _COLUMN_TEXT:
        return _COLUMN_TEXT[name]
    if score_column:
        for suffix, text in _SCORE_COLUMN_TEXT.items():
            if name == f"{score_column}{suffix}":
                return text
    return ""


def _type_name(feature: Any) -> str:
    shape = getattr(feature, "shape", None)
    if shape is not None:
        dims = " × ".join("n" if s is None else str(s) for s in shape)
        return f"{getattr(feature, 'dtype', '?')} array ({dims})"
    inner = getattr(feature, "feature", None)
    if inner is not None:
        return f"list of {_type_name(inner)}"
    dtype = getattr(feature, "dtype", None)
    return str(dtype) if dtype else type(feature).__name__


def _size_category(n: int) -> str:
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
    for bound, name in bounds:
        if n < bound:
            return name
    return "1M<n<10M" if n < 10_000_000 else "n>10M"
