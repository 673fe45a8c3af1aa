"""The 2AFC study of gMAD pairs: reading the answers, tallying them into the aggressiveness and resistance matrices
and a global ranking (:class:`GmadSummary`), and writing the summary (Markdown, CSV, JSON, a heat map)."""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .reporting import MAX_LISTED, format_number, markdown_table, pyplot, save_figure

logger = logging.getLogger(__name__)

__all__ = ["GmadSummary", "read_2afc_answers", "summarize_2afc", "write_summary"]


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
            shown = [f"line {r.line}: {r.count!r}" for r in bad.head(MAX_LISTED).itertuples()]
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
            f"Duplicate pair_id in the pairs: {frame.loc[frame['pair_id'].duplicated(), 'pair_id'].tolist()[:MAX_LISTED]}"
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
    n_high, n_low = _tally(frame, answers)
    total = n_high + n_low
    with np.errstate(invalid="ignore", divide="ignore"):
        p_high = np.where(total > 0, n_high / np.maximum(total, 1), np.nan)
    out = frame[["pair_id", "defender", "attacker", "level", "id_high", "id_low"]].copy()
    out["n_high"], out["n_low"], out["p_high"] = n_high, n_low, p_high
    unanswered = out.loc[total == 0, "pair_id"].tolist()
    if unanswered:
        logger.warning("%d pair(s) have no answer and are left out: %s", len(unanswered), unanswered[:MAX_LISTED])
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


def _tally(frame: pd.DataFrame, answers: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Votes for the attacker's higher (``n_high``) and lower (``n_low``) video of each pair of ``frame``; a
    ``ValueError`` (with the answer file's lines) for answers naming unknown pairs or invalid choices."""
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
        raise ValueError(f"{source}: {len(unknown)} answer(s) name unknown pairs: {unknown[:MAX_LISTED]}")
    if invalid:
        raise ValueError(f"{source}: {len(invalid)} invalid answer(s): {invalid[:MAX_LISTED]}")
    return n_high, n_low


def _matrix_md(m: pd.DataFrame, digits: int) -> str:
    cols = [str(c) for c in m.columns]
    rows = []
    for name, row in m.iterrows():
        cells = ["–" if r == name else format_number(v, digits) for r, v in row.items()]
        rows.append([name, *cells])
    header = [f"{m.index.name} \\ {m.columns.name}", *cols]
    return markdown_table(header, rows, align="l" + "c" * len(cols)) + "\n"


def write_summary(summary: GmadSummary, output_dir: str | os.PathLike, *, digits: int = 3) -> dict[str, Path]:
    """Write the summary as ``gmad_summary.md`` (ranking and both matrices), CSVs (``gmad_aggressiveness.csv``,
    ``gmad_resistance.csv``, ``gmad_ranking.csv``, ``gmad_votes.csv``), ``gmad_summary.json`` and a heat-map picture
    ``gmad_matrices.png``. Returns the paths."""
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
    paths["md"].write_text(_summary_markdown(summary, digits))
    paths["json"].write_text(json.dumps(_summary_json(summary), indent=2) + "\n")
    _plot_matrices(summary, paths["png"])
    return paths


def _votes(summary: GmadSummary) -> tuple[int, int]:
    """``(pairs answered, votes)``."""
    n_votes = int(summary.pairs["n_high"].sum() + summary.pairs["n_low"].sum())
    answered = int((summary.pairs["n_high"] + summary.pairs["n_low"] > 0).sum())
    return answered, n_votes


def _summary_markdown(summary: GmadSummary, digits: int) -> str:
    """``gmad_summary.md``: the ranking and both matrices."""
    rank_rows = []
    for _, r in summary.ranking.iterrows():
        vals = [format_number(r[k], digits) for k in ("aggressiveness", "resistance", "global")]
        rank = "–" if math.isnan(r["rank"]) else str(int(r["rank"]))
        rank_rows.append([rank, r["model"], *vals])
    answered, n_votes = _votes(summary)
    text = [
        "## gMAD competition",
        "",
        f"{answered} of {len(summary.pairs)} pairs answered, {n_votes} votes.",
        "",
        "### Global ranking",
        "",
        markdown_table(["Rank", "Model", "Aggressiveness", "Resistance", "Global"], rank_rows, align="clccc"),
        "",
        "### Aggressiveness (row attacks column; higher = the attacker exposes the defender more often)",
        "",
        _matrix_md(summary.aggressiveness, digits),
        "### Resistance (row defends against column; higher = the defender holds)",
        "",
        _matrix_md(summary.resistance, digits),
    ]
    return "\n".join(text)


def _summary_json(summary: GmadSummary) -> dict:
    """``gmad_summary.json``: both matrices (NaN as null), the ranking and the vote counts."""

    def _nan_none(frame: pd.DataFrame) -> dict:
        return {
            str(i): {str(c): (None if math.isnan(v) else float(v)) for c, v in row.items()}
            for i, row in frame.iterrows()
        }

    answered, n_votes = _votes(summary)
    return {
        "aggressiveness": _nan_none(summary.aggressiveness),
        "resistance": _nan_none(summary.resistance),
        "ranking": json.loads(summary.ranking.to_json(orient="records")),
        "pairs_answered": answered,
        "pairs_total": int(len(summary.pairs)),
        "votes": n_votes,
    }


def _plot_matrices(summary: GmadSummary, path: Path) -> None:
    """``gmad_matrices.png``: both matrices as heat maps with their values."""
    plt = pyplot()
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
    save_figure(fig, path, dpi=150)
