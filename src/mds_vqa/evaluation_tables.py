"""Result tables: rows of :func:`~mds_vqa.evaluation.evaluate_scored` or
:func:`~mds_vqa.evaluation.failure_identification` pivoted into the paper's layout (one row per domain + the average,
one column per model or strategy and metric), written as Markdown (best values in bold), CSV, JSON and a bar chart.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from .reporting import format_number, markdown_table, pyplot, save_figure

__all__ = ["AVERAGE_ROW", "LOWER_IS_BETTER", "wide_table", "table_to_markdown", "plot_table", "write_tables"]

LOWER_IS_BETTER = frozenset({"rmse"})
AVERAGE_ROW = "Average"


def wide_table(
    rows: Iterable[Mapping[str, Any]] | pd.DataFrame,
    *,
    column_key: str = "model",
    metrics: Sequence[str] = ("srcc", "plcc"),
    average: bool = True,
) -> pd.DataFrame:
    """Pivot result rows into the paper's layout: one row per domain (+ ``"Average"``), columns ``(column_key value,
    metric)``. The average is the plain mean over domains; it is NaN for a column missing a domain."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if frame.empty:
        raise ValueError("No result rows to tabulate.")
    unknown = [m for m in metrics if m not in frame.columns]
    if unknown:
        raise KeyError(f"Metric(s) {unknown} not in the results (columns: {list(frame.columns)})")
    dup = frame.duplicated(["domain", column_key])
    if dup.any():
        first = frame.loc[dup, ["domain", column_key]].iloc[0].tolist()
        raise ValueError(f"Two results for domain {first[0]!r} and {column_key} {first[1]!r}")
    domains = list(dict.fromkeys(frame["domain"]))
    keys = list(dict.fromkeys(frame[column_key]))
    table = frame.pivot(index="domain", columns=column_key, values=list(metrics))
    table = table.swaplevel(0, 1, axis=1).reindex(
        columns=pd.MultiIndex.from_product([keys, list(metrics)]), index=domains
    )
    if average:
        table.loc[AVERAGE_ROW] = table.mean(axis=0, skipna=False)
    table.index.name = "domain"
    table.columns.names = [column_key, "metric"]
    return table.astype(float)


def table_to_markdown(
    table: pd.DataFrame,
    *,
    best: Literal["max", "min"] | None = "max",
    digits: int = 4,
    exclude_from_best: Sequence[str] = (),
) -> str:
    """Render :func:`wide_table` output as a Markdown table, the best value of each row and metric in bold.

    ``best="max"``: the highest correlation (lowest RMSE) wins; ``"min"``: the lowest correlation (highest RMSE),
    as in the failure-identification table; ``None``: no bold. Columns in ``exclude_from_best`` (e.g. the full-pool
    reference) never compete.
    """
    keys = list(dict.fromkeys(table.columns.get_level_values(0)))
    metrics = list(dict.fromkeys(table.columns.get_level_values(1)))
    header = ["Domain"] + [f"{k} {m.upper()}" for k in keys for m in metrics]
    rows = []
    for domain, row in table.iterrows():
        winners = _winners(row, keys, metrics, best, exclude_from_best)
        cells = []
        for k in keys:
            for m in metrics:
                text = format_number(row[(k, m)], digits)
                if (
                    m in winners
                    and k not in exclude_from_best
                    and round(row[(k, m)], digits) == round(winners[m], digits)
                ):
                    text = f"**{text}**"
                cells.append(text)
        name = f"**{domain}**" if domain == AVERAGE_ROW else str(domain)
        rows.append([name] + cells)
    return markdown_table(header, rows, align="l" + "c" * (len(header) - 1)) + "\n"


def _winners(
    row: pd.Series, keys: list, metrics: list, best: Literal["max", "min"] | None, exclude: Sequence[str]
) -> dict[str, float]:
    """The best value of each metric in one table row (only where at least two columns compete)."""
    winners: dict[str, float] = {}
    if best is not None:
        for m in metrics:
            vals = [row[(k, m)] for k in keys if k not in exclude and not math.isnan(row[(k, m)])]
            if len(vals) > 1:
                high = (best == "max") != (m in LOWER_IS_BETTER)
                winners[m] = max(vals) if high else min(vals)
    return winners


def plot_table(table: pd.DataFrame, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Grouped bar chart of :func:`wide_table` output: one panel per metric, domains on the x axis, one bar per
    column (model or strategy). Saved with matplotlib's Agg backend; returns the path."""
    plt = pyplot()
    keys = list(dict.fromkeys(table.columns.get_level_values(0)))
    metrics = list(dict.fromkeys(table.columns.get_level_values(1)))
    domains = [str(d) for d in table.index]
    x = np.arange(len(domains))
    width = 0.8 / max(1, len(keys))
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(max(4.0, 1.1 * len(domains) * max(1, len(keys)) ** 0.5 + 2) * len(metrics), 4)
    )
    axes = np.atleast_1d(axes)
    for ax, metric in zip(axes, metrics):
        for j, key in enumerate(keys):
            vals = table[(key, metric)].to_numpy(dtype=float)
            ax.bar(x - 0.4 + width * (j + 0.5), vals, width, label=str(key))  # NaN (missing): no bar
        ax.set_xticks(x)
        ax.set_xticklabels(domains, rotation=30, ha="right")
        ax.set_ylabel(metric.upper())
        ax.axhline(0.0, color="black", linewidth=0.6)
        ax.grid(axis="y", alpha=0.3)
    axes[-1].legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=150)


def _json_value(v: Any) -> Any:
    if isinstance(v, (np.floating, float)):
        return None if math.isnan(float(v)) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def write_tables(
    rows: Sequence[Mapping[str, Any]],
    output_dir: str | os.PathLike,
    name: str,
    *,
    column_key: str = "model",
    metrics: Sequence[str] = ("srcc", "plcc"),
    best: Literal["max", "min"] | None = "max",
    exclude_from_best: Sequence[str] = (),
    title: str | None = None,
    digits: int = 4,
) -> dict[str, Path]:
    """Write result rows as ``<name>.md`` (the wide table), ``<name>.csv`` (the wide table, columns
    ``<key>/<metric>``), ``<name>.json`` (every row with all its fields, and the averages) and ``<name>.png``
    (:func:`plot_table`). Returns the paths by format."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = wide_table(rows, column_key=column_key, metrics=metrics)
    paths = {k: out / f"{name}.{k}" for k in ("md", "csv", "json", "png")}
    md = table_to_markdown(table, best=best, digits=digits, exclude_from_best=exclude_from_best)
    paths["md"].write_text((f"## {title}\n\n" if title else "") + md)
    flat = table.copy()
    flat.columns = [f"{k}/{m}" for k, m in flat.columns]
    flat.to_csv(paths["csv"], float_format=f"%.{digits + 2}f")
    average = {
        str(k): {m: _json_value(table.loc[AVERAGE_ROW, (k, m)]) for m in metrics}
        for k in dict.fromkeys(table.columns.get_level_values(0))
    }
    payload = {
        "title": title,
        "column_key": column_key,
        "metrics": list(metrics),
        "rows": [{k: _json_value(v) for k, v in r.items()} for r in rows],
        "average": average,
    }
    paths["json"].write_text(json.dumps(payload, indent=2) + "\n")
    plot_table(table, paths["png"], title=title)
    return paths
