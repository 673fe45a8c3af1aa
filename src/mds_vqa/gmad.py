"""gMAD: the group MAximum Differentiation competition between quality models (Ma et al.).

For a *defender* D and an *attacker* A scoring the same pool: D's score range is split into ``n_levels`` equal levels;
at each level, among the videos whose D score falls within a narrow band around the level's centre (D says they have
the same quality), the videos A scores highest and lowest form a pair. Humans then say, in a two-alternative forced
choice (2AFC), which of the two looks better:

- if they prefer A's higher-scored video, A has successfully attacked D (D cannot tell apart two videos that differ);
- if they do not, D has resisted the attack (A claimed a difference humans do not confirm).

:func:`gmad_competition` plays every ordered pair of models; :func:`study_dataset` turns the pairs into a Dataset for
a 2AFC study (random left/right order); :func:`summarize_2afc` reads the answers back into the aggressiveness and
resistance matrices and a global ranking; :func:`pair_figure` draws the frame strips of one pair.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

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
    "safe_name",
]

_MAX_LISTED = 10


def _scores(values: Sequence[Any], what: str) -> np.ndarray:
    out = np.empty(len(values), dtype=float)
    for i, v in enumerate(values):
        try:
            out[i] = np.nan if v is None else float(v)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{what}[{i}] is not a number: {v!r}") from err
    if np.isinf(out).any():
        raise ValueError(f"{what} holds infinite scores at {np.flatnonzero(np.isinf(out))[:_MAX_LISTED].tolist()}")
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
        else:
            hi = int(cand[np.argmax(a[cand])])
            lo = int(cand[np.argmin(a[cand])])
            if a[hi] == a[lo]:
                rec["skipped"] = "the attacker scores every video in the band the same"
            else:
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
        if rec["skipped"]:
            logger.info(
                "gMAD %s defends, %s attacks, level %d: skipped (%s).", defender, attacker, level, rec["skipped"]
            )
        records.append(rec)
    return records


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


def study_dataset(pairs: Sequence[Mapping[str, Any]], videos: Sequence[str], *, seed: int = 0):
    """A Dataset of gMAD pairs for a 2AFC study.

    Adds to each pair the video paths (``video_high``, ``video_low`` from ``videos``, indexed by the pair's
    positions) and a seeded random presentation order (``video_left``, ``video_right``, ``left_is_high``) so that
    raters cannot learn which side the attacker prefers. Skipped levels are left out.
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
    return Dataset.from_list(rows)


# --------------------------------------------------------------------------------------------------------------------
# 2AFC answers
# --------------------------------------------------------------------------------------------------------------------


def read_2afc_answers(path: str | os.PathLike) -> pd.DataFrame:
    """Read a 2AFC answer CSV: columns ``pair_id``, ``preferred`` and optionally ``count`` (default 1 per line).

    ``preferred`` is ``high`` / ``low`` (the attacker's higher / lower-scored video), ``left`` / ``right`` (as shown,
    see :func:`study_dataset`) or the preferred video's id. One line per vote, or one line per (pair, choice) with a
    count. The returned frame keeps the file's line numbers (``line``) for error messages.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"2AFC answer file not found: {path}")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in ("pair_id", "preferred") if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing} (columns are {list(frame.columns)})")
    if frame.empty:
        raise ValueError(f"{path}: no answers (header only)")
    frame["line"] = np.arange(len(frame)) + 2
    if "count" in frame.columns:
        counts = pd.to_numeric(frame["count"], errors="coerce")
        bad = frame.loc[~(counts.notna() & (counts >= 0) & (counts == counts.round())), ["line", "count"]]
        if len(bad):
            shown = [f"line {r.line}: {r.count!r}" for r in bad.head(_MAX_LISTED).itertuples()]
            raise ValueError(f"{path}: count must be a non-negative integer; {shown}")
        frame["count"] = counts.astype(int)
    else:
        frame["count"] = 1
    frame["pair_id"] = frame["pair_id"].str.strip()
    frame["preferred"] = frame["preferred"].str.strip()
    frame.attrs["source"] = str(path)
    return frame[["pair_id", "preferred", "count", "line"]]


@dataclass
class GmadSummary:
    """The outcome of a gMAD study.

    - ``pairs``: one row per pair with its votes ``n_high`` / ``n_low`` and ``p_high`` (the share of votes for the
      attacker's higher-scored video; NaN without votes);
    - ``aggressiveness``: rows = attacker, columns = defender; the mean of ``p_high`` over the levels of that game
      (high: humans confirm the differences the attacker finds where the defender sees none);
    - ``resistance``: rows = defender, columns = attacker; the mean of ``1 − p_high`` (high: the defender's "same
      quality" holds against that attacker);
    - ``ranking``: per model, the mean aggressiveness (over defenders), the mean resistance (over attackers), their
      mean (``global``) and the rank by ``global`` (1 = best).
    """

    pairs: pd.DataFrame
    aggressiveness: pd.DataFrame
    resistance: pd.DataFrame
    ranking: pd.DataFrame


def _pairs_frame(pairs) -> pd.DataFrame:
    if hasattr(pairs, "to_pandas"):
        frame = pairs.to_pandas()
    else:
        frame = pd.DataFrame([dict(p) for p in pairs])
    if "skipped" in frame.columns:
        frame = frame[frame["skipped"].fillna("") == ""]
    needed = ["pair_id", "defender", "attacker", "level", "id_high", "id_low"]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise KeyError(f"the pairs lack column(s) {missing}")
    if frame["pair_id"].duplicated().any():
        raise ValueError(
            f"Duplicate pair_id in the pairs: {frame.loc[frame['pair_id'].duplicated(), 'pair_id'].tolist()[:_MAX_LISTED]}"
        )
    return frame.reset_index(drop=True)


def summarize_2afc(pairs, answers: pd.DataFrame) -> GmadSummary:
    """Tally 2AFC answers (:func:`read_2afc_answers`) against the pairs (a list of records or the study Dataset) into
    the aggressiveness and resistance matrices and a global ranking (see :class:`GmadSummary`).

    An answer naming an unknown pair or a choice that is not one of the pair's two videos raises ``ValueError`` with
    the answer file's line. Pairs without votes are reported (``n_high + n_low == 0``) and left out of the means; a
    game without any answered level is NaN in the matrices.
    """
    frame = _pairs_frame(pairs)
    source = answers.attrs.get("source", "answers")
    by_id = {pid: i for i, pid in enumerate(frame["pair_id"])}
    n_high = np.zeros(len(frame), dtype=int)
    n_low = np.zeros(len(frame), dtype=int)
    unknown, invalid = [], []
    lines = answers["line"] if "line" in answers.columns else pd.Series(np.arange(len(answers)) + 2)
    counts = answers["count"] if "count" in answers.columns else pd.Series(np.ones(len(answers), dtype=int))
    for pid, pref, count, line in zip(answers["pair_id"], answers["preferred"], counts, lines):
        i = by_id.get(str(pid))
        if i is None:
            unknown.append(f"line {line}: {pid!r}")
            continue
        row = frame.iloc[i]
        choice = str(pref)
        if choice in ("left", "right"):
            if "left_is_high" not in frame.columns:
                invalid.append(f"line {line}: {choice!r} but the pairs have no presentation order (left_is_high)")
                continue
            choice = "high" if (choice == "left") == bool(row["left_is_high"]) else "low"
        elif choice == str(row["id_high"]):
            choice = "high"
        elif choice == str(row["id_low"]):
            choice = "low"
        if choice == "high":
            n_high[i] += int(count)
        elif choice == "low":
            n_low[i] += int(count)
        else:
            invalid.append(
                f"line {line}: pair {pid!r} preferred {pref!r}, expected high/low/left/right or "
                f"{row['id_high']!r}/{row['id_low']!r}"
            )
    if unknown:
        raise ValueError(f"{source}: {len(unknown)} answer(s) name unknown pairs: {unknown[:_MAX_LISTED]}")
    if invalid:
        raise ValueError(f"{source}: {len(invalid)} invalid answer(s): {invalid[:_MAX_LISTED]}")
    total = n_high + n_low
    with np.errstate(invalid="ignore", divide="ignore"):
        p_high = np.where(total > 0, n_high / np.maximum(total, 1), np.nan)
    out = frame[["pair_id", "defender", "attacker", "level", "id_high", "id_low"]].copy()
    out["n_high"], out["n_low"], out["p_high"] = n_high, n_low, p_high
    unanswered = out.loc[total == 0, "pair_id"].tolist()
    if unanswered:
        logger.warning("%d pair(s) have no answer and are left out: %s", len(unanswered), unanswered[:_MAX_LISTED])
    models = list(dict.fromkeys(list(frame["defender"]) + list(frame["attacker"])))
    game = out.dropna(subset=["p_high"]).groupby(["attacker", "defender"])["p_high"].mean()
    agg = pd.DataFrame(np.nan, index=models, columns=models)
    for (att, dfd), value in game.items():
        agg.loc[att, dfd] = value
    res = 1.0 - agg.T
    agg.index.name, agg.columns.name = "attacker", "defender"
    res.index.name, res.columns.name = "defender", "attacker"
    ranking = pd.DataFrame(
        {
            "model": models,
            "aggressiveness": [agg.loc[m].drop(m).mean() for m in models],
            "resistance": [res.loc[m].drop(m).mean() for m in models],
        }
    )
    ranking["global"] = (ranking["aggressiveness"] + ranking["resistance"]) / 2.0
    ranking["rank"] = ranking["global"].rank(ascending=False, method="min")
    ranking = ranking.sort_values(["rank", "model"]).reset_index(drop=True)
    return GmadSummary(pairs=out, aggressiveness=agg, resistance=res, ranking=ranking)


def _matrix_md(m: pd.DataFrame, digits: int) -> str:
    cols = [str(c) for c in m.columns]
    lines = [
        f"| {m.index.name} \\ {m.columns.name} | " + " | ".join(cols) + " |",
        "|---|" + "|".join([":---:"] * len(cols)) + "|",
    ]
    for name, row in m.iterrows():
        cells = ["–" if (r == name or math.isnan(v)) else f"{v:.{digits}f}" for r, v in row.items()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_summary(summary: GmadSummary, output_dir: str | os.PathLike, *, digits: int = 3) -> dict[str, Path]:
    """Write the summary as ``gmad_summary.md`` (ranking and both matrices), CSVs (``gmad_aggressiveness.csv``,
    ``gmad_resistance.csv``, ``gmad_ranking.csv``, ``gmad_votes.csv``), ``gmad_summary.json`` and a heat-map picture
    ``gmad_matrices.png``. Returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "md": out / "gmad_summary.md",
        "json": out / "gmad_summary.json",
        "aggressiveness": out / "gmad_aggressiveness.csv",
        "resistance": out / "gmad_resistance.csv",
        "ranking": out / "gmad_ranking.csv",
        "votes": out / "gmad_votes.csv",
        "png": out / "gmad_matrices.png",
    }
    summary.aggressiveness.to_csv(paths["aggressiveness"])
    summary.resistance.to_csv(paths["resistance"])
    summary.ranking.to_csv(paths["ranking"], index=False)
    summary.pairs.to_csv(paths["votes"], index=False)
    rank_lines = ["| Rank | Model | Aggressiveness | Resistance | Global |", "|:---:|---|:---:|:---:|:---:|"]
    for _, r in summary.ranking.iterrows():
        vals = [
            ("–" if math.isnan(r[k]) else f"{r[k]:.{digits}f}") for k in ("aggressiveness", "resistance", "global")
        ]
        rank = "–" if math.isnan(r["rank"]) else str(int(r["rank"]))
        rank_lines.append(f"| {rank} | {r['model']} | " + " | ".join(vals) + " |")
    n_votes = int(summary.pairs["n_high"].sum() + summary.pairs["n_low"].sum())
    answered = int((summary.pairs["n_high"] + summary.pairs["n_low"] > 0).sum())
    text = [
        "## gMAD competition",
        "",
        f"{answered} of {len(summary.pairs)} pairs answered, {n_votes} votes.",
        "",
        "### Global ranking",
        "",
        "\n".join(rank_lines),
        "",
        "### Aggressiveness (row attacks column; higher = the attacker exposes the defender more often)",
        "",
        _matrix_md(summary.aggressiveness, digits),
        "### Resistance (row defends against column; higher = the defender holds)",
        "",
        _matrix_md(summary.resistance, digits),
    ]
    paths["md"].write_text("\n".join(text))

    def _nan_none(frame: pd.DataFrame) -> dict:
        return {
            str(i): {str(c): (None if math.isnan(v) else float(v)) for c, v in row.items()}
            for i, row in frame.iterrows()
        }

    payload = {
        "aggressiveness": _nan_none(summary.aggressiveness),
        "resistance": _nan_none(summary.resistance),
        "ranking": json.loads(summary.ranking.to_json(orient="records")),
        "pairs_answered": answered,
        "pairs_total": int(len(summary.pairs)),
        "votes": n_votes,
    }
    paths["json"].write_text(json.dumps(payload, indent=2) + "\n")

    fig, axes = plt.subplots(
        1, 2, figsize=(4 + 1.6 * len(summary.aggressiveness), 1.5 + 0.9 * len(summary.aggressiveness))
    )
    for ax, (title, m) in zip(axes, (("Aggressiveness", summary.aggressiveness), ("Resistance", summary.resistance))):
        values = m.to_numpy(dtype=float)
        im = ax.imshow(values, vmin=0.0, vmax=1.0, cmap="viridis")
        ax.set_xticks(range(len(m.columns)))
        ax.set_xticklabels([str(c) for c in m.columns], rotation=30, ha="right")
        ax.set_yticks(range(len(m.index)))
        ax.set_yticklabels([str(i) for i in m.index])
        ax.set_xlabel(m.columns.name)
        ax.set_ylabel(m.index.name)
        ax.set_title(title)
        for (r, c), v in np.ndenumerate(values):
            if not math.isnan(v):
                ax.text(c, r, f"{v:.2f}", ha="center", va="center", color="white" if v < 0.5 else "black")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(paths["png"], dpi=150)
    plt.close(fig)
    return paths


# --------------------------------------------------------------------------------------------------------------------
# Pictures
# --------------------------------------------------------------------------------------------------------------------


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
