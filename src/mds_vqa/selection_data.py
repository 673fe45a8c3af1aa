"""The Dataset side of a selection: the inputs a strategy reads from a pool's columns, and the subset written back.

:func:`mds_vqa.selection.select_subset` runs these steps around :func:`mds_vqa.selection.select_with_details`:
:func:`score_column` (which column holds the strategy's per-video score), :func:`check_columns` (the strategy's
columns exist), :func:`incomplete_rows` and :func:`leave_out` (rows without features or with a NaN score),
:func:`difficulty_values`, then :func:`subset_with_picks` (the picked rows in pick order with ``rank``, ``g``,
``diversity`` and ``pool_index``). The result is a :class:`SubsetSelection`.

The per-video score is the failure predictor's difficulty g for ``mds`` and ``difficulty``, the spread of the sampled
scores for ``uncertainty`` and the weight-noise instability for ``noise_stability``; the ``g`` column of the subset
holds whichever the strategy ranked by.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .feature_column import column_values, missing_feature_rows
from .reporting import MAX_LISTED
from .selection_strategies import get_strategy

if TYPE_CHECKING:
    from datasets import Dataset

    from .selection import Selection

logger = logging.getLogger(__name__)

__all__ = [
    "PICK_COLUMNS",
    "SubsetSelection",
    "check_columns",
    "difficulty_values",
    "incomplete_rows",
    "leave_out",
    "score_column",
    "subset_with_picks",
]

PICK_COLUMNS = ("rank", "g", "diversity", "pool_index")
# The suffix of the column recipes/score.py writes each strategy's score to (after its --score_column)
_SCORE_SUFFIXES = {"uncertainty": "_std", "noise_stability": "_instability"}


@dataclass
class SubsetSelection:
    """A selected subset and what its report needs.

    Attributes:
        subset: the picked rows in pick order, with the :data:`PICK_COLUMNS`.
        selection: the :class:`~mds_vqa.selection.Selection` (indices into ``pool``).
        pool: the rows the strategy chose from (the input pool less the rows left out).
        pool_index: for each pick, its row in the input pool.
        dropped: rows left out, by reason, as video ids (row numbers without an id column).
        difficulty: the per-video score of every row of ``pool`` (g for ``mds``/``difficulty``; ``None`` without
            its column).
        frames: the features of ``pool`` as ``(frames, lengths)`` (``None`` without a features column).
        random_diversity: mean pairwise Chamfer distance of a seeded random subset of the same size (``None`` when
            not computed).
        score_column: the column ``difficulty`` was read from (see :func:`score_column`).
    """

    subset: Dataset
    selection: Selection
    pool: Dataset
    pool_index: list[int]
    dropped: dict[str, list] = field(default_factory=dict)
    difficulty: np.ndarray | None = None
    frames: tuple[np.ndarray, np.ndarray] | None = None
    random_diversity: float | None = None
    score_column: str | None = None


def score_column(strategy: str, column: str | None = None) -> str:
    """The pool column holding ``strategy``'s per-video score: ``column`` when given, else the strategy's own
    (:attr:`~mds_vqa.selection_strategies.Strategy.score_column`: ``difficulty`` for ``mds`` and ``difficulty``,
    ``uncertainty``, ``instability``), else ``difficulty`` (g, read when present only to report it)."""
    if column is not None:
        return column
    return get_strategy(strategy).score_column or "difficulty"


def check_columns(
    ds: Dataset, strategy: str, *, difficulty_column: str, features_column: str, source: str
) -> tuple[bool, bool]:
    """Whether ``ds`` has the score (``difficulty_column``) and the features column; ``KeyError`` naming the column
    and the strategy when ``strategy`` needs a missing one (``source`` names the pool in the message)."""
    spec = get_strategy(strategy)
    has_g = difficulty_column in ds.column_names
    has_features = features_column in ds.column_names
    if spec.needs_difficulty and not has_g:
        suffix = _SCORE_SUFFIXES.get(strategy)
        where = (
            f" (its per-video score: recipes/score.py writes it as '<score_column>{suffix}', e.g. 'score{suffix}'; "
            "name it with difficulty_column)"
            if suffix
            else ""
        )
        raise KeyError(f"Strategy {strategy!r} needs a {difficulty_column!r} column in {source}{where}")
    if spec.needs_features and not has_features:
        raise KeyError(
            f"Strategy {strategy!r} needs a {features_column!r} column in {source} "
            "(run recipes/extract_features.py first)"
        )
    return has_g, has_features


def difficulty_values(ds: Dataset, column: str) -> np.ndarray:
    """A score column (g, or the strategy's per-video score) as float64, ``None`` as NaN."""
    return np.asarray([np.nan if v is None else v for v in column_values(ds, column)], dtype=np.float64)


def incomplete_rows(
    ds: Dataset, strategy: str, *, difficulty_column: str, features_column: str, use_features: bool
) -> dict[str, list[int]]:
    """Rows ``strategy`` cannot use, by reason: no features (when ``use_features``), a NaN score (when it needs
    one)."""
    problems: dict[str, list[int]] = {}
    if use_features:
        missing = missing_feature_rows(ds, features_column)
        if missing:
            problems[f"no {features_column!r}"] = missing
    if get_strategy(strategy).needs_difficulty:
        bad = np.flatnonzero(~np.isfinite(difficulty_values(ds, difficulty_column))).tolist()
        if bad:
            problems[f"NaN {difficulty_column!r}"] = bad
    return problems


def leave_out(
    ds: Dataset, problems: dict[str, list[int]], *, id_column: str, source: str, drop: bool
) -> tuple[Dataset, np.ndarray, dict[str, list]]:
    """The rows of ``ds`` without ``problems``: ``(rows, their positions in ds, problems as ids)``.

    Raises ``ValueError`` listing the problems unless ``drop`` (then they are logged and left out)."""
    keep = np.arange(len(ds))
    if not problems:
        return ds, keep, problems
    ids = column_values(ds, id_column) if id_column in ds.column_names else list(range(len(ds)))
    text = "; ".join(
        f"{what}: {len(rows)} rows, e.g. {[ids[i] for i in rows[:MAX_LISTED]]}" for what, rows in problems.items()
    )
    if not drop:
        raise ValueError(f"Incomplete rows in {source}: {text}. Pass --drop_incomplete true to leave them out.")
    logger.warning("Leaving out incomplete rows: %s", text)
    bad = sorted({i for rows in problems.values() for i in rows})
    keep = np.setdiff1d(keep, bad)
    return ds.select(keep.tolist()), keep, {what: [ids[i] for i in rows] for what, rows in problems.items()}


def subset_with_picks(
    pool: Dataset,
    selection: Selection,
    pool_index: list[int],
    *,
    difficulty: np.ndarray | None,
    features_column: str,
    keep_features: bool,
) -> Dataset:
    """The picked rows of ``pool`` in pick order with the :data:`PICK_COLUMNS` (replacing columns of those names):
    ``rank`` (1 = first pick), ``g`` (the strategy's per-video score), ``diversity`` (NaN/absent as null) and
    ``pool_index``. The features column is
    removed unless ``keep_features``."""
    picks = selection.indices
    subset = pool.select(picks)
    if not keep_features and features_column in subset.column_names:
        subset = subset.remove_columns(features_column)
    subset = subset.flatten_indices()
    for name in PICK_COLUMNS:
        if name in subset.column_names:
            subset = subset.remove_columns(name)
    diversity = selection.diversity
    subset = subset.add_column("rank", list(range(1, len(picks) + 1)))
    subset = subset.add_column(
        "g", [None] * len(picks) if difficulty is None else [float(v) for v in difficulty[picks]]
    )
    subset = subset.add_column(
        "diversity",
        [None] * len(picks) if diversity is None else [None if not np.isfinite(v) else float(v) for v in diversity],
    )
    return subset.add_column("pool_index", pool_index)
