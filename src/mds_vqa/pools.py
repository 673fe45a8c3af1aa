"""Pool Datasets: a MOS table and a folder of videos, validated before any compute, become a pool.

A *pool* has the columns ``video_id`` (str), ``video`` (path), ``mos`` (float), ``mos_std`` (float or None),
``dataset`` (domain) and ``split`` (:data:`POOL_FEATURES`). :func:`read_mos_table` reads a CSV/TSV/TXT MOS table with
its columns auto-detected; :func:`build_pool` matches it to the video files and raises :class:`PoolValidationError`
listing every offender at once.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import Dataset, Features, Value

from .reporting import MAX_LISTED

__all__ = ["POOL_FEATURES", "PoolValidationError", "read_mos_table", "build_pool"]

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


class PoolValidationError(ValueError):
    """A MOS table or pool failed validation. ``problems`` maps a problem kind to its offenders."""

    def __init__(self, source: str, problems: dict[str, list[str]]):
        self.source = source
        self.problems = problems
        lines = [f"Invalid pool from {source}:"]
        for kind, offenders in problems.items():
            shown = offenders[:MAX_LISTED]
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
    relative_paths: bool = False,
) -> Dataset:
    """Build a pool Dataset from a MOS table and a folder of videos, validating everything before any compute.

    Raises :class:`PoolValidationError` listing every offender (file line, name, value) for: an empty table,
    missing video files, duplicate ids, NaN or non-numeric MOS (or MOS std), and a MOS column with a single value.
    ``higher_is_better=False`` flips a DMOS scale (``mos = max + min − dmos``) so that higher is always better.
    The ``video`` column holds absolute paths, or with ``relative_paths=True`` paths relative to ``video_dir`` (a pool
    that travels: load it with ``mds_vqa.loading.load_pool(..., video_root=<the video folder>)``).
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
    splits = _split_column(table_path, split_column, delimiter) if split_column is not None else None
    problems = _value_problems(table, with_std=mos_std_column is not None)
    # The id is the name without its video extension; folders are kept (AIGVQA-DB reuses file names across folders).
    ids = [
        Path(n).with_suffix("").as_posix() if Path(n).suffix.lower() in VIDEO_EXTENSIONS else n
        for n in table.video_name
    ]
    dups = _duplicates(table.index, ids)
    if dups:
        problems["duplicate video ids"] = dups
    paths, missing, ambiguous = _find_videos(table, video_dir, video_extension, relative=relative_paths)
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
        splits = _draw_splits(len(table), split, test_size, seed)
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


def _split_column(table_path: Path, split_column: str, delimiter: str | None) -> list[str]:
    """The values of the table's ``split_column``, one per row."""
    raw = pd.read_csv(table_path, dtype=str, keep_default_na=False, sep=delimiter or None, engine="python")
    raw.columns = [str(c).strip() for c in raw.columns]
    if split_column not in raw.columns:
        raise PoolValidationError(
            str(table_path), {f"split column {split_column!r} not found": [f"columns are {list(raw.columns)}"]}
        )
    return raw[split_column].astype(str).str.strip().tolist()


def _value_problems(table: pd.DataFrame, *, with_std: bool) -> dict[str, list[str]]:
    """Rows with a NaN or non-numeric MOS (or MOS std, ``with_std``) and rows without a video name, by problem."""
    problems: dict[str, list[str]] = {}
    where = "line"
    bad_mos = [
        f"{where} {i}: {n!r} has MOS {t!r}"
        for i, n, t, m in zip(table.index, table.video_name, table.mos_text, table.mos)
        if not math.isfinite(m)
    ]
    if bad_mos:
        problems["NaN or non-numeric MOS"] = bad_mos
    if with_std:
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
    return problems


def _duplicates(lines: Iterable[int], ids: Sequence[str]) -> list[str]:
    """``"'id' at lines a and b"`` for every id seen before."""
    seen: dict[str, int] = {}
    dups = []
    for line, vid in zip(lines, ids):
        if vid in seen:
            dups.append(f"{vid!r} at lines {seen[vid]} and {line}")
        else:
            seen[vid] = line
    return dups


def _find_videos(
    table: pd.DataFrame, video_dir: Path, video_extension: str | None, *, relative: bool = False
) -> tuple[list[str], list[str], list[str]]:
    """The resolved path of each row's video (relative to ``video_dir`` with ``relative``; ``""`` when not found once),
    and the rows whose video is missing or matches several files."""
    where = "line"
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
            paths.append(found[0].relative_to(video_dir).as_posix() if relative else str(found[0].resolve()))
    return paths, missing, ambiguous


def _draw_splits(n: int, split: str, test_size: float | None, seed: int) -> list[str]:
    """``split`` for every row, or with ``test_size`` a seeded random ``test`` share and ``train`` for the rest."""
    splits = [split] * n
    if test_size is not None:
        rng = np.random.default_rng(seed)
        n_test = max(1, int(round(test_size * n)))
        test_rows = set(rng.permutation(n)[:n_test].tolist())
        splits = ["test" if i in test_rows else "train" for i in range(n)]
    return splits
