"""Per-video frame features for the diversity term: uniformly sampled frames → L2-normalised open_clip embeddings.

Frames are decoded and preprocessed in ``DataLoader`` workers, frames of several videos are encoded in one forward
pass, and results go to Parquet shards through :class:`~mds_vqa.resumable.ResumableRun`: a killed run restarts where
it stopped (nothing already computed is recomputed), each ``accelerate`` process takes every ``num_processes``-th
video, and a corrupt video is recorded in ``failures-<rank>.jsonl`` and skipped.

Storage: :func:`~mds_vqa.feature_column.merge_features` adds one column ``features`` of type
``List(List(Value("float32"), length=d))`` to the pool: one ``F × d`` matrix per video (``F`` frames, free so
``num_frames="all"`` fits), ``None`` where the video could not be read, and ``features_error`` next to it saying why.
It is a plain Arrow ``list<fixed_size_list<float32, d>>`` column: ``save_to_disk`` / ``push_to_hub`` keep it,
``ds.with_format("numpy")`` reads a row as an ``(F, d)`` array, and
:func:`~mds_vqa.feature_column.load_feature_column` reads the whole column without going through Python objects
(zero-copy from the memory-mapped Arrow file). Both are re-exported here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from datasets import Dataset

from .feature_column import (
    FEATURES_COLUMN,
    column_values,
    feature_dim,
    load_feature_column,
    merge_features,
    missing_feature_rows,
)
from .resumable import ResumableRun, RunSummary, check_run_config
from .video import VideoReadError, read_frames

logger = logging.getLogger(__name__)

__all__ = [
    "FEATURES_COLUMN",
    "DEFAULT_MODEL",
    "DEFAULT_PRETRAINED",
    "load_open_clip",
    "save_open_clip",
    "VideoFrameDataset",
    "FrameEncoder",
    "extract_features",
    "merge_features",
    "feature_dim",
    "load_feature_column",
    "missing_feature_rows",
    "parse_num_frames",
    "column_values",
]

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
RUN_CONFIG_FILE = "feature_run.json"
_AUTOCAST = {
    "amp": torch.float16,
    "amp_fp16": torch.float16,
    "amp_bf16": torch.bfloat16,
    "amp_bfloat16": torch.bfloat16,
}


# --------------------------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------------------------


def load_open_clip(
    model_name: str = DEFAULT_MODEL,
    pretrained: str | None = DEFAULT_PRETRAINED,
    *,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    cache_dir: str | None = None,
):
    """An open_clip model in eval mode and its evaluation preprocessing: ``(model, preprocess)``.

    ``model_name`` is any open_clip architecture (``ViT-B-32``, ``ViT-L-14``, ``RN101``, …) with ``pretrained`` a tag
    (``laion2b_s34b_b79k``, ``openai``, …) or a checkpoint file; or ``hf-hub:org/repo``; or ``local-dir:/path`` for a
    folder written by :func:`save_open_clip` (``pretrained`` is then ignored). ``precision`` is open_clip's
    (``fp32``, ``fp16``, ``bf16``; ``amp``/``amp_bf16`` keep fp32 weights and autocast the forward pass).
    """
    import open_clip

    local = model_name.startswith(("local-dir:", "hf-hub:"))
    if local:
        pretrained = None
    elif pretrained is None:
        logger.warning("open_clip model %r without pretrained weights: its features are random.", model_name)
    model, _, preprocess = open_clip.create_model_and_transforms(
        model_name, pretrained=pretrained, precision=precision, device=device, cache_dir=cache_dir
    )
    model.eval()
    return model, preprocess


def save_open_clip(model, folder: str | os.PathLike, *, model_config: dict) -> str:
    """Save an open_clip model (weights as safetensors + ``open_clip_config.json`` with the model and preprocessing
    configs) so that ``load_open_clip("local-dir:<folder>")`` rebuilds it offline. ``model_config`` is the
    architecture dict (``open_clip.get_model_config(name)``). Returns the folder."""
    from open_clip.push_to_hf_hub import save_config_for_hf
    from safetensors.torch import save_file

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, out / "open_clip_model.safetensors"
    )
    save_config_for_hf(model, out / "open_clip_config.json", model_config=model_config)
    return str(out)


# --------------------------------------------------------------------------------------------------------------------
# Decoding (DataLoader workers) and encoding (main process)
# --------------------------------------------------------------------------------------------------------------------


def parse_num_frames(value: int | str) -> int | Literal["all"]:
    """``8``, ``"8"`` → 8; ``"all"`` → ``"all"``; anything else raises ``ValueError``."""
    if isinstance(value, str):
        if value.strip().lower() == "all":
            return "all"
        try:
            value = int(value)
        except ValueError:
            raise ValueError(f"num_frames must be a positive integer or 'all', got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"num_frames must be a positive integer or 'all', got {value!r}")
    return value


class VideoFrameDataset(torch.utils.data.Dataset):
    """One item per video: its uniformly sampled frames, decoded and preprocessed into a ``(F, 3, H, W)`` tensor.

    A video that cannot be read is returned with ``pixels=None`` and the cause in ``error`` (a worker never dies on a
    corrupt file); the encoder turns it into a :class:`~mds_vqa.video.VideoReadError` that the resumable runner
    records.
    """

    def __init__(self, rows: Sequence[dict[str, Any]], num_frames: int | Literal["all"], preprocess, backend: str):
        self.rows = list(rows)
        self.num_frames = num_frames
        self.preprocess = preprocess
        self.backend = backend

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int) -> dict[str, Any]:
        from PIL import Image

        row = self.rows[k]
        try:
            frames, meta = read_frames(row["video"], self.num_frames, backend=self.backend)
        except VideoReadError as err:
            return {**row, "pixels": None, "error": err.cause}
        pixels = torch.stack([self.preprocess(Image.fromarray(frame)) for frame in frames])
        return {**row, "pixels": pixels, "error": None}


def _keep(item):
    return item


class _InOrder(Sequence):
    """The decoded videos, handed to :meth:`ResumableRun.run` as its item sequence: ``run`` asks for its to-do
    indices in increasing order, which is the order the ``DataLoader`` yields them."""

    def __init__(self, size: int, loader: torch.utils.data.DataLoader):
        self._size = size
        self._it = iter(loader)

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, i):
        item = next(self._it)
        if item["index"] != i:
            raise RuntimeError(f"Decoded video {item['index']} arrived where video {i} was expected")
        return item


class FrameEncoder:
    """``fn(rows) -> results`` for :class:`ResumableRun`: encodes the frames of all ``rows`` in forward passes of at
    most ``frame_batch_size`` frames and returns one ``{"features": F × d float32}`` per row (L2-normalised)."""

    def __init__(self, model, *, device: str | torch.device, frame_batch_size: int = 256, precision: str = "fp32"):
        if frame_batch_size <= 0:
            raise ValueError(f"frame_batch_size must be positive, got {frame_batch_size}")
        self.model = model
        self.device = torch.device(device)
        self.frame_batch_size = frame_batch_size
        self.autocast = _AUTOCAST.get(precision)
        self.dtype = next(model.parameters()).dtype

    @torch.inference_mode()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(T, 3, H, W)`` preprocessed frames → ``(T, d)`` float32 L2-normalised embeddings (on CPU)."""
        out = []
        for start in range(0, pixels.shape[0], self.frame_batch_size):
            batch = pixels[start : start + self.frame_batch_size].to(self.device, dtype=self.dtype, non_blocking=True)
            if self.autocast is not None:
                with torch.autocast(self.device.type, dtype=self.autocast):
                    emb = self.model.encode_image(batch)
            else:
                emb = self.model.encode_image(batch)
            out.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu())
        return torch.cat(out)

    def __call__(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for row in rows:
            if row.get("error") is not None:
                raise VideoReadError(row["video"], row["error"])
        emb = self.encode(torch.cat([row["pixels"] for row in rows])).numpy()
        results, pos = [], 0
        for row in rows:
            n = row["pixels"].shape[0]
            results.append({FEATURES_COLUMN: list(emb[pos : pos + n])})  # list of (d,) float32 → list<list<float>>
            pos += n
        return results


def extract_features(
    ds: Dataset,
    work_dir: str | os.PathLike,
    *,
    model,
    preprocess,
    num_frames: int | str = 8,
    batch_size: int = 16,
    frame_batch_size: int = 256,
    num_workers: int = 2,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    process_index: int = 0,
    num_processes: int = 1,
    flush_every: int = 64,
    backend: str = "auto",
    video_column: str = "video",
    id_column: str = "video_id",
    strict: bool = False,
    retry_failures: bool = False,
    max_initial_failures: int | None = 8,
    run_config: dict[str, Any] | None = None,
    progress: bool | None = None,
) -> RunSummary:
    """Compute this process's share of the pool's frame features into Parquet shards under ``work_dir``.

    Args:
        ds: the pool (needs ``video_column`` with file paths and ``id_column``).
        model, preprocess: from :func:`load_open_clip` (the model already on ``device``).
        num_frames: frames per video, uniformly spaced from first to last (``"all"``: every frame, as the released
            code did; the whole video is then decoded in memory by one worker).
        batch_size: videos per encoding call (their frames are concatenated); ``frame_batch_size`` caps the frames
            of one forward pass.
        num_workers: ``DataLoader`` workers decoding and preprocessing videos (0: in the main process).
        process_index, num_processes: this process's share (``accelerate``'s ``PartialState``).
        flush_every: videos buffered before a shard is written (a hard kill loses at most that many).
        strict: stop on the first unreadable video instead of recording and skipping it.
        retry_failures: try again the videos an earlier run recorded as unreadable.
        max_initial_failures: stop (:class:`~mds_vqa.resumable.InitialFailuresError`) when this many videos fail
            to read before one succeeds (``None`` or 0: never).
        run_config: what the features depend on (model, tag, frames, …), saved in ``work_dir``; resuming with a
            different one raises :class:`~mds_vqa.resumable.RunConfigError` instead of mixing features.

    Returns the :class:`~mds_vqa.resumable.RunSummary` of this process (computed, skipped as done, failed).
    """
    frames = _check_inputs(ds, num_frames, num_workers, columns=(video_column, id_column))
    work = Path(work_dir)
    if run_config is not None:
        check_run_config(
            work,
            {**run_config, "num_frames": frames, "pool_size": len(ds)},
            write=process_index == 0,
            filename=RUN_CONFIG_FILE,
            what="features",
        )
    encoder = FrameEncoder(model, device=device, frame_batch_size=frame_batch_size, precision=precision)
    runner = ResumableRun(
        work,
        encoder,
        batch_size=batch_size,
        flush_every=flush_every,
        process_index=process_index,
        num_processes=num_processes,
        id_column=id_column,
        strict=strict,
        retry_failures=retry_failures,
        max_initial_failures=max_initial_failures,
        desc="features",
        disable_progress=None if progress is None else not progress,
    )
    work.mkdir(parents=True, exist_ok=True)
    done = runner.done_indices()
    todo = [i for i in range(process_index, len(ds), num_processes) if i not in done]
    rows = _todo_videos(ds, todo, video_column=video_column, id_column=id_column)
    loader = _decoding_loader(VideoFrameDataset(rows, frames, preprocess, backend), num_workers)
    return runner.run(_InOrder(len(ds), loader))


def _check_inputs(
    ds: Dataset, num_frames: int | str, num_workers: int, *, columns: Sequence[str]
) -> int | Literal["all"]:
    """The parsed ``num_frames``, once the pool's ``columns`` and ``num_workers`` are checked."""
    for col in columns:
        if col not in ds.column_names:
            raise KeyError(f"Column {col!r} not in the pool (columns: {ds.column_names})")
    if num_workers < 0:
        raise ValueError(f"num_workers must be ≥ 0, got {num_workers}")
    return parse_num_frames(num_frames)


def _todo_videos(ds: Dataset, todo: list[int], *, video_column: str, id_column: str) -> list[dict[str, Any]]:
    """``{index, <id_column>, video}`` for each row of ``todo``."""
    videos, ids = column_values(ds, video_column), column_values(ds, id_column)
    return [{"index": i, id_column: ids[i], "video": videos[i]} for i in todo]


def _decoding_loader(frames: VideoFrameDataset, num_workers: int) -> torch.utils.data.DataLoader:
    """Videos decoded and preprocessed in ``num_workers`` workers (0: in this process), one at a time, in order."""
    return torch.utils.data.DataLoader(
        frames,
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_keep,
        prefetch_factor=2 if num_workers > 0 else None,
    )
