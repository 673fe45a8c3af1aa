"""Which videos of an unlabelled pool to send to human raters: difficulty × diversity greedy selection and baselines.

``select(strategy, *, difficulty, features, budget, lam=0.25, seed=0)`` returns the picked pool indices in pick order.
Strategies (:data:`STRATEGIES`, a name → function registry):

- ``mds``: first pick = argmax g; then each step picks the remaining video maximising
  ``g(x) + λ·(1/|D|)·Σ_{y∈D} d_CD(F_x, F_y)``. A running sum of distances per candidate replaces the released code's
  dense ``N × N`` cache: one :func:`~mds_vqa.diversity.chamfer_one_vs_all` pass per step, O(N) memory.
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
"""

from __future__ import annotations

import logging
import math
import numbers
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from .diversity import FramePool, chamfer_many_vs_all, chamfer_one_vs_all

logger = logging.getLogger(__name__)

__all__ = [
    "STRATEGIES",
    "Selection",
    "Strategy",
    "select",
    "select_with_details",
    "resolve_budget",
    "parse_budget",
    "marginal_diversity",
    "mean_pairwise_distance",
]

_MAX_LISTED = 20


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


@dataclass(frozen=True)
class Strategy:
    """A registered strategy: the function and which inputs it needs."""

    fn: Callable
    needs_difficulty: bool
    needs_features: bool
    description: str


STRATEGIES: dict[str, Strategy] = {}


def register_strategy(name: str, *, needs_difficulty: bool, needs_features: bool, description: str):
    """Decorator: add a strategy ``fn(g, pool, budget, *, lam, seed, device, progress, chunk_frames, lazy,
    stats)`` to the registry; it returns ``(indices, diversity_or_None)`` and may record counters in the ``stats``
    dict (they land in :attr:`Selection.params`)."""

    def wrap(fn: Callable) -> Callable:
        STRATEGIES[name] = Strategy(fn, needs_difficulty, needs_features, description)
        return fn

    return wrap


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
            f"difficulty is NaN or infinite at {bad.size} row(s): {bad[:_MAX_LISTED].tolist()}"
            f"{' …' if bad.size > _MAX_LISTED else ''} (a parse failure of g?); drop or rescore them first"
        )


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# --------------------------------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------------------------------


def _argmax_lowest(score: torch.Tensor) -> int:
    # torch.argmax returns the first maximal index (documented), i.e. ties break on the lowest index.
    return int(torch.argmax(score))


class _PickedSet:
    """The frames of the videos picked so far, in pick order, in one growing buffer (a :class:`FramePool` view)."""

    def __init__(self, pool: FramePool, capacity_videos: int):
        self.pool = pool
        f = pool.uniform_length or int(pool.lengths.max())
        rows = max(1, capacity_videos) * f
        self.frames = torch.empty(rows, pool.dim, dtype=pool.frames.dtype, device=pool.device)
        self.sq_norms = torch.empty(rows, dtype=torch.float32, device=pool.device)
        self.offsets = [0]  # frame offset of each pick in the buffer, and the end

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def add(self, i: int) -> None:
        """Append pool video ``i``."""
        f0, f1 = int(self.pool.offsets[i]), int(self.pool.offsets[i + 1])
        start, stop = self.offsets[-1], self.offsets[-1] + f1 - f0
        if stop > self.frames.shape[0]:  # a ragged pool outgrew the estimate: double the buffer
            grow = max(stop, 2 * self.frames.shape[0])
            self.frames = torch.cat([self.frames, self.frames.new_empty(grow - self.frames.shape[0], self.pool.dim)])
            self.sq_norms = torch.cat([self.sq_norms, self.sq_norms.new_empty(grow - self.sq_norms.shape[0])])
        self.frames[start:stop] = self.pool.frames[f0:f1]
        self.sq_norms[start:stop] = self.pool.sq_norms[f0:f1]
        self.offsets.append(stop)

    def view(self, start: int, stop: int) -> FramePool:
        """Picks ``start … stop − 1`` as a pool (no copy)."""
        f0, f1 = self.offsets[start], self.offsets[stop]
        lengths = torch.tensor(np.diff(self.offsets[start : stop + 1]), dtype=torch.int64)
        return FramePool._validated(self.frames[f0:f1], lengths, self.sq_norms[f0:f1])


class _LazySums:
    """Per-candidate float64 sums of Chamfer distances to the picked videos, computed only where a step needs them.

    ``partial[x]`` is the sum of ``x``'s distances to the first ``known[x]`` picks. Every distance ``d(x, p)`` is
    bounded by ``a_x + a_p`` (:meth:`FramePool.distance_bounds`), so the unknown rest of a sum is bounded without
    computing it; a step brings a candidate up to date only when its bound can still beat the best exact score.
    A candidate's distances are computed once each; when the candidates of a step need at least half of what
    whole-pool passes would compute, whole-pool passes update every video at once (no copy of the candidates'
    frames), so the work stays below about twice that of one pool pass per pick, and far below it when g matters."""

    def __init__(self, pool: FramePool, budget: int, *, chunk_frames: int | None):
        n = len(pool)
        device = pool.device
        self.pool = pool
        self.chunk_frames = chunk_frames
        self.partial = torch.zeros(n, dtype=torch.float64, device=device)
        self.known = torch.zeros(n, dtype=torch.int64, device=device)
        self.bounds = pool.distance_bounds()
        self.picked = _PickedSet(pool, budget)
        self.cum_bounds = torch.zeros(budget + 1, dtype=torch.float64, device=device)  # Σ a_p over the first j picks
        self.computed = 0  # distances computed

    def add(self, pick: int) -> None:
        """Record a new pick."""
        j = len(self.picked)
        self.cum_bounds[j + 1] = self.cum_bounds[j] + self.bounds[pick]
        self.picked.add(pick)

    def upper_bound(self, out: torch.Tensor) -> torch.Tensor:
        """An upper bound of every candidate's full sum (exact for the known part), written into ``out``."""
        k = len(self.picked)
        rest = self.bounds * (k - self.known) + (self.cum_bounds[k] - self.cum_bounds[self.known])
        return torch.add(self.partial, rest, out=out)

    def update(self, cand: torch.Tensor) -> torch.Tensor:
        """Bring the candidates ``cand`` up to date; returns their exact float64 sums."""
        k = len(self.picked)
        n = len(self.pool)
        known = self.known[cand]
        missing = int((k - known).sum())
        if missing == 0:
            return self.partial[cand]
        lo = int(known.min())
        if 2 * missing >= n * (k - lo):  # cheaper as whole-pool passes over the picks lo … k − 1
            self._update_all(lo)
            return self.partial[cand]
        for start in torch.unique(known).tolist():  # candidates as queries against the picks they have not met yet
            if start >= k:
                continue
            rows = cand[known == start]
            queries = self.pool.subset(rows).as_queries()
            dist = chamfer_many_vs_all(queries, self.picked.view(start, k), chunk_frames=self.chunk_frames)
            self.partial[rows] += dist.to(torch.float64).sum(dim=0)
            self.known[rows] = k
            self.computed += rows.numel() * (k - start)
        return self.partial[cand]

    def _update_all(self, lo: int) -> None:
        """Whole-pool passes over picks ``lo … k − 1`` (a block of 32 at a time): every video that has met the
        picks before ``lo`` is brought up to date."""
        k = len(self.picked)
        n = len(self.pool)
        rows = self.known >= lo
        for b0 in range(lo, k, 32):
            b1 = min(k, b0 + 32)
            queries = self.picked.view(b0, b1).as_queries()
            dist = chamfer_many_vs_all(queries, self.pool, chunk_frames=self.chunk_frames)
            needed = torch.arange(b0, b1, device=dist.device)[None, :] >= self.known[:, None]
            needed &= rows[:, None]
            self.partial += torch.where(needed, dist.to(torch.float64), 0.0).sum(dim=1)
            self.computed += n * (b1 - b0)
        self.known[rows] = k


def _greedy_mean_distance(
    g: torch.Tensor,
    pool: FramePool,
    budget: int,
    lam: float,
    *,
    progress: bool,
    chunk_frames: int | None,
    desc: str,
    lazy: bool = True,
    stats: dict | None = None,
) -> tuple[list[int], np.ndarray]:
    """The MDS greedy: argmax of ``g + λ·(Σ_{y∈D} d(x, y))/|D|`` over the remaining candidates at every step.

    ``lazy=False``: one :func:`~mds_vqa.diversity.chamfer_one_vs_all` pass over the pool per pick (a running sum per
    candidate). ``lazy=True`` (default): the same picks, up to float32 rounding of the distances, computing only the
    distances a step needs (:class:`_LazySums`): candidates are visited in order of an upper bound of their score
    until the bound of the next one falls below the best exact score."""
    stats = {} if stats is None else stats
    if not lazy:
        stats["distances_computed"] = len(pool) * (budget - 1)
        return _greedy_mean_distance_passes(
            g, pool, budget, lam, progress=progress, chunk_frames=chunk_frames, desc=desc
        )
    n = len(pool)
    state = _LazySums(pool, budget, chunk_frames=chunk_frames)
    ub = torch.empty(n, dtype=torch.float64, device=pool.device)
    checked = torch.zeros(n, dtype=torch.bool, device=pool.device)
    taken = torch.zeros(n, dtype=torch.bool, device=pool.device)
    pick = _argmax_lowest(g)
    order, diversity = [pick], [float("nan")]
    taken[pick] = True
    state.add(pick)
    width = 32
    with tqdm(total=budget, initial=1, desc=desc, unit="pick", disable=not progress) as bar:
        for k in range(1, budget):
            # upper bounds: the same float operations as the exact score on a larger sum (rounding is monotone)
            state.upper_bound(ub).div_(k).mul_(lam).add_(g).masked_fill_(taken, float("-inf"))
            checked.zero_()
            best_val, best_idx, best_sum = float("-inf"), -1, 0.0
            t = min(n, width)
            while True:
                vals, idx = torch.topk(ub, t)
                fresh = idx[~checked[idx] & (vals >= best_val) & (vals > float("-inf"))]
                if fresh.numel():
                    checked[fresh] = True
                    sums = state.update(fresh)
                    exact = (sums / k).mul_(lam).add_(g[fresh])
                    top = float(exact.max())
                    if top >= best_val:
                        cand = int(fresh[exact == top].min())
                        if top > best_val or cand < best_idx:
                            best_val, best_idx = top, cand
                            best_sum = float(state.partial[cand])
                floor = float(vals[-1])
                if floor < best_val or floor == float("-inf") or t == n:
                    break
                t = n if 8 * t > n else 2 * t  # past an eighth of the pool: all at once
            width = t if t == n else max(32, t // 2)  # the next step likely needs about as many
            pick = best_idx
            order.append(pick)
            diversity.append(best_sum / k)
            taken[pick] = True
            state.add(pick)
            bar.update(1)
    stats["distances_computed"] = state.computed
    logger.debug(
        "%s: %d distances computed for %d picks (one pass per pick: %d)",
        desc,
        state.computed,
        budget,
        n * (budget - 1),
    )
    return order, np.asarray(diversity, dtype=np.float64)


def _greedy_mean_distance_passes(
    g: torch.Tensor, pool: FramePool, budget: int, lam: float, *, progress: bool, chunk_frames: int | None, desc: str
) -> tuple[list[int], np.ndarray]:
    """The MDS greedy with one one-vs-all pass per step: running float64 sum of distances per candidate."""
    n = len(pool)
    device = pool.device
    sums = torch.zeros(n, dtype=torch.float64, device=device)
    dist = torch.empty(n, dtype=torch.float32, device=device)
    score = torch.empty(n, dtype=torch.float64, device=device)
    taken = torch.zeros(n, dtype=torch.bool, device=device)
    pick = _argmax_lowest(g)
    order, diversity = [pick], [float("nan")]
    taken[pick] = True
    with tqdm(total=budget, initial=1, desc=desc, unit="pick", disable=not progress) as bar:
        for k in range(1, budget):
            chamfer_one_vs_all(pool.video(pick), pool, chunk_frames=chunk_frames, out=dist)
            sums.add_(dist)
            torch.div(sums, k, out=score)  # same arithmetic as the reference: g + λ·(Σ/|D|)
            score.mul_(lam).add_(g).masked_fill_(taken, float("-inf"))
            pick = _argmax_lowest(score)
            order.append(pick)
            diversity.append(float(sums[pick]) / k)
            taken[pick] = True
            bar.update(1)
    return order, np.asarray(diversity, dtype=np.float64)


@register_strategy(
    "mds", needs_difficulty=True, needs_features=True, description="difficulty × diversity greedy (MDS-VQA)"
)
def _mds(g, pool, budget, *, lam, seed, device, progress, chunk_frames, lazy=True, stats=None):
    g_t = torch.as_tensor(g, dtype=torch.float64, device=device)
    return _greedy_mean_distance(
        g_t, pool, budget, lam, progress=progress, chunk_frames=chunk_frames, desc="mds", lazy=lazy, stats=stats
    )


@register_strategy("diversity", needs_difficulty=False, needs_features=True, description="the MDS greedy with g ≡ 0")
def _diversity(g, pool, budget, *, lam, seed, device, progress, chunk_frames, lazy=True, stats=None):
    zeros = torch.zeros(len(pool), dtype=torch.float64, device=device)
    # With g ≡ 0 the score is λ·mean distance; λ only scales it, so use 1 (any λ > 0 gives the same order).
    return _greedy_mean_distance(
        zeros, pool, budget, 1.0, progress=progress, chunk_frames=chunk_frames, desc="div", lazy=lazy, stats=stats
    )


@register_strategy("difficulty", needs_difficulty=True, needs_features=False, description="top-g (λ = 0)")
def _difficulty(g, pool, budget, *, lam, seed, device, progress, chunk_frames, lazy=True, stats=None):
    order = np.argsort(-g, kind="stable")[:budget]  # stable: ties keep the lowest index first
    return [int(i) for i in order], None


@register_strategy(
    "coreset", needs_difficulty=False, needs_features=True, description="k-center greedy on the min distance"
)
def _coreset(g, pool, budget, *, lam, seed, device, progress, chunk_frames, lazy=True, stats=None):
    n = len(pool)
    first = int(np.random.default_rng(seed).integers(n))
    dist = torch.empty(n, dtype=torch.float32, device=device)
    sums = torch.zeros(n, dtype=torch.float64, device=device)
    nearest = torch.full((n,), float("inf"), dtype=torch.float32, device=device)
    taken = torch.zeros(n, dtype=torch.bool, device=device)
    pick, order, diversity = first, [first], [float("nan")]
    taken[pick] = True
    with tqdm(total=budget, initial=1, desc="coreset", unit="pick", disable=not progress) as bar:
        for k in range(1, budget):
            chamfer_one_vs_all(pool.video(pick), pool, chunk_frames=chunk_frames, out=dist)
            sums.add_(dist)
            torch.minimum(nearest, dist, out=nearest)
            pick = _argmax_lowest(nearest.masked_fill(taken, float("-inf")))
            order.append(pick)
            diversity.append(float(sums[pick]) / k)
            taken[pick] = True
            bar.update(1)
    return order, np.asarray(diversity, dtype=np.float64)


@register_strategy("random", needs_difficulty=False, needs_features=False, description="seeded uniform sample")
def _random(g, pool, budget, *, lam, seed, device, progress, chunk_frames, lazy=True, stats=None):
    n = len(pool) if pool is not None else len(g)
    return [int(i) for i in np.random.default_rng(seed).permutation(n)[:budget]], None


# --------------------------------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------------------------------


def marginal_diversity(
    features, order: Sequence[int], *, device=None, storage_dtype=None, chunk_frames: int | None = None
) -> np.ndarray:
    """For an ordered selection, the mean Chamfer distance of each pick to the picks before it (NaN for the first).

    Costs ``len(order)`` one-vs-all passes over the selected videos only (not the pool)."""
    order = [int(i) for i in order]
    if not order:
        return np.empty(0, dtype=np.float64)
    pool = FramePool.from_features(features, dtype=storage_dtype, device=_resolve_device(device))
    sub = pool.subset(order)
    b = len(sub)
    sums = torch.zeros(b, dtype=torch.float64, device=sub.device)
    dist = torch.empty(b, dtype=torch.float32, device=sub.device)
    out = np.full(b, np.nan)
    for k in range(1, b):
        chamfer_one_vs_all(sub.video(k - 1), sub, chunk_frames=chunk_frames, out=dist)
        sums.add_(dist)
        out[k] = float(sums[k]) / k
    return out


def mean_pairwise_distance(diversity: np.ndarray) -> float:
    """Mean Chamfer distance over all pairs of a selection, from its :func:`marginal_diversity` values
    (pick ``k`` contributes ``k·diversity[k]`` to the sum over pairs)."""
    div = np.asarray(diversity, dtype=np.float64)
    b = div.size
    if b < 2:
        return float("nan")
    ks = np.arange(b, dtype=np.float64)
    return float(np.sum(ks[1:] * div[1:]) / (b * (b - 1) / 2))


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
    lazy: bool = True,
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
        lazy: ``mds``/``diversity``: compute only the distances a step needs, under an upper bound of every score
            (default); ``False``: one full pass over the pool per pick. The picks are the same either way, up to
            float32 rounding of the distances.
        compute_diversity: for strategies that do not compute it while picking (``difficulty``, ``random``), compute
            the diversity of each pick afterwards (``len(selection)`` passes over the selection).

    Raises:
        ValueError: unknown strategy, empty pool, budget ≤ 0 or above the pool size, NaN difficulty, features of
            different dimensions, non-finite features, mismatched lengths, λ < 0.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"Unknown selection strategy {strategy!r}; available: {sorted(STRATEGIES)}")
    spec = STRATEGIES[strategy]
    if not isinstance(lam, numbers.Real) or not math.isfinite(lam) or lam < 0:
        raise ValueError(f"lam (λ) must be a finite number ≥ 0, got {lam!r}")
    if spec.needs_difficulty and difficulty is None:
        raise ValueError(f"Strategy {strategy!r} needs the difficulty g of every video (difficulty=None)")
    if spec.needs_features and features is None:
        raise ValueError(f"Strategy {strategy!r} needs the frame features of every video (features=None)")
    if difficulty is None and features is None:
        raise ValueError("Give difficulty or features: the pool size is unknown")
    dev = _resolve_device(device)
    if dev.type == "cuda" and torch.get_float32_matmul_precision() != "highest":
        logger.warning(
            "torch float32 matmul precision is %r (TF32): distances lose precision and picks may change; "
            "call torch.set_float32_matmul_precision('highest') for fp32 distances.",
            torch.get_float32_matmul_precision(),
        )
    g = None
    if difficulty is not None:
        g = _as_values(difficulty)
        if spec.needs_difficulty:
            _check_difficulty(g)
    pool = None
    if features is not None:
        pool = FramePool.from_features(features, dtype=storage_dtype, device=dev)
    n = len(pool) if pool is not None else len(g)
    if n == 0:
        raise ValueError("The pool is empty: nothing to select from.")
    if g is not None and pool is not None and len(g) != len(pool):
        raise ValueError(f"difficulty has {len(g)} values but features describe {len(pool)} videos")
    count = resolve_budget(budget, n)
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
    lazy: bool = True,
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
    ).indices


# --------------------------------------------------------------------------------------------------------------------
# Report: a 2-D map of the pool with the picks, the distribution of g
# --------------------------------------------------------------------------------------------------------------------


def pca_2d(frames: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each video's mean frame feature projected on the first two principal axes of the pool.

    Returns ``(coords (N, 2), explained_variance_ratio (2,))``; axis signs are fixed (largest loading positive), so
    the map is deterministic."""
    lengths = np.asarray(lengths, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    means = np.add.reduceat(np.asarray(frames, dtype=np.float64), starts, axis=0) / lengths[:, None]
    centred = means - means.mean(axis=0)
    cov = centred.T @ centred / max(1, len(centred))
    eigval, eigvec = np.linalg.eigh(cov)
    order = np.argsort(eigval)[::-1][:2]
    axes = eigvec[:, order]
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(axes.shape[1])])
    axes = axes * np.where(signs == 0, 1, signs)
    total = float(eigval.clip(min=0).sum())
    ratio = eigval[order].clip(min=0) / total if total > 0 else np.zeros(len(order))
    coords = centred @ axes
    if coords.shape[1] < 2:  # d = 1
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
        ratio = np.pad(ratio, (0, 2 - len(ratio)))
    return coords, ratio


def plot_feature_map(coords: np.ndarray, picked: Sequence[int], path: str, *, title: str, variance=None) -> str:
    """Scatter of the pool (grey) with the picked videos coloured by pick rank; saved as PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picked = np.asarray(picked, dtype=np.int64)
    fig, ax = plt.subplots(figsize=(6.4, 5.2), dpi=120)
    size = 4 if len(coords) > 5000 else 10
    ax.scatter(coords[:, 0], coords[:, 1], s=size, c="#bbbbbb", lw=0, label=f"pool ({len(coords)})", rasterized=True)
    sc = ax.scatter(
        coords[picked, 0], coords[picked, 1], s=18, c=np.arange(1, len(picked) + 1), cmap="viridis_r",
        edgecolors="black", linewidths=0.3, label=f"selected ({len(picked)})",
    )  # fmt: skip
    fig.colorbar(sc, ax=ax, label="pick rank")
    if variance is not None:
        ax.set_xlabel(f"PC1 ({100 * variance[0]:.1f} % of variance)")
        ax.set_ylabel(f"PC2 ({100 * variance[1]:.1f} % of variance)")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_difficulty_distribution(g_pool: np.ndarray, g_picked: np.ndarray, path: str, *, title: str) -> str:
    """Histograms (densities) of g in the pool and in the selection; saved as PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g_pool = np.asarray(g_pool, dtype=np.float64)
    g_picked = np.asarray(g_picked, dtype=np.float64)
    lo, hi = float(np.nanmin(g_pool)), float(np.nanmax(g_pool))
    bins = np.linspace(lo, hi if hi > lo else lo + 1, 31)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    ax.hist(g_pool, bins=bins, density=True, alpha=0.5, color="#888888", label=f"pool (mean {np.nanmean(g_pool):.3f})")
    ax.hist(
        g_picked, bins=bins, density=True, alpha=0.6, color="#d95f02",
        label=f"selected (mean {np.nanmean(g_picked):.3f})",
    )  # fmt: skip
    ax.set_xlabel("difficulty g")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
