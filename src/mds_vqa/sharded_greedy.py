"""The MDS greedy over a pool sharded across the ranks of a ``torch.distributed`` process group.

Past one GPU's memory the pool is split into contiguous shards of videos, one per rank
(:func:`shard_bounds`): rank ``r`` holds its videos' frames (a :class:`~mds_vqa.frame_pool.FramePool`), their scores
``g`` and the global index of its first video (``offset``). :func:`sharded_greedy` then runs the same greedy as
:func:`mds_vqa.greedy.greedy_mean_distance` with ``lazy=False`` (one pass over the pool per pick, a running float64
sum of distances per candidate), every rank passing over its own shard only:

- at step ``k`` a candidate's score is ``g(x) + λ·(Σ_{y∈L∪D} d_CD(F_x, F_y)) / (m + k)`` over the ``m`` labelled
  videos ``L`` and the ``k`` picks ``D`` so far, in the released arithmetic (``g + λ·(Σ/(m + k))``, float64); the
  first pick is the argmax of ``g`` (with labelled videos, of ``g + λ·Σ_L/m``); ties break on the lowest *global*
  index, whichever rank holds it;
- per pick, each rank adds its shard's distances to the last pick's frames to its running sums
  (:func:`~mds_vqa.diversity.chamfer_stacked`), takes its local best (score, global index; taken videos excluded) and
  writes it into a small byte record with that video's diversity term, its frame count and its frames (padded to the
  pool's longest video). One ``all_gather`` of these records gives every rank every local best: each rank picks the
  global argmax (lowest global index on ties) and reads the pick's frames from the winner's record, so the owner's
  "broadcast" of the frames rides in the same collective. A ``broadcast`` from the owner would need the owner's rank
  on the host, i.e. a host synchronisation per pick; the gather needs none: the pick stays a device tensor, the picks
  and their diversity terms are written into device tensors and copied to the host once, at the end. With NCCL the
  host thus queues steps ahead of the GPUs, as :func:`~mds_vqa.greedy._pass_loop` does on one.

Every rank returns the same picks (global indices, in pick order) and each pick's diversity term (its mean distance
to the labelled videos and the picks before it; NaN for the first pick without labelled videos), equal to
``greedy_mean_distance(..., lazy=False)`` on the whole pool up to float32 rounding of the distances (each distance is
computed as it would be on the whole pool: same query padding, same chunk size).

Cost per pick: one pass over ``N/W`` videos on each of the ``W`` ranks, plus one ``all_gather`` of ``W`` records of
``32 + F·d·s`` bytes (``F`` frames of the longest video, ``d`` the feature dimension, ``s`` bytes per stored value).
Setup: one ``all_gather`` of a few integers (which also checks that the shards tile ``[0, N)`` and that every rank got
the same budget, λ, labelled count, dtype and dimension) and, with labelled videos, one many-vs-all pass per 32 of
them over each shard (:func:`~mds_vqa.greedy.labelled_sums`). Memory per rank: the shard, the pass's chunk and about
21 bytes per video of the shard.

Launch one process per GPU (``torchrun --nproc_per_node 8 my_selection.py``), initialise the process group
(:func:`init_sharding`: ``nccl`` on ``cuda:LOCAL_RANK``, ``gloo`` on CPU), load the rank's shard (rows
:func:`shard_bounds` ``(N, world_size, rank)`` of the feature column) into a :class:`FramePool` on that device and
call :func:`sharded_greedy`. :func:`mds_vqa.selection.select_subset_sharded` does all of it for a pool Dataset, and
``torchrun --nproc_per_node 8 recipes/select_subset.py --config …`` runs it from the recipe.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Sequence
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from .diversity import chamfer_stacked, resolve_device
from .frame_pool import FramePool, as_tensor
from .greedy import labelled_sums

logger = logging.getLogger(__name__)

__all__ = ["GROUP_TIMEOUT", "init_sharding", "launched_world", "shard_bounds", "sharded_greedy"]

# How long a collective of a group :func:`init_sharding` creates may wait: the ranks other than 0 wait in one while
# rank 0 writes a selection's outputs (the subset, the report with its pictures, the Hub staging and push).
GROUP_TIMEOUT = timedelta(hours=2)

# A rank's record, gathered once per pick: float64 score, float64 diversity term, int64 global index, int64 frame
# count, then the video's frames (padded to the longest video) in the pool's storage dtype, the whole a multiple of 8
# bytes so that every rank's header can be read as float64 / int64 views of the gathered buffer.
_HEADER_BYTES = 32
_DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
# the setup exchange, one int64 per field and rank
_META_FIELDS = ("ok", "offset", "videos", "dim", "uniform", "max_length", "dtype", "budget", "labelled", "lam", "g")


def shard_bounds(n: int, world_size: int, rank: int) -> tuple[int, int]:
    """The videos ``start … stop − 1`` of ``rank``'s shard when ``n`` videos are split into ``world_size``
    contiguous shards in rank order, as even as possible (the first ``n % world_size`` ranks get one more).

    Every shard is non-empty when ``n ≥ world_size`` (:func:`sharded_greedy` needs a non-empty shard per rank)."""
    if world_size < 1:
        raise ValueError(f"world_size must be ≥ 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    if n < 0:
        raise ValueError(f"n must be ≥ 0, got {n}")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def launched_world() -> tuple[int, int]:
    """``(world_size, rank)`` of this process: the initialised default process group's, else those ``torchrun`` /
    ``accelerate launch`` set in the environment (``WORLD_SIZE``, ``RANK``), else ``(1, 0)`` (a plain ``python``
    run). Initialises nothing."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    world, rank = os.environ.get("WORLD_SIZE", "1") or "1", os.environ.get("RANK", "0") or "0"
    try:
        return int(world), int(rank)
    except ValueError:
        raise ValueError(f"WORLD_SIZE={world!r} and RANK={rank!r} in the environment must be integers") from None


def init_sharding(device: str | torch.device | None = "auto") -> tuple[torch.device, bool]:
    """This rank's device, and the default process group initialised for :func:`sharded_greedy` unless it already is.

    ``device`` as in :func:`~mds_vqa.diversity.resolve_device` (``"auto"``: CUDA when available): a CUDA device
    becomes ``cuda:LOCAL_RANK`` (made the current device; the group uses ``nccl``), the CPU uses ``gloo``. The group is
    initialised from the environment ``torchrun`` sets (``env://``) with :data:`GROUP_TIMEOUT`. Returns the device
    and whether this call initialised the group (then the caller destroys it when done)."""
    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this PyTorch build: run in one process")
    dev = resolve_device(device)
    if dev.type == "cuda":
        local = os.environ.get("LOCAL_RANK", "0") or "0"
        if not local.isdigit():
            raise ValueError(f"LOCAL_RANK={local!r} in the environment must be an integer")
        if dev.index is not None and dev.index != int(local):
            logger.warning("device %s ignored: each process of a sharded selection uses cuda:LOCAL_RANK", dev)
        dev = torch.device("cuda", int(local))
        torch.cuda.set_device(dev)
    if dist.is_initialized():
        return dev, False
    dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=GROUP_TIMEOUT)
    return dev, True


def _all_gather(out: torch.Tensor, inp: torch.Tensor, group) -> None:
    """``out`` (``W·len(inp)``) ← every rank's ``inp``, in rank order."""
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    gather(out, inp, group=group)


def _local_problem(
    pool: FramePool, g: torch.Tensor | None, offset: int, budget: int, labelled: FramePool | None
) -> str | None:
    """What is wrong with this rank's own inputs (``None``: nothing)."""
    if not isinstance(pool, FramePool):
        return f"pool_shard must be a FramePool, got {type(pool).__name__}"
    if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)) or offset < 0:
        return f"offset must be an integer ≥ 0, got {offset!r}"
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        return f"budget must be an integer ≥ 1, got {budget!r}"
    if g is not None:
        if tuple(g.shape) != (len(pool),):
            return f"g_shard must have shape ({len(pool)},) like the shard, got {tuple(g.shape)}"
        if not bool(torch.isfinite(g).all()):
            return "g_shard has non-finite values"
    if labelled is not None:
        if not isinstance(labelled, FramePool):
            return f"labelled must be a FramePool, got {type(labelled).__name__}"
        if labelled.dim != pool.dim:
            return f"labelled videos have d = {labelled.dim}, the pool d = {pool.dim}"
    return None


def _exchange_meta(
    pool: FramePool,
    g: torch.Tensor | None,
    offset: int,
    budget: int,
    lam: float,
    labelled: FramePool | None,
    group,
) -> tuple[np.ndarray, int]:
    """Check the inputs on every rank: one all-gather of each rank's shard layout and arguments. Raises the same
    ``ValueError`` on every rank (no rank is left waiting in a collective). Returns the ``(W, fields)`` table and
    this rank's position in the group."""
    problem = _local_problem(pool, g, offset, budget, labelled)
    world = dist.get_world_size(group)
    rank = dist.get_rank(group)
    device = pool.device if isinstance(pool, FramePool) else torch.device("cpu")
    meta = torch.zeros(len(_META_FIELDS), dtype=torch.int64)
    if problem is None:
        meta[:] = torch.tensor(
            [
                1,
                int(offset),
                len(pool),
                pool.dim,
                pool.uniform_length or 0,
                pool.max_length,
                _DTYPE_CODES[pool.frames.dtype],
                int(budget),
                0 if labelled is None else len(labelled),
                struct.unpack("<q", struct.pack("<d", float(lam)))[0],
                int(g is not None),
            ],
            dtype=torch.int64,
        )
    table = torch.empty(world * meta.numel(), dtype=torch.int64, device=device)
    _all_gather(table, meta.to(device), group)
    table = table.view(world, -1).cpu().numpy()
    col = {name: table[:, i] for i, name in enumerate(_META_FIELDS)}
    if problem is not None:
        raise ValueError(f"sharded_greedy (rank {rank}): {problem}")
    bad = np.flatnonzero(col["ok"] == 0).tolist()
    if bad:
        raise ValueError(f"sharded_greedy: ranks {bad} got invalid inputs (see their errors)")
    for name in ("dim", "dtype", "budget", "labelled", "lam", "g"):
        if len(set(col[name].tolist())) != 1:
            values = col[name].tolist()
            if name == "lam":
                values = [struct.unpack("<d", struct.pack("<q", v))[0] for v in values]
            raise ValueError(f"sharded_greedy: ranks disagree on {name}: {values}")
    order = np.argsort(col["offset"], kind="stable")
    starts, counts = col["offset"][order], col["videos"][order]
    expected = np.concatenate([[0], np.cumsum(counts)[:-1]])
    if not np.array_equal(starts, expected):
        shards = [(int(s), int(s + c)) for s, c in zip(col["offset"], col["videos"])]
        raise ValueError(f"sharded_greedy: the shards [offset, offset + videos) per rank {shards} do not tile [0, N)")
    total = int(counts.sum())
    if budget > total:
        raise ValueError(f"sharded_greedy: budget {budget} exceeds the {total} videos of the pool")
    return table, rank


def sharded_greedy(
    pool_shard: FramePool,
    g_shard: torch.Tensor | np.ndarray | Sequence[float] | None,
    offset: int,
    budget: int,
    lam: float,
    *,
    labelled: FramePool | None = None,
    group: dist.ProcessGroup | None = None,
    chunk_frames: int | None = None,
    progress: bool = False,
) -> tuple[list[int], np.ndarray]:
    """The MDS greedy over a pool split across the ranks of ``group`` (default: the initialised default group).

    Call it on every rank with that rank's shard: ``pool_shard`` its videos' frames (non-empty; on the rank's
    device: with NCCL, its GPU), ``g_shard`` their scores ``g`` (``(len(pool_shard),)``), ``offset`` the global index
    of its first video. The shards must tile the pool ``0 … N − 1`` (any rank may hold any shard; :func:`shard_bounds`
    gives the usual split), and ``budget``, ``lam``, ``labelled`` must be the same on every rank.

    ``g_shard=None``: the ``diversity`` strategy (g ≡ 0, λ taken as 1: the first pick is global video 0, or the video
    farthest on average from the labelled ones). ``labelled``: the frames of ``m`` videos labelled before, the same on
    every rank; the diversity term then averages over them and the picks so far, as with ``base_sums`` in
    :func:`~mds_vqa.greedy.greedy_mean_distance`.

    Per pick: each rank's pass over its shard (:func:`~mds_vqa.diversity.chamfer_stacked`, ``chunk_frames`` as there)
    and one ``all_gather`` of every rank's best candidate with its frames; no host synchronisation until the end
    (module docstring). ``progress``: a progress bar on the group's rank 0.

    Returns, on every rank, the picks (global indices, in pick order) and each pick's diversity term, its mean
    Chamfer distance to the labelled videos and the picks before it (float64; NaN for the first pick without labelled
    videos): those of ``greedy_mean_distance(g, whole_pool, budget, lam, lazy=False, ...)`` up to float32 rounding of
    the distances. Raises ``ValueError`` on every rank when a rank's inputs are invalid or the ranks disagree."""
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("sharded_greedy needs an initialised torch.distributed process group")
    device = pool_shard.device if isinstance(pool_shard, FramePool) else torch.device("cpu")
    g = None if g_shard is None else as_tensor(g_shard, "g_shard").to(device=device, dtype=torch.float64).flatten()
    table, rank = _exchange_meta(pool_shard, g, offset, budget, lam, labelled, group)
    world = table.shape[0]
    pool = pool_shard
    if g is None:
        g = torch.zeros(len(pool), dtype=torch.float64, device=device)
        lam = 1.0
    budget, offset = int(budget), int(offset)
    n, dim = len(pool), pool.dim
    uniform = table[:, _META_FIELDS.index("uniform")]
    width = int(table[:, _META_FIELDS.index("max_length")].max())  # frames of the pool's longest video
    ragged = not (uniform[0] > 0 and (uniform == uniform[0]).all())
    m = 0 if labelled is None else len(labelled)

    storage = pool.frames.dtype
    frame_bytes = width * dim * pool.frames.element_size()
    record_bytes = -(-(_HEADER_BYTES + frame_bytes) // 8) * 8
    record = torch.zeros(record_bytes, dtype=torch.uint8, device=device)
    rec_score = record[0:8].view(torch.float64)
    rec_div = record[8:16].view(torch.float64)
    rec_index = record[16:24].view(torch.int64)
    rec_length = record[24:32].view(torch.int64)
    rec_frames = record[_HEADER_BYTES : _HEADER_BYTES + frame_bytes].view(storage).view(width, dim)
    gathered = torch.empty(world * record_bytes, dtype=torch.uint8, device=device)
    records = gathered.view(world, record_bytes)
    all_scores = records[:, 0:8].view(torch.float64).view(world)
    all_index = records[:, 16:24].view(torch.int64).view(world)
    no_index = torch.full((world,), torch.iinfo(torch.int64).max, dtype=torch.int64, device=device)

    steps = torch.arange(width, device=device)
    starts = pool.offsets_on_device()
    lengths = pool.lengths.to(device)
    sums = (
        labelled_sums(pool, labelled, chunk_frames=chunk_frames)
        if m
        else torch.zeros(n, dtype=torch.float64, device=device)
    )
    dist_buf = torch.empty(n, dtype=torch.float32, device=device)
    score = torch.empty(n, dtype=torch.float64, device=device)
    taken = torch.zeros(n, dtype=torch.bool, device=device)
    picks = torch.empty(budget, dtype=torch.int64, device=device)
    diversity = torch.empty(budget, dtype=torch.float64, device=device)
    xs = weights = None
    with tqdm(total=budget, desc="sharded mds", unit="pick", disable=not progress or rank != 0) as bar:
        for k in range(budget):
            denom = k + m
            if k:
                chamfer_stacked(xs, weights, pool, chunk_frames=chunk_frames, out=dist_buf[:, None], stored_exact=True)
                sums.add_(dist_buf)
            if denom:
                torch.div(sums, denom, out=score)  # the released arithmetic: g + λ·(Σ/|D|)
                score.mul_(lam).add_(g)
            else:
                score.copy_(g)
            score.masked_fill_(taken, float("-inf"))
            # this shard's best, the lowest local (so global) index on ties; a shard with every video taken offers
            # −inf, which never wins while a video is left (budget ≤ N)
            local = torch.argmax(score).view(1)
            rec_score.copy_(score.index_select(0, local))
            if denom:
                torch.div(sums.index_select(0, local), denom, out=rec_div)
            else:
                rec_div.fill_(float("nan"))
            torch.add(local, offset, out=rec_index)
            length = lengths.index_select(0, local)
            rec_length.copy_(length)
            rows = starts.index_select(0, local) + torch.minimum(steps, length - 1)  # the last frame repeated
            torch.index_select(pool.frames, 0, rows, out=rec_frames)
            _all_gather(gathered, record, group)
            # the global argmax: the best score, the lowest global index among the ranks offering it
            best = torch.where(all_scores == all_scores.max(), all_index, no_index)
            winner = records.index_select(0, torch.argmin(best).view(1)).view(record_bytes)
            pick = winner[16:24].view(torch.int64)
            picks[k : k + 1].copy_(pick)
            diversity[k : k + 1].copy_(winner[8:16].view(torch.float64))
            mine = pick - offset  # mark it taken on the rank that holds it (a no-op elsewhere)
            held = (mine >= 0) & (mine < n)
            at = mine.clamp(0, n - 1)
            taken.index_copy_(0, at, taken.index_select(0, at) | held)
            if k + 1 < budget:
                frames = winner[_HEADER_BYTES : _HEADER_BYTES + frame_bytes].view(storage).view(1, width, dim)
                xs = frames.to(torch.float32)
                if ragged:
                    count = winner[24:32].view(torch.int64)
                    weights = (steps[None, :] < count).to(torch.float32) / count.to(torch.float32)
            bar.update(1)
    return picks.tolist(), diversity.cpu().numpy()
