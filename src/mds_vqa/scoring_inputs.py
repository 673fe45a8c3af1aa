"""The CPU half of scoring: videos → the model's inputs, prepared ahead of the model in ``DataLoader`` workers.

Each video is read and resized on its own (:func:`mds_vqa.qwen_frames.fetch_video`, qwen-vl-utils' rules), so a video
that cannot be read is that item's failure and the rest of its batch goes on. The batch's chats are then tokenised
and its frames processed (``pixel_values_videos``, ``video_grid_thw``, …) once per reading of the scoring mode (mode
``both``: the direct prompt ending in ``<answer>`` and the thinking prompt, from frames read once), as
:func:`mds_vqa.modeling.prepare_inputs` does.

:func:`scoring_batches` runs this in ``num_workers`` ``DataLoader`` workers, ``prefetch_factor`` batches ahead each,
into pinned memory when the model is on CUDA, so the model does not wait for decoding; with ``num_workers=0`` each
batch is prepared in this process when the model asks for it. It yields :class:`~mds_vqa.resumable.Batch` steps for
:meth:`~mds_vqa.resumable.ResumableRun.run_batches`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from .modeling import VideoSamplingConfig, build_messages, chat_texts, processor_inputs
from .qwen_frames import fetch_video
from .resumable import Batch
from .video import VideoReadError

if TYPE_CHECKING:
    from .scoring import ScoringConfig

__all__ = ["ScoringInputs", "read_video", "build_scoring_inputs", "prepare_scoring_inputs", "scoring_batches"]

INDEX_KEY = "index"


@dataclass
class ScoringInputs:
    """A batch of videos prepared for the model: per reading mode (``expectation``, ``generate``), the processor's
    output (CPU tensors, pinned when a loader pinned them)."""

    videos: list[str]
    inputs: dict[str, dict[str, Any]]

    def pin_memory(self) -> ScoringInputs:
        """A copy in page-locked memory (``DataLoader(pin_memory=True)`` calls it), for asynchronous copies to CUDA."""
        return ScoringInputs(
            self.videos, {mode: _map_tensors(x, torch.Tensor.pin_memory) for mode, x in self.inputs.items()}
        )

    def model_inputs(self, mode: str, device: torch.device | str) -> dict[str, Any]:
        """The inputs of reading ``mode`` on ``device`` (non-blocking from pinned memory)."""
        return _map_tensors(self.inputs[mode], lambda t: t.to(device, non_blocking=True))


def _map_tensors(inputs, fn) -> dict[str, Any]:
    return {k: (fn(v) if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}


def read_video(video: str, sampling: VideoSamplingConfig) -> tuple[torch.Tensor, dict[str, Any]]:
    """One video's frames (float32 ``(T, 3, H, W)``, resized) and the processor's ``video_metadata`` for them.

    Raises:
        VideoReadError: the video cannot be read (the error names the file and the cause).
    """
    return fetch_video(sampling.video_element(video))


def build_scoring_inputs(
    processor,
    videos: Sequence[str],
    frames: Sequence[torch.Tensor],
    metadata: Sequence[dict[str, Any]],
    config: ScoringConfig,
    sampling: VideoSamplingConfig,
) -> ScoringInputs:
    """Tokenise the chats of ``videos`` and process their read ``frames`` for each reading of ``config`` (left
    padding: the processor's tokenizer's ``padding_side``)."""
    inputs = {}
    for mode in config.reading_modes:
        reading = config.for_mode(mode)
        prefix = reading.answer_prefix if mode == "expectation" else ""
        messages = [build_messages(v, reading.prompt, sampling) for v in videos]
        texts = chat_texts(processor, messages, [prefix] * len(messages))
        inputs[mode] = dict(processor_inputs(processor, texts, frames, metadata))
    return ScoringInputs(list(videos), inputs)


def prepare_scoring_inputs(
    processor, videos: Sequence[str], config: ScoringConfig, sampling: VideoSamplingConfig
) -> ScoringInputs:
    """Read ``videos`` and build their model inputs in this process.

    Raises:
        VideoReadError: the first video that cannot be read.
    """
    read = [read_video(v, sampling) for v in videos]
    return build_scoring_inputs(processor, videos, [f for f, _ in read], [m for _, m in read], config, sampling)


class _ReadVideos(torch.utils.data.Dataset):
    """One item per row (``index``, ``video``, …): its frames and metadata, or the path and cause it could not be read
    with (a ``VideoReadError`` does not survive pickling between processes; it is rebuilt in the main process)."""

    def __init__(self, rows: Sequence[dict[str, Any]], sampling: VideoSamplingConfig):
        self.rows = list(rows)
        self.sampling = sampling

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int) -> dict[str, Any]:
        row = self.rows[k]
        try:
            frames, metadata = read_video(row["video"], self.sampling)
        except VideoReadError as err:
            return {"row": row, "error": (err.path, err.cause)}
        return {"row": row, "frames": frames, "metadata": metadata, "error": None}


class _BuildInputs:
    """The loader's ``collate_fn`` (run in the worker): the batch's read videos → their :class:`ScoringInputs`, the
    unreadable ones set apart as ``(row, path, cause)``."""

    def __init__(self, processor, config: ScoringConfig, sampling: VideoSamplingConfig):
        self.processor = processor
        self.config = config
        self.sampling = sampling

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        read = [it for it in items if it["error"] is None]
        inputs = None
        if read:
            inputs = build_scoring_inputs(
                self.processor,
                [it["row"]["video"] for it in read],
                [it["frames"] for it in read],
                [it["metadata"] for it in read],
                self.config,
                self.sampling,
            )
        failed = [(it["row"], *it["error"]) for it in items if it["error"] is not None]
        return {"rows": [it["row"] for it in read], "inputs": inputs, "failed": failed}


def scoring_batches(
    rows: Sequence[dict[str, Any]],
    processor,
    config: ScoringConfig,
    sampling: VideoSamplingConfig,
    *,
    batch_size: int,
    num_workers: int = 2,
    prefetch_factor: int = 2,
    pin_memory: bool = False,
) -> Iterator[Batch]:
    """The batches of ``rows`` (dicts with ``index`` and ``video``, in order), each prepared by a ``DataLoader``:
    ``payload`` the :class:`ScoringInputs` of its readable videos, ``failures`` the others with their
    :class:`~mds_vqa.video.VideoReadError`. ``num_workers`` workers (0: this process) prepare ``prefetch_factor``
    batches ahead each; ``pin_memory`` (for a model on CUDA) pins them."""
    if num_workers < 0 or prefetch_factor < 1:
        raise ValueError(f"num_workers must be >= 0 and prefetch_factor >= 1, got {num_workers}, {prefetch_factor}")
    if not rows:  # nothing to do: no worker to start
        return
    loader = torch.utils.data.DataLoader(
        _ReadVideos(rows, sampling),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_BuildInputs(processor, config, sampling),
        pin_memory=pin_memory,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
    )
    for prepared in loader:
        yield Batch(
            indices=[r[INDEX_KEY] for r in prepared["rows"]],
            rows=prepared["rows"],
            payload=prepared["inputs"],
            failures=[(row[INDEX_KEY], row, VideoReadError(path, cause)) for row, path, cause in prepared["failed"]],
        )
