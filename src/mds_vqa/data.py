"""Pool and pair Datasets: building a pool from a MOS table, MOS normalisation, MOS pairs and error pairs.

Every function takes and returns a :class:`datasets.Dataset`. A *pool* has the columns
``video_id`` (str), ``video`` (path), ``mos`` (float), ``mos_std`` (float or None), ``dataset`` (domain) and ``split``.
A *pair* Dataset has ``video_a``, ``video_b`` (paths), ``id_a``, ``id_b``, ``p`` (probability that a is better, or for
error pairs that f errs more on a) and ``dataset``. Pairs never cross datasets, so pair Datasets from different sources
concatenate without rescaling.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import Dataset, Features, Value, concatenate_datasets
from scipy.stats import norm

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

POOL_FEATURES = Features(
    {
        "video_id": Value("string"),
        "video": Value("string"),
        "mos": Value("float64"),
        "mos_std": Value("float64"),
        "dataset": Value("string"),
        "split": Value("string"),
    }
)

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

VIDEO_COLUMN_CANDIDATES = (
    "video_id",
    "name",
    "video",
    "video_name",
    "file",
    "filename",
    "file_name",
    "flickr_id",
    "id",
    "vid",
)
MOS_COLUMN_CANDIDATES = ("mos", "MOS", "score", "Score", "mos_score", "dmos", "DMOS", "quality")
STD_COLUMN_CANDIDATES = ("mos_std", "std", "sd", "SD", "MOS_std", "mos_sd", "std_dev")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".yuv", ".m4v", ".flv", ".wmv", ".mpg", ".mpeg", ".ts")
_MAX_LISTED = 20


class PoolValidationError(ValueError):
    """A MOS table or pool failed validation. ``problems`` maps a problem kind to its offenders."""

    def __init__(self, source: str, problems: dict[str, list[str]]):
        self.source = source
        self.problems = problems
        lines = [f"Invalid pool from {source}:"]
        for kind, offenders in problems.items():
            shown = offenders[:_MAX_LISTED]
            more = f" (and {len(offenders) - len(shown)} more)" if len(offenders) > len(shown) else ""
            lines.append(f"  - {kind}: {len(offenders)} offender(s){more}")
            lines.extend(f"      {o}" for o in shown)
        super().__init__("\n".join(lines))


# --------------------------------------------------------------------------------------------------------------------
# MOS tables
# --------------------------------------------------------------------------------------------------------------------


def _pick_column(columns: Sequence[str], wanted: str | None, candidates: Iterable[str], what: str, path: str) -> str:
    if wanted is not None:
        if wanted not in columns:
            raise PoolValidationError(path, {f"{what} column {wanted!r} not found": [f"columns are {list(columns)}"]})
        return wanted
    lowered = {str(c).lower(): c for c in columns}
    for cand in candidates:
        if cand in columns:
            return cand
        if cand.lower() in lowered:
            return lowered[cand.lower()]
    raise PoolValidationError(
        path,
        {f"no {what} column found (set it explicitly)": [f"columns are {list(columns)}; tried {list(candidates)}"]},
    )


def read_mos_table(
    path: str | os.PathLike,
    *,
    video_column: str | None = None,
    mos_column: str | None = None,
    mos_std_column: str | None = None,
    delimiter: str | None = None,
    has_header: bool = True,
) -> pd.DataFrame:
    """Read a MOS table (CSV, TSV or whitespace-separated TXT) into a frame with ``video_name``, ``mos``, ``mos_std``.

    Columns are auto-detected when not given (``name``/``video``/``flickr_id``… for the video, ``mos``/``score``… for
    the MOS). Without a header the columns are ``col0, col1, …`` and default to video = ``col0``, MOS = ``col1``.
    MOS values are returned as read (strings that are not numbers become NaN and are reported by :func:`build_pool`);
    the original text is kept in ``mos_text`` for error messages.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"MOS table not found: {path}")
    if path.suffix.lower() in (".xlsx", ".xls"):
        raise PoolValidationError(str(path), {"spreadsheet given": ["export the sheet as CSV and pass the .csv file"]})
    if path.stat().st_size == 0:
        raise PoolValidationError(str(path), {"empty table": ["the file is 0 bytes"]})
    header = 0 if has_header else None
    if delimiter is None:
        suffix = path.suffix.lower()
        if suffix == ".tsv":
            kwargs = {"sep": "\t"}
        elif suffix == ".csv":
            kwargs = {"sep": ","}
        else:  # .txt and friends: comma, tab or runs of whitespace
            first = path.read_text(errors="replace").splitlines()[0] if path.stat().st_size else ""
            kwargs = {"sep": ","} if "," in first else ({"sep": "\t"} if "\t" in first else {"sep": r"\s+"})
    else:
        kwargs = {"sep": delimiter}
    try:
        frame = pd.read_csv(path, header=header, dtype=str, keep_default_na=False, skipinitialspace=True, **kwargs)
    except pd.errors.EmptyDataError as err:
        raise PoolValidationError(str(path), {"empty table": ["no rows could be read"]}) from err
    if not has_header:
        frame.columns = [f"col{i}" for i in range(frame.shape[1])]
        video_column = video_column or "col0"
        mos_column = mos_column or "col1"
    frame.columns = [str(c).strip() for c in frame.columns]
    if len(frame) == 0:
        raise PoolValidationError(str(path), {"empty table": [f"header only, columns {list(frame.columns)}"]})
    vcol = _pick_column(list(frame.columns), video_column, VIDEO_COLUMN_CANDIDATES, "video", str(path))
    mcol = _pick_column(list(frame.columns), mos_column, MOS_COLUMN_CANDIDATES, "MOS", str(path))
    scol = None
    if mos_std_column is not None:
        scol = _pick_column(list(frame.columns), mos_std_column, STD_COLUMN_CANDIDATES, "MOS std", str(path))
    out = pd.DataFrame(
        {
            "video_name": frame[vcol].astype(str).str.strip(),
            "mos_text": frame[mcol].astype(str).str.strip(),
        }
    )
    out["mos"] = pd.to_numeric(out["mos_text"], errors="coerce")
    out["mos_std"] = pd.to_numeric(frame[scol], errors="coerce") if scol else np.nan
    if scol:
        out["mos_std_text"] = frame[scol].astype(str).str.strip()
    out.index = np.arange(len(out)) + (2 if has_header else 1)  # 1-based line numbers in the file
    return out


def _index_videos(video_dir: Path) -> dict[str, list[Path]]:
    index: dict[str, list[Path]] = {}
    for p in video_dir.rglob("*"):
        if p.is_file():
            rel = p.relative_to(video_dir).as_posix()
            for key in {p.name, p.stem, rel, str(Path(rel).with_suffix(""))}:
                index.setdefault(key, []).append(p)
    return index


def build_pool(
    mos_table: str | os.PathLike,
    video_dir: str | os.PathLike,
    dataset_name: str,
    *,
    split: str = "train",
    split_column: str | None = None,
    test_size: float | None = None,
    seed: int = 0,
    video_column: str | None = None,
    mos_column: str | None = None,
    mos_std_column: str | None = None,
    video_extension: str | None = None,
    delimiter: str | None = None,
    has_header: bool = True,
    higher_is_better: bool = True,
) -> Dataset:
    """Build a pool Dataset from a MOS table and a folder of videos, validating everything before any compute.

    Raises :class:`PoolValidationError` listing every offender (file line, name, value) for: an empty table,
    missing video files, duplicate ids, NaN or non-numeric MOS (or MOS std), and a MOS column with a single value.
    ``higher_is_better=False`` flips a DMOS scale (``mos = max + min − dmos``) so that higher is always better.
    """
    table_path = Path(mos_table)
    video_dir = Path(video_dir)
    if not video_dir.is_dir():
        raise FileNotFoundError(f"Video folder not found: {video_dir}")
    if not dataset_name:
        raise ValueError("dataset_name must be a non-empty string (it names the domain in the `dataset` column).")
    if test_size is not None and not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    if split_column is not None and test_size is not None:
        raise ValueError("Pass either split_column or test_size, not both.")
    table = read_mos_table(
        table_path,
        video_column=video_column,
        mos_column=mos_column,
        mos_std_column=mos_std_column,
        delimiter=delimiter,
        has_header=has_header,
    )
    splits = None
    if split_column is not None:
        raw = pd.read_csv(table_path, dtype=str, keep_default_na=False, sep=delimiter or None, engine="python")
        raw.columns = [str(c).strip() for c in raw.columns]
        if split_column not in raw.columns:
            raise PoolValidationError(
                str(table_path), {f"split column {split_column!r} not found": [f"columns are {list(raw.columns)}"]}
            )
        splits = raw[split_column].astype(str).str.strip().tolist()

    problems: dict[str, list[str]] = {}
    where = "line"
    bad_mos = [
        f"{where} {i}: {n!r} has MOS {t!r}"
        for i, n, t, m in zip(table.index, table.video_name, table.mos_text, table.mos)
        if not math.isfinite(m)
    ]
    if bad_mos:
        problems["NaN or non-numeric MOS"] = bad_mos
    if mos_std_column is not None:
        bad_std = [
            f"{where} {i}: {n!r} has MOS std {t!r}"
            for i, n, t, s in zip(table.index, table.video_name, table.mos_std_text, table.mos_std)
            if not (math.isfinite(s) and s >= 0)
        ]
        if bad_std:
            problems["NaN, negative or non-numeric MOS std"] = bad_std
    empty_names = [f"{where} {i}" for i, n in zip(table.index, table.video_name) if not n]
    if empty_names:
        problems["empty video name"] = empty_names

    # The id is the name without its video extension; folders are kept (AIGVQA-DB reuses file names across folders).
    ids = [
        Path(n).with_suffix("").as_posix() if Path(n).suffix.lower() in VIDEO_EXTENSIONS else n
        for n in table.video_name
    ]
    seen: dict[str, int] = {}
    dups = []
    for line, vid in zip(table.index, ids):
        if vid in seen:
            dups.append(f"{vid!r} at lines {seen[vid]} and {line}")
        else:
            seen[vid] = line
    if dups:
        problems["duplicate video ids"] = dups

    index = _index_videos(video_dir)
    paths: list[str] = []
    missing, ambiguous = [], []
    for line, name in zip(table.index, table.video_name):
        key = name
        if video_extension and not Path(name).suffix:
            key = name + video_extension  # appended verbatim: ".mp4", or a suffix such as "_crf_10_ss_00_t_20.0.mp4"
        found = index.get(key, [])
        if not found and not video_extension and not Path(name).suffix:
            found = [p for p in index.get(name, []) if p.suffix.lower() in VIDEO_EXTENSIONS]
        found = sorted(set(found))
        if not found:
            missing.append(f"{where} {line}: {key!r} not in {video_dir}")
            paths.append("")
        elif len(found) > 1:
            ambiguous.append(f"{where} {line}: {key!r} matches {[str(p) for p in found[:3]]}")
            paths.append("")
        else:
            paths.append(str(found[0].resolve()))
    if missing:
        problems["missing video files"] = missing
    if ambiguous:
        problems["ambiguous video names (set video_extension)"] = ambiguous

    finite = table.mos[np.isfinite(table.mos)]
    if len(finite) > 0 and finite.nunique() == 1:
        problems["MOS column has a single value"] = [f"every row has MOS {finite.iloc[0]!r}: nothing to rank"]
    if problems:
        raise PoolValidationError(str(table_path), problems)

    mos = table.mos.to_numpy(dtype=float)
    if not higher_is_better:
        mos = mos.max() + mos.min() - mos
    if splits is None:
        splits = [split] * len(table)
        if test_size is not None:
            rng = np.random.default_rng(seed)
            n_test = max(1, int(round(test_size * len(table))))
            test_rows = set(rng.permutation(len(table))[:n_test].tolist())
            splits = ["test" if i in test_rows else "train" for i in range(len(table))]
    std = table.mos_std.to_numpy(dtype=float)
    records = {
        "video_id": ids,
        "video": paths,
        "mos": mos.tolist(),
        "mos_std": [None if not math.isfinite(s) else float(s) for s in std],
        "dataset": [dataset_name] * len(table),
        "split": splits,
    }
    return Dataset.from_dict(records, features=POOL_FEATURES)


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
            bad = [ds[int(i)].get("video_id", int(i)) for i in idx[~np.isfinite(values)][:_MAX_LISTED]]
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
        raise ValueError(f"Non-finite {mos_column!r} at rows {bad[:_MAX_LISTED].tolist()}")
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
        ids = (
            list(ds.select(bad[:_MAX_LISTED].tolist())["video_id"]) if "video_id" in ds.column_names else bad.tolist()
        )
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
