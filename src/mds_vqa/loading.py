"""Load a Dataset that mds-vqa wrote, wherever it lives: a ``save_to_disk`` folder, a folder in Hub layout (what
the project stages: ``data/<split>-*.parquet`` + ``README.md``), or a Hub dataset id.

``datasets.load_dataset(<local folder>)`` is not safe for the project's folders: in offline mode its cache entry is
keyed by the folder's *name*, so two staged folders called ``selection`` share one entry, and loading the second
returns the first one's rows (re-staging one folder does the same). :func:`load_pool` reads a Hub-layout folder by its
Parquet files instead, whose cache key includes each file's path and modification time, so a folder always loads its
own rows.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

__all__ = ["load_pool", "staged_data_files", "is_save_to_disk_folder"]

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


def load_pool(source: str | os.PathLike, *, split: str | None = "train", revision: str | None = None) -> Any:
    """Load a Dataset from a ``save_to_disk`` folder, a Hub-layout folder, or a Hub dataset id.

    Args:
        source: a local folder, or a Hub id such as ``org/name``.
        split: the split of a Hub-layout folder, a Hub repo or a saved ``DatasetDict`` (``None``: all splits, as a
            ``DatasetDict``). A saved single ``Dataset`` is returned whole.
        revision: Hub revision (branch, tag or commit) of a Hub id.

    Raises:
        FileNotFoundError: a local path that holds no Dataset, or a Hub id that cannot be reached (offline, no such
            repo): the message says which.
        KeyError: the requested split does not exist.
    """
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
