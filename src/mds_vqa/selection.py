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
- ``uncertainty``: the videos whose sampled scores spread most (top-k of the standard deviation of the
  ``num_samples`` generated answers, ``<column>_std`` of a scored pool).
- ``noise_stability``: the videos whose score moves most under fixed Gaussian perturbations of the language model's
  weights (top-k of the mean ``|s_d − s|``, ``<column>_instability`` of a pool scored with ``noise_draws`` > 0).

``uncertainty`` and ``noise_stability`` take their score as ``difficulty`` (``select("uncertainty",
difficulty=spread, ...)``). Ties break on the lowest index. Distances are computed in float32 from the stored features (float32 by default),
running sums and scores in float64 with the released code's arithmetic (``g + λ·(Σ/|D|)``). Results are
deterministic on a device; across devices they agree except where two candidates' scores differ by less than
float32 rounding. :func:`select_with_details` also returns, for every pick, its g and its *diversity*: the mean Chamfer
distance to the videos picked before it (the term λ multiplies).

:func:`select_subset` selects from a pool Dataset (its ``features`` column and the strategy's score column:
``difficulty`` for ``mds``/``difficulty``, ``uncertainty`` and ``instability`` by default) and returns the subset
Dataset (:mod:`mds_vqa.selection_data`); :func:`~mds_vqa.selection_report.write_selection_report` writes its report.
:func:`select_subset_sharded` does the same for ``mds`` and ``diversity`` with the pool's features split across the
processes of a ``torch.distributed`` group (:mod:`mds_vqa.sharded_greedy`), each holding one shard on its GPU.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from .diversity import FramePool, marginal_diversity, mean_pairwise_distance, resolve_device
from .feature_column import column_values, load_feature_column
from .selection_data import (
    SubsetSelection,
    check_columns,
    difficulty_values,
    incomplete_rows,
    leave_out,
    score_column,
    subset_with_picks,
)
from .selection_inputs import (
    check_request,
    labelled_frames,
    labelled_pool,
    parse_budget,
    resolve_budget,
    selection_inputs,
    warn_tf32,
)
from .selection_report import pca_2d, plot_difficulty_distribution, plot_feature_map
from .selection_strategies import STRATEGIES, Strategy, get_strategy, register_strategy

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger(__name__)

# The strategies select_subset_sharded (and recipes/select_subset.py under torchrun) can split across processes
SHARDABLE_STRATEGIES = ("mds", "diversity")

__all__ = [
    "STRATEGIES",
    "Selection",
    "Strategy",
    "SubsetSelection",
    "select",
    "select_with_details",
    "select_subset",
    "select_subset_sharded",
    "SHARDABLE_STRATEGIES",
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
        difficulty: the per-video score of each pick (g; the sampled-score spread for ``uncertainty``, the
            weight-noise instability for ``noise_stability``; ``None`` when none was given).
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
    block: int = 1,
) -> Selection:
    """Run ``strategy`` and return a :class:`Selection` (indices in pick order, g and diversity at each pick).

    Args:
        strategy: a key of :data:`STRATEGIES` (``mds``, ``difficulty``, ``diversity``, ``coreset``, ``random``,
            ``uncertainty``, ``noise_stability``).
        difficulty: the per-video score (list, array or tensor): g, or for ``uncertainty`` / ``noise_stability``
            the sampled-score spread / the weight-noise instability; may be ``None`` for strategies that use none.
        features: per-video frame features: ``(N, F, d)``, a list of ``(F_i, d)`` or a
            :class:`~mds_vqa.diversity.FramePool`; may be ``None`` for the top-k strategies and ``random``.
        budget: an int (count) or a float in (0, 1] (fraction of the pool).
        lam: λ, the weight of the diversity term (``mds`` only), ≥ 0.
        seed: seeds ``random`` and the first ``coreset`` center.
        device: ``"cpu"``, ``"cuda"``, … (``None``: CUDA when available).
        storage_dtype: keep the pool's features in ``float32`` (default), ``float16`` or ``bfloat16``; distances are
            computed in float32 either way, from the rounded features.
        chunk_frames: pool frames per chunk of a one-vs-all pass (``None``: automatic).
        progress: show a progress bar.
        lazy: ``mds``/``diversity``/``coreset``: ``True`` computes only the distances a step needs, under an upper
            bound of every score; ``False``: one full pass over the pool per pick, with no host synchronisation per
            pick (the pick stays on the device; the picks are copied to the host once at the end). The picks are the
            same either way, up to float32 rounding of the distances. ``None`` (default): the faster one on the
            device, as measured (``benchmarks/selection.py``): lazy on CPU, one pass per pick on a GPU (where the
            lazy scheme's host synchronisations dominate: 27.3 s against 5.2 s at N = 100k on an H200 before the
            per-pick synchronisations were removed from the passes). ``coreset`` defaults to the passes everywhere
            (its lazy mode computed every distance at N = 20k on CLIP-like features, and took 1.2× as long).
        block: ``mds``/``diversity`` with ``lazy=False``: picks per pass over the pool. ``1`` (default): one pass per
            pick. ``B > 1``: one pass per ``B`` picks, the candidates of each step screened on the device against
            upper bounds of their scores, a block whose screening failed taken again with one pass per pick
            (:mod:`mds_vqa.screened_greedy`); the same picks, up to float32 rounding. It reads the pool ``B`` times
            less often, at the cost of a few dozen small device operations per pick: the mode for pools whose one
            pass costs more than those (``benchmarks/selection.py`` measures both).
        labelled_features: frame features of videos labelled before (earlier rounds, the source pool), in the
            formats of ``features``: ``mds`` and ``diversity`` then average the diversity term over them and the
            picks so far, and ``coreset`` starts with them as centers. ``None``: the released algorithm.
        compute_diversity: for strategies that do not compute it while picking (the top-k ones, ``random``), compute
            the diversity of each pick afterwards (``len(selection)`` passes over the selection).

    Raises:
        ValueError: unknown strategy, empty pool, budget ≤ 0 or above the pool size, NaN difficulty, features of
            different dimensions, non-finite features, mismatched lengths, λ < 0.
    """
    # long only through its documented arguments: the body is the checks, one strategy call and the result
    spec = check_request(strategy, lam, difficulty, features)
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise ValueError(f"block must be an integer ≥ 1 (picks per pass over the pool), got {block!r}")
    dev = resolve_device(device)
    warn_tf32(dev)
    g, pool = selection_inputs(spec, difficulty, features, storage_dtype, dev)
    labelled = labelled_pool(labelled_features, pool, storage_dtype, dev)
    count = resolve_budget(budget, len(pool) if pool is not None else len(g))
    # coreset: the lazy k-center prunes nothing on clustered CLIP-like pools (benchmarks/selection.py): passes
    lazy = (dev.type == "cpu" and strategy != "coreset") if lazy is None else lazy
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
        block=block,
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
            "block": block,
            "labelled_videos": len(labelled) if labelled is not None else 0,
            **stats,
        },
    )


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
    block: int = 1,
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
        block=block,
    ).indices


# --------------------------------------------------------------------------------------------------------------------
# Selecting from a pool Dataset
# --------------------------------------------------------------------------------------------------------------------


def select_subset(
    pool: Dataset,
    strategy: str = "mds",
    *,
    budget: int | float | str = 0.05,
    lam: float = 0.25,
    seed: int = 0,
    difficulty_column: str | None = None,
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
    block: int = 1,
) -> SubsetSelection:
    """Select from a pool Dataset: the per-video score from ``difficulty_column``, frame features from
    ``features_column``.

    ``difficulty_column`` ``None`` (default) reads the strategy's own score column
    (:attr:`~mds_vqa.selection_strategies.Strategy.score_column`: ``difficulty`` (g) for ``mds`` and ``difficulty``,
    ``uncertainty`` for ``uncertainty``, ``instability`` for ``noise_stability``; ``difficulty``, when present, for
    the others, which only report it). A strategy that needs a missing column raises ``KeyError`` naming the column
    and the strategy. ``budget`` is anything :func:`parse_budget` reads. Rows without features or with a NaN score
    (when the strategy uses them) raise ``ValueError`` naming them, or are left out with ``drop_incomplete``.
    ``compare_random`` also measures the mean pairwise distance of a seeded random subset of the same size (for the
    report). ``source`` names the pool in error messages. ``labelled``: Datasets with the ``features_column`` of videos labelled before (earlier rounds,
    the source pool): the diversity term then counts them (see :func:`select_with_details`). Returns the subset
    (pick order, with ``rank``, ``g`` (the score read), ``diversity``, ``pool_index``; the features column dropped
    unless ``keep_features``) and everything the report needs (:class:`SubsetSelection`, with the column read as
    ``score_column``). ``block``: picks per pass over the pool for ``mds``/``diversity`` (see
    :func:`select_with_details`; ``B > 1`` runs without the lazy greedy)."""
    rows = _pool_rows(
        pool,
        strategy,
        budget=budget,
        difficulty_column=difficulty_column,
        features_column=features_column,
        id_column=id_column,
        drop_incomplete=drop_incomplete,
        source=source,
    )
    pool, g_pool = rows.pool, rows.g
    frames = load_feature_column(pool, features_column) if rows.has_features else None
    features = FramePool.from_flat(*frames) if frames is not None else None
    result = select_with_details(
        strategy,
        difficulty=g_pool,
        features=features,
        budget=rows.budget,
        lam=lam,
        seed=seed,
        device=device,
        storage_dtype=storage_dtype,
        progress=progress,
        labelled_features=labelled_frames(labelled, features_column),
        lazy=False if block > 1 else None,
        block=block,
    )
    return _subset_selection(
        rows,
        result,
        frames,
        features,
        seed=seed,
        storage_dtype=storage_dtype,
        compare_random=compare_random,
        features_column=features_column,
        keep_features=keep_features,
    )


@dataclass
class _PoolRows:
    """The rows of a pool Dataset a strategy selects from (:func:`_pool_rows`)."""

    pool: Dataset  # the input pool less the rows left out
    keep: np.ndarray  # each row's position in the input pool
    dropped: dict[str, list]
    g: np.ndarray | None  # the strategy's score column (None without it)
    score_column: str
    has_features: bool
    budget: int | float  # parsed, not yet resolved against the pool size


def _pool_rows(
    pool: Dataset,
    strategy: str,
    *,
    budget,
    difficulty_column: str | None,
    features_column: str,
    id_column: str,
    drop_incomplete: bool,
    source: str,
) -> _PoolRows:
    """The strategy, budget and columns checked, the incomplete rows refused or left out, the score column read."""
    get_strategy(strategy)
    budget = parse_budget(budget)
    difficulty_column = score_column(strategy, difficulty_column)
    has_g, has_features = check_columns(
        pool, strategy, difficulty_column=difficulty_column, features_column=features_column, source=source
    )
    problems = incomplete_rows(
        pool, strategy, difficulty_column=difficulty_column, features_column=features_column, use_features=has_features
    )
    pool, keep, dropped = leave_out(pool, problems, id_column=id_column, source=source, drop=drop_incomplete)
    g_pool = difficulty_values(pool, difficulty_column) if has_g else None
    return _PoolRows(pool, keep, dropped, g_pool, difficulty_column, has_features, budget)


def _subset_selection(
    rows: _PoolRows,
    result: Selection,
    frames: tuple[np.ndarray, np.ndarray] | None,
    features: FramePool | None,
    *,
    seed: int,
    storage_dtype,
    compare_random: bool,
    features_column: str,
    keep_features: bool,
) -> SubsetSelection:
    """The subset of ``result``'s picks and what the report needs (the random subset's diversity included)."""
    pool, g_pool = rows.pool, rows.g
    random_div = None
    if compare_random and features is not None:
        order = np.random.default_rng(seed).permutation(len(pool))[: len(result.indices)]
        random_div = mean_pairwise_distance(
            marginal_diversity(features, order, device=result.device, storage_dtype=storage_dtype)
        )
    pool_index = [int(rows.keep[i]) for i in result.indices]
    subset = subset_with_picks(
        pool, result, pool_index, difficulty=g_pool, features_column=features_column, keep_features=keep_features
    )
    return SubsetSelection(
        subset, result, pool, pool_index, rows.dropped, g_pool, frames, random_div, score_column=rows.score_column
    )


# --------------------------------------------------------------------------------------------------------------------
# Selecting from a pool Dataset sharded across processes
# --------------------------------------------------------------------------------------------------------------------


def select_subset_sharded(
    pool: Dataset,
    strategy: str = "mds",
    *,
    budget: int | float | str = 0.05,
    lam: float = 0.25,
    seed: int = 0,
    difficulty_column: str | None = None,
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
    group=None,
    chunk_frames: int | None = None,
) -> SubsetSelection | None:
    """:func:`select_subset` for ``mds`` and ``diversity`` (:data:`SHARDABLE_STRATEGIES`) with the pool's features
    split across the ranks of an initialised ``torch.distributed`` group (``group``; default: the default group, as
    :func:`~mds_vqa.sharded_greedy.init_sharding` sets it up). Call it on every rank with the same arguments.

    Every rank reads the pool's columns (memory-mapped) and checks them as :func:`select_subset` does (so an invalid
    pool raises the same error on every rank), then puts only its own contiguous shard of the features
    (:func:`~mds_vqa.sharded_greedy.shard_bounds`) and its g values on ``device`` (on a GPU: this rank's; see
    :func:`~mds_vqa.sharded_greedy.init_sharding`), with the labelled videos' features when ``labelled`` names any,
    and runs :func:`~mds_vqa.sharded_greedy.sharded_greedy`. A problem with one rank's shard (non-finite features)
    raises a ``ValueError`` naming the rank and its pool rows on every rank.

    Returns, on the group's rank 0, the :class:`SubsetSelection` :func:`select_subset` returns with the same picks as
    one process computing one pass per pick (``lazy=False``; up to float32 rounding of the distances): the subset,
    the report's inputs (rank 0 reads the whole features column, memory-mapped, for the report's feature map and
    random subset, which it computes on its device); ``selection.params`` records ``lazy=False`` and the number of
    ``processes``. Returns ``None`` on every other rank."""
    import torch.distributed as dist

    from .sharded_greedy import shard_bounds, sharded_greedy

    if strategy not in SHARDABLE_STRATEGIES:
        get_strategy(strategy)  # an unknown name: the registry's error
        raise ValueError(
            f"Strategy {strategy!r} cannot be sharded across processes (only {', '.join(SHARDABLE_STRATEGIES)}): "
            "run it in one process"
        )
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("select_subset_sharded needs an initialised torch.distributed process group")
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    rows = _pool_rows(
        pool,
        strategy,
        budget=budget,
        difficulty_column=difficulty_column,
        features_column=features_column,
        id_column=id_column,
        drop_incomplete=drop_incomplete,
        source=source,
    )
    pool, g_pool = rows.pool, rows.g
    spec = check_request(strategy, lam, g_pool, features_column)
    dev = resolve_device(device)
    warn_tf32(dev)
    n = len(pool)
    count = resolve_budget(rows.budget, n)
    if n < world:
        raise ValueError(
            f"{source} has {n} videos to select from, fewer than the {world} processes: select in one process"
        )
    start, stop = shard_bounds(n, world, rank)
    frames = load_feature_column(pool, features_column) if rank == 0 else None  # for the report, on the host
    problem, shard, known = None, None, None
    try:
        if frames is not None:
            offsets = np.concatenate([[0], np.cumsum(frames[1])])
            flat = (frames[0][offsets[start] : offsets[stop]], frames[1][start:stop])
        else:
            flat = load_feature_column(pool.select(range(start, stop)), features_column)
        _, shard = selection_inputs(spec, None, FramePool.from_flat(*flat), storage_dtype, dev)
        known = labelled_pool(labelled_frames(labelled, features_column), shard, storage_dtype, dev)
    except ValueError as err:
        ends = column_values(pool.select([start, stop - 1]), id_column) if id_column in pool.column_names else None
        named = f"videos {ends[0]} … {ends[1]}, " if ends else ""
        problem = (
            f"rank {rank}'s shard of {source} ({named}pool rows {int(rows.keep[start])}–{int(rows.keep[stop - 1])}): "
            f"{err} (rows counted from the shard's first video)"
        )
    _agree_on_problems(problem, world, group)
    g_shard = g_pool[start:stop] if spec.needs_difficulty else None
    started = time.perf_counter()
    indices, diversity = sharded_greedy(
        shard, g_shard, start, count, lam, labelled=known, group=group, chunk_frames=chunk_frames, progress=progress
    )
    seconds = time.perf_counter() - started
    if rank != 0:
        return None
    result = Selection(
        strategy=strategy,
        indices=indices,
        difficulty=None if g_pool is None else g_pool[indices],
        diversity=diversity,
        seconds=seconds,
        device=str(dev),
        params={
            "budget": count,
            "lam": float(lam),
            "seed": seed,
            "storage_dtype": str(shard.frames.dtype).replace("torch.", ""),
            "lazy": False,
            "labelled_videos": len(known) if known is not None else 0,
            "distances_computed": n * (count - 1),
            "processes": world,
        },
    )
    return _subset_selection(
        rows,
        result,
        frames,
        FramePool.from_flat(*frames),
        seed=seed,
        storage_dtype=storage_dtype,
        compare_random=compare_random,
        features_column=features_column,
        keep_features=keep_features,
    )


def _agree_on_problems(problem: str | None, world: int, group) -> None:
    """Every rank's ``problem`` (``None``: none) gathered; a ``ValueError`` listing them on every rank if any."""
    import torch.distributed as dist

    problems: list[str | None] = [None] * world
    dist.all_gather_object(problems, problem, group=group)
    found = [p for p in problems if p]
    if found:
        raise ValueError("; ".join(found))
