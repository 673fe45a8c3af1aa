"""Load a Dataset that mds-vqa wrote, wherever it lives: a ``save_to_disk`` folder, a folder in Hub layout (what
the project stages: ``data/<split>-*.parquet`` + ``README.md``), or a Hub dataset id.

``datasets.load_dataset(<local folder>)`` is not safe for the project's folders: in offline mode its cache entry is
keyed by the folder's *name*, so two staged folders called ``selection`` share one entry, and loading the second
returns the first one's rows (re-staging one folder does the same). :func:`load_pool` reads a Hub-layout folder by its
Parquet files instead, whose cache key includes each file's path and modification time, so a folder always loads its
own rows.

Video paths: a pool records each video's path in ``video`` (pair Datasets: ``video_a`` / ``video_b``; gMAD pairs:
``video_high``, ``video_low``, ``video_left``, ``video_right``), either absolute (``build_pool``'s default) or relative
to the pool's video folder (``build_pool --relative_paths true``), so a pool moved to another machine or pulled from the
Hub finds its videos again: ``load_pool(source, video_root=<folder holding the videos>)`` joins every relative path
with ``video_root`` and keeps absolute ones (:func:`resolve_videos`); ``check_videos=True`` stops with the first
missing files listed, ``check_videos="relative"`` checks only the paths recorded relative (what the recipes that read
videos do: a missing absolute file is left to the reader, which records it as an unreadable row).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from .reporting import MAX_LISTED

__all__ = ["VIDEO_COLUMNS", "load_pool", "resolve_videos", "staged_data_files", "is_save_to_disk_folder"]

# Columns holding video paths: pools, pair Datasets (mds_vqa.data), gMAD study pairs (mds_vqa.gmad.study_dataset).
VIDEO_COLUMNS = ("video", "video_a", "video_b", "video_high", "video_low", "video_left", "video_right")

_SHARD_RE = re.compile(r"^(?P<split>[A-Za-z0-9_.]+?)-\d{5}-of-\d{5}\.parquet$")


def is_save_to_disk_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` folder."""
    p = Path(path)
    return (p / "state.json").is_file() or (p / "dataset_dict.json").is_file()


def staged_data_files(folder: str | os.PathLike) -> dict[str, list[str]]:
    """The Parquet files of a Hub-layout folder by split: ``data/<split>-XXXXX-of-YYYYY.parquet`` (the layout
    :func:`mds_vqa.hub.stage_dataset` writes), else every ``*.parquet`` under ``data/`` (or the folder) as ``train``.

    Raises:
        FileNotFoundError: the folder holds no Parquet file.
    """
    root = Path(folder)
    data = root / "data" if (root / "data").is_dir() else root
    files = sorted(p for p in data.rglob("*.parquet") if not p.name.startswith("."))
    if not files:
        raise FileNotFoundError(
            f"{root} is neither a save_to_disk folder (no state.json / dataset_dict.json) nor a Hub-layout folder "
            f"(no *.parquet under {data})."
        )
    by_split: dict[str, list[str]] = {}
    for f in files:
        m = _SHARD_RE.match(f.name)
        by_split.setdefault(m.group("split") if m else "train", []).append(str(f))
    return by_split


def load_pool(
    source: str | os.PathLike,
    *,
    split: str | None = "train",
    revision: str | None = None,
    video_root: str | os.PathLike | None = None,
    check_videos: bool | Literal["relative"] = False,
) -> Any:
    """Load a Dataset from a ``save_to_disk`` folder, a Hub-layout folder, or a Hub dataset id, with its video paths
    resolved (:func:`resolve_videos`).

    Args:
        source: a local folder, or a Hub id such as ``org/name``.
        split: the split of a Hub-layout folder, a Hub repo or a saved ``DatasetDict`` (``None``: all splits, as a
            ``DatasetDict``). A saved single ``Dataset`` is returned whole.
        revision: Hub revision (branch, tag or commit) of a Hub id.
        video_root: folder that relative video paths are relative to (absolute paths are kept).
        check_videos: raise when a video file does not exist, listing the first ones (``"relative"``: only the paths
            recorded relative).

    Raises:
        FileNotFoundError: a local path that holds no Dataset, a Hub id that cannot be reached (offline, no such
            repo), or (``check_videos``) missing video files: the message says which.
        KeyError: the requested split does not exist.
    """
    ds = _load(source, split=split, revision=revision)
    if video_root is None and not check_videos:
        return ds
    from datasets import DatasetDict

    if isinstance(ds, DatasetDict):  # each split
        return DatasetDict(
            {
                name: resolve_videos(part, video_root, check=check_videos, source=f"{source} [{name}]")
                for name, part in ds.items()
            }
        )
    return resolve_videos(ds, video_root, check=check_videos, source=str(source))


def resolve_videos(
    ds: Any,
    video_root: str | os.PathLike | None,
    *,
    columns: tuple[str, ...] | None = None,
    check: bool | Literal["relative"] = False,
    source: str = "the Dataset",
) -> Any:
    """``ds`` with the relative paths of its video columns joined with ``video_root`` (absolute paths, empty and
    null values kept as they are).

    Args:
        ds: a ``Dataset``.
        video_root: the folder the relative paths are relative to (``None``: leave them as they are).
        columns: the columns to resolve (default: those of :data:`VIDEO_COLUMNS` that ``ds`` has).
        check: raise ``FileNotFoundError`` when a resolved path is not a file, listing the first ones (row, column,
            path) and how many there are; ``"relative"`` checks only the paths recorded relative (absolute ones are
            left to the video reader, whose errors the recipes record per row).
        source: what ``ds`` was loaded from, for the error message.
    """
    columns = tuple(c for c in (columns or VIDEO_COLUMNS) if c in ds.column_names)
    root = Path(video_root).expanduser().resolve() if video_root is not None else None
    if root is not None and not root.is_dir():
        raise FileNotFoundError(f"video_root {root} is not a folder (given for {source}).")
    missing: list[str] = []
    n_missing = 0
    relative_seen = False
    order = list(ds.column_names)
    for col in columns:
        values = list(ds[col])
        resolved = [_resolve(v, root) for v in values]
        relative_seen = relative_seen or any(v and not os.path.isabs(v) for v in values)
        if check:
            for row, (value, path) in enumerate(zip(values, resolved)):
                checked = check is True or not os.path.isabs(value or "/")
                if path and checked and not os.path.isfile(path):
                    n_missing += 1
                    if len(missing) < MAX_LISTED:
                        missing.append(f"row {row} {col}: {path}")
        if root is not None and resolved != values:
            # added before the old column goes: a Dataset of this one column keeps its rows
            tmp = f"__resolved_{col}"
            ds = ds.add_column(tmp, resolved, feature=ds.features[col]).remove_columns(col)
            ds = ds.rename_column(tmp, col).select_columns(order)
    if n_missing:
        hint = ""
        if relative_seen:
            hint = (
                f" (relative paths resolved against video_root {root}: is it the folder they are relative to?)"
                if root is not None
                else " (relative paths: pass video_root, the folder they are relative to)"
            )
        shown = "\n  ".join(missing)
        raise FileNotFoundError(
            f"{source}: {n_missing} video file(s) not found{hint}; the first {len(missing)}:\n  {shown}"
        )
    return ds


def _resolve(value: str | None, root: Path | None) -> str | None:
    """``value`` joined with ``root`` when it is a relative path; otherwise unchanged."""
    if not value or root is None or os.path.isabs(value):
        return value
    return str(root / value)


def _load(source: str | os.PathLike, *, split: str | None, revision: str | None) -> Any:
    """The Dataset (or DatasetDict) of ``source``, paths as recorded (see :func:`load_pool`)."""
    from datasets import DatasetDict, load_dataset, load_from_disk

    path = Path(source)
    if path.exists():
        if is_save_to_disk_folder(path):
            ds = load_from_disk(str(path))
            if isinstance(ds, DatasetDict) and split is not None:
                if split not in ds:
                    raise KeyError(f"{path} has no split {split!r} (splits: {sorted(ds)})")
                return ds[split]
            return ds
        files = staged_data_files(path)
        if split is not None and split not in files:
            raise KeyError(f"{path} has no split {split!r} (splits: {sorted(files)})")
        return load_dataset("parquet", data_files=files, split=split)
    if os.path.isabs(str(source)) or str(source).startswith((".", "~")) or str(source).count("/") != 1:
        raise FileNotFoundError(f"{source}: no such folder (and not a Hub dataset id of the form 'org/name').")
    try:
        return load_dataset(str(source), split=split, revision=revision)
    except (ConnectionError, OSError, ValueError) as err:  # datasets raises these for offline / missing repos
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        hint = " (HF_HUB_OFFLINE is set: unset it, or download the repo first)" if offline else ""
        raise FileNotFoundError(
            f"Could not load the Hub dataset {source!r}{hint}: {type(err).__name__}: {err}"
        ) from err
