"""Raw ratings back into the loop: rater screening, then a labelled pool (MOS, its standard deviation, the count).

**Ratings file** (CSV, one row per answer, a header first; ``recipes/rate.py`` writes it as ``ratings.csv``)::

    video_id,rater,score[,phase][,scale][,...]
    v012,r01,4
    v012,r02,5

- ``video_id``: a video of the rated subset; ``rater``: the rater's id; ``score``: the rating, a number on any one
  scale (ACR 1–5, a 0–100 slider, ...);
- ``phase`` (optional): rows whose phase is ``training`` are dropped (the training phase's anchor videos);
- ``scale`` (optional): ``acr`` (integers 1–5) or ``slider`` (0–100) checks the scores' range; one scale per file;
- other columns are ignored. A rater rating one video twice is an error (the app never does it).

**Screening** (ITU-R BT.500 / ITU-T P.913-style, correlation-based; :func:`screen_raters`): for each rater, the
Pearson correlation (PLCC) between their scores and the mean of the *other* raters' scores on the same videos. The
rater with the lowest PLCC below ``min_correlation`` (default 0.75) is rejected, the correlations are computed again
without them, and so on until every remaining rater reaches it. A rater is screened only on at least ``min_common``
videos that others rated too, and only while at least three raters remain (with two, the leave-one-out correlation is
the same for both and cannot say who is the outlier); a rater who gives one score to every such video while the
others do not is rejected. Every rater's ratings, compared videos, PLCC, SRCC, mean, std, status and reason are
reported.

**MOS**: per video, the mean of the kept raters' scores, ``mos_std`` their sample standard deviation (null with one
rating) and ``num_ratings`` their count; videos with fewer than ``min_ratings`` kept ratings are left out (listed).
The result has the pool columns (:data:`mds_vqa.data.POOL_FEATURES`: ``video_id``, ``video``, ``mos``,
``mos_std``, ``dataset``, ``split`` = ``train``) plus ``num_ratings``, and feeds ``recipes/finetune.py`` directly.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import pearsonr, spearmanr

from .data import POOL_FEATURES
from .rating import SCALES, TRAINING
from .reporting import MAX_LISTED

logger = logging.getLogger(__name__)

__all__ = ["ImportedRatings", "import_ratings", "labelled_pool", "read_ratings", "screen_raters"]

REQUIRED_COLUMNS = ("video_id", "rater", "score")


def _lines(frame: pd.DataFrame, mask: Any, value: str) -> list[str]:
    return [f"line {r.line}: {getattr(r, value)!r}" for r in frame.loc[mask].head(MAX_LISTED).itertuples()]


def read_ratings(path: str | os.PathLike, *, known_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """The main-phase ratings of a ratings CSV (see the module docstring) as ``video_id, rater, score, line``.

    Raises ``ValueError`` naming the file and the offending lines for: missing columns, empty ids, non-numeric
    scores, several scales, scores off their scale, a rater rating one video twice, and (with ``known_ids``) videos
    that are not in the subset.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Ratings file not found: {path}")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing} (columns are {list(frame.columns)})")
    frame["line"] = np.arange(len(frame)) + 2
    for col in ("video_id", "rater", "score", *(c for c in ("phase", "scale") if c in frame.columns)):
        frame[col] = frame[col].str.strip()
    if "phase" in frame.columns:
        frame = frame[frame["phase"] != TRAINING]
    if frame.empty:
        raise ValueError(f"{path}: no ratings outside the training phase")
    problems: list[str] = []
    for col in ("video_id", "rater"):
        if (frame[col] == "").any():
            problems.append(f"empty {col} at {_lines(frame, frame[col] == '', 'line')}")
    score = pd.to_numeric(frame["score"], errors="coerce")
    bad = ~np.isfinite(score.to_numpy(dtype=float))
    if bad.any():
        problems.append(f"non-numeric score {_lines(frame, bad, 'score')}")
    problems += _scale_problems(frame, score)
    if known_ids is not None:
        unknown = ~frame["video_id"].isin(set(known_ids))
        if unknown.any():
            problems.append(
                f"{int(unknown.sum())} rating(s) of videos not in the subset {_lines(frame, unknown, 'video_id')}"
            )
    dup = frame.duplicated(["rater", "video_id"], keep=False)
    if dup.any():
        pairs = frame.loc[dup].groupby(["rater", "video_id"])["line"].apply(list)
        shown = [f"{r!r} rated {v!r} at lines {ls}" for (r, v), ls in list(pairs.items())[:MAX_LISTED]]
        problems.append(f"{len(pairs)} repeated rating(s) {shown}")
    if problems:
        raise ValueError(f"{path}: invalid ratings:\n  - " + "\n  - ".join(problems))
    out = frame[["video_id", "rater", "line"]].copy()
    out["score"] = score.astype(float)
    out.attrs["source"] = str(path)
    return out.reset_index(drop=True)


def _scale_problems(frame: pd.DataFrame, score: pd.Series) -> list[str]:
    """Several scales in one file, an unknown scale, or scores off their scale."""
    if "scale" not in frame.columns:
        return []
    scales = sorted(set(frame["scale"]) - {""})
    if len(scales) > 1:
        return [f"several scales {scales} in one file (one MOS needs one scale)"]
    if not scales:
        return []
    if scales[0] not in SCALES:
        return [f"unknown scale {scales[0]!r} (known: {sorted(SCALES)})"]
    low, high = SCALES[scales[0]]
    off = ((score < low) | (score > high)).to_numpy()
    return [f"scores off the {scales[0]} scale [{low:g}, {high:g}] {_lines(frame, off, 'score')}"] if off.any() else []


def _compare(matrix: pd.DataFrame, rater: str, active: list[str], min_common: int) -> dict[str, Any]:
    """The rater's scores against the mean of the other active raters on the videos both rated."""
    others = matrix[[r for r in active if r != rater]]
    mine = matrix[rater]
    common = mine.notna() & others.notna().any(axis=1)
    x, y = mine[common].to_numpy(), others[common].mean(axis=1).to_numpy()
    out: dict[str, Any] = {"videos_compared": int(common.sum()), "plcc": None, "srcc": None, "constant": False}
    if len(x) < min_common or len(active) < 3:
        return out
    if np.ptp(x) == 0 and np.ptp(y) > 0:
        out["constant"] = True
    elif np.ptp(x) > 0 and np.ptp(y) > 0:
        out["plcc"] = float(pearsonr(x, y)[0])
        out["srcc"] = float(spearmanr(x, y)[0])
    return out


def screen_raters(
    ratings: pd.DataFrame, *, min_correlation: float = 0.75, min_common: int = 5
) -> list[dict[str, Any]]:
    """Screen the raters of ``ratings`` (``video_id, rater, score``) as the module docstring says; returns one record
    per rater: ``rater, ratings, videos_compared, plcc, srcc, mean, std, status`` (``kept``/``rejected``),
    ``reason``."""
    matrix = ratings.pivot(index="video_id", columns="rater", values="score")
    active = sorted(matrix.columns)
    rejected: dict[str, dict[str, Any]] = {}
    while True:
        stats = {r: _compare(matrix, r, active, min_common) for r in active}
        flagged = {r: s for r, s in stats.items() if s["constant"]}
        flagged = flagged or {r: s for r, s in stats.items() if s["plcc"] is not None and s["plcc"] < min_correlation}
        if not flagged:
            break
        worst = min(flagged, key=lambda r: (-1.0 if flagged[r]["constant"] else flagged[r]["plcc"], r))
        s = flagged[worst]
        s["reason"] = (
            "gives one score to every video the others rated"
            if s["constant"]
            else f"PLCC {s['plcc']:.3f} with the others' mean < {min_correlation}"
        )
        rejected[worst] = s
        active.remove(worst)
    report = []
    for r in sorted(matrix.columns):
        scores = matrix[r].dropna().to_numpy()
        s = rejected.get(r) or stats[r]
        if r in rejected:
            status, reason = "rejected", s["reason"]
        elif s["plcc"] is None:
            status, reason = "kept", f"not screened: fewer than {min_common} shared videos or fewer than 3 raters"
        else:
            status, reason = "kept", f"PLCC {s['plcc']:.3f} >= {min_correlation}"
        report.append(
            {
                "rater": r,
                "ratings": int(len(scores)),
                "videos_compared": s["videos_compared"],
                "plcc": s["plcc"],
                "srcc": s["srcc"],
                "mean": float(scores.mean()),
                "std": float(scores.std(ddof=1)) if len(scores) > 1 else None,
                "status": status,
                "reason": reason,
            }
        )
    return report


def labelled_pool(
    subset: Any,
    ratings: pd.DataFrame,
    *,
    min_ratings: int = 1,
    dataset_name: str | None = None,
    id_column: str = "video_id",
    video_column: str = "video",
) -> tuple[Any, list[str]]:
    """The pool of the subset's videos with at least ``min_ratings`` ratings in ``ratings`` (already screened):
    ``mos`` (mean), ``mos_std`` (sample std, null with one rating), ``num_ratings``, in the subset's order; and the
    ids left out. The ``dataset`` column is ``dataset_name``, else the subset's own."""
    from datasets import Dataset, Features, Value

    for col in (id_column, video_column):
        if col not in subset.column_names:
            raise KeyError(f"The subset has no {col!r} column (columns: {subset.column_names})")
    if dataset_name is None and "dataset" not in subset.column_names:
        raise ValueError("The subset has no 'dataset' column: pass dataset_name (the domain of the rated videos).")
    grouped = ratings.groupby("video_id")["score"]
    mean, std, count = grouped.mean(), grouped.std(ddof=1), grouped.count()
    domains = [dataset_name] * len(subset) if dataset_name is not None else list(subset["dataset"])
    rows: dict[str, list[Any]] = {k: [] for k in (*POOL_FEATURES, "num_ratings")}
    left_out = []
    for vid, video, domain in zip(subset[id_column], subset[video_column], domains):
        n = int(count.get(str(vid), 0))
        if n < min_ratings:
            left_out.append(str(vid))
            continue
        s = float(std.get(str(vid), math.nan))
        rows["video_id"].append(str(vid))
        rows["video"].append(video)
        rows["mos"].append(float(mean[str(vid)]))
        rows["mos_std"].append(s if math.isfinite(s) else None)
        rows["dataset"].append(domain)
        rows["split"].append("train")
        rows["num_ratings"].append(n)
    features = Features({**POOL_FEATURES, "num_ratings": Value("int32")})
    return Dataset.from_dict(rows, features=features), left_out


@dataclass
class ImportedRatings:
    """The labelled pool, the per-rater screening records and the run's report (what ``screening.json`` holds)."""

    pool: Any
    raters: list[dict[str, Any]]
    report: dict[str, Any]


def import_ratings(
    subset: Any,
    ratings_path: str | os.PathLike,
    *,
    min_correlation: float = 0.75,
    min_common: int = 5,
    min_ratings: int = 1,
    dataset_name: str | None = None,
    id_column: str = "video_id",
    video_column: str = "video",
) -> ImportedRatings:
    """Read the ratings of ``subset``'s videos, screen the raters, and build the labelled pool (module docstring)."""
    if id_column not in subset.column_names:
        raise KeyError(f"The subset has no {id_column!r} column (columns: {subset.column_names})")
    ratings = read_ratings(ratings_path, known_ids=[str(v) for v in subset[id_column]])
    raters = screen_raters(ratings, min_correlation=min_correlation, min_common=min_common)
    for r in raters:
        log = logger.warning if r["status"] == "rejected" else logger.info
        log("rater %s: %s (%d ratings, %s)", r["rater"], r["status"], r["ratings"], r["reason"])
    kept = {r["rater"] for r in raters if r["status"] == "kept"}
    used = ratings[ratings["rater"].isin(kept)]
    pool, left_out = labelled_pool(
        subset,
        used,
        min_ratings=min_ratings,
        dataset_name=dataset_name,
        id_column=id_column,
        video_column=video_column,
    )
    if left_out:
        logger.warning(
            "%d video(s) with fewer than %d kept rating(s) are left out: %s",
            len(left_out),
            min_ratings,
            left_out[:MAX_LISTED],
        )
    if len(pool) == 0:
        raise ValueError(f"{ratings_path}: no video has {min_ratings} kept rating(s): nothing to label.")
    counts = np.asarray(pool["num_ratings"])
    report = {
        "ratings_file": str(ratings_path),
        "rule": {
            "method": "iterative leave-one-out PLCC with the other raters' mean (ITU-R BT.500 / P.913 style)",
            "min_correlation": min_correlation,
            "min_common": min_common,
            "min_ratings": min_ratings,
        },
        "ratings": int(len(ratings)),
        "ratings_used": int(len(used)),
        "raters_kept": sorted(kept),
        "raters_rejected": [r["rater"] for r in raters if r["status"] == "rejected"],
        "raters": raters,
        "subset_videos": len(subset),
        "labelled_videos": len(pool),
        "left_out": left_out,
        "ratings_per_video": {"min": int(counts.min()), "mean": float(counts.mean()), "max": int(counts.max())},
        "mos_range": [float(min(pool["mos"])), float(max(pool["mos"]))],
    }
    return ImportedRatings(pool=pool, raters=raters, report=report)
