"""The MDS greedy: at every step, the remaining video maximising ``g(x) + λ·(1/|D|)·Σ_{y∈D} d_CD(F_x, F_y)``.

Two ways to the same picks (up to float32 rounding of the distances):

- one :func:`~mds_vqa.diversity.chamfer_one_vs_all` pass over the pool per pick, with a running float64 sum of
  distances per candidate (:func:`greedy_mean_distance` with ``lazy=False``): O(N) memory, ``N·(B − 1)`` distances;
- the lazy greedy (the default): every distance is bounded by ``a_x + a_y``
  (:meth:`~mds_vqa.frame_pool.FramePool.distance_bounds`), so a candidate whose upper bound cannot beat the best exact
  score of a step is never brought up to date (:class:`_LazySums`).

Ties break on the lowest index; scores use the released code's arithmetic (``g + λ·(Σ/|D|)``) in float64.

Diversity against what is already labelled: with ``base_sums`` (:func:`labelled_sums`, the sum of each candidate's
distances to ``m`` labelled videos L), the diversity term averages over L and the picks so far,
``(Σ_{y∈L} d(x, y) + Σ_{y∈D} d(x, y)) / (m + |D|)``, and the first pick is the argmax of ``g + λ·Σ_L/m``. With no
labelled video (``m = 0``) this is the released algorithm.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from tqdm.auto import tqdm

from .diversity import chamfer_many_vs_all, chamfer_one_vs_all
from .frame_pool import FramePool

logger = logging.getLogger(__name__)

__all__ = ["argmax_lowest", "greedy_mean_distance", "labelled_sums"]


def argmax_lowest(score: torch.Tensor) -> int:
    """The index of the largest score, the lowest one on ties."""
    # torch.argmax returns the first maximal index (documented), i.e. ties break on the lowest index.
    return int(torch.argmax(score))


def labelled_sums(pool: FramePool, labelled: FramePool, *, chunk_frames: int | None = None) -> torch.Tensor:
    """Float64 sum over the labelled videos of each pool video's Chamfer distance to them (``(N,)``), computed as
    many-vs-all passes over the pool, 32 labelled videos at a time."""
    sums = torch.zeros(len(pool), dtype=torch.float64, device=pool.device)
    for b0 in range(0, len(labelled), 32):
        queries = labelled.subset(torch.arange(b0, min(len(labelled), b0 + 32))).as_queries()
        sums += chamfer_many_vs_all(queries, pool, chunk_frames=chunk_frames).to(torch.float64).sum(dim=1)
    return sums


def first_pick(g: torch.Tensor, lam: float, base_sums: torch.Tensor | None, base_count: int) -> int:
    """The first pick: argmax g, or with labelled videos argmax ``g + λ·(mean distance to them)``."""
    if base_count == 0 or base_sums is None:
        return argmax_lowest(g)
    return argmax_lowest((base_sums / base_count).mul_(lam).add_(g))


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


def greedy_mean_distance(
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
    base_sums: torch.Tensor | None = None,
    base_count: int = 0,
) -> tuple[list[int], np.ndarray]:
    """The MDS greedy: argmax of ``g + λ·(Σ_{y∈D} d(x, y))/|D|`` over the remaining candidates at every step
    (with ``base_sums`` over ``base_count`` labelled videos: ``g + λ·(base + Σ_D)/(base_count + |D|)``).

    ``lazy=False``: one :func:`~mds_vqa.diversity.chamfer_one_vs_all` pass over the pool per pick (a running sum per
    candidate). ``lazy=True`` (default): the same picks, up to float32 rounding of the distances, computing only the
    distances a step needs (:class:`_LazySums`): candidates are visited in order of an upper bound of their score
    until the bound of the next one falls below the best exact score. Returns the picks and each pick's mean
    distance to the picks before it (NaN for the first); ``stats["distances_computed"]`` counts the distances."""
    stats = {} if stats is None else stats
    if not lazy:
        stats["distances_computed"] = len(pool) * (budget - 1)
        return _greedy_passes(
            g, pool, budget, lam, progress=progress, chunk_frames=chunk_frames, desc=desc, base=(base_sums, base_count)
        )
    n = len(pool)
    state = _LazySums(pool, budget, chunk_frames=chunk_frames)
    step = _LazyStep(n, pool.device, base_sums, base_count)
    pick = first_pick(g, lam, base_sums, base_count)
    order = [pick]
    diversity = [float(base_sums[pick]) / base_count if base_count else float("nan")]
    step.taken[pick] = True
    state.add(pick)
    with tqdm(total=budget, initial=1, desc=desc, unit="pick", disable=not progress) as bar:
        for k in range(1, budget):
            pick, best_sum = step.best(state, g, lam, k)
            order.append(pick)
            diversity.append(best_sum / (k + base_count))
            step.taken[pick] = True
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


class _LazyStep:
    """One step of the lazy greedy: visit candidates by decreasing upper bound, bring them up to date, stop when the
    next bound falls below the best exact score. Keeps the buffers and the search width from step to step."""

    def __init__(self, n: int, device: torch.device, base_sums: torch.Tensor | None = None, base_count: int = 0):
        self.n = n
        self.base = base_sums if base_count else None  # distances to the labelled videos, a constant per candidate
        self.base_count = base_count
        self.ub = torch.empty(n, dtype=torch.float64, device=device)
        self.checked = torch.zeros(n, dtype=torch.bool, device=device)
        self.taken = torch.zeros(n, dtype=torch.bool, device=device)
        self.width = 32

    def best(self, state: _LazySums, g: torch.Tensor, lam: float, k: int) -> tuple[int, float]:
        """The pick of step ``k`` (``k`` videos picked so far) and its exact sum of distances to them (and to the
        labelled videos)."""
        n, ub, checked, base = self.n, self.ub, self.checked, self.base
        denom = k + self.base_count
        # upper bounds: the same float operations as the exact score on a larger sum (rounding is monotone)
        state.upper_bound(ub)
        if base is not None:
            ub.add_(base)
        ub.div_(denom).mul_(lam).add_(g).masked_fill_(self.taken, float("-inf"))
        checked.zero_()
        best_val, best_idx, best_sum = float("-inf"), -1, 0.0
        t = min(n, self.width)
        while True:
            vals, idx = torch.topk(ub, t)
            fresh = idx[~checked[idx] & (vals >= best_val) & (vals > float("-inf"))]
            if fresh.numel():
                checked[fresh] = True
                sums = state.update(fresh)
                if base is not None:
                    sums = sums + base[fresh]
                exact = (sums / denom).mul_(lam).add_(g[fresh])
                top = float(exact.max())
                if top >= best_val:
                    cand = int(fresh[exact == top].min())
                    if top > best_val or cand < best_idx:
                        best_val, best_idx = top, cand
                        best_sum = float(state.partial[cand]) + (float(base[cand]) if base is not None else 0.0)
            floor = float(vals[-1])
            if floor < best_val or floor == float("-inf") or t == n:
                break
            t = n if 8 * t > n else 2 * t  # past an eighth of the pool: all at once
        self.width = t if t == n else max(32, t // 2)  # the next step likely needs about as many
        return best_idx, best_sum


def _greedy_passes(
    g: torch.Tensor,
    pool: FramePool,
    budget: int,
    lam: float,
    *,
    progress: bool,
    chunk_frames: int | None,
    desc: str,
    base: tuple[torch.Tensor | None, int] = (None, 0),
) -> tuple[list[int], np.ndarray]:
    """The MDS greedy with one one-vs-all pass per step: running float64 sum of distances per candidate (starting
    from the sums to the labelled videos, ``base``)."""
    n = len(pool)
    device = pool.device
    base_sums, m = base
    sums = torch.zeros(n, dtype=torch.float64, device=device) if not m else base_sums.clone()
    dist = torch.empty(n, dtype=torch.float32, device=device)
    score = torch.empty(n, dtype=torch.float64, device=device)
    taken = torch.zeros(n, dtype=torch.bool, device=device)
    pick = first_pick(g, lam, base_sums, m)
    order, diversity = [pick], [float(sums[pick]) / m if m else float("nan")]
    taken[pick] = True
    with tqdm(total=budget, initial=1, desc=desc, unit="pick", disable=not progress) as bar:
        for k in range(1, budget):
            chamfer_one_vs_all(pool.video(pick), pool, chunk_frames=chunk_frames, out=dist)
            sums.add_(dist)
            torch.div(sums, k + m, out=score)  # same arithmetic as the reference: g + λ·(Σ/|D|)
            score.mul_(lam).add_(g).masked_fill_(taken, float("-inf"))
            pick = argmax_lowest(score)
            order.append(pick)
            diversity.append(float(sums[pick]) / (k + m))
            taken[pick] = True
            bar.update(1)
    return order, np.asarray(diversity, dtype=np.float64)
