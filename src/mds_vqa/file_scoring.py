"""Scoring loose video files, as pyiqa or DOVER users do: ``recipes/score.py --videos a.mp4 dir/`` (no pool first).

The files become an in-memory pool (``video_id`` = ``video`` = the path) scored by
:func:`mds_vqa.pool_scoring.score_pool`: the same reader, the same errors, the same modes, batched, data-parallel and
resumable. The result is a table of ``video``, ``score`` (both readings in mode ``both``) and ``error`` (why a file
could not be read), printed and optionally written as CSV.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .pool_scoring import result_column
from .pools import VIDEO_EXTENSIONS
from .reporting import format_number, markdown_table

__all__ = ["find_videos", "files_pool", "files_work_dir", "score_rows", "format_score_table", "write_score_csv"]


def find_videos(paths: Sequence[str | os.PathLike], extensions: Sequence[str] = VIDEO_EXTENSIONS) -> list[str]:
    """The videos named by ``paths``: a file as given (whatever its extension), a folder scanned recursively for
    ``extensions`` (case-insensitive) in sorted order. Duplicates are kept once, in the order found.

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: no video was found.
    """
    found: dict[str, None] = {}
    for path in map(Path, paths):
        if path.is_dir():
            inside = [p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in extensions]
            found.update(dict.fromkeys(str(p) for p in sorted(inside)))
        elif path.exists():
            found[str(path)] = None
        else:
            raise FileNotFoundError(f"No such file or folder: {path}")
    if not found:
        raise ValueError(f"No video file ({', '.join(extensions)}) in {', '.join(map(str, paths))}")
    return list(found)


def files_pool(videos: Sequence[str]):
    """An in-memory pool Dataset of ``videos`` (``video_id`` = ``video`` = the path)."""
    from datasets import Dataset

    return Dataset.from_dict({"video_id": list(videos), "video": list(videos)})


def files_work_dir(run_config: dict[str, Any], output_csv: str | None = None) -> Path:
    """Where the shards of a loose-file run go: next to ``output_csv``, else a temporary folder named after the run's
    settings and files (so a re-run of the same command resumes, and every process of a launch finds the same one)."""
    if output_csv:
        return Path(f"{output_csv}.work")
    digest = hashlib.sha256(json.dumps(run_config, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"mds_vqa_score_{digest}"


def score_rows(scored, column: str, mode: str) -> list[dict[str, Any]]:
    """One row per video of a scored pool: ``video``, ``score`` (mode ``both``: also ``expectation`` and
    ``generate``) and ``error`` (empty when the video was read)."""
    names = {"score": column, **{r: f"{column}_{r}" for r in (("expectation", "generate") if mode == "both" else ())}}
    values = {key: result_column(scored, name) for key, name in names.items()}
    errors = result_column(scored, f"{column}_error")
    return [
        {"video": video, **{key: values[key][i] for key in names}, "error": errors[i] or ""}
        for i, video in enumerate(scored["video"])
    ]


def format_score_table(rows: Sequence[dict[str, Any]], digits: int = 4) -> str:
    """``rows`` as a Markdown table; a missing score (unreadable video) or a NaN one (no number) shows as ``–``."""
    header = list(rows[0]) if rows else ["video", "score", "error"]

    def cell(key: str, value: Any) -> str:
        if key in ("video", "error"):  # one table line per video, whatever a decoder's message holds
            return " ".join(str(value).split()).replace("|", "/")
        return format_number(value, digits)

    return markdown_table(header, [[cell(k, r[k]) for k in header] for r in rows])


def write_score_csv(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write ``rows`` as CSV (empty cells for missing scores); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = list(rows[0]) if rows else ["video", "score", "error"]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows({k: ("" if r[k] is None else r[k]) for k in header} for r in rows)
    return path
