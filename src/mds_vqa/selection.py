"""Which videos of an unlabelled pool to send to human raters: difficulty × diversity greedy selection and baselines.

``select(strategy, *, difficulty, features, budget, lam=0.25, seed=0)`` returns the picked pool indices in pick order.
Strategies (:data:`STRATEGIES`, a name → function registry, in :mod:`mds_vqa.selection_strategies`):

- ``mds``: first pick = argmax g; then each step picks the remaining video maximising
  ``g(x) + λ·(1/|D|)·Σ_{y∈D} d_CD(F_x, F_y)``. A running sum of distances per candidate replaces the released code's
  dense ``N × N`` cache: one :func:`~mds_vqa.diversity.chamfer_one_vs_all` pass per step, O(N) memory, or fewer
  distances with the lazy greedy (:mod:`mds_vqa.greedy`).
- ``difficulty``: the top-g videos (λ = 0).
- ``diversity``: the same greedy with g ≡ 0 (first pick: row 0).
- ``coreset``: k-center greedy: the first center is drawn with ``seed``, then each step picks the video farthest
  (largest min Chamfer distance) from the picked set.
- ``random``: a seeded uniform sample.

Ties break on the lowest index. Distances are computed in float32 from the stored features (float32 by default),
running sums and scores in float64 with the released code's arithmetic (``g + λ·(Σ/|D|)``). Results are
deterministic on a device; across devices they agree except where two candidates' scores differ by less than
float32 rounding. :func:`select_with_details` also returns, for every pick, its g and its *diversity*: the mean Chamfer
distance to the videos picked before it (the term λ multiplies).

:func:`select_subset` selects from a pool Dataset (its ``difficulty`` and ``features`` columns) and returns the subset
Dataset (:mod:`mds_vqa.selection_data`); :func:`~mds_vqa.selection_report.write_selection_report` writes its report.
"""

from __future__ import annotations

import logging
import math
import numbers
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from .diversity import FramePool, marginal_diversity, mean_pairwise_distance, resolve_device
from .feature_column import load_feature_column
from .reporting import MAX_LISTED
from .selection_data import (
    SubsetSelection,
    check_columns,
    difficulty_values,
    incomplete_rows,
    leave_out,
    subset_with_picks,
)
from .selection_report import pca_2d, plot_difficulty_distribution, plot_feature_map
from .selection_strategies import STRATEGIES, Strategy, get_strategy, register_strategy

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger(__name__)

__all__ = [
    "STRATEGIES",
    "Selection",
    "Strategy",
    "SubsetSelection",
    "select",
    "select_with_details",
    "select_subset",
    "register_strategy",
    "resolve_budget",
    "parse_budget",
    "marginal_diversity",
    "mean_pairwise_distance",
    "pca_2d",
    "plot_feature_map",
    "plot_difficulty_distribution",
]


@dataclass
class Selection:
    """The result of one selection run.

    Attributes:
        strategy: the strategy name.
        indices: pool rows in pick order.
        difficulty: g of each pick (``None`` when no difficulty was given).
        diversity: mean Chamfer distance of each pick to the videos picked before it (NaN for the first pick;
            ``None`` when no features were given).
        seconds: wall time of the selection itself.
        device: where the distances were computed.
        params: budget, λ, seed, storage dtype, and for ``mds``/``diversity`` ``distances_computed``: the number of
            video-to-video Chamfer distances the greedy computed (one pass per pick computes ``N·(B − 1)``).
    """

    strategy: str
    indices: list[int]
    difficulty: np.ndarray | None = None
    diversity: np.ndarray | None = None
    seconds: float = 0.0
    device: str = "cpu"
    params: dict = field(default_factory=dict)

    def objective(self, lam: float) -> np.ndarray | None:
        """``g + λ·diversity`` at each pick (the MDS score; g alone for the first pick)."""
        if self.difficulty is None or self.diversity is None:
            return None
        div = np.nan_to_num(self.diversity, nan=0.0)
        return self.difficulty + lam * div


# --------------------------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------------------------


def resolve_budget(budget: int | float, pool_size: int) -> int:
    """Number of videos to pick: an ``int`` is a count, a ``float`` in (0, 1] a fraction of the pool (rounded to the
    nearest count, half up, at least 1). Raises ``ValueError`` for ≤ 0, a count above the pool size, or a float
    outside (0, 1]."""
    if isinstance(budget, bool) or not isinstance(budget, numbers.Real):
        raise ValueError(f"budget must be an int (a count) or a float in (0, 1] (a fraction), got {budget!r}")
    if pool_size <= 0:
        raise ValueError("The pool is empty: nothing to select from.")
    if isinstance(budget, numbers.Integral):
        count = int(budget)
    else:
        frac = float(budget)
        if not math.isfinite(frac) or frac <= 0:
            raise ValueError(f"budget must be positive, got {budget!r}")
        if frac > 1:
            raise ValueError(
                f"A float budget is a fraction of the pool in (0, 1], got {budget!r}; pass an int for a count"
            )
        count = max(1, math.floor(frac * pool_size + 0.5))
    if count <= 0:
        raise ValueError(f"budget must be positive, got {budget!r}")
    if count > pool_size:
        raise ValueError(f"budget {count} exceeds the pool size {pool_size}")
    return count


def parse_budget(text: str | int | float) -> int | float:
    """A budget from a config or the command line: ``"100"`` → 100 videos, ``"0.05"`` or ``"5%"`` → 5 % of the pool."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return text
    raw = str(text).strip()
    try:
        if raw.endswith("%"):
            return float(raw[:-1]) / 100.0
        if any(c in raw for c in ".eE"):
            return float(raw)
        return int(raw)
    except ValueError:
        raise ValueError(
            f"budget must be a count (100), a fraction (0.05) or a percentage (5%), got {text!r}"
        ) from None


def _as_values(difficulty) -> np.ndarray:
    if isinstance(difficulty, torch.Tensor):
        difficulty = difficulty.detach().cpu().numpy()
    elif isinstance(difficulty, (list, tuple)):
        difficulty = [np.nan if v is None else v for v in difficulty]
    g = np.asarray(difficulty, dtype=np.float64)
    if g.ndim != 1:
        raise ValueError(f"difficulty must be one value per video, got shape {g.shape}")
    return g


def _check_difficulty(g: np.ndarray) -> None:
    if g.size == 0:
        raise ValueError("The pool is empty: difficulty has no value.")
    bad = np.flatnonzero(~np.isfinite(g))
    if bad.size:
        raise ValueError(
            f"difficulty is NaN or infinite at {bad.size} row(s): {bad[:MAX_LISTED].tolist()}"
            f"{' …' if bad.size > MAX_LISTED else ''} (a parse failure of g?); drop or rescore them first"
        )


# --------------------------------------------------------------------------------------------------------------------
# Running a strategy
# --------------------------------------------------------------------------------------------------------------------


def select_with_details(
    strategy: str = "mds",
    *,
    difficulty=None,
    features=None,
    budget: int | float = 0.05,
    lam: float = 0.25,
    seed: int = 0,
    device: str | torch.device | None = None,
    storage_dtype: str | torch.dtype | None = None,
    chunk_frames: int | None = None,
    progress: bool = False,
    compute_diversity: bool = True,
    lazy: bool | None = None,
    labelled_features=None,
) -> Selection:
    """Run ``strategy`` and return a :class:`Selection` (indices in pick order, g and diversity at each pick).

    Args:
        strategy: a key of :data:`STRATEGIES` (``mds``, ``difficulty``, ``diversity``, ``coreset``, ``random``).
        difficulty: g per video (list, array or tensor); may be ``None`` for strategies that do not use it.
        features: per-video frame features: ``(N, F, d)``, a list of ``(F_i, d)`` or a
            :class:`~mds_vqa.diversity.FramePool`; may be ``None`` for ``difficulty`` and ``random``.
        budget: an int (count) or a float in (0, 1] (fraction of the pool).
        lam: λ, the weight of the diversity term (``mds`` only), ≥ 0.
        seed: seeds ``random`` and the first ``coreset`` center.
        device: ``"cpu"``, ``"cuda"``, … (``None``: CUDA when available).
        storage_dtype: keep the pool's features in ``float32`` (default), ``float16`` or ``bfloat16``; distances are
            computed in float32 either way, from the rounded features.
        chunk_frames: pool frames per chunk of a one-vs-all pass (``None``: automatic).
        progress: show a progress bar.
        lazy: ``mds``/``diversity``: ``True`` computes only the distances a step needs, under an upper bound of
            every score; ``False``: one full pass over the pool per pick. The picks are the same either way, up to
            float32 rounding of the distances. ``None`` (default): the faster one on the device, as measured
            (``benchmarks/selection.py``): lazy on CPU, one pass per pick on a GPU (5.2 s against 27.3 s at
            N = 100k on an H200, where the lazy scheme's host synchronisations dominate).
        labelled_features: frame features of videos labelled before (earlier rounds, the source pool), in the
            formats of ``features``: ``mds`` and ``diversity`` then average the diversity term over them and the
            picks so far, and ``coreset`` starts with them as centers. ``None``: the released algorithm.
        compute_diversity: for strategies that do not compute it while picking (``difficulty``, ``random``), compute
            the diversity of each pick afterwards (``len(selection)`` passes over the selection).

    Raises:
        ValueError: unknown strategy, empty pool, budget ≤ 0 or above the pool size, NaN difficulty, features of
            different dimensions, non-finite features, mismatched lengths, λ < 0.
    """
    spec = _check_request(strategy, lam, difficulty, features)
    dev = resolve_device(device)
    _warn_tf32(dev)
    g, pool = _inputs(spec, difficulty, features, storage_dtype, dev)
    labelled = _labelled_pool(labelled_features, pool, storage_dtype, dev)
    count = resolve_budget(budget, len(pool) if pool is not None else len(g))
    lazy = dev.type == "cpu" if lazy is None else lazy
    start = time.perf_counter()
    stats: dict = {}
    indices, diversity = spec.fn(
        g,
        pool,
        count,
        lam=float(lam),
        seed=seed,
        device=dev,
        progress=progress,
        chunk_frames=chunk_frames,
        lazy=lazy,
        stats=stats,
        labelled=labelled,
    )
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - start
    if diversity is None and pool is not None and compute_diversity:
        diversity = marginal_diversity(pool, indices, device=dev, chunk_frames=chunk_frames)
    return Selection(
        strategy=strategy,
        indices=indices,
        difficulty=None if g is None else g[indices],
        diversity=diversity,
        seconds=seconds,
        device=str(dev),
        params={
            "budget": count,
            "lam": float(lam),
            "seed": seed,
            "storage_dtype": str(pool.frames.dtype).replace("torch.", "") if pool is not None else None,
            "lazy": lazy,
            "labelled_videos": len(labelled) if labelled is not None else 0,
            **stats,
        },
    )


def _check_request(strategy: str, lam, difficulty, features) -> Strategy:
    """The strategy, once its name, λ and the presence of the inputs it needs are checked."""
    spec = get_strategy(strategy)
    if not isinstance(lam, numbers.Real) or not math.isfinite(lam) or lam < 0:
        raise ValueError(f"lam (λ) must be a finite number ≥ 0, got {lam!r}")
    if spec.needs_difficulty and difficulty is None:
        raise ValueError(f"Strategy {strategy!r} needs the difficulty g of every video (difficulty=None)")
    if spec.needs_features and features is None:
        raise ValueError(f"Strategy {strategy!r} needs the frame features of every video (features=None)")
    if difficulty is None and features is None:
        raise ValueError("Give difficulty or features: the pool size is unknown")
    return spec


def _warn_tf32(device: torch.device) -> None:
    """Warn when CUDA float32 products run in TF32: distances lose precision and picks may change."""
    if device.type == "cuda" and torch.get_float32_matmul_precision() != "highest":
        logger.warning(
            "torch float32 matmul precision is %r (TF32): distances lose precision and picks may change; "
            "call torch.set_float32_matmul_precision('highest') for fp32 distances.",
            torch.get_float32_matmul_precision(),
        )


def _labelled_pool(labelled_features, pool: FramePool | None, storage_dtype, device) -> FramePool | None:
    """The labelled videos' features as a pool like the candidates' (``None`` when there are none)."""
    if labelled_features is None or len(labelled_features) == 0:
        return None
    if pool is None:
        raise ValueError("labelled_features needs the candidates' features too (features=None)")
    labelled = FramePool.from_features(labelled_features, dtype=storage_dtype, device=device)
    if labelled.dim != pool.dim:
        raise ValueError(f"labelled_features have dimension {labelled.dim} but the pool's features {pool.dim}")
    return labelled


def _inputs(
    spec: Strategy, difficulty, features, storage_dtype, device: torch.device
) -> tuple[np.ndarray | None, FramePool | None]:
    """g as float64 values (checked finite when the strategy uses it) and the features as a pool on ``device``."""
    g = None
    if difficulty is not None:
        g = _as_values(difficulty)
        if spec.needs_difficulty:
            _check_difficulty(g)
    pool = None
    if features is not None:
        pool = FramePool.from_features(features, dtype=storage_dtype, device=device)
    n = len(pool) if pool is not None else len(g)
    if n == 0:
        raise ValueError("The pool is empty: nothing to select from.")
    if g is not None and pool is not None and len(g) != len(pool):
        raise ValueError(f"difficulty has {len(g)} values but features describe {len(pool)} videos")
    return g, pool


def select(
    strategy: str = "mds",
    *,
    difficulty=None,
    features=None,
    budget: int | float = 0.05,
    lam: float = 0.25,
    seed: int = 0,
    device: str | torch.device | None = None,
    storage_dtype: str | torch.dtype | None = None,
    chunk_frames: int | None = None,
    progress: bool = False,
    lazy: bool | None = None,
    labelled_features=None,
) -> list[int]:
    """Pool indices picked by ``strategy``, in pick order. Same arguments as :func:`select_with_details`."""
    return select_with_details(
        strategy,
        difficulty=difficulty,
        features=features,
        budget=budget,
        lam=lam,
        seed=seed,
        device=device,
        storage_dtype=storage_dtype,
        chunk_frames=chunk_frames,
        progress=progress,
        compute_diversity=False,
        lazy=lazy,
        labelled_features=labelled_features,
    ).indices


# --------------------------------------------------------------------------------------------------------------------
# Selecting from a pool Dataset
# --------------------------------------------------------------------------------------------------------------------


def _labelled_frames(labelled: Sequence[Dataset], column: str) -> FramePool | None:
    """The frame features of every labelled Dataset as one pool (``None`` without any)."""
    parts = [load_feature_column(ds, column) for ds in labelled if len(ds)]
    if not parts:
        return None
    return FramePool.from_flat(np.concatenate([f for f, _ in parts]), np.concatenate([n for _, n in parts]))


def select_subset(
    pool: Dataset,
    strategy: str = "mds",
    *,
    budget: int | float | str = 0.05,
    lam: float = 0.25,
    seed: int = 0,
    difficulty_column: str = "difficulty",
    features_column: str = "features",
    id_column: str = "video_id",
    device: str | torch.device | None = "auto",
    storage_dtype: str | torch.dtype | None = "float32",
    drop_incomplete: bool = False,
    keep_features: bool = False,
    compare_random: bool = True,
    progress: bool = True,
    source: str = "the pool",
    labelled: Sequence[Dataset] = (),
) -> SubsetSelection:
    """Select from a pool Dataset: g from ``difficulty_column``, frame features from ``features_column``.

    ``budget`` is anything :func:`parse_budget` reads. Rows without features or with a NaN g (when the strategy uses
    them) raise ``ValueError`` naming them, or are left out with ``drop_incomplete``. ``compare_random`` also measures
    the mean pairwise distance of a seeded random subset of the same size (for the report). ``source`` names the pool
    in error messages. ``labelled``: Datasets with the ``features_column`` of videos labelled before (earlier rounds,
    the source pool): the diversity term then counts them (see :func:`select_with_details`). Returns the subset (pick order, with ``rank``, ``g``, ``diversity``, ``pool_index``; the
    features column dropped unless ``keep_features``) and everything the report needs (:class:`SubsetSelection`).
    """
    get_strategy(strategy)
    budget = parse_budget(budget)
    has_g, has_features = check_columns(
        pool, strategy, difficulty_column=difficulty_column, features_column=features_column, source=source
    )
    problems = incomplete_rows(
        pool, strategy, difficulty_column=difficulty_column, features_column=features_column, use_features=has_features
    )
    pool, keep, dropped = leave_out(pool, problems, id_column=id_column, source=source, drop=drop_incomplete)
    g_pool = difficulty_values(pool, difficulty_column) if has_g else None
    frames = load_feature_column(pool, features_column) if has_features else None
    features = FramePool.from_flat(*frames) if frames is not None else None
    result = select_with_details(
        strategy,
        difficulty=g_pool,
        features=features,
        budget=budget,
        lam=lam,
        seed=seed,
        device=device,
        storage_dtype=storage_dtype,
        progress=progress,
        labelled_features=_labelled_frames(labelled, features_column),
    )
    random_div = None
    if compare_random and features is not None:
        order = np.random.default_rng(seed).permutation(len(pool))[: len(result.indices)]
        random_div = mean_pairwise_distance(
            marginal_diversity(features, order, device=result.device, storage_dtype=storage_dtype)
        )
    pool_index = [int(keep[i]) for i in result.indices]
    subset = subset_with_picks(
        pool, result, pool_index, difficulty=g_pool, features_column=features_column, keep_features=keep_features
    )
    return SubsetSelection(subset, result, pool, pool_index, dropped, g_pool, frames, random_div)
