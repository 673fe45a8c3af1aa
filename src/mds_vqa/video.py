"""Video decoding: uniformly spaced frames (or all frames, or frames at an fps) from one file.

One backend per call (``decord`` or PyAV). Every failure (missing, empty, corrupt, truncated or undecodable file)
raises :class:`VideoReadError`, which names the file and the cause.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

__all__ = ["VideoReadError", "VideoMetadata", "read_frames", "probe_video", "sample_indices", "available_backends"]

Backend = Literal["auto", "decord", "pyav"]


class VideoReadError(RuntimeError):
    """A video could not be read. ``path`` is the file, ``cause`` a short human-readable reason."""

    def __init__(self, path: str | os.PathLike, cause: str):
        self.path = str(path)
        self.cause = cause
        super().__init__(f"Cannot read video {self.path}: {cause}")


@dataclass
class VideoMetadata:
    """What was read: source fps, total frame count, the frame indices returned, frame size and backend."""

    path: str
    fps: float
    total_num_frames: int
    frames_indices: list[int] = field(default_factory=list)
    width: int = 0
    height: int = 0
    backend: str = ""

    @property
    def duration(self) -> float:
        """Duration in seconds (``total_num_frames / fps``)."""
        return self.total_num_frames / self.fps if self.fps > 0 else float("nan")

    def to_dict(self) -> dict:
        """Plain-dict view (the keys transformers' video processors read: fps, total_num_frames, frames_indices)."""
        out = asdict(self)
        out["duration"] = self.duration
        return out


def available_backends() -> list[str]:
    """The decoding backends importable in this environment, in order of preference."""
    found = []
    try:
        import decord  # noqa: F401

        found.append("decord")
    except ImportError:
        pass
    try:
        import av  # noqa: F401

        found.append("pyav")
    except ImportError:
        pass
    return found


def sample_indices(
    total_num_frames: int,
    num_frames: int | Literal["all"] | None = None,
    *,
    fps: float | None = None,
    source_fps: float | None = None,
) -> list[int]:
    """Deterministic frame indices.

    - ``num_frames=int``: that many uniformly spaced indices from first to last frame (``linspace`` rounded),
      capped at ``total_num_frames``;
    - ``num_frames="all"`` (or ``None`` without ``fps``): every frame;
    - ``fps=x``: one frame every ``source_fps / x`` frames (needs ``source_fps``).
    """
    if total_num_frames <= 0:
        raise ValueError(f"total_num_frames must be positive, got {total_num_frames}")
    if fps is not None:
        if num_frames not in (None, "all"):
            raise ValueError("Pass either num_frames or fps, not both.")
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if not source_fps or source_fps <= 0:
            raise ValueError(f"Sampling at fps={fps} needs the source fps, got {source_fps}")
        n = max(1, int(math.floor(total_num_frames / source_fps * fps)))
        return sample_indices(total_num_frames, min(n, total_num_frames))
    if num_frames is None or num_frames == "all":
        return list(range(total_num_frames))
    if not isinstance(num_frames, int) or num_frames <= 0:
        raise ValueError(f"num_frames must be a positive int or 'all', got {num_frames!r}")
    n = min(num_frames, total_num_frames)
    return np.linspace(0, total_num_frames - 1, n).round().astype(int).tolist()


def _check_file(path: Path) -> None:
    if not path.exists():
        raise VideoReadError(path, "file does not exist")
    if not path.is_file():
        raise VideoReadError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise VideoReadError(path, "file is empty (0 bytes)")


def _probe_decord(path: Path):
    import decord

    try:
        vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    except Exception as err:  # decord raises its own DECORDError / RuntimeError types
        raise VideoReadError(path, f"decord could not open the file ({type(err).__name__}: {err})") from err
    total = len(vr)
    if total == 0:
        raise VideoReadError(path, "the video stream has zero frames")
    fps = float(vr.get_avg_fps())
    return vr, total, fps


def _read_decord(path: Path, num_frames, fps) -> tuple[np.ndarray, VideoMetadata]:
    vr, total, src_fps = _probe_decord(path)
    indices = sample_indices(total, num_frames, fps=fps, source_fps=src_fps)
    try:
        frames = vr.get_batch(indices).asnumpy()
    except Exception as err:
        raise VideoReadError(
            path, f"decoding failed, the file is corrupt or truncated ({type(err).__name__}: {err})"
        ) from err
    if frames.shape[0] != len(indices):
        raise VideoReadError(path, f"asked for {len(indices)} frames, decoded {frames.shape[0]}")
    meta = VideoMetadata(str(path), src_fps, total, indices, int(frames.shape[2]), int(frames.shape[1]), "decord")
    return np.ascontiguousarray(frames, dtype=np.uint8), meta


def _open_av(path: Path):
    import av

    try:
        container = av.open(str(path))
    except Exception as err:  # av.error.* (InvalidDataError, FileNotFoundError, ...)
        raise VideoReadError(path, f"PyAV could not open the file ({type(err).__name__}: {err})") from err
    if not container.streams.video:
        container.close()
        raise VideoReadError(path, "the file has no video stream")
    return container


def _probe_av(path: Path) -> tuple[int, float, int, int]:
    """Header frame count (decoded count when the header has none), fps, width, height."""
    container = _open_av(path)
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        src_fps = float(rate) if rate else 0.0
        total = int(stream.frames or 0)
        width, height = int(stream.codec_context.width), int(stream.codec_context.height)
        if total <= 0:
            try:
                total = sum(1 for _ in container.decode(stream))
            except Exception as err:
                raise VideoReadError(
                    path, f"decoding failed while counting frames ({type(err).__name__}: {err})"
                ) from err
    finally:
        container.close()
    if total == 0:
        raise VideoReadError(path, "the video stream has zero frames")
    return total, src_fps, width, height


def _read_pyav(path: Path, num_frames, fps) -> tuple[np.ndarray, VideoMetadata]:
    total, src_fps, _, _ = _probe_av(path)
    indices = sample_indices(total, num_frames, fps=fps, source_fps=src_fps)
    wanted: dict[int, int] = {}
    for pos, idx in enumerate(indices):
        wanted.setdefault(idx, pos)
    last = indices[-1]
    out: list[np.ndarray | None] = [None] * len(indices)
    decoded = 0
    container = _open_av(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            decoded = i + 1
            if i in wanted:
                arr = frame.to_ndarray(format="rgb24")
                for pos, idx in enumerate(indices):
                    if idx == i:
                        out[pos] = arr
            if i >= last:
                break
    except Exception as err:
        raise VideoReadError(
            path,
            f"decoding failed after {decoded} frames, the file is corrupt or truncated ({type(err).__name__}: {err})",
        ) from err
    finally:
        container.close()
    missing = [idx for idx, arr in zip(indices, out) if arr is None]
    if missing:
        raise VideoReadError(
            path,
            f"truncated or corrupt: the header reports {total} frames but only {decoded} could be decoded "
            f"(frame {missing[0]} missing)",
        )
    frames = np.stack(out).astype(np.uint8, copy=False)
    meta = VideoMetadata(str(path), src_fps, total, indices, int(frames.shape[2]), int(frames.shape[1]), "pyav")
    return frames, meta


def _resolve_backend(backend: Backend) -> str:
    found = available_backends()
    if backend == "auto":
        if not found:
            raise ImportError("No video decoder installed: install `decord` or `av` (PyAV).")
        return found[0]
    if backend not in ("decord", "pyav"):
        raise ValueError(f"Unknown video backend {backend!r}; expected 'auto', 'decord' or 'pyav'.")
    if backend not in found:
        raise ImportError(f"Video backend {backend!r} is not installed (available: {found or 'none'}).")
    return backend


def read_frames(
    path: str | os.PathLike,
    num_frames: int | Literal["all"] | None = 8,
    *,
    fps: float | None = None,
    backend: Backend = "auto",
) -> tuple[np.ndarray, VideoMetadata]:
    """Read frames from ``path``.

    Args:
        path: the video file.
        num_frames: how many uniformly spaced frames (first and last included), or ``"all"``.
        fps: sample at this rate instead (``num_frames`` must then be ``None`` or ``"all"``).
        backend: ``"decord"``, ``"pyav"`` or ``"auto"`` (decord when installed, else PyAV).

    Returns:
        ``(frames, metadata)``: ``frames`` is a uint8 array ``(T, H, W, 3)`` in RGB order.

    Raises:
        VideoReadError: the file is missing, empty, corrupt, truncated or has no decodable frame.
    """
    path = Path(path)
    _check_file(path)
    name = _resolve_backend(backend)
    if name == "decord":
        return _read_decord(path, num_frames, fps)
    return _read_pyav(path, num_frames, fps)


def probe_video(path: str | os.PathLike, *, backend: Backend = "auto") -> VideoMetadata:
    """Open ``path`` without decoding pixels; return its fps, frame count and size. Raises :class:`VideoReadError`."""
    path = Path(path)
    _check_file(path)
    name = _resolve_backend(backend)
    if name == "decord":
        vr, total, src_fps = _probe_decord(path)
        h, w = vr[0].shape[:2] if total else (0, 0)
        return VideoMetadata(str(path), src_fps, total, [], int(w), int(h), "decord")
    total, src_fps, w, h = _probe_av(path)
    return VideoMetadata(str(path), src_fps, total, [], w, h, "pyav")
