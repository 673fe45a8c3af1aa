"""Pool and pair Datasets: MOS normalisation, MOS pairs and error pairs (building a pool: :mod:`mds_vqa.pools`).

Every function takes and returns a :class:`datasets.Dataset`. A *pool* has the columns
``video_id`` (str), ``video`` (path), ``mos`` (float), ``mos_std`` (float or None), ``dataset`` (domain) and ``split``.
A *pair* Dataset has ``video_a``, ``video_b`` (paths), ``id_a``, ``id_b``, ``p`` (probability that a is better, or for
error pairs that f errs more on a) and ``dataset``. Pairs never cross datasets, so pair Datasets from different sources
concatenate without rescaling.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from datasets import Dataset, Features, Value, concatenate_datasets
from scipy.stats import norm

from .pools import POOL_FEATURES, PoolValidationError, build_pool, read_mos_table
from .reporting import MAX_LISTED

logger = logging.getLogger(__name__)

__all__ = [
    "POOL_FEATURES",
    "PAIR_FEATURES",
    "PoolValidationError",
    "read_mos_table",
    "build_pool",
    "normalize_mos",
    "mos_to_pairs",
    "error_pairs",
    "merge_pairs",
    "sample_pair_indices",
]

PAIR_FEATURES = Features(
    {
        "video_a": Value("string"),
        "video_b": Value("string"),
        "id_a": Value("string"),
        "id_b": Value("string"),
        "p": Value("float64"),
        "dataset": Value("string"),
    }
)

# --------------------------------------------------------------------------------------------------------------------
# MOS normalisation
# --------------------------------------------------------------------------------------------------------------------


def _group_indices(values: Sequence[str]) -> dict[str, np.ndarray]:
    arr = np.asarray(values, dtype=object)
    return {g: np.flatnonzero(arr == g) for g in dict.fromkeys(values)}


def normalize_mos(
    ds: Dataset,
    *,
    mos_column: str = "mos",
    raw_column: str = "mos_raw",
    group_column: str = "dataset",
    low: float = 1.0,
    high: float = 5.0,
) -> Dataset:
    """Min-max normalise the MOS to ``[low, high]`` per dataset: ``(mos − min)/(max − min)·(high − low) + low``.

    The raw MOS is kept in ``raw_column``; a ``mos_std`` column is rescaled by the same factor (so Thurstone pairs are
    unchanged). Raises ``ValueError`` naming the dataset when its MOS is constant or not finite.
    """
    for col in (mos_column, group_column):
        if col not in ds.column_names:
            raise KeyError(f"Column {col!r} not in the Dataset (columns: {ds.column_names})")
    if raw_column in ds.column_names:
        raise ValueError(f"Column {raw_column!r} already exists: the Dataset looks normalised already.")
    mos = np.asarray(list(ds[mos_column]), dtype=float)
    groups = list(ds[group_column])
    new = np.empty_like(mos)
    scale = np.ones_like(mos)
    for name, idx in _group_indices(groups).items():
        values = mos[idx]
        if not np.all(np.isfinite(values)):
            bad = [ds[int(i)].get("video_id", int(i)) for i in idx[~np.isfinite(values)][:MAX_LISTED]]
            raise ValueError(f"Dataset {name!r}: non-finite MOS for {bad}")
        lo, hi = values.min(), values.max()
        if hi == lo:
            raise ValueError(f"Dataset {name!r}: MOS is constant ({lo}), it cannot be normalised.")
        new[idx] = (values - lo) / (hi - lo) * (high - low) + low
        scale[idx] = (high - low) / (hi - lo)
    out = ds.add_column(raw_column, mos.tolist())
    out = out.remove_columns(mos_column).add_column(mos_column, new.tolist())
    if "mos_std" in ds.column_names:
        std = [None if s is None else float(s) * float(k) for s, k in zip(list(ds["mos_std"]), scale)]
        out = out.remove_columns("mos_std").add_column("mos_std", std, feature=Value("float64"))
    return out.select_columns(ds.column_names + [raw_column])


# --------------------------------------------------------------------------------------------------------------------
# Pairs
# --------------------------------------------------------------------------------------------------------------------


def sample_pair_indices(n: int, max_pairs: int | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Unordered pairs ``(i, j)``, ``i < j``, of ``n`` items: all of them when ``n(n−1)/2 ≤ max_pairs`` (or no cap),
    else ``max_pairs`` distinct pairs drawn with ``rng`` (without building the full list)."""
    total = n * (n - 1) // 2
    if total == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    if max_pairs is None or total <= max_pairs:
        i, j = np.triu_indices(n, k=1)
        return i.astype(np.int64), j.astype(np.int64)
    k = np.sort(rng.choice(total, size=max_pairs, replace=False)).astype(np.int64)
    # Invert the row-major upper-triangle linear index k -> (i, j).
    i = (n - 2 - np.floor(np.sqrt(-8 * k + 4 * n * (n - 1) - 7) / 2.0 - 0.5)).astype(np.int64)
    j = (k + i + 1 - n * (n - 1) // 2 + (n - i) * ((n - i) - 1) // 2).astype(np.int64)
    return i, j


def _pairs_from_labels(
    ds: Dataset,
    label_fn,
    *,
    group_column: str,
    max_pairs_per_dataset: int | None,
    seed: int,
    extra: dict[str, np.ndarray] | None = None,
) -> Dataset:
    rng = np.random.default_rng(seed)
    videos = np.asarray(list(ds["video"]), dtype=object)
    ids = np.asarray(
        list(ds["video_id"]) if "video_id" in ds.column_names else [str(i) for i in range(len(ds))], dtype=object
    )
    chunks: dict[str, list] = {k: [] for k in PAIR_FEATURES}
    for name, idx in _group_indices(list(ds[group_column])).items():
        if len(idx) < 2:
            logger.warning("Dataset %r has %d video(s): no pairs.", name, len(idx))
            continue
        a, b = sample_pair_indices(len(idx), max_pairs_per_dataset, rng)
        a, b = idx[a], idx[b]
        chunks["video_a"].append(videos[a])
        chunks["video_b"].append(videos[b])
        chunks["id_a"].append(ids[a])
        chunks["id_b"].append(ids[b])
        chunks["p"].append(label_fn(a, b))
        chunks["dataset"].append(np.full(len(a), name, dtype=object))
    data = {k: (np.concatenate(v).tolist() if v else []) for k, v in chunks.items()}
    return Dataset.from_dict(data, features=PAIR_FEATURES)


def mos_to_pairs(
    ds: Dataset,
    *,
    label: str = "hard",
    mos_column: str = "mos",
    std_column: str = "mos_std",
    group_column: str = "dataset",
    max_pairs_per_dataset: int | None = 100_000,
    seed: int = 0,
) -> Dataset:
    """Scale-invariant pairs within each dataset: ``p`` = probability that ``video_a`` is better than ``video_b``.

    ``label="hard"``: 1 if ``mos_a > mos_b``, 0 if lower, 0.5 on ties. ``label="thurstone"``:
    ``p = Φ((μa − μb)/√(σa² + σb²))`` from ``std_column`` (every row of the pool needs it; both σ = 0 gives the hard
    label). All unordered pairs for small datasets, a seeded sample of ``max_pairs_per_dataset`` for large ones
    (``None`` = no cap). Pairs from different pools concatenate without rescaling.
    """
    if label not in ("hard", "thurstone"):
        raise ValueError(f"label must be 'hard' or 'thurstone', got {label!r}")
    for col in ("video", mos_column, group_column):
        if col not in ds.column_names:
            raise KeyError(f"Column {col!r} not in the Dataset (columns: {ds.column_names})")
    mos = np.asarray(list(ds[mos_column]), dtype=float)
    bad = np.flatnonzero(~np.isfinite(mos))
    if bad.size:
        raise ValueError(f"Non-finite {mos_column!r} at rows {bad[:MAX_LISTED].tolist()}")
    hard = lambda a, b: np.where(mos[a] > mos[b], 1.0, np.where(mos[a] < mos[b], 0.0, 0.5))  # noqa: E731
    if label == "hard":
        return _pairs_from_labels(
            ds, hard, group_column=group_column, max_pairs_per_dataset=max_pairs_per_dataset, seed=seed
        )
    if std_column not in ds.column_names:
        raise KeyError(f"Thurstone labels need a {std_column!r} column (columns: {ds.column_names})")
    std = np.asarray([np.nan if s is None else s for s in list(ds[std_column])], dtype=float)
    bad = np.flatnonzero(~np.isfinite(std) | (std < 0))
    if bad.size:
        ids = list(ds.select(bad[:MAX_LISTED].tolist())["video_id"]) if "video_id" in ds.column_names else bad.tolist()
        raise ValueError(
            f"Thurstone labels need a finite, non-negative {std_column!r} for every video; missing for {ids}"
        )

    def thurstone(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        scale = np.sqrt(std[a] ** 2 + std[b] ** 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            p = norm.cdf((mos[a] - mos[b]) / scale)
        return np.where(scale > 0, p, hard(a, b))

    return _pairs_from_labels(
        ds, thurstone, group_column=group_column, max_pairs_per_dataset=max_pairs_per_dataset, seed=seed
    )


def error_pairs(
    ds: Dataset,
    pred_column: str,
    mos_column: str = "mos",
    *,
    group_column: str = "dataset",
    max_pairs_per_dataset: int | None = 100_000,
    seed: int = 0,
) -> Dataset:
    """The failure predictor's labels: within each dataset ``p = 1`` if ``|f(a) − μ(a)| ≥ |f(b) − μ(b)|`` else 0.

    ``pred_column`` holds f's scores and ``mos_column`` the MOS on the same scale (normalise first). Rows whose
    prediction is NaN (a parse failure) are dropped and counted in the log. Adds ``error_a``/``error_b`` columns.
    """
    for col in ("video", pred_column, mos_column, group_column):
        if col not in ds.column_names:
            raise KeyError(f"Column {col!r} not in the Dataset (columns: {ds.column_names})")
    pred = np.asarray([np.nan if v is None else v for v in list(ds[pred_column])], dtype=float)
    mos = np.asarray(list(ds[mos_column]), dtype=float)
    keep = np.flatnonzero(np.isfinite(pred) & np.isfinite(mos))
    dropped = len(ds) - len(keep)
    if dropped:
        logger.warning(
            "error_pairs: dropped %d of %d rows with a NaN %r or %r.", dropped, len(ds), pred_column, mos_column
        )
    if len(keep) < len(ds):
        ds = ds.select(keep.tolist())
        pred, mos = pred[keep], mos[keep]
    err = np.abs(pred - mos)
    pairs = _pairs_from_labels(
        ds,
        lambda a, b: (err[a] >= err[b]).astype(float),
        group_column=group_column,
        max_pairs_per_dataset=max_pairs_per_dataset,
        seed=seed,
    )
    by_id = dict(zip(list(ds["video"]), err.tolist()))
    return pairs.map(lambda r: {"error_a": by_id[r["video_a"]], "error_b": by_id[r["video_b"]]}, desc="error columns")


def merge_pairs(*pair_sets: Dataset) -> Dataset:
    """Concatenate pair Datasets from different pools (no rescaling: labels are scale-free)."""
    return concatenate_datasets(
        [p.cast(PAIR_FEATURES) if set(p.column_names) == set(PAIR_FEATURES) else p for p in pair_sets]
    )
