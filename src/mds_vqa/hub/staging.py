"""Staging: the exact content of a Hub repository written into a local folder, to review offline, load as a consumer
would (``PeftModel.from_pretrained(base, stage_dir)``, ``mds_vqa.loading.load_pool(stage_dir)``) and push as it is.
A staged folder is kept whatever happens to the upload."""

from __future__ import annotations

import math
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .adapter_card import AdapterCardInfo, adapter_model_card, read_adapter_config
from .dataset_card import DatasetCardInfo, dataset_card
from .kinds import is_staged_repository

__all__ = ["as_splits", "stage_adapter", "stage_dataset"]

# Files of a save_to_disk folder that the parquet data files replace; everything else at its top level (reports,
# provenance JSON, figures) is copied into the staged repository.
_SAVE_TO_DISK_FILES = {"dataset_info.json", "state.json", "dataset_dict.json"}
# Files of a trainer output folder that are not published: the card is rewritten, and training_args.bin is a pickle
# that holds the training arguments, hub token included.
_ADAPTER_SKIPPED_FILES = {"README.md", "training_args.bin"}


def _new_stage(stage_dir: Path, sources: Sequence[Path]) -> Path:
    stage = stage_dir.resolve()
    for src in sources:
        src = src.resolve()
        if stage == src or src in stage.parents or stage in src.parents:
            raise ValueError(f"stage_dir {stage_dir} must lie outside the artifact folder {src} (and not contain it).")
    if stage.exists() and not stage.is_dir():
        raise FileExistsError(f"stage_dir {stage_dir} exists and is not a folder.")
    if stage.is_dir() and any(stage.iterdir()) and not is_staged_repository(stage):
        raise FileExistsError(
            f"stage_dir {stage_dir} is not empty and is not a staged mds-vqa repository: refusing to replace it."
        )
    partial = stage.with_name(stage.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    return partial


def _finish_stage(partial: Path, stage_dir: Path) -> Path:
    stage = stage_dir.resolve()
    if stage.exists():
        shutil.rmtree(stage)
    partial.rename(stage)
    return stage_dir


def stage_adapter(adapter_dir: str | os.PathLike, stage_dir: str | os.PathLike, info: AdapterCardInfo) -> Path:
    """Write the repository of an adapter into ``stage_dir``: the top-level files of ``adapter_dir`` (adapter weights
    and config, processor files, metrics JSON; no checkpoints, no ``training_args.bin``) and the model card as
    ``README.md``. A previous staging in ``stage_dir`` is replaced; returns ``stage_dir``."""
    src = Path(adapter_dir)
    config = read_adapter_config(src)
    card = adapter_model_card(config, info)
    partial = _new_stage(Path(stage_dir), [src])
    for path in sorted(src.iterdir()):
        if path.is_file() and not path.name.startswith(".") and path.name not in _ADAPTER_SKIPPED_FILES:
            shutil.copy2(path, partial / path.name)
    card.save(partial / "README.md")
    return _finish_stage(partial, Path(stage_dir))


def _write_parquet(ds, data_dir: Path, split: str, max_shard_bytes: int) -> list[str]:
    estimate = ds.data.nbytes * len(ds) / max(1, ds.data.num_rows)
    n = min(max(1, math.ceil(estimate / max_shard_bytes)), len(ds))
    names = []
    for i in range(n):
        name = f"{split}-{i:05d}-of-{n:05d}.parquet"
        ds.shard(n, i, contiguous=True).to_parquet(str(data_dir / name))
        names.append(name)
    return names


def as_splits(dataset: Any) -> dict[str, Any]:
    """``{split: Dataset}`` of a ``Dataset`` (``train``) or ``DatasetDict``; a clear error for an empty split or a
    split name that cannot name a data file."""
    from datasets import Dataset, DatasetDict

    if isinstance(dataset, DatasetDict):
        splits = dict(dataset)
    elif isinstance(dataset, Dataset):
        splits = {"train": dataset}
    else:
        raise TypeError(f"Expected a datasets.Dataset or DatasetDict, got {type(dataset).__name__}")
    for name, ds in splits.items():
        if not re.fullmatch(r"\w+(\.\w+)*", name):
            raise ValueError(f"Split name {name!r} cannot name a data file; use letters, digits and underscores.")
        if len(ds) == 0:
            raise ValueError(f"Split {name!r} is empty: there is nothing to publish.")
    return splits


def stage_dataset(
    dataset: Any,
    stage_dir: str | os.PathLike,
    info: DatasetCardInfo,
    *,
    source_dir: str | os.PathLike | None = None,
    max_shard_bytes: int = 500 * 1024**2,
) -> Path:
    """Write the repository of a Dataset (or DatasetDict) into ``stage_dir``: ``data/<split>-XXXXX-of-YYYYY.parquet``
    (shards of at most ``max_shard_bytes`` of Arrow data), the dataset card as ``README.md``, and the top-level side
    files of ``source_dir`` (reports, provenance JSON, figures). :func:`mds_vqa.loading.load_pool` loads it back
    with the same rows and columns. A previous staging in ``stage_dir`` is replaced; returns ``stage_dir``."""
    splits = as_splits(dataset)
    src = Path(source_dir) if source_dir is not None else None
    extra = []
    if src is not None:
        extra = [
            p
            for p in sorted(src.iterdir())
            if p.is_file()
            and not p.name.startswith(".")
            and p.name not in _SAVE_TO_DISK_FILES
            and p.name != "README.md"
            and p.suffix != ".arrow"
        ]
        info.extra_files = [p.name for p in extra]
    card = dataset_card(splits, info)
    partial = _new_stage(Path(stage_dir), [src] if src is not None else [])
    data_dir = partial / "data"
    data_dir.mkdir()
    for name, ds in splits.items():
        _write_parquet(ds, data_dir, name, max_shard_bytes)
    for path in extra:
        shutil.copy2(path, partial / path.name)
    card.save(partial / "README.md")
    return _finish_stage(partial, Path(stage_dir))
