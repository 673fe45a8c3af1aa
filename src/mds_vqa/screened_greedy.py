"""The MDS greedy with one pass over the pool per *block* of picks, the candidates of each step screened on the device.

One pass over the pool per pick (:func:`mds_vqa.greedy._pass_loop`) reads every stored frame at every step: at
N = 1M videos of 8 × 512 bfloat16 frames, 8 GB per pick, ≈ 1.9 ms at an H200's bandwidth and ≈ 95 s for 5 % of the
pool. Here the pool is read once per ``block`` picks:

- ``sums[x]`` is the exact float64 sum of ``x``'s distances to the picks made before the current block (plus the
  labelled videos'); when a block ends, one pass over the pool with all of its picks as queries (``block × F`` query
  frames in one product per chunk) adds their distances;
- a step bounds every candidate's score from above without computing a distance: each pick ``p`` of the current
  block adds at most ``a_x + a_p`` (:meth:`~mds_vqa.frame_pool.FramePool.distance_bounds`), so
  ``g + λ·(sums + r·a_x + Σ_p a_p)/(m + k)`` bounds the score after ``r`` picks of the block;
- the ``width`` candidates of largest bound (one ``topk``) are brought up to date against the block's picks (a
  ``width·F × r·F`` product), and the best of their exact scores (ties: lowest index) is the pick; it is the greedy's
  pick **if** it beats the bound of the ``width + 1``-th candidate, since no candidate outside can then reach it. The
  step records on the device whether it did.

Nothing is read back to the host inside a block. When the block ends, one read says whether every step's screening
held. If one did not, the block is taken again from its first failed step with one pass over the pool per pick
(exact), and the following steps run that way for a while (``block`` steps after a first failed block, twice as many
after each further one, half as many after each block that held). The picks are therefore those of one pass per pick
(up to float32 rounding of the distances, which are computed in products of other shapes) whatever the bounds'
tightness: loose bounds (a large λ, ``diversity``'s g ≡ 0) cost passes, never a different pick.

Extra memory: the block's ``(N, r)`` float32 distances (128 MB at N = 1M, r = 32), the pass's chunk
(:func:`~mds_vqa.diversity.chamfer_stacked`), and about 40 bytes per video.
"""

from __future__ import annotations

import torch

from .diversity import chamfer_stacked
from .frame_pool import FramePool

__all__ = ["screened_mean_distance"]


def screened_mean_distance(
    g: torch.Tensor,
    pool: FramePool,
    budget: int,
    lam: float,
    *,
    block: int = 32,
    width: int = 256,
    chunk_frames: int | None = None,
    base: tuple[torch.Tensor | None, int] = (None, 0),
    step=None,
    stats: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The MDS greedy (``argmax g + λ·(Σ_{y∈L∪D} d(x, y))/(|L| + |D|)``, ties on the lowest index) reading the pool
    once per ``block`` picks (see the module's docstring).

    Args:
        g: float64 ``(N,)`` difficulty on the pool's device.
        pool: a pool of videos of equal frame counts (``pool.uniform_length`` set).
        budget: picks, ``1 ≤ budget ≤ N``.
        lam: λ ≥ 0.
        block: picks per pass over the pool (≥ 1).
        width: candidates brought up to date at each step (≥ 1).
        chunk_frames: pool frames per chunk of a pass (``None``: automatic).
        base: ``(sums, m)``, the float64 sums of each video's distances to ``m`` labelled videos (``(None, 0)``: none).
        step: called with the number of picks made final (a progress bar's ``update``).
        stats: filled with ``distances_computed``, ``pool_passes`` (passes over the whole pool), ``screened_steps``,
            ``blocks`` (blocks screened, each ending with one read back to the host), ``failed_blocks`` and
            ``steps_redone``.

    Returns:
        The picks (``(budget,)`` int64) and each pick's mean distance to the videos before it (``(budget,)`` float64,
        NaN for the first pick without labelled videos), both on the pool's device.
    """
    if pool.uniform_length is None:
        raise ValueError("screened_mean_distance needs videos of equal frame counts (a uniform FramePool)")
    if block < 1 or width < 1:
        raise ValueError(f"block and width must be ≥ 1, got block={block}, width={width}")
    n = len(pool)
    if not 1 <= budget <= n:
        raise ValueError(f"budget must be between 1 and the pool size {n}, got {budget}")
    stats = {} if stats is None else stats
    step = step or (lambda picks: None)
    state = _ScreenState(g, pool, budget, lam, block, chunk_frames, base)
    counts = state.counts
    state.first_pick()
    k, r = 1, 1  # picks made; picks of the current block not yet in the sums
    passes_left, backoff = 0, block
    top = min(width + 1, n)
    while k < budget:
        if passes_left and r == 0:
            state.exact_step(k)
            passes_left -= 1
            k += 1
            step(1)
            continue
        state.screened_step(k, r, top, width)
        k, r = k + 1, r + 1
        if r < block and k < budget:
            continue
        first_failed = int(state.first_failed)  # the block's one read back to the host
        counts["blocks"] += 1
        start = k - r
        if first_failed == budget:  # every step of the block held
            if k < budget:
                state.fold(start, k)
            step(r)
            backoff = max(block, backoff // 2)
        else:  # retake the block from its first failed step, one pass per pick
            state.unpick(first_failed, k)
            if first_failed > start:
                state.fold(start, first_failed)
                step(first_failed - start)
            counts["failed_blocks"] += 1
            counts["steps_redone"] += k - first_failed
            passes_left = k - first_failed + backoff
            backoff = min(2 * backoff, budget)
            k = first_failed
        r = 0
        state.new_block()
    stats.update(counts)
    return state.picks, state.diversity


class _ScreenState:
    """The device tensors of :func:`screened_mean_distance` and its three kinds of step."""

    def __init__(self, g, pool: FramePool, budget: int, lam: float, block: int, chunk_frames, base):
        n, device = len(pool), pool.device
        self.g, self.pool, self.budget, self.lam, self.chunk_frames = g, pool, budget, lam, chunk_frames
        base_sums, self.m = base
        self.videos = pool.frames.view(n, pool.uniform_length, pool.dim)
        self.norms = pool.sq_norms.view(n, pool.uniform_length)
        self.bounds = pool.distance_bounds()
        # float64 rounding of the bound's terms against the exact sums: a few ulp of the largest, well below this
        self.slack = 1e-12 * (1.0 + 2.0 * float(self.bounds.max()))
        self.sums = base_sums.clone() if self.m else torch.zeros(n, dtype=torch.float64, device=device)
        self.taken = torch.zeros(n, dtype=torch.bool, device=device)
        self.picks = torch.empty(budget, dtype=torch.int64, device=device)
        self.diversity = torch.full((budget,), float("nan"), dtype=torch.float64, device=device)
        self.recent = torch.empty(block, pool.uniform_length, pool.dim, dtype=torch.float32, device=device)
        self.recent_bound = torch.zeros((), dtype=torch.float64, device=device)
        self.first_failed = torch.full((), budget, dtype=torch.int64, device=device)
        self.step_index = torch.arange(budget, device=device)  # step k as a device scalar, with no host copy
        self.no_index = torch.tensor(n, device=device)
        self.ub = torch.empty(n, dtype=torch.float64, device=device)
        self.score = torch.empty(n, dtype=torch.float64, device=device)
        self.counts = dict.fromkeys(
            ("distances_computed", "pool_passes", "screened_steps", "blocks", "failed_blocks", "steps_redone"), 0
        )

    def _record(self, k: int, pick: torch.Tensor, mean_distance: torch.Tensor | None) -> None:
        self.picks[k : k + 1].copy_(pick)
        if mean_distance is not None:
            self.diversity[k : k + 1].copy_(mean_distance)
        self.taken.index_fill_(0, pick, True)

    def _pass(self, pick: torch.Tensor) -> torch.Tensor:
        """Distances of every pool video to the pick (a ``(1,)`` device tensor), float32 ``(N,)``."""
        xs = self.videos.index_select(0, pick).to(torch.float32)
        return chamfer_stacked(xs, None, self.pool, chunk_frames=self.chunk_frames, stored_exact=True)[:, 0]

    def first_pick(self) -> None:
        """Pick 0: argmax g, or with labelled videos argmax ``g + λ·(their mean distance)``; it opens the first
        block."""
        if self.m:
            pick = torch.argmax(torch.div(self.sums, self.m).mul_(self.lam).add_(self.g)).view(1)
            self._record(0, pick, self.sums.index_select(0, pick) / self.m)
        else:
            pick = torch.argmax(self.g).view(1)
            self._record(0, pick, None)
        self._add_recent(0, pick)

    def _add_recent(self, r: int, pick: torch.Tensor) -> None:
        self.recent[r : r + 1].copy_(self.videos.index_select(0, pick))
        self.recent_bound.add_(self.bounds.index_select(0, pick)[0])

    def exact_step(self, k: int) -> None:
        """Pick ``k`` from exact sums (every earlier pick folded in), then one pass over the pool folds it in (not
        after the last pick)."""
        denom = k + self.m
        torch.div(self.sums, denom, out=self.score)  # the released arithmetic: g + λ·(Σ/|D|)
        self.score.mul_(self.lam).add_(self.g).masked_fill_(self.taken, float("-inf"))
        pick = torch.argmax(self.score).view(1)
        self._record(k, pick, self.sums.index_select(0, pick) / denom)
        if k < self.budget - 1:
            self.sums.add_(self._pass(pick))
            self._count_pass(1)

    def screened_step(self, k: int, r: int, top: int, width: int) -> None:
        """Pick ``k``, the current block holding ``r`` picks not in the sums (see the module's docstring)."""
        denom = k + self.m
        torch.add(self.sums, self.bounds, alpha=r, out=self.ub)
        self.ub.add_(self.recent_bound).add_(self.slack * (k + self.m + 1))
        self.ub.div_(denom).mul_(self.lam).add_(self.g).masked_fill_(self.taken, float("-inf"))
        values, cand = torch.topk(self.ub, top)
        if top > width:
            threshold, cand = values[width], cand[:width]
        else:  # every video is a candidate
            threshold = None
        exact = self.sums.index_select(0, cand)
        if r:
            n_cand = cand.numel()
            frames = self.videos.index_select(0, cand).reshape(n_cand * self.pool.uniform_length, self.pool.dim)
            norms = self.norms.index_select(0, cand).reshape(-1)
            candidates = FramePool.uniform_view(frames, self.pool.uniform_length, norms)
            dist = chamfer_stacked(self.recent[:r], None, candidates, stored_exact=True)  # (candidates, r)
            exact = exact.add_(dist.sum(dim=1, dtype=torch.float64))
        score = (exact / denom).mul_(self.lam).add_(self.g.index_select(0, cand))
        score.masked_fill_(self.taken.index_select(0, cand), float("-inf"))
        best = score.max()
        position = torch.argmin(torch.where(score == best, cand, self.no_index)).view(1)  # ties: the lowest index
        pick = cand.index_select(0, position)
        if threshold is not None:
            failed = (best <= threshold) & (self.first_failed == self.budget)
            self.first_failed.copy_(torch.where(failed, self.step_index[k], self.first_failed))
        self._record(k, pick, exact.index_select(0, position) / denom)
        self._add_recent(r, pick)
        self.counts["screened_steps"] += 1
        self.counts["distances_computed"] += cand.numel() * r

    def fold(self, start: int, stop: int) -> None:
        """One pass over the pool adds the distances to picks ``start … stop − 1`` to the sums."""
        queries = self.recent[: stop - start]
        dist = chamfer_stacked(queries, None, self.pool, chunk_frames=self.chunk_frames, stored_exact=True)
        self.sums.add_(dist.sum(dim=1, dtype=torch.float64))
        self._count_pass(stop - start)

    def _count_pass(self, picks: int) -> None:
        """Count one pass over the pool against ``picks`` picks."""
        self.counts["pool_passes"] += 1
        self.counts["distances_computed"] += len(self.pool) * picks

    def unpick(self, start: int, stop: int) -> None:
        """Take back picks ``start … stop − 1``."""
        self.taken.index_fill_(0, self.picks[start:stop], False)
        self.diversity[start:stop] = float("nan")

    def new_block(self) -> None:
        self.recent_bound.zero_()
        self.first_failed.fill_(self.budget)
