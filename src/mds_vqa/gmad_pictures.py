"""Pictures of gMAD pairs: a strip of frames of each video, titled with both models' scores, drawn for every pair
of a study (resumable: a re-run draws only the missing ones; an unreadable video is recorded and skipped)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .reporting import pyplot, save_figure
from .resumable import ResumableRun, RunSummary, load_failures
from .video import read_frames

__all__ = ["pair_figure", "draw_pair_pictures"]


def _strip(frames: np.ndarray) -> np.ndarray:
    """The frames side by side, separated by thin white columns."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got shape {frames.shape}")
    h, gap = frames.shape[1], max(2, frames.shape[2] // 40)
    white = np.full((h, gap, 3), 255, dtype=np.uint8)
    parts = []
    for i, f in enumerate(frames):
        if i:
            parts.append(white)
        parts.append(f.astype(np.uint8, copy=False))
    return np.concatenate(parts, axis=1)


def pair_figure(
    frames_high: np.ndarray,
    frames_low: np.ndarray,
    pair: Mapping[str, Any],
    path: str | os.PathLike,
) -> Path:
    """Draw one gMAD pair: a strip of frames of each video (``(T, H, W, 3)`` uint8, e.g. from
    :func:`mds_vqa.video.read_frames`), each row titled with the video id and both models' scores. Returns the path."""
    plt = pyplot()
    if len(frames_high) == 0 or len(frames_low) == 0:
        raise ValueError(f"pair {pair.get('pair_id')!r}: no frames to draw")
    rows = [
        (_strip(frames_high), pair["id_high"], pair["attacker_high"], pair["defender_high"], "attacker's higher"),
        (_strip(frames_low), pair["id_low"], pair["attacker_low"], pair["defender_low"], "attacker's lower"),
    ]
    width = max(r[0].shape[1] for r in rows)
    aspect = sum(r[0].shape[0] for r in rows) / width
    fig_w = 10.0
    fig, axes = plt.subplots(2, 1, figsize=(fig_w, 1.2 + fig_w * aspect * 1.05))
    for ax, (strip, vid, att, dfd, label) in zip(axes, rows):
        ax.imshow(strip)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(
            f"{label}: {vid}  |  {pair['attacker']} (attacker) {att:.3f}  ·  {pair['defender']} (defender) {dfd:.3f}",
            loc="left",
            fontsize=9,
        )
    fig.suptitle(f"gMAD {pair['pair_id']} (level {pair['level']})", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def draw_pair_pictures(
    pairs, work_dir: str | os.PathLike, *, num_frames: int = 4, backend: str = "auto"
) -> tuple[RunSummary, list[dict[str, Any]]]:
    """Draw the picture of every pair of the study Dataset ``pairs`` (at its ``picture`` path) that is not drawn yet,
    ``num_frames`` frames per video; progress and failures (unreadable videos) go to ``work_dir``. Returns the run's
    summary and every failure recorded so far."""

    def draw(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for row in rows:
            high, _ = read_frames(row["video_high"], num_frames, backend=backend)
            low, _ = read_frames(row["video_low"], num_frames, backend=backend)
            out.append({"picture": str(pair_figure(high, low, row, row["picture"]))})
        return out

    items = [dict(r) for r in pairs]
    run = ResumableRun(Path(work_dir), draw, batch_size=1, flush_every=1, id_column="pair_id", desc="gMAD pictures")
    summary = run.run(items)
    return summary, load_failures(work_dir)
