"""The MDS greedy: at every step, the remaining video maximising ``g(x) + λ·(1/|D|)·Σ_{y∈D} d_CD(F_x, F_y)``.

Two ways to the same picks (up to float32 rounding of the distances):

- one :func:`~mds_vqa.diversity.chamfer_one_vs_all`-style pass over the pool per pick, with a running float64 sum of
  distances per candidate (:func:`greedy_mean_distance` with ``lazy=False``, :func:`_pass_loop`): ``N·(B − 1)``
  distances, and no host synchronisation per pick (the pick stays a device tensor; its frames are gathered with index
  operations; the picks are copied to the host once, at the end), so on a GPU the host queues the steps ahead and the
  device runs them back to back. Extra memory: the pass's chunk (on CUDA ≤ 2^26 float32 squared distances, 256 MB,
  plus its two 1/m-sized minima; with 16-bit storage products are taken in the storage dtype with float32
  accumulation where torch supports it, else through a float32 upcast buffer of ≤ 1/32 of the frames) and ≈ 21 bytes
  per video. The chunk is at most ``m/d`` of the float32 features (1.6 % at 8 frames of d = 512), so the extra
  memory stays ≤ 0.1× the features at any N (about 0.02× for float32 storage, ≤ 0.1× for 16-bit storage upcast);
- the lazy greedy (the CPU default): every distance is bounded by ``a_x + a_y``
  (:meth:`~mds_vqa.frame_pool.FramePool.distance_bounds`), so a candidate whose upper bound cannot beat the best exact
  score of a step is never brought up to date (:class:`_LazySums`). A long-stale candidate brought up to date takes
  the next candidates in line along into its matrix product (speculative updates, :meth:`_LazySums._widen`): a
  product of the picks' frames against a few columns streams them from memory at ≈ 65 GFLOPS on a CPU, against
  16–32 candidates at ≈ 150; those candidates would have been brought up to date a few steps later anyway.

A third, :func:`~mds_vqa.screened_greedy.screened_mean_distance` (``lazy=False, block=B``), reads the pool once per
``B`` picks, each step's candidates screened on the device against the same upper bounds (for pools of millions of
videos on a GPU, where one pass per pick is bound by reading the pool).

:func:`greedy_k_center` (the ``coreset`` strategy) has the same two modes: lazily, a candidate's minimum distance to
the picks it has met bounds its minimum over all of them from above.

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

from .diversity import chamfer_many_vs_all, chamfer_stacked
from .frame_pool import FramePool
from .screened_greedy import screened_mean_distance

logger = logging.getLogger(__name__)

__all__ = ["argmax_lowest", "greedy_k_center", "greedy_mean_distance", "labelled_sums"]

# speculative updates of the lazy MDS greedy (:meth:`_LazySums._widen`): a group of fewer than SPEC_WIDTH candidates
# computed against at least SPEC_MIN_PICKS picks is widened with candidates among the SPEC_SPARES next in line
SPEC_WIDTH = 32
SPEC_MIN_PICKS = 64
SPEC_SPARES = 96


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
        if self.pool.uniform_length is not None:
            return FramePool.uniform_view(self.frames[f0:f1], self.pool.uniform_length, self.sq_norms[f0:f1])
        lengths = torch.tensor(np.diff(self.offsets[start : stop + 1]), dtype=torch.int64)
        return FramePool._validated(self.frames[f0:f1], lengths, self.sq_norms[f0:f1])


class _LazySums:
    """Per-candidate float64 sums of Chamfer distances to the picked videos (and, for the k-center greedy, their
    minimum), computed only where a step needs them.

    ``partial[x]`` is the sum of ``x``'s distances to the first ``known[x]`` picks. Every distance ``d(x, p)`` is
    bounded by ``a_x + a_p`` (:meth:`FramePool.distance_bounds`), so the unknown rest of a sum is bounded without
    computing it: with ``C_k = Σ_{j<k} a_{p_j}``, ``offset[x] = base[x] + partial[x] − known[x]·a_x − C_{known[x]}``
    gives every candidate's upper bound at step ``k`` as ``offset + k·a + C_k`` (one fused pass over the pool; taken
    videos hold ``−inf``). A step brings a candidate up to date only when its bound can still beat the best exact
    score. Candidates of a step that lack different numbers of picks are computed together against the picks the
    longest-stale one lacks (distances it already has masked out) as long as the group computes at most 5/4 of the
    distances it needs: one wide matrix product instead of many thin ones. When the candidates of a step need at least
    half of what whole-pool passes would compute, whole-pool passes update every video at once, so the work stays
    below about twice that of one pool pass per pick, and far below it when g matters. A group of a few long-stale
    candidates is widened with the candidates next in line that lack the same picks (:meth:`_widen`)."""

    def __init__(
        self,
        pool: FramePool,
        budget: int,
        *,
        chunk_frames: int | None,
        base: torch.Tensor | None = None,
        nearest: torch.Tensor | None = None,
    ):
        n = len(pool)
        device = pool.device
        self.pool = pool
        self.chunk_frames = chunk_frames
        self.base = base
        self.partial = torch.zeros(n, dtype=torch.float64, device=device)
        self.known = torch.zeros(n, dtype=torch.int64, device=device)
        self.bounds = pool.distance_bounds()
        self.picked = _PickedSet(pool, budget)
        self.cum = [0.0]  # C_j = Σ a_p over the first j picks
        self.offset = base.clone() if base is not None else torch.zeros(n, dtype=torch.float64, device=device)
        self.taken = torch.zeros(n, dtype=torch.bool, device=device)
        self.nearest = nearest  # k-center: the min distance to the known picks (and the labelled videos), float32
        self.computed = 0  # distances computed
        # float64 rounding of offset + k·a + C_k against partial + base: a few ulp of the largest term, well below this
        self.slack_per_pick = 1e-12 * (1.0 + 2.0 * float(self.bounds.max()))
        self.queries = pool.frames.view(n, pool.uniform_length, pool.dim) if pool.uniform_length else None

    def add(self, pick: int) -> None:
        """Record a new pick."""
        self.cum.append(self.cum[-1] + float(self.bounds[pick]))
        self.picked.add(pick)
        self.taken[pick] = True
        self.offset[pick] = float("-inf")

    def upper_bound(self, out: torch.Tensor, base_count: int = 0) -> torch.Tensor:
        """An upper bound of every candidate's full sum (base included; ``−inf`` for taken videos), into ``out``."""
        k = len(self.picked)
        torch.add(self.offset, self.bounds, alpha=k, out=out)
        return out.add_(self.cum[k] + self.slack_per_pick * (k + base_count + 1))

    def exact(self, cand: torch.Tensor) -> torch.Tensor:
        """The candidates' exact float64 sums (base included), after :meth:`update`."""
        sums = self.partial[cand]
        return sums if self.base is None else sums.add_(self.base[cand])

    def update(self, cand: torch.Tensor, spare: torch.Tensor | None = None) -> None:
        """Bring the candidates ``cand`` (not taken) up to date; a long-stale group of few of them is widened with
        ``spare`` candidates (not taken; next in line, best first) that lack about the same picks
        (:meth:`_widen`)."""
        k = len(self.picked)
        n = len(self.pool)
        known = self.known[cand]
        starts = known.tolist()
        missing = k * len(starts) - sum(starts)
        if missing == 0:
            return
        lo = min(starts)
        if 2 * missing >= n * (k - lo):  # cheaper as whole-pool passes over the picks lo … k − 1
            self._update_all(lo)
            return
        groups = [(cand[group], known[group], first) for group, first in self._groups(starts, k)]
        extra = None
        if spare is not None and spare.numel():
            groups, extra = self._widen(groups, spare, k)
        for rows, rows_known, first in groups:
            self._update_group(rows, first, rows_known, masked=bool(int(rows_known[-1]) != first))
        self.known[cand] = k
        self._refresh_offset(cand, k)
        if extra is not None:
            self.known[extra] = k
            self._refresh_offset(extra, k)

    def _widen(
        self, groups: list[tuple[torch.Tensor, torch.Tensor, int]], spare: torch.Tensor, k: int
    ) -> tuple[list[tuple[torch.Tensor, torch.Tensor, int]], torch.Tensor | None]:
        """Speculative updates: a group computed against at least ``SPEC_MIN_PICKS`` picks with fewer than
        ``SPEC_WIDTH`` candidates takes on ``spare`` candidates (best first) that lack the group's picks, having
        met at most a quarter of them, up to ``SPEC_WIDTH`` candidates.

        Such a product streams the picks' frames (up to tens of MB) from memory for a handful of columns; the spares
        ride along at the cost of their arithmetic alone. A spare is next in line by upper bound, so a later step
        almost surely brings it up to date anyway, then against the few picks made since. The picks do not change:
        a spare's sum is exact, as any candidate's is after an update. Returns the groups and the spares taken
        (``None``: none)."""
        wide = [
            i for i, (rows, _, first) in enumerate(groups) if k - first >= SPEC_MIN_PICKS and len(rows) < SPEC_WIDTH
        ]
        if not wide:
            return groups, None
        spare_known = self.known[spare]
        free = list(enumerate(spare_known.tolist()))
        taken = []
        for i in wide:
            rows, rows_known, first = groups[i]
            room = SPEC_WIDTH - len(rows)
            limit = first + (k - first) // 4
            pick = [j for j, s in free if first <= s <= limit][:room]
            if not pick:
                continue
            chosen = set(pick)
            free = [(j, s) for j, s in free if j not in chosen]
            pos = torch.tensor(pick, dtype=torch.int64)
            order_known = torch.cat([rows_known, spare_known[pos]])
            order = torch.argsort(order_known, stable=True)  # the group's last candidate knows the most picks
            groups[i] = (torch.cat([rows, spare[pos]])[order], order_known[order], first)
            taken.append(spare[pos])
        return groups, (torch.cat(taken) if taken else None)

    @staticmethod
    def _groups(starts: list[int], k: int) -> list[tuple[torch.Tensor, int]]:
        """Candidates (positions in ``starts``) grouped by the picks they lack, longest-stale first: a group is
        computed against picks ``first … k − 1`` and grows while at most a quarter of its distances are known
        already."""
        order = sorted((s, j) for j, s in enumerate(starts) if s < k)
        groups = []
        i = 0
        while i < len(order):
            first = order[i][0]
            needed = 0
            j = i
            while j < len(order):
                need = needed + k - order[j][0]
                if 4 * (j - i + 1) * (k - first) > 5 * need:
                    break
                needed, j = need, j + 1
            groups.append((torch.tensor([p for _, p in order[i:j]], dtype=torch.int64), first))
            i = j
        return groups

    def _update_group(self, rows: torch.Tensor, first: int, known: torch.Tensor, *, masked: bool) -> None:
        """Distances of the candidates ``rows`` to picks ``first … k − 1``, those before ``known`` masked out."""
        k = len(self.picked)
        picks = self.picked.view(first, k)
        if self.queries is not None:
            xs = self.queries.index_select(0, rows).to(torch.float32)
            dist = chamfer_stacked(xs, None, picks, chunk_frames=self.chunk_frames)
        else:
            dist = chamfer_many_vs_all(self.pool.subset(rows).as_queries(), picks, chunk_frames=self.chunk_frames)
        self.computed += rows.numel() * (k - first)
        mask = None
        if masked:
            mask = torch.arange(first, k, device=dist.device)[:, None] < known[None, :]
        self._accumulate(rows, dist, mask)

    def _accumulate(self, rows: torch.Tensor | None, dist: torch.Tensor, mask: torch.Tensor | None) -> None:
        """Add the ``(picks, rows)`` distances ``dist`` (``mask``: those already counted) to the sums (and minima) of
        ``rows`` (``None``: every video, ``dist`` then being ``(videos, picks)``)."""
        axis = 0 if rows is not None else 1
        add = dist if mask is None else dist.masked_fill(mask, 0.0)
        total = add.to(torch.float64).sum(dim=axis)
        if rows is None:
            self.partial += total
        else:
            self.partial.index_add_(0, rows, total)
        if self.nearest is not None:
            low = (dist if mask is None else dist.masked_fill(mask, float("inf"))).amin(dim=axis)
            if rows is None:
                torch.minimum(self.nearest, low, out=self.nearest)
            else:
                self.nearest[rows] = torch.minimum(self.nearest[rows], low)

    def _refresh_offset(self, rows: torch.Tensor | None, k: int) -> None:
        """``offset`` of ``rows`` (``None``: all) now that they know the first ``k`` picks."""
        if rows is None:
            torch.add(self.partial, self.bounds, alpha=-k, out=self.offset).sub_(self.cum[k])
            if self.base is not None:
                self.offset.add_(self.base)
            self.offset.masked_fill_(self.taken, float("-inf"))
            return
        fresh = torch.add(self.partial[rows], self.bounds[rows], alpha=-k).sub_(self.cum[k])
        if self.base is not None:
            fresh.add_(self.base[rows])
        self.offset[rows] = fresh

    def _update_all(self, lo: int) -> None:
        """Whole-pool passes over picks ``lo … k − 1`` (a block of 32 at a time): every video that has met the
        picks before ``lo`` is brought up to date."""
        k = len(self.picked)
        n = len(self.pool)
        stale = self.known < lo  # these keep their partial sums (and bounds) until a step needs them
        for b0 in range(lo, k, 32):
            b1 = min(k, b0 + 32)
            queries = self.picked.view(b0, b1).as_queries()
            dist = chamfer_many_vs_all(queries, self.pool, chunk_frames=self.chunk_frames)
            done = torch.arange(b0, b1, device=dist.device)[None, :] < self.known[:, None]
            self._accumulate(None, dist, done | stale[:, None])
            self.computed += n * (b1 - b0)
        fresh = ~stale
        self.known[fresh] = k
        offset = self.offset.clone()
        self._refresh_offset(None, k)
        self.offset = torch.where(stale, offset, self.offset)


def _lazy_argmax(
    ub: torch.Tensor, exact, checked: torch.Tensor, width: int, spares: int = 0
) -> tuple[int, float, int]:
    """The lowest index of the largest exact score, visiting candidates by decreasing upper bound ``ub`` (``−inf``:
    not a candidate) and scoring them with ``exact(indices)`` until the next bound falls below the best exact score.
    ``checked`` is an all-false scratch mask (left all false). With ``spares``, ``exact(indices, spare)`` also gets
    the (up to) ``spares`` candidates next in line after those visited, best first, for speculative updates.
    Returns the pick, its score and the search width the next step should start with."""
    n = ub.numel()
    best_val, best_idx = float("-inf"), -1
    seen = []
    t = min(n, width)
    while True:
        vals, idx = torch.topk(ub, min(n, t + spares))
        vals, idx, tail_vals, tail = vals[:t], idx[:t], vals[t:], idx[t:]
        fresh = idx[~checked[idx] & (vals >= best_val) & (vals > float("-inf"))]
        if fresh.numel():
            checked[fresh] = True
            seen.append(fresh)
            score = exact(fresh, tail[tail_vals > float("-inf")]) if spares else exact(fresh)
            top = float(score.max())
            if top >= best_val:
                cand = int(fresh[score == top].min())
                if top > best_val or cand < best_idx:
                    best_val, best_idx = top, cand
        floor = float(vals[-1])
        if floor < best_val or floor == float("-inf") or t == n:
            break
        t = n if 8 * t > n else 2 * t  # past an eighth of the pool: all at once
    for fresh in seen:
        checked[fresh] = False
    return best_idx, best_val, (t if t == n else max(32, t // 2))  # the next step likely needs about as many


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
    block: int = 1,
) -> tuple[list[int], np.ndarray]:
    """The MDS greedy: argmax of ``g + λ·(Σ_{y∈D} d(x, y))/|D|`` over the remaining candidates at every step
    (with ``base_sums`` over ``base_count`` labelled videos: ``g + λ·(base + Σ_D)/(base_count + |D|)``).

    ``lazy=False``: one :func:`~mds_vqa.diversity.chamfer_one_vs_all` pass over the pool per pick (a running sum per
    candidate), without a host synchronisation per pick (:func:`_pass_loop`). ``lazy=True`` (default): the same picks,
    up to float32 rounding of the distances, computing only the distances a step needs (:class:`_LazySums`):
    candidates are visited in order of an upper bound of their score until the bound of the next one falls below the
    best exact score. ``lazy=False, block=B > 1``: the pool is read once per ``B`` picks, the candidates of each step
    screened on the device (:func:`~mds_vqa.screened_greedy.screened_mean_distance`; a pool of unequal frame counts
    runs one pass per pick); the same picks. Returns the picks and each pick's mean distance to the picks before it
    (NaN for the first); ``stats["distances_computed"]`` counts the distances."""
    stats = {} if stats is None else stats
    base = base_sums if base_count else None
    if not lazy:
        with tqdm(total=budget, initial=1, desc=desc, unit="pick", disable=not progress) as bar:
            if block > 1 and pool.uniform_length is not None:
                picks, div = screened_mean_distance(
                    g,
                    pool,
                    budget,
                    lam,
                    block=block,
                    chunk_frames=chunk_frames,
                    base=(base, base_count),
                    step=bar.update,
                    stats=stats,
                )
            else:
                stats["distances_computed"] = len(pool) * (budget - 1)
                stats["pool_passes"] = budget - 1
                picks, div = _pass_loop(
                    g, pool, budget, lam, chunk_frames=chunk_frames, base=(base, base_count), step=bar.update
                )
        return picks.tolist(), div.cpu().numpy()
    n = len(pool)
    state = _LazySums(pool, budget, chunk_frames=chunk_frames, base=base)
    pick = first_pick(g, lam, base_sums, base_count)
    order = [pick]
    diversity = [float(base_sums[pick]) / base_count if base_count else float("nan")]
    state.add(pick)
    ub = torch.empty(n, dtype=torch.float64, device=pool.device)
    checked = torch.zeros(n, dtype=torch.bool, device=pool.device)
    width = 32
    with tqdm(total=budget, initial=1, desc=desc, unit="pick", disable=not progress) as bar:
        for k in range(1, budget):
            denom = k + base_count

            def exact(cand: torch.Tensor, spare: torch.Tensor | None = None, denom: int = denom) -> torch.Tensor:
                state.update(cand, spare)
                # the released arithmetic, g + λ·(Σ/|D|); the bound went through the same float operations on a
                # larger sum, and rounding is monotone, so a bound below a score is a score below it
                return (state.exact(cand) / denom).mul_(lam).add_(g[cand])

            state.upper_bound(ub, base_count).div_(denom).mul_(lam).add_(g).masked_fill_(state.taken, float("-inf"))
            pick, _, width = _lazy_argmax(ub, exact, checked, width, SPEC_SPARES)
            order.append(pick)
            diversity.append(float(state.exact(torch.tensor([pick], device=pool.device))[0]) / denom)
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


class _PickQuery:
    """The frames of a pick given as a device index tensor, gathered on the device (no host synchronisation):
    ``(1, F, d)`` float32 and ``None`` weights for a uniform pool; for a ragged one ``(1, F_max, d)`` (the last frame
    repeated, which changes no minimum) and the ``(1, F_max)`` weights averaging over the real frames."""

    def __init__(self, pool: FramePool):
        self.pool = pool
        if pool.uniform_length is not None:
            self.videos = pool.frames.view(len(pool), pool.uniform_length, pool.dim)
            return
        device = pool.device
        self.steps = torch.arange(pool.max_length, device=device)
        self.starts = pool.offsets_on_device()
        self.lengths = pool.lengths.to(device)

    def __call__(self, pick: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``pick``: a ``(1,)`` int64 tensor on the pool's device."""
        if self.pool.uniform_length is not None:
            return self.videos.index_select(0, pick).to(torch.float32), None
        length = self.lengths.index_select(0, pick)[:, None]
        rows = self.starts.index_select(0, pick)[:, None] + torch.minimum(self.steps[None, :], length - 1)
        xs = self.pool.frames.index_select(0, rows.view(-1)).view(1, -1, self.pool.dim).to(torch.float32)
        weights = (self.steps[None, :] < length).to(torch.float32) / length.to(torch.float32)
        return xs, weights


def _pass_loop(
    g: torch.Tensor,
    pool: FramePool,
    budget: int,
    lam: float,
    *,
    chunk_frames: int | None,
    base: tuple[torch.Tensor | None, int] = (None, 0),
    step=None,
    k_center: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The MDS greedy with one one-vs-all pass per step: a running float64 sum of distances per candidate (starting
    from the sums to the labelled videos, ``base``), the released arithmetic ``g + λ·(Σ/|D|)``, ties on the lowest
    index (``torch.argmax`` returns the first maximum).

    Nothing is read back to the host inside the loop: the pick stays a device tensor, its frames are gathered with
    index operations, the picks and their mean distances are written into device tensors, returned (``(B,)`` int64
    and float64) for one copy to the host at the end. On a GPU the host thus queues the steps ahead of the device,
    which runs them back to back. ``step()`` is called after each pick (a progress bar). Extra memory: the pass's
    chunk (see :func:`~mds_vqa.diversity.chamfer_stacked`) and four ``(N,)`` vectors (≈ 21 bytes per video).

    ``k_center=(first, nearest)``: the k-center greedy instead (``g`` and ``lam`` unused): ``first`` the ``(1,)`` first
    pick, ``nearest`` the float32 min distance to the centers so far (``inf`` without labelled videos, updated in
    place); each step picks the video farthest from the picked set."""
    n = len(pool)
    device = pool.device
    base_sums, m = base
    sums = torch.zeros(n, dtype=torch.float64, device=device) if not m else base_sums.clone()
    dist = torch.empty(n, dtype=torch.float32, device=device)
    score = torch.empty(n, dtype=torch.float64, device=device)
    taken = torch.zeros(n, dtype=torch.bool, device=device)
    picks = torch.empty(budget, dtype=torch.int64, device=device)
    diversity = torch.full((budget,), float("nan"), dtype=torch.float64, device=device)
    query = _PickQuery(pool)
    if k_center is not None:
        pick, nearest = k_center
    else:
        pick = torch.argmax(g if not m else torch.div(sums, m).mul_(lam).add_(g)).view(1)
    picks[0:1].copy_(pick)
    if m:
        diversity[0:1].copy_(sums.index_select(0, pick) / m)
    taken.index_fill_(0, pick, True)
    for k in range(1, budget):
        xs, weights = query(pick)
        chamfer_stacked(xs, weights, pool, chunk_frames=chunk_frames, out=dist[:, None], stored_exact=True)
        sums.add_(dist)
        if k_center is not None:
            torch.minimum(nearest, dist, out=nearest)
            pick = torch.argmax(nearest.masked_fill(taken, float("-inf"))).view(1)
        else:
            torch.div(sums, k + m, out=score)  # same arithmetic as the reference: g + λ·(Σ/|D|)
            score.mul_(lam).add_(g).masked_fill_(taken, float("-inf"))
            pick = torch.argmax(score).view(1)
        picks[k : k + 1].copy_(pick)
        diversity[k : k + 1].copy_(sums.index_select(0, pick) / (k + m))
        taken.index_fill_(0, pick, True)
        if step is not None:
            step(1)
    return picks, diversity


def greedy_k_center(
    pool: FramePool,
    budget: int,
    first: int,
    *,
    progress: bool,
    chunk_frames: int | None,
    lazy: bool = True,
    stats: dict | None = None,
    nearest: torch.Tensor | None = None,
    base_sums: torch.Tensor | None = None,
    base_count: int = 0,
) -> tuple[list[int], np.ndarray]:
    """The k-center greedy from ``first``: each step picks the video whose nearest picked video (or labelled video,
    ``nearest`` holding their float32 minimum, ``base_sums`` the float64 sums of the distances to the
    ``base_count`` of them) is farthest; ties on the lowest index.

    ``lazy=False``: one pass over the pool per pick, without a host synchronisation per pick (:func:`_pass_loop`).
    ``lazy=True``: a candidate's min distance to the picks it has met bounds its min to all of them from above, so
    a step visits candidates by decreasing stale minimum and brings them up to date (:class:`_LazySums`) until the
    next stale minimum falls below the best exact one: the same picks, up to float32 rounding of the distances.
    Returns the picks and each pick's mean distance to the picks (and labelled videos) before it."""
    stats = {} if stats is None else stats
    n = len(pool)
    device = pool.device
    m = base_count
    base = base_sums if m else None
    nearest = torch.full((n,), float("inf"), dtype=torch.float32, device=device) if nearest is None else nearest
    if not lazy:
        stats["distances_computed"] = n * (budget - 1)
        start = torch.tensor([first], dtype=torch.int64, device=device)
        with tqdm(total=budget, initial=1, desc="coreset", unit="pick", disable=not progress) as bar:
            picks, div = _pass_loop(
                nearest,
                pool,
                budget,
                0.0,
                chunk_frames=chunk_frames,
                base=(base, m),
                step=bar.update,
                k_center=(start, nearest),
            )
        return picks.tolist(), div.cpu().numpy()
    state = _LazySums(pool, budget, chunk_frames=chunk_frames, base=base, nearest=nearest)
    order = [first]
    diversity = [float(base_sums[first]) / m if m else float("nan")]
    state.add(first)
    checked = torch.zeros(n, dtype=torch.bool, device=device)
    width = 32

    def exact(cand: torch.Tensor) -> torch.Tensor:
        state.update(cand)
        return state.nearest[cand]

    with tqdm(total=budget, initial=1, desc="coreset", unit="pick", disable=not progress) as bar:
        for k in range(1, budget):
            ub = state.nearest.masked_fill(state.taken, float("-inf"))  # stale minima: upper bounds
            pick, _, width = _lazy_argmax(ub, exact, checked, width)
            order.append(pick)
            diversity.append(float(state.exact(torch.tensor([pick], device=device))[0]) / (k + m))
            state.add(pick)
            bar.update(1)
    stats["distances_computed"] = state.computed
    return order, np.asarray(diversity, dtype=np.float64)
