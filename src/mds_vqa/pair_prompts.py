"""Pair Datasets as GRPO training rows, next to MOS pools.

A pair Dataset (``video_a``, ``video_b``, ``p``, ``dataset``; from :func:`mds_vqa.data.mos_to_pairs`, the weak pairs
of :mod:`mds_vqa.weak_pairs`, ...) has no MOS: only the order within each pair is known. For GRPO each pair becomes
**two prompt rows**, one per video, in the schema of a pool row (``video_id``, ``video``, ``mos`` null, ``mos_std``,
``dataset``, ``split``) plus

- ``pair_id``: the same for both rows of a pair (``<tag>:<row>``), null on MOS rows;
- ``pair_side``: ``"a"`` or ``"b"``, which video of the pair the row shows;
- ``pair_p``: the pair's ``p`` (probability that ``video_a`` is the better);
- ``sample_weight``: the row's loss weight (``pair_weight`` for pair rows, 1 for MOS rows).

:class:`mds_vqa.samplers.DatasetRepeatSampler` keeps the two rows of a ``pair_id`` in one generation batch and
:func:`mds_vqa.rewards.thurstone_reward` compares them by ``pair_p`` (see both modules); :class:`mds_vqa.grpo.
VideoGRPOTrainer` multiplies each prompt's advantages by its ``sample_weight``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from datasets import Dataset, Features, Value, concatenate_datasets

from .reporting import MAX_LISTED

__all__ = [
    "PAIR_ID",
    "PAIR_SIDE",
    "PAIR_P",
    "SAMPLE_WEIGHT",
    "PAIR_ROW_FEATURES",
    "pair_prompt_rows",
    "with_pair_columns",
    "concat_rows",
]

PAIR_ID, PAIR_SIDE, PAIR_P, SAMPLE_WEIGHT = "pair_id", "pair_side", "pair_p", "sample_weight"
PAIR_ROW_FEATURES = Features(
    {
        "video_id": Value("string"),
        "video": Value("string"),
        "mos": Value("float64"),
        "mos_std": Value("float64"),
        "dataset": Value("string"),
        "split": Value("string"),
        PAIR_ID: Value("string"),
        PAIR_SIDE: Value("string"),
        PAIR_P: Value("float64"),
        SAMPLE_WEIGHT: Value("float64"),
    }
)


def pair_prompt_rows(pairs: Dataset, *, tag: str, weight: float = 1.0, where: str = "") -> Dataset:
    """Two rows per pair of ``pairs`` (module docstring), side a then side b; ``tag`` makes the pair ids unique
    across pair Datasets. Raises ``ValueError`` naming ``where`` (the file) for a missing column or a ``p`` outside
    [0, 1] (with its rows)."""
    where = where or "the pair Dataset"
    missing = [c for c in ("video_a", "video_b", "p", "dataset") if c not in pairs.column_names]
    if missing:
        raise ValueError(f"{where} lacks the pair column(s) {missing} (columns: {pairs.column_names})")
    p = np.asarray([math.nan if v is None else float(v) for v in pairs["p"]])
    bad = np.flatnonzero(~np.isfinite(p) | (p < 0) | (p > 1))
    if bad.size:
        raise ValueError(f"{where}: p must be in [0, 1]; rows {bad[:MAX_LISTED].tolist()} are not")
    cols = {c: list(pairs[c]) for c in ("video_a", "video_b", "dataset")}
    ids = {s: list(pairs[f"id_{s}"]) if f"id_{s}" in pairs.column_names else cols[f"video_{s}"] for s in "ab"}
    splits = list(pairs["split"]) if "split" in pairs.column_names else [None] * len(pairs)
    out: dict[str, list] = {k: [] for k in PAIR_ROW_FEATURES}
    for i in range(len(pairs)):
        for side in "ab":
            for key, value in (
                ("video_id", ids[side][i]),
                ("video", cols[f"video_{side}"][i]),
                ("mos", None),
                ("mos_std", None),
                ("dataset", cols["dataset"][i]),
                ("split", splits[i]),
                (PAIR_ID, f"{tag}:{i}"),
                (PAIR_SIDE, side),
                (PAIR_P, float(p[i])),
                (SAMPLE_WEIGHT, float(weight)),
            ):
                out[key].append(value)
    return Dataset.from_dict(out, features=PAIR_ROW_FEATURES)


def with_pair_columns(rows: Dataset) -> Dataset:
    """MOS rows with the pair columns of :data:`PAIR_ROW_FEATURES` (null) and ``sample_weight`` 1."""
    n = len(rows)
    for name in (PAIR_ID, PAIR_SIDE, PAIR_P):
        rows = rows.add_column(name, [None] * n, feature=PAIR_ROW_FEATURES[name])
    return rows.add_column(SAMPLE_WEIGHT, [1.0] * n, feature=PAIR_ROW_FEATURES[SAMPLE_WEIGHT])


def concat_rows(parts: Sequence[Dataset]) -> Dataset:
    """Concatenate MOS rows and pair rows: each part gets the columns it lacks (null, typed as in the part that has
    them), in the first part's column order."""
    features: dict = {}
    for ds in parts:
        for name, feature in ds.features.items():
            features.setdefault(name, feature)
    aligned = []
    for ds in parts:
        for name, feature in features.items():
            if name not in ds.column_names:
                ds = ds.add_column(name, [None] * len(ds), feature=feature)
        aligned.append(ds.select_columns(list(features)).cast(Features(features)))
    return concatenate_datasets(aligned)
