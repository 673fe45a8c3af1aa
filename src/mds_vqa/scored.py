"""Scored pools named in a config: ``{name, dataset_path, column}`` entries, loaded and checked in one place.

``recipes/score.py`` writes a model's scores into a column of a pool Dataset; ``recipes/evaluate_models.py`` and
``recipes/gmad.py`` name those Datasets in their configs. An entry's ``dataset_path`` is a ``save_to_disk`` folder, a
staged (Hub-layout) folder or a Hub id, loaded by :func:`mds_vqa.loading.load_pool`; an optional ``revision`` picks the
Hub revision of a Hub id. :func:`check_entry` checks an entry's keys,
:func:`load_scored_entry` loads its Dataset and checks its columns (errors name the entry, the file and the column);
:func:`scored_table` concatenates entries into one ``(id, domain, mos, score)`` table (the correlation tables) and
:func:`aligned_scores` lines several models' scores up on one pool (gMAD).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from datasets import Dataset, DatasetDict, Features, Value, concatenate_datasets

from .loading import load_pool, resolve_videos

__all__ = ["SCORE_COLUMN", "check_entry", "load_scored", "load_scored_entry", "scored_table", "aligned_scores"]

SCORE_COLUMN = "score"
_SHOWN = 5  # examples of duplicate or mismatched videos in an error message


def check_entry(entry: Mapping[str, Any], keys: Sequence[str], what: str, i: int) -> Mapping[str, Any]:
    """``entry`` (entry ``i`` of the config list ``what``) when every one of ``keys`` has a value; else
    ``ValueError`` naming the list, the entry and the missing keys."""
    missing = [k for k in keys if not entry.get(k)]
    if missing:
        raise ValueError(f"{what} entry {i} ({entry}) lacks {missing}; each entry needs {list(keys)}")
    return entry


def load_scored(path: str | os.PathLike, split: str | None = None, *, revision: str | None = None) -> Dataset:
    """The Dataset of ``path``: a ``save_to_disk`` folder, a staged folder or a Hub id (at ``revision``). A
    DatasetDict (saved, or the splits of a staged folder or Hub repo) gives its ``split``, or its only split.

    Raises:
        FileNotFoundError: there is no Dataset at ``path`` (the message points to ``recipes/score.py``).
        ValueError: a DatasetDict of several splits, none of them ``split``.
    """
    try:
        ds = load_pool(path, split=None, revision=revision)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"Dataset not found: {err} (score the pool with recipes/score.py first)") from err
    if isinstance(ds, DatasetDict):
        if split is not None and split in ds:
            ds = ds[split]
        elif len(ds) == 1:  # a staged or Hub Dataset is one split
            ds = next(iter(ds.values()))
        else:
            raise ValueError(f"{path} is a DatasetDict with splits {list(ds)}; set `split` to one of them")
    return ds


def load_scored_entry(
    entry: Mapping[str, Any], what: str, *, columns: Sequence[str] = (), split: str | None = None
) -> Dataset:
    """The Dataset of ``entry["dataset_path"]`` (at ``entry["revision"]`` when given) once its score column
    ``entry["column"]`` and ``columns`` are found.

    ``what`` names the entry in errors (``"model 'base'"``); a missing column raises ``KeyError`` naming it, the file
    and the columns there are."""
    path = entry["dataset_path"]
    ds = load_scored(path, split, revision=entry.get("revision"))
    for col in (entry["column"], *columns):
        if col not in ds.column_names:
            raise KeyError(f"{what}: column {col!r} not in {path} (columns: {ds.column_names})")
    return ds


def scored_table(
    entries: Sequence[Mapping[str, Any]],
    what: str,
    *,
    split: str | None,
    id_column: str = "video_id",
    group_column: str = "dataset",
    mos_column: str = "mos",
) -> Dataset:
    """The entries' Datasets concatenated into the columns ``id_column``, ``group_column``, ``mos_column`` and
    ``score`` (each entry's score column), keeping the rows of ``split`` (``None``: every row).

    Raises ``KeyError`` when a column (or, with a ``split``, the ``split`` column) is missing, ``ValueError`` when a
    video appears twice or no row is left; ``what`` names the entries in errors."""
    parts = []
    for e in entries:
        ds = load_scored_entry(e, what, columns=(mos_column, group_column, id_column), split=split)
        if split is not None and "split" in ds.column_names:
            ds = ds.filter(lambda s: s == split, input_columns="split")
        elif split is not None:
            raise KeyError(f"{e['dataset_path']} has no 'split' column; set split: null to use every row")
        ds = ds.select_columns([id_column, group_column, mos_column, e["column"]])
        ds = ds.rename_column(e["column"], SCORE_COLUMN) if e["column"] != SCORE_COLUMN else ds
        features = Features(
            {
                id_column: Value("string"),
                group_column: Value("string"),
                mos_column: Value("float64"),
                SCORE_COLUMN: Value("float64"),
            }
        )
        parts.append(ds.cast(features))
    ds = concatenate_datasets(parts)
    keys = list(zip(ds[group_column], ds[id_column]))
    if len(set(keys)) != len(keys):
        seen, dups = set(), []
        for k in keys:
            if k in seen:
                dups.append(k)
            seen.add(k)
        raise ValueError(
            f"{what}: the same video appears twice, e.g. {dups[:_SHOWN]} (two entries list the same pool?)"
        )
    if len(ds) == 0:
        raise ValueError(f"{what}: no rows left (split={split!r})")
    return ds


def aligned_scores(
    models: Sequence[Mapping[str, Any]] | None,
    *,
    id_column: str = "video_id",
    video_column: str = "video",
    video_root: str | os.PathLike | None = None,
) -> tuple[dict[str, list[float]], list[str], list[str]]:
    """Each model's scores (``{name, dataset_path, column[, revision]}`` entries, at least two) aligned on the first
    model's pool order, with that pool's video ids and video paths (relative ones joined with ``video_root``). ``None``
    scores become NaN.

    Raises ``ValueError`` for fewer than two models, a name used twice, duplicate ids, or a model that scored a
    different pool (naming the videos missing or extra)."""
    if not models or len(models) < 2:
        raise ValueError("gMAD needs at least two models: set `models` to [{name, dataset_path, column}, ...]")
    scores: dict[str, list[float]] = {}
    ids: list[str] = []
    videos: list[str] = []
    for i, e in enumerate(models):
        e = check_entry(e, ("name", "dataset_path", "column"), "models", i)
        name = str(e["name"])
        if name in scores:
            raise ValueError(f"models: the name {name!r} is used twice")
        ds = load_scored_entry(e, f"model {name!r}", columns=(id_column, video_column))
        path = e["dataset_path"]
        these = [str(v) for v in ds[id_column]]
        if len(set(these)) != len(these):
            raise ValueError(f"model {name!r}: duplicate ids in {path}")
        values = ds[e["column"]]
        if not ids:
            if video_root is not None:
                ds = resolve_videos(ds, video_root, columns=(video_column,), source=str(path))
            ids, videos = these, [str(v) for v in ds[video_column]]
            scores[name] = [np.nan if v is None else float(v) for v in values]
            continue
        position = dict(zip(these, range(len(these))))
        absent = [v for v in ids if v not in position]
        extra = set(these) - set(ids)
        if absent or extra:
            raise ValueError(
                f"model {name!r} scored a different pool ({path}): {len(absent)} video(s) missing, "
                f"e.g. {absent[:_SHOWN]}, {len(extra)} extra, e.g. {sorted(extra)[:_SHOWN]}"
            )
        scores[name] = [np.nan if values[position[v]] is None else float(values[position[v]]) for v in ids]
    return scores, ids, videos
