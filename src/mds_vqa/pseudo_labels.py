"""Teacher pseudo-labels: the scores of one or more models turned into a pseudo-MOS, so an unlabelled pool becomes a
weakly labelled pool (weak-to-strong learning, learned as ranks).

Teachers are scored pools (``recipes/score.py``: a Dataset with a score column; f, g or any other model's scores),
joined to the pool by ``video_id``. Teachers do not share a scale, and only their order is trusted, so within each
dataset (the pool's ``dataset`` column) each teacher's scores are **rank-normalised**::

    u = low + (high − low) · (rank − 1) / (n − 1)        rank: 1 … n over the teacher's finite scores, ties averaged

(``n = 1``: the midpoint). The pseudo-MOS of a video is the mean of ``u`` over the teachers with a finite score for
it; a video no teacher scored (NaN: an unreadable video or an unparseable answer) gets none and is dropped. With
several teachers their **agreement** is reported: Spearman's rank correlation (SRCC) of every two teachers, within
each dataset and over all rows (raw scores, rows both scored). A pool id missing from a teacher is an error naming the
teacher and the id (a teacher that scored another pool), never a silent NaN.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np
from datasets import Dataset, Value
from scipy.stats import rankdata, spearmanr

from .reporting import MAX_LISTED, format_number, markdown_table

logger = logging.getLogger(__name__)

__all__ = [
    "TeacherError",
    "teacher_column",
    "teacher_scores",
    "rank_normalize",
    "pseudo_mos",
    "teacher_agreement",
    "agreement_table",
    "pseudo_label_pool",
]


class TeacherError(ValueError):
    """A teacher's scored pool does not cover the pool: ``teacher`` names it, the message names the ids."""

    def __init__(self, teacher: str, message: str):
        self.teacher = teacher
        super().__init__(f"Teacher {teacher!r}: {message}")


def teacher_column(name: str) -> str:
    """The column holding a teacher's rank-normalised score: ``pseudo_<name>`` (made safe for a column name)."""
    return "pseudo_" + re.sub(r"\W+", "_", name).strip("_")


def teacher_scores(
    pool_ids: Sequence[str],
    teacher: Dataset,
    name: str,
    column: str,
    *,
    id_column: str = "video_id",
    where: str = "",
) -> np.ndarray:
    """The teacher's ``column`` aligned on ``pool_ids`` (``None`` → NaN).

    Raises :class:`TeacherError` naming the teacher (and ``where``, its file) for a missing column, an id it has twice,
    or a pool id it lacks (listing up to :data:`~mds_vqa.reporting.MAX_LISTED` of them)."""
    for col in (id_column, column):
        if col not in teacher.column_names:
            raise TeacherError(
                name, f"no column {col!r} in {where or 'its Dataset'} (columns: {teacher.column_names})"
            )
    ids = [str(v) for v in teacher[id_column]]
    position = {}
    for i, v in enumerate(ids):
        if v in position:
            raise TeacherError(name, f"video id {v!r} appears twice in {where or 'its Dataset'}")
        position[v] = i
    missing = [v for v in pool_ids if v not in position]
    if missing:
        raise TeacherError(
            name,
            f"{len(missing)} pool video id(s) missing from {where or 'its Dataset'}, e.g. {missing[:MAX_LISTED]} "
            "(did it score another pool?)",
        )
    values = teacher[column]
    return np.asarray([np.nan if values[position[v]] is None else float(values[position[v]]) for v in pool_ids])


def rank_normalize(
    values: Sequence[float], groups: Sequence[Any], *, low: float = 1.0, high: float = 5.0
) -> np.ndarray:
    """Each group's finite values as ranks mapped onto ``[low, high]`` (module docstring); NaN stays NaN."""
    x = np.asarray(values, dtype=float)
    g = np.asarray(list(groups), dtype=object)
    if len(g) != len(x):
        raise ValueError(f"{len(x)} values but {len(g)} groups")
    out = np.full(len(x), np.nan)
    for name in dict.fromkeys(g.tolist()):
        idx = np.flatnonzero((g == name) & np.isfinite(x))
        if len(idx) == 1:
            out[idx] = (low + high) / 2
        elif len(idx) > 1:
            out[idx] = low + (high - low) * (rankdata(x[idx]) - 1) / (len(idx) - 1)
    return out


def pseudo_mos(
    scores: Mapping[str, Sequence[float]], groups: Sequence[Any], *, low: float = 1.0, high: float = 5.0
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(pseudo-MOS, {teacher: rank-normalised scores})``: the mean over teachers of their rank-normalised scores
    within each group, NaN where no teacher has a finite score."""
    if not scores:
        raise ValueError("Pseudo-labels need at least one teacher.")
    normalised = {name: rank_normalize(s, groups, low=low, high=high) for name, s in scores.items()}
    stack = np.vstack(list(normalised.values()))
    counts = np.isfinite(stack).sum(0)
    total = np.where(np.isfinite(stack), stack, 0.0).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, total / np.maximum(counts, 1), np.nan)
    return mean, normalised


def _srcc(a: np.ndarray, b: np.ndarray) -> tuple[float | None, int]:
    both = np.isfinite(a) & np.isfinite(b)
    n = int(both.sum())
    if n < 3 or np.ptp(a[both]) == 0 or np.ptp(b[both]) == 0:
        return None, n
    return float(spearmanr(a[both], b[both])[0]), n


def teacher_agreement(scores: Mapping[str, Sequence[float]], groups: Sequence[Any]) -> list[dict[str, Any]]:
    """SRCC of every two teachers within each group and, with several groups, over all rows (``dataset = "all"``): rows
    ``{teacher_a, teacher_b, dataset, srcc, n}`` (``n``: rows both scored; SRCC is None under 3 rows or for a constant
    teacher). Empty for a single teacher."""
    g = np.asarray(list(groups), dtype=object)
    arrays = {name: np.asarray(s, dtype=float) for name, s in scores.items()}
    rows = []
    for a, b in combinations(arrays, 2):
        names = list(dict.fromkeys(g.tolist()))
        for name in names + (["all"] if len(names) > 1 else []):
            mask = np.ones(len(g), bool) if name == "all" else g == name
            srcc, n = _srcc(arrays[a][mask], arrays[b][mask])
            rows.append({"teacher_a": a, "teacher_b": b, "dataset": name, "srcc": srcc, "n": n})
    return rows


def agreement_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The agreement rows as a Markdown table (SRCC with 4 decimals, a dash when undefined)."""
    return markdown_table(
        ["teacher a", "teacher b", "dataset", "SRCC", "videos"],
        [[r["teacher_a"], r["teacher_b"], r["dataset"], format_number(r["srcc"]), r["n"]] for r in rows],
        align="lllrr",
    )


def pseudo_label_pool(
    pool: Dataset,
    scores: Mapping[str, Sequence[float]],
    *,
    group_column: str = "dataset",
    low: float = 1.0,
    high: float = 5.0,
) -> tuple[Dataset, dict[str, Any]]:
    """The pool weakly labelled by its teachers' ``scores`` (aligned on the pool's rows, e.g. by
    :func:`teacher_scores`): ``mos`` = pseudo-MOS, ``mos_std`` null, the pool's own MOS kept as ``mos_original`` when
    it has one, each teacher's rank-normalised score as :func:`teacher_column` and ``pseudo_teachers`` (how many
    teachers scored the row). Rows no teacher scored are dropped. Returns the pool and a summary (``videos``,
    ``dropped`` with their ids, ``agreement`` rows)."""
    columns = [teacher_column(name) for name in scores]
    if len(set(columns)) != len(columns) or set(columns) & set(pool.column_names):
        raise ValueError(f"Teacher names {list(scores)} give the columns {columns}: name each teacher differently.")
    groups = list(pool[group_column])
    mos, normalised = pseudo_mos(scores, groups, low=low, high=high)
    counts = np.isfinite(np.vstack(list(normalised.values()))).sum(0)
    out = pool
    if "mos" in out.column_names:
        out = out.rename_column("mos", "mos_original")
    out = out.add_column("mos", [None if not np.isfinite(m) else float(m) for m in mos], feature=Value("float64"))
    if "mos_std" in out.column_names:
        out = out.remove_columns("mos_std")
    out = out.add_column("mos_std", [None] * len(out), feature=Value("float64"))
    for name, values in normalised.items():
        col = teacher_column(name)
        out = out.add_column(col, [None if not np.isfinite(v) else float(v) for v in values], feature=Value("float64"))
    out = out.add_column("pseudo_teachers", counts.astype(int).tolist(), feature=Value("int32"))
    keep = np.flatnonzero(counts > 0)
    dropped_ids = [str(pool[int(i)].get("video_id", i)) for i in np.flatnonzero(counts == 0)]
    if dropped_ids:
        logger.warning("%d video(s) no teacher scored are dropped, e.g. %s", len(dropped_ids), dropped_ids[:5])
        out = out.select(keep.tolist())
    base = list(dict.fromkeys([*pool.column_names, "mos", "mos_std"]))
    ordered = base + [c for c in out.column_names if c not in base]
    summary = {
        "videos": len(out),
        "dropped": len(dropped_ids),
        "dropped_videos": dropped_ids[:MAX_LISTED],
        "teachers": list(scores),
        "agreement": teacher_agreement(scores, groups),
        "low": low,
        "high": high,
    }
    return out.select_columns(ordered), summary
