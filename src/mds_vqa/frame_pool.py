"""The frame features of a pool of videos in one flat matrix: :class:`FramePool`.

Every video's ``F_i × d`` frame features are stored one video after the other in an ``(M, d)`` tensor
(``M = Σ F_i``) with their squared norms, per-video offsets and, when every video has the same frame count, a fast
``(N, F, d)`` view. :mod:`mds_vqa.diversity` computes Chamfer distances against it; the selection greedy grows its
picked set in one. Storage may be float32, float16 or bfloat16; distances are computed in float32 either way.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch

from .reporting import MAX_LISTED

__all__ = ["FramePool", "as_storage_dtype", "as_tensor"]

_STORAGE_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def as_storage_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """The storage dtype named by ``dtype`` (``"float16"``, ``"bf16"``, a ``torch.dtype``…; ``None``: float32)."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"Pool storage dtype must be float32, float16 or bfloat16, got {dtype}")
        return dtype
    if dtype not in _STORAGE_DTYPES:
        raise ValueError(f"Unknown storage dtype {dtype!r}; expected one of {sorted(_STORAGE_DTYPES)}")
    return _STORAGE_DTYPES[dtype]


def as_tensor(x, what: str) -> torch.Tensor:
    """``x`` as a tensor without a copy where possible (NumPy arrays, read-only ones included); ``what`` names it in
    errors."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            raise TypeError(f"{what}: an object array cannot be a feature matrix; pass a list of (F_i, d) arrays")
        x = np.ascontiguousarray(x)
        with warnings.catch_warnings():  # read-only (memory-mapped Arrow) buffers: shared, never written into
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(x)
    return torch.as_tensor(np.asarray(x))


class FramePool:
    """The frame features of ``N`` videos, flattened for batched distance computations.

    Attributes:
        frames: ``(M, d)`` tensor of all frames, video after video (``M = Σ F_i``), in the storage dtype.
        lengths: ``(N,)`` int64 frame counts ``F_i`` (on CPU).
        offsets: ``(N + 1,)`` int64 start of each video in ``frames`` (on CPU).
        sq_norms: ``(M,)`` float32 squared norms of the stored frames.
        uniform_length: ``F`` when every video has the same number of frames (fast path), else ``None``.
        max_length: the largest frame count ``max F_i`` (a Python int).

    Build one with :meth:`from_features` from a ``(N, F, d)`` tensor/array or a list of ``(F_i, d)`` arrays.
    """

    def __init__(self, frames: torch.Tensor, lengths: torch.Tensor | Sequence[int]):
        lengths = torch.as_tensor(lengths, dtype=torch.int64).cpu()
        if frames.ndim != 2:
            raise ValueError(f"frames must be a (M, d) matrix, got shape {tuple(frames.shape)}")
        if lengths.ndim != 1 or lengths.numel() == 0:
            raise ValueError("The pool is empty: no video features were given.")
        if (lengths <= 0).any():
            bad = torch.nonzero(lengths <= 0).flatten()[:MAX_LISTED].tolist()
            raise ValueError(f"Videos without any frame feature at rows {bad}")
        if int(lengths.sum()) != frames.shape[0]:
            raise ValueError(f"lengths sum to {int(lengths.sum())} frames but frames has {frames.shape[0]} rows")
        if frames.shape[1] == 0:
            raise ValueError("Frame features have dimension 0")
        if frames.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"frames must be float32, float16 or bfloat16, got {frames.dtype}")
        self._set_layout(frames, lengths)
        self._check_finite()
        self.sq_norms = self._squared_norms()

    def _set_layout(self, frames: torch.Tensor, lengths: torch.Tensor) -> None:
        """Frames, lengths, offsets, the uniform length and empty caches (no validation)."""
        self.frames = frames.contiguous()
        self.lengths = lengths
        self.offsets = torch.zeros(lengths.numel() + 1, dtype=torch.int64)
        torch.cumsum(lengths, 0, out=self.offsets[1:])
        first = int(lengths[0])
        self.uniform_length: int | None = first if bool((lengths == first).all()) else None
        self.max_length = first if self.uniform_length is not None else int(lengths.max())
        self._video_of_frame: torch.Tensor | None = None
        self._lengths_on_device: torch.Tensor | None = None
        self._offsets_on_device: torch.Tensor | None = None
        self._distance_bounds: torch.Tensor | None = None
        self._bounds_cache: dict[int, list[tuple[int, int, int, int]]] = {}

    # -- construction --------------------------------------------------------------------------------------------
    @classmethod
    def from_features(
        cls,
        features,
        *,
        dtype: str | torch.dtype | None = None,
        device: str | torch.device | None = None,
    ) -> FramePool:
        """A pool from ``(N, F, d)`` features (tensor or array) or a sequence of ``(F_i, d)`` matrices.

        ``dtype`` is the storage dtype (``float32`` by default; ``float16``/``bfloat16`` halve the memory and the
        bytes read per pass, distances are still computed in float32). A float32 contiguous input on the target
        device is used without a copy. Raises ``ValueError`` on an empty pool, a video without frames, features of
        different dimensions or non-finite values (naming the rows).
        """
        if isinstance(features, FramePool):
            return features.to(device=device, dtype=dtype)
        storage = as_storage_dtype(dtype)
        if isinstance(features, torch.Tensor) or (isinstance(features, np.ndarray) and features.dtype.kind != "O"):
            t = as_tensor(features, "features")
            if t.ndim == 2:
                raise ValueError(
                    "features is a 2-D matrix: pass (N, F, d) for N videos of F frames, or a list of (F_i, d)"
                )
            if t.ndim != 3:
                raise ValueError(f"features must be (N, F, d), got shape {tuple(t.shape)}")
            if t.shape[0] == 0:
                raise ValueError("The pool is empty: no video features were given.")
            if t.shape[1] == 0:
                raise ValueError("Every video has 0 frame features (features shape has F = 0)")
            n, f, d = t.shape
            frames = t.reshape(n * f, d).to(device=device or t.device, dtype=storage)
            return cls(frames, torch.full((n,), f, dtype=torch.int64))
        items = list(features)
        if not items:
            raise ValueError("The pool is empty: no video features were given.")
        mats = []
        dim = None
        for i, item in enumerate(items):
            if item is None:
                raise ValueError(f"Video {i} has no features (None)")
            m = as_tensor(item, f"features[{i}]")
            if m.ndim == 1:
                m = m.unsqueeze(0)
            if m.ndim != 2:
                raise ValueError(f"Video {i}: features must be (F, d), got shape {tuple(m.shape)}")
            if m.shape[0] == 0:
                raise ValueError(f"Video {i} has 0 frame features")
            if dim is None:
                dim = m.shape[1]
            elif m.shape[1] != dim:
                raise ValueError(
                    f"Features of different dimensions: video 0 has d = {dim}, video {i} has d = {m.shape[1]}"
                )
            mats.append(m)
        target = torch.device(device) if device is not None else mats[0].device
        frames = torch.cat([m.to(device=target, dtype=storage) for m in mats])
        return cls(frames, torch.tensor([m.shape[0] for m in mats], dtype=torch.int64))

    @classmethod
    def from_flat(
        cls,
        frames,
        lengths,
        *,
        dtype: str | torch.dtype | None = None,
        device: str | torch.device | None = None,
    ) -> FramePool:
        """A pool from all frames one video after the other (``(M, d)``, e.g. from
        :func:`mds_vqa.features.load_feature_column`, read-only memory-mapped arrays included) and per-video counts."""
        t = as_tensor(frames, "frames")
        return cls(t.to(device=device or t.device, dtype=as_storage_dtype(dtype)), lengths)

    def to(self, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None) -> FramePool:
        """This pool on ``device`` with storage ``dtype`` (itself when nothing changes)."""
        storage = self.frames.dtype if dtype is None else as_storage_dtype(dtype)
        target = self.frames.device if device is None else torch.device(device)
        if storage == self.frames.dtype and target == self.frames.device:
            return self
        return FramePool(self.frames.to(device=target, dtype=storage), self.lengths)

    # -- helpers -------------------------------------------------------------------------------------------------
    def _row_blocks(self, rows: int):
        for start in range(0, self.frames.shape[0], rows):
            yield start, self.frames[start : start + rows]

    def _check_finite(self) -> None:
        rows = max(1, (1 << 20) // self.frames.shape[1])
        bad_frames: list[int] = []
        for start, block in self._row_blocks(rows):
            ok = torch.isfinite(block).all(dim=1)
            if not bool(ok.all()):
                bad_frames.extend((torch.nonzero(~ok).flatten() + start).cpu().tolist())
        if bad_frames:
            videos = np.unique(np.searchsorted(self.offsets.numpy(), np.asarray(bad_frames), side="right") - 1)
            raise ValueError(
                f"Non-finite (NaN or inf) frame features in videos at rows {videos[:MAX_LISTED].tolist()}"
            )

    def _squared_norms(self) -> torch.Tensor:
        out = torch.empty(self.frames.shape[0], dtype=torch.float32, device=self.frames.device)
        rows = max(1, (1 << 20) // self.frames.shape[1])
        for start, block in self._row_blocks(rows):
            b = block.float()
            torch.sum(b * b, dim=1, out=out[start : start + block.shape[0]])
        return out

    def __len__(self) -> int:
        return self.lengths.numel()

    @property
    def dim(self) -> int:
        """Feature dimension ``d``."""
        return self.frames.shape[1]

    @property
    def device(self) -> torch.device:
        """Where the frames live."""
        return self.frames.device

    @property
    def nbytes(self) -> int:
        """Bytes held by the frame matrix."""
        return self.frames.numel() * self.frames.element_size()

    def video(self, i: int) -> torch.Tensor:
        """The stored ``(F_i, d)`` frames of video ``i`` (a view)."""
        return self.frames[int(self.offsets[i]) : int(self.offsets[i + 1])]

    def subset(self, indices: Sequence[int] | torch.Tensor) -> FramePool:
        """A new pool holding videos ``indices`` in that order (copies their frames; no re-validation)."""
        if isinstance(indices, torch.Tensor):
            sel = indices.to(device=self.frames.device, dtype=torch.int64).flatten()
        else:
            sel = torch.as_tensor([int(i) for i in indices], dtype=torch.int64, device=self.frames.device)
        if sel.numel() == 0:
            raise ValueError("subset of an empty index list")
        if self.uniform_length is not None:
            f = self.uniform_length
            frames = self.frames.view(len(self), f, self.dim).index_select(0, sel).reshape(-1, self.dim)
            sq_norms = self.sq_norms.view(len(self), f).index_select(0, sel).reshape(-1)
            lengths = torch.full((sel.numel(),), f, dtype=torch.int64)
        else:
            idx = sel.cpu().tolist()
            frames = torch.cat([self.video(i) for i in idx])
            sq_norms = torch.cat([self.sq_norms[int(self.offsets[i]) : int(self.offsets[i + 1])] for i in idx])
            lengths = self.lengths[idx]
        return FramePool._validated(frames, lengths, sq_norms)

    @classmethod
    def _validated(cls, frames: torch.Tensor, lengths: torch.Tensor, sq_norms: torch.Tensor) -> FramePool:
        """A pool from parts of an already validated pool (finite frames, matching lengths, their squared norms)."""
        pool = cls.__new__(cls)
        pool._set_layout(frames, lengths)
        pool.sq_norms = sq_norms
        return pool

    def as_queries(self) -> torch.Tensor | list[torch.Tensor]:
        """The videos as queries of :func:`chamfer_many_vs_all`: a ``(N, F, d)`` view when every video has ``F``
        frames, else a list of ``(F_i, d)`` views."""
        if self.uniform_length is not None:
            return self.frames.view(len(self), self.uniform_length, self.dim)
        return [self.video(i) for i in range(len(self))]

    def distance_bounds(self) -> torch.Tensor:
        """Per video ``v``, a float64 ``a_v`` with ``d_CD(x, y) ≤ a_x + a_y`` for every pair, as computed here.

        With ``μ`` the mean of all frames, ``‖a − b‖ ≤ ‖a − μ‖ + ‖μ − b‖`` gives
        ``d_CD(x, y) ≤ ½·(mean_x + min_x) + ½·(mean_y + min_y)``, where ``mean_v``/``min_v`` are the mean/min over
        ``v``'s frames of ``‖f − μ‖``. A margin of ``1e-3·max(1, max‖f‖)`` per video covers the float32 rounding of
        the computed distances (the square root of a rounding-noise squared distance is ≈ 3e-4 for unit features).
        One pass over the frames; cached."""
        if self._distance_bounds is not None:
            return self._distance_bounds
        device = self.frames.device
        rows = max(1, (1 << 20) // self.dim)
        total = torch.zeros(self.dim, dtype=torch.float64, device=device)
        for _, block in self._row_blocks(rows):
            total += block.float().sum(dim=0, dtype=torch.float64)
        mu = (total / self.frames.shape[0]).float()
        radius = torch.empty(self.frames.shape[0], dtype=torch.float64, device=device)
        for start, block in self._row_blocks(rows):
            radius[start : start + block.shape[0]] = torch.linalg.vector_norm(block.float() - mu, dim=1)
        n = len(self)
        if self.uniform_length is not None:
            per = radius.view(n, self.uniform_length)
            mean, low = per.mean(dim=1), per.amin(dim=1)
        else:
            seg = self.video_of_frame()
            counts = self.lengths.to(device=device, dtype=torch.float64)
            mean = torch.zeros(n, dtype=torch.float64, device=device).index_add_(0, seg, radius) / counts
            low = torch.full((n,), float("inf"), dtype=torch.float64, device=device)
            low.scatter_reduce_(0, seg, radius, reduce="amin", include_self=True)
        margin = 1e-3 * max(1.0, float(self.sq_norms.max().sqrt()))
        self._distance_bounds = 0.5 * (mean + low) + margin
        return self._distance_bounds

    def lengths_on_device(self) -> torch.Tensor:
        """``(N,)`` float32 frame counts on the pool's device (cached: a pass over a ragged pool copies nothing from
        the host)."""
        if self._lengths_on_device is None:
            self._lengths_on_device = self.lengths.to(device=self.frames.device, dtype=torch.float32)
        return self._lengths_on_device

    def offsets_on_device(self) -> torch.Tensor:
        """``(N + 1,)`` int64 :attr:`offsets` on the pool's device (cached)."""
        if self._offsets_on_device is None:
            self._offsets_on_device = self.offsets.to(self.frames.device)
        return self._offsets_on_device

    @classmethod
    def uniform_view(cls, frames: torch.Tensor, frames_per_video: int, sq_norms: torch.Tensor) -> FramePool:
        """A pool of videos of ``frames_per_video`` frames each over already validated ``frames`` and their squared
        norms, without a copy or a check (the greedy's picked set, a slice of it at every step)."""
        pool = cls.__new__(cls)
        n = frames.shape[0] // frames_per_video
        pool.frames = frames
        pool.sq_norms = sq_norms
        pool.lengths = torch.full((n,), frames_per_video, dtype=torch.int64)
        pool.offsets = torch.arange(0, (n + 1) * frames_per_video, frames_per_video, dtype=torch.int64)
        pool.uniform_length = frames_per_video
        pool.max_length = frames_per_video
        pool._video_of_frame = None
        pool._lengths_on_device = None
        pool._offsets_on_device = None
        pool._distance_bounds = None
        pool._bounds_cache = {}
        return pool

    def video_of_frame(self) -> torch.Tensor:
        """``(M,)`` int64: the video each frame belongs to (on the pool's device)."""
        if self._video_of_frame is None:
            self._video_of_frame = torch.repeat_interleave(
                torch.arange(len(self), device=self.frames.device), self.lengths.to(self.frames.device)
            )
        return self._video_of_frame

    def chunk_bounds(self, chunk_frames: int) -> list[tuple[int, int, int, int]]:
        """``(video_start, video_end, frame_start, frame_end)`` chunks of whole videos with ≤ ``chunk_frames`` frames
        each (a video longer than that is a chunk of its own)."""
        if chunk_frames in self._bounds_cache:
            return self._bounds_cache[chunk_frames]
        n = len(self)
        bounds = []
        if self.uniform_length is not None:
            f = self.uniform_length
            per = max(1, chunk_frames // f)
            for v0 in range(0, n, per):
                v1 = min(n, v0 + per)
                bounds.append((v0, v1, v0 * f, v1 * f))
        else:
            offsets = self.offsets.numpy()
            v0 = 0
            while v0 < n:
                v1 = int(np.searchsorted(offsets, offsets[v0] + chunk_frames, side="right")) - 1
                v1 = min(n, max(v1, v0 + 1))
                bounds.append((v0, v1, int(offsets[v0]), int(offsets[v1])))
                v0 = v1
        self._bounds_cache[chunk_frames] = bounds
        return bounds
