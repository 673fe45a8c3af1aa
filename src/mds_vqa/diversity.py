"""Chamfer distance between the frame-feature sets of videos, one video against a whole pool in one pass, and the
diversity of a selection.

A video is a set of frame features ``F_x`` (``m × d``, L2-normalised open_clip image features). Following the paper,

    d_CD(A, B) = ½·(mean_{a∈A} min_{b∈B} ‖a − b‖ + mean_{b∈B} min_{a∈A} ‖a − b‖)      (Euclidean).

:func:`chamfer_distance` computes it for one pair. :func:`chamfer_one_vs_all` computes it between one video and all
``N`` videos of a :class:`FramePool` at once: a single matrix product of the pool's frames (``M × d``, all videos
flattened) against the video's frames (``d × m``), then min-reductions over each video's frames and over the query's
frames. The pool is walked in chunks of whole videos (≤ 4 M distances each on CPU), so the extra memory is
``chunk × m`` floats, plus a 4 MB float32 buffer when the pool is stored in half precision: never ``N × N``.

Distances use ``‖a − b‖² = ‖a‖² + ‖b‖² − 2a·b`` in float32: about 1e-6 off the exact value for distances of order 1,
and up to ≈ 3e-4 for (near-)identical frames, where the expansion cancels to rounding noise.

:func:`marginal_diversity` gives, for an ordered selection, each pick's mean distance to the picks before it (the
term λ multiplies in the MDS score); :func:`mean_pairwise_distance` the selection's mean distance over all pairs.
:class:`FramePool` lives in :mod:`mds_vqa.frame_pool`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .frame_pool import FramePool, as_tensor

__all__ = [
    "FramePool",
    "chamfer_distance",
    "chamfer_many_vs_all",
    "chamfer_one_vs_all",
    "chamfer_stacked",
    "default_chunk_frames",
    "marginal_diversity",
    "mean_pairwise_distance",
    "resolve_device",
]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` or ``"auto"``: CUDA when available, else CPU; anything else as ``torch.device`` reads it."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def default_chunk_frames(device: torch.device | str, num_query_frames: int) -> int:
    """Pool frames per chunk: the ``chunk × m`` block of squared distances stays ≤ 4 M floats (16 MB) on CPU and
    ≤ 64 M floats on GPU."""
    budget = (1 << 26) if torch.device(device).type == "cuda" else (1 << 22)
    return max(1, budget // max(1, num_query_frames))


def _upcast_rows(device: torch.device, dim: int) -> int:
    """Rows of a half-precision pool upcast to float32 at a time: ≤ 1 M floats (4 MB, cache-resident) on CPU."""
    return max(1, ((1 << 20) if device.type != "cuda" else (1 << 26)) // max(1, dim))


def chamfer_distance(a, b) -> torch.Tensor:
    """Chamfer distance between two frame-feature sets ``a`` (``m × d``) and ``b`` (``n × d``), exactly as defined
    in the paper: ``½·(mean_a min_b ‖a − b‖ + mean_b min_a ‖a − b‖)`` with Euclidean distances.

    Distances are computed from differences (no ``‖a‖² + ‖b‖² − 2a·b`` expansion), in float64 when either input is
    float64, else float32. Returns a 0-d tensor.
    """
    a = as_tensor(a, "a")
    b = as_tensor(b, "b")
    for name, t in (("a", a), ("b", b)):
        if t.ndim != 2:
            raise ValueError(f"{name} must be a (frames, d) matrix, got shape {tuple(t.shape)}")
        if t.shape[0] == 0:
            raise ValueError(f"{name} has no frames")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"Features of different dimensions: a has d = {a.shape[1]}, b has d = {b.shape[1]}")
    dtype = torch.float64 if torch.float64 in (a.dtype, b.dtype) else torch.float32
    a = a.to(dtype)
    b = b.to(device=a.device, dtype=dtype)
    d = torch.cdist(a.unsqueeze(0), b.unsqueeze(0), compute_mode="donot_use_mm_for_euclid_dist")[0]
    return 0.5 * (d.min(dim=1).values.mean() + d.min(dim=0).values.mean())


def chamfer_one_vs_all(
    x,
    pool: FramePool | torch.Tensor | np.ndarray | Sequence,
    *,
    chunk_frames: int | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Chamfer distances between the video ``x`` (``m × d`` frame features) and every video of ``pool``.

    One pass over the pool: per chunk, one matrix product ``‖b‖² − 2·pool_frames @ x.T`` (``chunk × m``, one
    ``addmm``), squared distances ``‖b‖² + ‖a‖² − 2a·b`` clamped at 0, then the min over each pool video's frames (for
    every frame of ``x``) and the min over ``x``'s frames (for every pool frame), square roots of the minima and the
    two means. Computed in float32 on the pool's device (a half-precision pool is upcast chunk by chunk). ``pool`` may
    be a :class:`FramePool` (build it once when calling repeatedly) or anything :meth:`FramePool.from_features` takes.

    Returns a float32 ``(N,)`` tensor on the pool's device (written into ``out`` when given).
    """
    if out is not None and out.ndim != 1:
        raise ValueError(f"out must be a (N,) vector, got shape {tuple(out.shape)}")
    result = chamfer_many_vs_all([x], pool, chunk_frames=chunk_frames, out=None if out is None else out[:, None])
    return result[:, 0]


def chamfer_many_vs_all(
    queries,
    pool: FramePool | torch.Tensor | np.ndarray | Sequence,
    *,
    chunk_frames: int | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Chamfer distances between each of ``Q`` query videos and every video of ``pool``, in one pass over the pool.

    ``queries`` is a sequence of ``(m_j, d)`` frame matrices (or a ``(Q, m, d)`` tensor). All query frames go into
    one matrix product per pool chunk (``chunk × Σm_j``), so the pool is read once for all ``Q`` queries: the pass
    costs about as much memory traffic as :func:`chamfer_one_vs_all` and ``Q`` times its arithmetic. Queries of
    different lengths are padded with copies of their own first frame (a duplicate never changes a minimum) and
    averaged over their real frames. Values are those of :func:`chamfer_one_vs_all` for each query, up to float32
    rounding of the product.

    Returns a float32 ``(N, Q)`` tensor on the pool's device (written into ``out`` when given).
    """
    if not isinstance(pool, FramePool):
        pool = FramePool.from_features(pool)
    xs, weights = _stack_queries(queries, pool)
    return chamfer_stacked(xs, weights, pool, chunk_frames=chunk_frames, out=out)


def chamfer_stacked(
    xs: torch.Tensor,
    weights: torch.Tensor | None,
    pool: FramePool,
    *,
    chunk_frames: int | None = None,
    out: torch.Tensor | None = None,
    stored_exact: bool = False,
) -> torch.Tensor:
    """:func:`chamfer_many_vs_all` on queries already stacked: ``xs`` a float32 ``(Q, m, d)`` tensor on the pool's
    device, ``weights`` ``None`` (every query has ``m`` frames) or the ``(Q, m)`` weights averaging each query over
    its real frames (padding frames, copies of a real one, weigh 0).

    Reads no value back to the host: a caller holding the query as a device tensor (the greedy's pick) runs it
    without a host synchronisation. Extra memory: one ``chunk × Q·m`` float32 block of squared distances, its two
    minima (``1/m`` of it each) and, for a 16-bit pool, a float32 upcast buffer of at most ``_upcast_rows`` rows
    and never more than 1/32 of the pool's frames (so ≤ 1/16 of the 16-bit features' bytes).

    ``stored_exact``: the queries are frames of the pool, exactly representable in its storage dtype. On CUDA a
    16-bit pool is then multiplied in its own dtype with float32 accumulation (``torch.mm(..., out_dtype=float32)``:
    products of 16-bit values are exact in float32, so only the summation order differs from the upcast product),
    which reads the 16-bit features once instead of upcasting them."""
    device = pool.device
    nq, m = xs.shape[0], xs.shape[1]
    x = xs.reshape(nq * m, pool.dim)
    x2 = (x * x).sum(dim=1)
    xt = x.t()  # a transposed view: the (rows, d) @ (d, cols) product with this layout is the fast one on CPU
    n = len(pool)
    if out is None:
        out = torch.empty(n, nq, dtype=torch.float32, device=device)
    elif tuple(out.shape) != (n, nq):
        raise ValueError(f"out must have shape {(n, nq)}, got {tuple(out.shape)}")
    upcast = None
    low = None
    if pool.frames.dtype != torch.float32 and stored_exact and _mixed_mm_supported(device, pool.frames.dtype):
        # the queries are stored frames, exact in the storage dtype: 16-bit products accumulated in float32
        low = (-2.0 * x).to(pool.frames.dtype).t()
    elif pool.frames.dtype != torch.float32:
        rows = min(
            _upcast_rows(device, pool.dim),
            max(_upcast_rows(torch.device("cpu"), pool.dim), -(-len(pool.frames) // 32)),
        )
        upcast = torch.empty(min(rows, pool.frames.shape[0]), pool.dim, dtype=torch.float32, device=device)
    for v0, v1, f0, f1 in pool.chunk_bounds(chunk_frames or default_chunk_frames(device, nq * m)):
        if low is not None:
            s = torch.mm(pool.frames[f0:f1], low, out_dtype=torch.float32).add_(pool.sq_norms[f0:f1, None])
        else:
            s = _partial_squared_distances(pool, xt, f0, f1, upcast)
        _chunk_chamfer(pool, s, x2, (v0, v1, f0, f1), (nq, m), weights, out=out[v0:v1])
    return out


_MIXED_MM: dict[tuple[str, torch.dtype], bool] = {}


def _mixed_mm_supported(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether ``torch.mm(a, b, out_dtype=torch.float32)`` runs on 16-bit ``dtype`` inputs on ``device`` (CUDA, recent
    torch); probed once per device and dtype."""
    if device.type != "cuda":
        return False
    key = (str(device), dtype)
    if key not in _MIXED_MM:
        a = torch.ones(16, 16, dtype=dtype, device=device)
        try:
            ok = torch.mm(a, a, out_dtype=torch.float32).dtype == torch.float32
        except (RuntimeError, TypeError, NotImplementedError):
            ok = False
        _MIXED_MM[key] = ok
    return _MIXED_MM[key]


def _stack_queries(queries, pool: FramePool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The queries as one float32 ``(Q, m, d)`` tensor on the pool's device, and the ``(Q, m)`` weights averaging
    each query over its real frames (``None`` when every query has ``m`` frames)."""
    device = pool.device
    if isinstance(queries, (torch.Tensor, np.ndarray)) and getattr(queries, "ndim", 0) == 3:
        xs = as_tensor(queries, "queries")
        if xs.shape[0] == 0 or xs.shape[1] == 0:
            raise ValueError(f"queries must be a non-empty (Q, frames, d) tensor, got shape {tuple(xs.shape)}")
        if xs.shape[2] != pool.dim:
            raise ValueError(f"Features of different dimensions: x has d = {xs.shape[2]}, the pool has d = {pool.dim}")
        return xs.to(device=device, dtype=torch.float32), None
    qs = []
    for j, q in enumerate(queries):
        q = as_tensor(q, f"queries[{j}]" if j else "x")
        if q.ndim != 2 or q.shape[0] == 0:
            raise ValueError(f"x must be a non-empty (frames, d) matrix, got shape {tuple(q.shape)} (query {j})")
        if q.shape[1] != pool.dim:
            raise ValueError(
                f"Features of different dimensions: x has d = {q.shape[1]}, the pool has d = {pool.dim} (query {j})"
            )
        qs.append(q.to(device=device, dtype=torch.float32))
    if not qs:
        raise ValueError("No query video was given")
    nq = len(qs)
    lens = [q.shape[0] for q in qs]
    m = max(lens)
    if all(length == m for length in lens):
        return (torch.stack(qs) if nq > 1 else qs[0][None]), None
    # pad with copies of each query's first frame; weights average over the real frames only
    xs = torch.stack([torch.cat([q, q[:1].expand(m - q.shape[0], -1)]) for q in qs])
    weights = torch.zeros(nq, m, dtype=torch.float32, device=device)
    for j, length in enumerate(lens):
        weights[j, :length] = 1.0 / length
    return xs, weights


def _partial_squared_distances(
    pool: FramePool, xt: torch.Tensor, f0: int, f1: int, upcast: torch.Tensor | None
) -> torch.Tensor:
    """``‖b‖² − 2a·b`` for pool frames ``f0 … f1 − 1`` (rows) against every query frame (columns), float32."""
    if upcast is None:
        return torch.addmm(pool.sq_norms[f0:f1, None], pool.frames[f0:f1], xt, alpha=-2.0)
    # upcast cache-sized blocks of the half-precision pool, one product each, into one (R, cols) block
    s = torch.empty(f1 - f0, xt.shape[1], dtype=torch.float32, device=pool.device)
    sub_rows = upcast.shape[0]
    for b0 in range(f0, f1, sub_rows):
        b1 = min(f1, b0 + sub_rows)
        block = upcast[: b1 - b0].copy_(pool.frames[b0:b1])
        torch.addmm(pool.sq_norms[b0:b1, None], block, xt, alpha=-2.0, out=s[b0 - f0 : b1 - f0])
    return s


def _chunk_chamfer(
    pool: FramePool,
    s: torch.Tensor,
    x2: torch.Tensor,
    bounds: tuple[int, int, int, int],
    shape: tuple[int, int],
    weights: torch.Tensor | None,
    *,
    out: torch.Tensor,
) -> None:
    """The Chamfer distances of pool videos ``v0 … v1 − 1`` to every query, from their partial squared distances
    ``s`` (``(R, Q·m)``, modified in place), written into ``out`` (``(v1 − v0, Q)``)."""
    v0, v1, f0, f1 = bounds
    nq, m = shape
    cols = nq * m
    device = pool.device
    uniform = pool.uniform_length
    seg = None if uniform is not None else pool.video_of_frame()
    nv = v1 - v0
    if uniform is not None:
        col = s.view(nv, uniform, cols).amin(dim=1)  # (nv, cols): per video, min over its frames
    else:
        local = (seg[f0:f1] - v0)[:, None].expand(-1, cols)
        col = torch.full((nv, cols), float("inf"), dtype=torch.float32, device=device)
        col.scatter_reduce_(0, local, s, reduce="amin", include_self=True)
    col = col.add_(x2).clamp_(min=0).sqrt_().view(nv, nq, m)
    # mean over each query's frames of the min over the pool video's frames
    term_x = col.mean(dim=2) if weights is None else (col * weights).sum(dim=2)
    s.add_(x2)  # full squared distances
    row = s.view(-1, nq, m).amin(dim=2).clamp_(min=0).sqrt_()  # (R, Q): per pool frame, min over a query's frames
    if uniform is not None:
        term_y = row.view(nv, uniform, nq).mean(dim=1)
    else:
        term_y = torch.zeros(nv, nq, dtype=torch.float32, device=device).index_add_(0, seg[f0:f1] - v0, row)
        term_y.div_(pool.lengths_on_device()[v0:v1, None])
    torch.add(term_x, term_y, out=out).mul_(0.5)


# --------------------------------------------------------------------------------------------------------------------
# Diversity of a selection
# --------------------------------------------------------------------------------------------------------------------


def marginal_diversity(
    features, order: Sequence[int], *, device=None, storage_dtype=None, chunk_frames: int | None = None
) -> np.ndarray:
    """For an ordered selection, the mean Chamfer distance of each pick to the picks before it (NaN for the first).

    Costs ``len(order)`` one-vs-all passes over the selected videos only (not the pool)."""
    order = [int(i) for i in order]
    if not order:
        return np.empty(0, dtype=np.float64)
    pool = FramePool.from_features(features, dtype=storage_dtype, device=resolve_device(device))
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
