"""gMAD: the group MAximum Differentiation competition between quality models (Ma et al.).

For a *defender* D and an *attacker* A scoring the same pool: D's score range is split into ``n_levels`` equal levels;
at each level, among the videos whose D score falls within a narrow band around the level's centre (D says they have
the same quality), the videos A scores highest and lowest form a pair. Humans then say, in a two-alternative forced
choice (2AFC), which of the two looks better:

- if they prefer A's higher-scored video, A has successfully attacked D (D cannot tell apart two videos that differ);
- if they do not, D has resisted the attack (A claimed a difference humans do not confirm).

:func:`gmad_competition` plays every ordered pair of models; :func:`study_dataset` turns the pairs into a Dataset for
a 2AFC study (random left/right order, and the path of each pair's picture).
The study's answers are read back in :mod:`mds_vqa.gmad_study` (:func:`summarize_2afc`: the aggressiveness and
resistance matrices and a global ranking) and the pictures drawn by :mod:`mds_vqa.gmad_pictures`
(:func:`pair_figure`); both are re-exported here.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .gmad_pictures import draw_pair_pictures, pair_figure
from .gmad_study import GmadSummary, read_2afc_answers, summarize_2afc, write_summary
from .reporting import MAX_LISTED

logger = logging.getLogger(__name__)

__all__ = [
    "GmadSummary",
    "level_centers",
    "gmad_levels",
    "gmad_pairs",
    "gmad_competition",
    "study_dataset",
    "read_2afc_answers",
    "summarize_2afc",
    "write_summary",
    "pair_figure",
    "draw_pair_pictures",
    "safe_name",
]


def _scores(values: Sequence[Any], what: str) -> np.ndarray:
    out = np.empty(len(values), dtype=float)
    for i, v in enumerate(values):
        try:
            out[i] = np.nan if v is None else float(v)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{what}[{i}] is not a number: {v!r}") from err
    if np.isinf(out).any():
        raise ValueError(f"{what} holds infinite scores at {np.flatnonzero(np.isinf(out))[:MAX_LISTED].tolist()}")
    return out


def level_centers(low: float, high: float, n_levels: int) -> np.ndarray:
    """Centres of ``n_levels`` equal-width levels splitting ``[low, high]``: ``low + (k + ½)·(high − low)/n_levels``."""
    if n_levels < 1:
        raise ValueError(f"n_levels must be >= 1, got {n_levels}")
    if not high > low:
        raise ValueError(f"the defender's score range [{low}, {high}] is empty: its scores are constant")
    step = (high - low) / n_levels
    return low + (np.arange(n_levels) + 0.5) * step


def gmad_levels(
    defender_scores: Sequence[float],
    attacker_scores: Sequence[float],
    n_levels: int = 6,
    *,
    band_width: float | None = None,
    defender: str = "defender",
    attacker: str = "attacker",
    ids: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """One record per level of one (defender, attacker) game, with ``skipped`` saying why a level gives no pair.

    Args:
        defender_scores, attacker_scores: both models' scores on the same videos (NaN = no score: the video is left
            out of the game).
        n_levels: how many levels split the defender's score range (min to max over the scored videos).
        band_width: width of the band around each level centre, as a fraction of the defender's score range
            (default ``0.5 / n_levels``: half a level, so bands never overlap). Must be in ``(0, 1/n_levels]``.
        defender, attacker: model names written into the records.
        ids: video ids (default: the positions as strings).

    Returns:
        Records ``{pair_id, defender, attacker, level, level_center, band_low, band_high, n_candidates, index_high,
        index_low, id_high, id_low, attacker_high, attacker_low, defender_high, defender_low, skipped}``. ``*_high`` is
        the video the attacker scores highest in the band, ``*_low`` the lowest (ties: lowest position). A level with
        fewer than two candidates, or where the attacker scores every candidate the same, has ``skipped`` set and no
        pair; otherwise ``skipped`` is ``""``.
    """
    d = _scores(defender_scores, "defender_scores")
    a = _scores(attacker_scores, "attacker_scores")
    names, band_width = _check_game(d, a, n_levels, band_width, ids)
    valid = np.flatnonzero(np.isfinite(d) & np.isfinite(a))
    dropped = len(d) - len(valid)
    if dropped:
        logger.info(
            "gMAD %s vs %s: %d video(s) without a score from both models are left out.", defender, attacker, dropped
        )
    if len(valid) < 2:
        raise ValueError(f"gMAD {defender} vs {attacker}: fewer than 2 videos are scored by both models")
    low, high = float(d[valid].min()), float(d[valid].max())
    centers = level_centers(low, high, n_levels)
    half = band_width * (high - low) / 2.0
    records = []
    for level, center in enumerate(centers):
        rec = _level_record(d, a, valid, names, level, float(center), half, defender, attacker)
        if rec["skipped"]:
            logger.info(
                "gMAD %s defends, %s attacks, level %d: skipped (%s).", defender, attacker, level, rec["skipped"]
            )
        records.append(rec)
    return records


def _check_game(
    d: np.ndarray, a: np.ndarray, n_levels: int, band_width: float | None, ids: Sequence[str] | None
) -> tuple[list[str], float]:
    """The video names and the band width of one game, once the inputs are checked."""
    if len(d) != len(a):
        raise ValueError(
            f"the defender scores {len(d)} videos but the attacker {len(a)}: they must score the same pool"
        )
    if ids is not None and len(ids) != len(d):
        raise ValueError(f"got {len(ids)} ids for {len(d)} scores")
    names = [str(i) for i in ids] if ids is not None else [str(i) for i in range(len(d))]
    if not isinstance(n_levels, (int, np.integer)) or n_levels < 1:
        raise ValueError(f"n_levels must be a positive integer, got {n_levels!r}")
    if band_width is None:
        band_width = 0.5 / n_levels
    if not 0.0 < band_width <= 1.0 / n_levels + 1e-12:
        raise ValueError(f"band_width must be in (0, 1/n_levels] = (0, {1.0 / n_levels:.4g}], got {band_width}")
    return names, band_width


def _level_record(
    d: np.ndarray,
    a: np.ndarray,
    valid: np.ndarray,
    names: list[str],
    level: int,
    center: float,
    half: float,
    defender: str,
    attacker: str,
) -> dict[str, Any]:
    """The record of one level: the pair the attacker scores highest and lowest in the band, or why there is none."""
    band_low, band_high = float(center - half), float(center + half)
    cand = valid[(d[valid] >= band_low) & (d[valid] <= band_high)]
    rec: dict[str, Any] = {
        "pair_id": f"{defender}_vs_{attacker}_L{level}",
        "defender": defender,
        "attacker": attacker,
        "level": level,
        "level_center": float(center),
        "band_low": band_low,
        "band_high": band_high,
        "n_candidates": int(len(cand)),
    }
    if len(cand) < 2:
        rec["skipped"] = f"{len(cand)} video(s) in the band"
        return rec
    hi = int(cand[np.argmax(a[cand])])
    lo = int(cand[np.argmin(a[cand])])
    if a[hi] == a[lo]:
        rec["skipped"] = "the attacker scores every video in the band the same"
        return rec
    rec.update(
        index_high=hi,
        index_low=lo,
        id_high=names[hi],
        id_low=names[lo],
        attacker_high=float(a[hi]),
        attacker_low=float(a[lo]),
        defender_high=float(d[hi]),
        defender_low=float(d[lo]),
        skipped="",
    )
    return rec


Roles = Literal["both", "a_defends", "b_defends"]


def gmad_pairs(
    scores_a: Sequence[float],
    scores_b: Sequence[float],
    n_levels: int = 6,
    *,
    band_width: float | None = None,
    names: tuple[str, str] = ("a", "b"),
    ids: Sequence[str] | None = None,
    roles: Roles = "both",
) -> list[dict[str, Any]]:
    """The gMAD pairs of two models: with ``roles="both"``, A defends against B, then B defends against A.

    Each pair is a :func:`gmad_levels` record (skipped levels are left out): at one level of the defender's score
    range, the two videos the defender rates the same that the attacker rates highest (``*_high``) and lowest
    (``*_low``). See :func:`gmad_levels` for ``band_width`` and ``ids``.
    """
    if roles not in ("both", "a_defends", "b_defends"):
        raise ValueError(f"roles must be 'both', 'a_defends' or 'b_defends', got {roles!r}")
    if names[0] == names[1]:
        raise ValueError(f"the two models need different names, got {names}")
    games = []
    if roles in ("both", "a_defends"):
        games.append((scores_a, scores_b, names[0], names[1]))
    if roles in ("both", "b_defends"):
        games.append((scores_b, scores_a, names[1], names[0]))
    out = []
    for d, a, dn, an in games:
        levels = gmad_levels(d, a, n_levels, band_width=band_width, defender=dn, attacker=an, ids=ids)
        out.extend(r for r in levels if not r["skipped"])
    return out


def gmad_competition(
    scores: Mapping[str, Sequence[float]],
    n_levels: int = 6,
    *,
    band_width: float | None = None,
    ids: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Every level record (pairs and skipped levels) of every ordered (defender, attacker) pair of models.

    ``scores`` maps a model name to its scores on one pool (same order for every model). Keep the records whose
    ``skipped`` is ``""`` for the study.
    """
    if len(scores) < 2:
        raise ValueError(f"gMAD needs at least two models, got {list(scores)}")
    lengths = {name: len(s) for name, s in scores.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"every model must score the same pool; got lengths {lengths}")
    out = []
    for defender, d in scores.items():
        for attacker, a in scores.items():
            if attacker != defender:
                out.extend(
                    gmad_levels(d, a, n_levels, band_width=band_width, defender=defender, attacker=attacker, ids=ids)
                )
    return out


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str) -> str:
    """``text`` with every run of characters other than letters, digits, ``.``, ``_`` and ``-`` replaced by ``-``."""
    return _SAFE.sub("-", text).strip("-") or "unnamed"


def study_dataset(
    pairs: Sequence[Mapping[str, Any]],
    videos: Sequence[str],
    *,
    seed: int = 0,
    pictures_dir: str | os.PathLike | None = None,
):
    """A Dataset of gMAD pairs for a 2AFC study.

    Adds to each pair the video paths (``video_high``, ``video_low`` from ``videos``, indexed by the pair's
    positions) and a seeded random presentation order (``video_left``, ``video_right``, ``left_is_high``) so that
    raters cannot learn which side the attacker prefers. Skipped levels are left out. With ``pictures_dir``, a last
    column ``picture`` names each pair's picture, ``<pictures_dir>/<safe_name(pair_id)>.png``.
    """
    from datasets import Dataset

    rows = [dict(p) for p in pairs if not p.get("skipped")]
    if not rows:
        raise ValueError("No gMAD pair to put in a study: every level was skipped (see the log for why).")
    ids = [r["pair_id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise ValueError("Duplicate pair_id in the pairs")
    rng = np.random.default_rng(seed)
    left_is_high = rng.random(len(rows)) < 0.5
    for r, flag in zip(rows, left_is_high):
        r["video_high"] = str(videos[r["index_high"]])
        r["video_low"] = str(videos[r["index_low"]])
        r["left_is_high"] = bool(flag)
        r["video_left"], r["video_right"] = (
            (r["video_high"], r["video_low"]) if flag else (r["video_low"], r["video_high"])
        )
        r.pop("skipped", None)
    ds = Dataset.from_list(rows)
    if pictures_dir is None:
        return ds
    return ds.add_column("picture", [str(Path(pictures_dir) / f"{safe_name(p)}.png") for p in ds["pair_id"]])
