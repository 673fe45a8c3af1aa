"""The VLM's frames: qwen-vl-utils' sampling and resize rules applied to the project's reader (:mod:`mds_vqa.video`).

``fetch_video(ele)`` returns what ``qwen_vl_utils.fetch_video(ele, return_video_metadata=True)`` returns for a local
file (same frame indices, same resized float frames, same ``video_metadata``), with two differences: frames are
decoded by :func:`mds_vqa.video.read_frames_at` (decord where installed, PyAV everywhere), so an unreadable file raises
:class:`~mds_vqa.video.VideoReadError` naming the cause; and a clip shorter than qwen-vl-utils asks for (a one-frame
video, or ``nframes`` above the length) is not rejected: every frame is taken and the last one repeated up to an even
count, as qwen-vl-utils pads a list of frames. qwen-vl-utils' pure helpers (``smart_nframes``, ``smart_resize``,
``calculate_video_frame_range``) and constants are imported, not copied.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from qwen_vl_utils.vision_process import (
    FRAME_FACTOR,
    MODEL_SEQ_LEN,
    SPATIAL_MERGE_SIZE,
    VIDEO_MAX_TOKEN_NUM,
    VIDEO_MIN_TOKEN_NUM,
    calculate_video_frame_range,
    ceil_by_factor,
    round_by_factor,
    smart_nframes,
    smart_resize,
)
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from .video import Backend, VideoMetadata, VideoReadError, read_frames_at

__all__ = ["IMAGE_PATCH_SIZE", "frame_indices", "resize_frames", "fetch_video"]

IMAGE_PATCH_SIZE = 14  # Qwen2.5-VL's ViT patch (qwen-vl-utils' default): frames snap to multiples of 2 × 14 = 28


def _frame_count(ele: Mapping[str, Any], count: int, video_fps: float) -> int:
    """``smart_nframes``' count, or ``count`` itself when the clip is shorter than what it would ask for."""
    if "nframes" in ele:
        too_short = round_by_factor(ele["nframes"], FRAME_FACTOR) > count
    else:
        too_short = count < FRAME_FACTOR
    return count if too_short else smart_nframes(dict(ele), total_frames=count, video_fps=video_fps)


def frame_indices(ele: Mapping[str, Any], total_frames: int, video_fps: float) -> list[int]:
    """The frame indices qwen-vl-utils decodes for the video element ``ele`` (``nframes``, or ``fps`` with
    ``min_frames``/``max_frames``; ``video_start``/``video_end``): the range of ``calculate_video_frame_range``,
    ``smart_nframes`` frames of it spaced by ``linspace`` and rounded. A clip too short for ``smart_nframes`` gives
    every frame of the range, the last repeated up to an even count. Bad settings raise ``ValueError``."""
    start, end, count = calculate_video_frame_range(dict(ele), total_frames, video_fps)
    n = _frame_count(ele, count, video_fps)
    indices = torch.linspace(start, end, n).round().long().tolist()
    return indices + indices[-1:] * (ceil_by_factor(len(indices), FRAME_FACTOR) - len(indices))


def resize_frames(
    video: torch.Tensor, ele: Mapping[str, Any], image_patch_size: int = IMAGE_PATCH_SIZE
) -> torch.Tensor:
    """Resize uint8 ``(T, C, H, W)`` frames as qwen-vl-utils' ``fetch_video`` does: to ``resized_height`` ×
    ``resized_width`` snapped by ``smart_resize``, else within its pixel budget (``min_pixels``, ``max_pixels``,
    ``total_pixels`` spread over the frames); bicubic with antialiasing; returned as float32 (0–255)."""
    factor = image_patch_size * SPATIAL_MERGE_SIZE
    nframes, _, height, width = video.shape
    min_pixels = ele.get("min_pixels", VIDEO_MIN_TOKEN_NUM * factor * factor)
    total_pixels = ele.get("total_pixels", MODEL_SEQ_LEN * factor * factor * 0.9)
    max_pixels = max(
        min(VIDEO_MAX_TOKEN_NUM * factor * factor, total_pixels / nframes * FRAME_FACTOR), int(min_pixels * 1.05)
    )
    max_pixels = min(ele.get("max_pixels", max_pixels), max_pixels)
    if "resized_height" in ele and "resized_width" in ele:
        size = smart_resize(ele["resized_height"], ele["resized_width"], factor=factor)
    else:
        size = smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    return TF.resize(video, list(size), interpolation=InterpolationMode.BICUBIC, antialias=True).float()


def fetch_video(
    ele: Mapping[str, Any], *, image_patch_size: int = IMAGE_PATCH_SIZE, backend: Backend = "auto"
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Read and resize the video of the element ``ele`` (``{"video": path, ...sampling keys}``) like
    ``qwen_vl_utils.fetch_video(ele, return_video_metadata=True)``.

    Returns:
        ``(frames, video_metadata)``: float32 ``(T, 3, H, W)`` frames (``T`` even) and the dict the processor takes
        as ``video_metadata`` (``fps``, ``frames_indices``, ``total_num_frames``, ``video_backend``).

    Raises:
        VideoReadError: the file cannot be read (the error names it and the cause).
        TypeError, ValueError: ``ele`` has no file path or invalid sampling settings.
    """
    source = ele.get("video")
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"The video element needs a file path under 'video', got {type(source).__name__}: {ele}")
    path = str(source).removeprefix("file://")

    def select(meta: VideoMetadata) -> list[int]:
        if meta.fps <= 0:
            raise VideoReadError(meta.path, "the video stream reports no frame rate")
        return frame_indices(ele, meta.total_num_frames, meta.fps)

    frames, meta = read_frames_at(path, select, backend=backend)
    video = resize_frames(torch.from_numpy(frames).permute(0, 3, 1, 2), ele, image_patch_size)
    _, _, count = calculate_video_frame_range(dict(ele), meta.total_num_frames, meta.fps)
    metadata = {
        "fps": meta.fps,
        "frames_indices": meta.frames_indices,
        "total_num_frames": count,
        "video_backend": meta.backend,
    }
    return video, metadata
