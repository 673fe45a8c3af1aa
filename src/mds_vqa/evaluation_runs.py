"""The rows of ``recipes/evaluate_models.py``'s two tables, from the scored entries of its config.

- :func:`correlation_rows`: ``models`` (``{name, dataset_path, column}``; entries sharing a name are concatenated, e.g.
  one Dataset per domain), restricted to a split: one row per domain and model (the paper's Table 2);
- :func:`failure_rows`: the pool(s) the strategies selected from, scored by the base model (``{dataset_path,
  column}``), and each strategy's subset (``{name, dataset_path}``): one row per domain and strategy (Table 1).

:func:`~mds_vqa.evaluation.write_tables` writes them; :func:`fit_notes` says which rows dropped NaN scores or fell
back to raw scores for PLCC. Every entry may carry a ``revision`` (its ``dataset_path`` being a Hub id; see
:mod:`mds_vqa.scored`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .evaluation import evaluate_scored, failure_identification
from .scored import SCORE_COLUMN, check_entry, load_scored, scored_table

__all__ = ["correlation_rows", "failure_rows", "fit_notes"]


def correlation_rows(
    models: Sequence[Mapping[str, Any]],
    *,
    split: str | None = "test",
    domains: Sequence[str] | None = None,
    id_column: str = "video_id",
    group_column: str = "dataset",
    mos_column: str = "mos",
    **correlation_kwargs: Any,
) -> list[dict[str, Any]]:
    """Rows of the per-domain × per-model table (:func:`~mds_vqa.evaluation.evaluate_scored` of each model's rows of
    ``split``). ``correlation_kwargs`` go to :func:`~mds_vqa.evaluation.correlations` (bootstrap settings)."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for i, e in enumerate(models):
        e = check_entry(e, ("name", "dataset_path", "column"), "models", i)
        grouped.setdefault(str(e["name"]), []).append(e)
    columns = {"id_column": id_column, "group_column": group_column, "mos_column": mos_column}
    rows = []
    for name, entries in grouped.items():
        ds = scored_table(entries, f"model {name!r}", split=split, **columns)
        rows += evaluate_scored(
            ds,
            SCORE_COLUMN,
            model=name,
            mos_column=mos_column,
            group_column=group_column,
            domains=domains,
            **correlation_kwargs,
        )
    return rows


def failure_rows(
    scores: Sequence[Mapping[str, Any]],
    subsets: Sequence[Mapping[str, Any]] | None,
    *,
    model: str = "base",
    include_full: bool = True,
    domains: Sequence[str] | None = None,
    id_column: str = "video_id",
    group_column: str = "dataset",
    mos_column: str = "mos",
    **correlation_kwargs: Any,
) -> list[dict[str, Any]]:
    """Rows of the failure-identification table: :func:`~mds_vqa.evaluation.failure_identification` of the scored
    pool(s) ``scores`` (every row, any split) on each of ``subsets``. ``correlation_kwargs`` go to
    :func:`~mds_vqa.evaluation.correlations`."""
    entries = [check_entry(e, ("dataset_path", "column"), "failure_scores", i) for i, e in enumerate(scores)]
    columns = {"id_column": id_column, "group_column": group_column, "mos_column": mos_column}
    scored = scored_table(entries, "failure_scores", split=None, **columns)
    selected = {}
    for i, e in enumerate(subsets or []):
        e = check_entry(e, ("name", "dataset_path"), "failure_subsets", i)
        if e["name"] in selected:
            raise ValueError(f"failure_subsets: the name {e['name']!r} is used twice")
        selected[str(e["name"])] = load_scored(e["dataset_path"], revision=e.get("revision"))
    if not selected:
        raise ValueError("failure_scores is set but failure_subsets is empty: list the strategies' selected subsets")
    return failure_identification(
        scored,
        selected,
        SCORE_COLUMN,
        model=model,
        domains=domains,
        include_full=include_full,
        **columns,
        **correlation_kwargs,
    )


def fit_notes(rows: Sequence[Mapping[str, Any]], key: str) -> list[str]:
    """One note per row (named by its ``key`` column and domain) that dropped NaN scores, and per row whose logistic
    fit failed (PLCC on raw scores)."""
    notes = []
    for r in rows:
        if r["n_nan"]:
            notes.append(f"note: {r[key]} on {r['domain']}: {r['n_nan']} NaN score(s) (parse failures) dropped")
        if r["plcc_fit"] != "logistic":
            notes.append(
                f"note: {r[key]} on {r['domain']}: logistic fit failed, PLCC on raw scores ({r['plcc_fit_message']})"
            )
    return notes
