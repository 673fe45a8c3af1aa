"""Video decoding, the one reader of every stage: chosen frames (uniformly spaced, all, at an fps, or any indices).

Decodes with ``decord`` where it is installed and with PyAV everywhere (``decord`` has no aarch64 wheel). Every
failure (missing, empty, unreadable, audio-only, truncated or undecodable file) raises :class:`VideoReadError`, which
names the file and the cause; the cause reads the same whichever backend was asked for: when decord fails, PyAV reads
the file again and either says why it cannot be read or returns its frames.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "VideoReadError",
    "VideoMetadata",
    "FrameSelector",
    "read_frames",
    "read_frames_at",
    "probe_video",
    "sample_indices",
    "available_backends",
]

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


# Chooses the frame indices to decode from the file's header (``frames_indices`` still empty); indices may repeat.
FrameSelector = Callable[[VideoMetadata], Sequence[int]]


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


# --------------------------------------------------------------------------------------------------------------------
# Why a file cannot be opened
# --------------------------------------------------------------------------------------------------------------------


def _check_file(path: Path) -> None:
    if not path.exists():
        raise VideoReadError(path, "file does not exist")
    if not path.is_file():
        raise VideoReadError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise VideoReadError(path, "file is empty (0 bytes)")


def _mp4_without_index(path: Path) -> bool:
    """True when ``path`` starts like an MP4/MOV file (an ``ftyp`` box) but none of its top-level boxes is the
    ``moov`` index: the file was cut short (or never finished) before the index was written."""
    size = path.stat().st_size
    pos, boxes = 0, 0
    with open(path, "rb") as fh:
        while pos + 8 <= size:
            fh.seek(pos)
            head = fh.read(16)
            box_size, kind = int.from_bytes(head[:4], "big"), head[4:8]
            if (boxes == 0 and kind != b"ftyp") or kind == b"moov":
                return False
            boxes += 1
            if box_size == 1 and len(head) == 16:
                box_size = int.from_bytes(head[8:16], "big")
            if box_size < 8:  # 0: the box runs to the end of the file; < 8: not a box
                break
            pos += box_size
    return boxes > 0


def _open_av(path: Path):
    """The PyAV container of ``path`` with at least one video stream, or :class:`VideoReadError` saying why not."""
    import av

    try:
        container = av.open(str(path))
    except av.error.FFmpegError as err:
        if _mp4_without_index(path):
            raise VideoReadError(
                path, "truncated or corrupt MP4: it has no 'moov' index box (the file was cut short or never finished)"
            ) from err
        reason = getattr(err, "strerror", None) or str(err)
        raise VideoReadError(path, f"not a video file FFmpeg can open ({reason})") from err
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["nothing"]
        container.close()
        raise VideoReadError(path, f"the file has no video stream (it holds: {', '.join(kinds)})")
    return container


# --------------------------------------------------------------------------------------------------------------------
# PyAV
# --------------------------------------------------------------------------------------------------------------------


def _probe_av(path: Path) -> VideoMetadata:
    """Header frame count (decoded count when the header has none), fps, width and height."""
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
            except Exception as err:  # av.error.* of a corrupt stream
                raise VideoReadError(
                    path, f"decoding failed while counting frames, the file is corrupt ({type(err).__name__}: {err})"
                ) from err
    finally:
        container.close()
    if total == 0:
        raise VideoReadError(path, "the video stream has zero frames")
    return VideoMetadata(str(path), src_fps, total, [], width, height, "pyav")


def _decode_av(path: Path, indices: list[int], total: int) -> np.ndarray:
    """The frames at ``indices`` (any order, repeats allowed), decoding the stream from its start."""
    positions: dict[int, list[int]] = {}
    for pos, idx in enumerate(indices):
        positions.setdefault(idx, []).append(pos)
    last = max(indices)
    out: list[np.ndarray | None] = [None] * len(indices)
    decoded = 0
    container = _open_av(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            decoded = i + 1
            if i in positions:
                arr = frame.to_ndarray(format="rgb24")
                for pos in positions[i]:
                    out[pos] = arr
            if i >= last:
                break
    except Exception as err:  # av.error.* of a corrupt stream
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
    return np.stack(out).astype(np.uint8, copy=False)


def _read_pyav(path: Path, select: FrameSelector) -> tuple[np.ndarray, VideoMetadata]:
    meta = _probe_av(path)
    meta.frames_indices = _checked(select(meta), meta)
    frames = _decode_av(path, meta.frames_indices, meta.total_num_frames)
    meta.width, meta.height = int(frames.shape[2]), int(frames.shape[1])
    return frames, meta


# --------------------------------------------------------------------------------------------------------------------
# decord
# --------------------------------------------------------------------------------------------------------------------


class _DecordFailed(Exception):
    """decord raised while opening or decoding (PyAV is then asked why)."""


def _open_decord(path: Path):
    import decord

    try:
        vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        total, fps = len(vr), float(vr.get_avg_fps())
    except Exception as err:  # decord raises its own DECORDError / RuntimeError types
        raise _DecordFailed(f"{type(err).__name__}: {err}") from err
    if total == 0:
        raise _DecordFailed("the video stream has zero frames")
    return vr, total, fps


def _read_decord(path: Path, select: FrameSelector) -> tuple[np.ndarray, VideoMetadata]:
    vr, total, fps = _open_decord(path)
    meta = VideoMetadata(str(path), fps, total, [], 0, 0, "decord")
    meta.frames_indices = _checked(select(meta), meta)
    try:
        frames = vr.get_batch(meta.frames_indices).asnumpy()
    except Exception as err:  # decord's DECORDError of a corrupt stream
        raise _DecordFailed(f"{type(err).__name__}: {err}") from err
    if frames.shape[0] != len(meta.frames_indices):
        raise _DecordFailed(f"asked for {len(meta.frames_indices)} frames, decoded {frames.shape[0]}")
    meta.width, meta.height = int(frames.shape[2]), int(frames.shape[1])
    return np.ascontiguousarray(frames, dtype=np.uint8), meta


# --------------------------------------------------------------------------------------------------------------------
# Public readers
# --------------------------------------------------------------------------------------------------------------------


def _checked(indices: Sequence[int], meta: VideoMetadata) -> list[int]:
    """``indices`` as a list of ints, each a frame of the video (else ``ValueError``: the selector is wrong)."""
    out = [int(i) for i in indices]
    if not out or min(out) < 0 or max(out) >= meta.total_num_frames:
        raise ValueError(
            f"Frame selector chose indices {out[:8]}{'...' if len(out) > 8 else ''} for {meta.path}, which has "
            f"{meta.total_num_frames} frames"
        )
    return out


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


def read_frames_at(
    path: str | os.PathLike, select: FrameSelector, *, backend: Backend = "auto"
) -> tuple[np.ndarray, VideoMetadata]:
    """Read the frames that ``select`` chooses from the file's metadata (source fps and frame count).

    When decord cannot open or decode the file, PyAV reads it: its :class:`VideoReadError` gives the cause, and
    when it succeeds its frames are returned (``metadata.backend == "pyav"``, with a warning).

    Returns:
        ``(frames, metadata)``: ``frames`` is a uint8 array ``(T, H, W, 3)`` in RGB order, one frame per index chosen.

    Raises:
        VideoReadError: the file is missing, empty, unreadable, has no video stream, or is corrupt or truncated.
        ValueError: ``select`` chose an index outside the video (or raised it).
    """
    path = Path(path)
    _check_file(path)
    if _resolve_backend(backend) == "pyav":
        return _read_pyav(path, select)
    try:
        return _read_decord(path, select)
    except _DecordFailed as err:
        frames, meta = _read_pyav(path, select)
        logger.warning("decord could not read %s (%s); PyAV could, its frames are used.", path, err)
        return frames, meta


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
        VideoReadError: the file is missing, empty, unreadable, has no video stream, or is corrupt or truncated.
    """

    def uniform(meta: VideoMetadata) -> list[int]:
        return sample_indices(meta.total_num_frames, num_frames, fps=fps, source_fps=meta.fps)

    return read_frames_at(path, uniform, backend=backend)


def probe_video(path: str | os.PathLike) -> VideoMetadata:
    """Open ``path`` and read its header with PyAV, decoding no pixel (unless the header has no frame count): its
    fps, frame count and size. Raises :class:`VideoReadError`."""
    path = Path(path)
    _check_file(path)
    return _probe_av(path)
