"""The ``features`` column of a pool: built from the shards of a feature run, read back without Python objects.

:func:`merge_features` adds one column of type ``Array2D(shape=(None, d), dtype="float32")`` to the pool: one
``F × d`` matrix per video, null where the video could not be read. :func:`load_feature_column` reads the whole column
as one ``(M, d)`` array and the frame count of each row (zero-copy from the memory-mapped Arrow file);
:func:`missing_feature_rows` finds the null rows; :func:`column_values` reads any column through Arrow.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, concatenate_datasets

from .reporting import MAX_LISTED
from .resumable import INDEX_COLUMN, load_failures, load_results

logger = logging.getLogger(__name__)

__all__ = [
    "FEATURES_COLUMN",
    "merge_features",
    "column_values",
    "missing_feature_rows",
    "load_feature_column",
    "feature_dim",
]

FEATURES_COLUMN = "features"


def merge_features(
    ds: Dataset, work_dir: str | os.PathLike, column: str = FEATURES_COLUMN
) -> tuple[Dataset, list[int]]:
    """The pool with a ``column`` of type ``List(List(Value("float32"), length=d))`` built from the shards of
    ``work_dir`` (Arrow all the way: no Python float is created) and a ``<column>_error`` string column. Rows without a
    result are ``None``, with the recorded failure (``"VideoReadError: Cannot read video <path>: <cause>"``) in
    ``<column>_error`` when the video could not be read (``None`` when it was, or is not computed yet).
    Returns ``(dataset, missing_rows)``."""
    table = load_results(work_dir)
    if table is None:
        raise FileNotFoundError(f"No feature shards in {work_dir}")
    index = table.column(INDEX_COLUMN).to_numpy()
    if len(np.unique(index)) != len(index):
        raise RuntimeError(f"Duplicate results in {work_dir}: the shards overlap (was the pool changed between runs?)")
    if len(index) and index.max() >= len(ds):
        raise RuntimeError(f"{work_dir} holds a result for row {index.max()} but the pool has {len(ds)} rows")
    position = np.full(len(ds), -1, dtype=np.int64)
    position[index] = np.arange(len(index))
    missing = np.flatnonzero(position < 0).tolist()
    values = table.column(FEATURES_COLUMN).combine_chunks()
    frame_dims = pc.unique(pc.list_value_length(values.flatten())).to_pylist()
    if len(frame_dims) != 1:
        raise RuntimeError(f"{work_dir} mixes features of dimensions {frame_dims}")
    values = values.cast(pa.list_(pa.list_(pa.float32(), int(frame_dims[0]))))
    reasons = {r[INDEX_COLUMN]: r["reason"] for r in load_failures(work_dir)}
    errors = pa.array([reasons.get(i) if position[i] < 0 else None for i in range(len(ds))], type=pa.string())
    feats = Dataset(pa.table({column: values.take(pa.array(position, mask=position < 0)), f"{column}_error": errors}))
    base = ds.flatten_indices() if ds._indices is not None else ds
    base = base.remove_columns([c for c in (column, f"{column}_error") if c in base.column_names])
    if missing:
        shown = [f"row {i}: {reasons.get(i, 'not computed yet')}" for i in missing[:MAX_LISTED]]
        logger.warning("%d of %d videos have no features:\n  %s", len(missing), len(ds), "\n  ".join(shown))
    return concatenate_datasets([base, feats], axis=1), missing


def feature_dim(ds: Dataset, column: str = FEATURES_COLUMN) -> int:
    """``d``, the length of each frame's feature vector in ``column`` (read from the column type: no row is read;
    older pools stored as ``Array2D(shape=(None, d))`` are read too)."""
    feature = ds.features.get(column)
    if feature is None:
        raise KeyError(f"Column {column!r} not in the Dataset (columns: {ds.column_names})")
    shape = getattr(feature, "shape", None)
    if shape is not None:
        return int(shape[1])
    length = getattr(getattr(feature, "feature", None), "length", -1)
    if length is None or length < 0:
        raise ValueError(f"Column {column!r} is {feature}, not frame features (a list of fixed-length vectors)")
    return int(length)


def column_values(ds: Dataset, column: str) -> list:
    """A column as a Python list, read through Arrow (fast, honours a selection's indices)."""
    if column not in ds.column_names:
        raise KeyError(f"Column {column!r} not in the Dataset (columns: {ds.column_names})")
    values = ds.with_format("arrow")[column]
    return (values.column(0) if isinstance(values, pa.Table) else values).to_pylist()


def _storage(ds: Dataset, column: str) -> pa.Array:
    if column not in ds.column_names:
        raise KeyError(f"Column {column!r} not in the Dataset (columns: {ds.column_names})")
    arr = ds.with_format("arrow")[column]
    if isinstance(arr, pa.Table):
        arr = arr.column(0)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if isinstance(arr, pa.ExtensionArray):
        arr = arr.storage
    return arr


def missing_feature_rows(ds: Dataset, column: str = FEATURES_COLUMN) -> list[int]:
    """Rows whose ``column`` is null (the video could not be read) or holds no frame."""
    arr = _storage(ds, column)
    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False)
    return np.flatnonzero(lengths == 0).tolist()


def load_feature_column(ds: Dataset, column: str = FEATURES_COLUMN) -> tuple[np.ndarray, np.ndarray]:
    """The whole ``column`` as ``(frames, lengths)``: ``frames`` a float32 ``(M, d)`` array of every video's frames
    one video after the other (zero-copy when the column is float32), ``lengths`` the frame count of each row.
    Feed both to :class:`~mds_vqa.diversity.FramePool`. Raises ``ValueError`` naming rows without features."""
    missing = missing_feature_rows(ds, column)
    if missing:
        some = ds.select(missing[:MAX_LISTED])
        ids = column_values(some, "video_id") if "video_id" in ds.column_names else missing[:MAX_LISTED]
        raise ValueError(
            f"{len(missing)} row(s) have no {column!r} (unreadable videos?): rows {missing[:MAX_LISTED]}, ids {ids}"
        )
    arr = _storage(ds, column)
    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False).astype(np.int64)
    frames = arr.flatten()
    dims = pc.unique(pc.list_value_length(frames)).to_pylist()
    if len(dims) != 1:
        raise ValueError(f"Column {column!r} mixes frame features of dimensions {sorted(dims)}")
    flat = frames.flatten().to_numpy(zero_copy_only=False)
    if flat.dtype != np.float32:
        flat = flat.astype(np.float32)
    return flat.reshape(-1, int(dims[0])), lengths
