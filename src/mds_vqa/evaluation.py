"""Correlation metrics (SRCC, PLCC after a 4-parameter logistic fit, KRCC, RMSE) and result tables.

:func:`correlations` is the one computation behind everything here, the ``metrics/vqa_correlation`` evaluate module
and ``recipes/evaluate_models.py``. Tables come in two shapes:

- the per-domain × per-model table (:func:`evaluate_scored` rows, then :func:`wide_table`): the paper's Table 2;
- the failure-identification table (:func:`failure_identification`): the base model's SRCC/PLCC on each selection
  strategy's subset, per domain (lower = the strategy found more of the model's failures): the paper's Table 1.

Both are written as Markdown, CSV, JSON and a bar chart by :func:`write_tables`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.special import expit
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

__all__ = [
    "METRICS",
    "CorrelationInputError",
    "LogisticFit",
    "logistic_4",
    "fit_logistic",
    "correlations",
    "evaluate_scored",
    "failure_identification",
    "wide_table",
    "table_to_markdown",
    "plot_table",
    "write_tables",
]

METRICS = ("srcc", "plcc", "krcc", "rmse")
LOWER_IS_BETTER = frozenset({"rmse"})
AVERAGE_ROW = "Average"
_MAX_LISTED = 10


class CorrelationInputError(ValueError):
    """Predictions and MOS cannot be correlated (length mismatch, too few items, constant values, NaN MOS…)."""


# --------------------------------------------------------------------------------------------------------------------
# The 4-parameter logistic
# --------------------------------------------------------------------------------------------------------------------


def logistic_4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """``(b1 − b2) / (1 + exp(−(x − b3) / b4)) + b2``, computed with ``expit`` so that it never overflows."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return (b1 - b2) * expit((np.asarray(x, dtype=float) - b3) / b4) + b2


@dataclass
class LogisticFit:
    """Result of :func:`fit_logistic`: ``fitted`` values (the raw predictions when ``success`` is False), the fitted
    parameters ``b1..b4`` (``None`` on failure) and a human-readable ``message``."""

    fitted: np.ndarray
    params: np.ndarray | None
    success: bool
    message: str


def fit_logistic(pred: Sequence[float], mos: Sequence[float], *, maxfev: int = 20000) -> LogisticFit:
    """Fit :func:`logistic_4` mapping ``pred`` to ``mos`` with ``scipy.optimize.curve_fit``.

    The starting point is ``p0 = [max(mos), min(mos), mean(pred), std(pred) / 4]``. When the fit does not converge,
    or gives non-finite or constant values, the raw predictions are returned with ``success=False`` and the reason.
    """
    x = np.asarray(pred, dtype=float)
    y = np.asarray(mos, dtype=float)
    p0 = [float(y.max()), float(y.min()), float(x.mean()), float(x.std()) / 4.0]
    if p0[3] == 0:
        return LogisticFit(x.copy(), None, False, "the predictions are constant: no logistic can be fitted")
    if len(x) < 4:
        return LogisticFit(x.copy(), None, False, f"{len(x)} items cannot determine the logistic's 4 parameters")
    try:
        with warnings.catch_warnings():
            # The covariance of the parameters is not used; its estimation failing is not a failure of the fit.
            warnings.simplefilter("ignore", OptimizeWarning)
            params, _ = curve_fit(logistic_4, x, y, p0=p0, maxfev=maxfev)
    except (RuntimeError, ValueError) as err:
        return LogisticFit(x.copy(), None, False, f"curve_fit failed: {err}")
    fitted = logistic_4(x, *params)
    if not np.all(np.isfinite(fitted)):
        return LogisticFit(x.copy(), None, False, f"the fitted logistic {params.tolist()} gives non-finite values")
    if np.ptp(fitted) == 0:
        return LogisticFit(x.copy(), None, False, f"the fitted logistic {params.tolist()} is flat on the data")
    return LogisticFit(fitted, params, True, "ok")


# --------------------------------------------------------------------------------------------------------------------
# Correlations
# --------------------------------------------------------------------------------------------------------------------


def _as_float_array(values: Any, what: str) -> np.ndarray:
    """``values`` as a 1-D float array; ``None`` becomes NaN; anything that is not a number raises, naming the item."""
    if isinstance(values, (str, bytes)):
        raise CorrelationInputError(f"{what} must be a sequence of numbers, not a string")
    arr = np.asarray(values, dtype=object)
    if arr.ndim != 1:
        raise CorrelationInputError(f"{what} must be one-dimensional, got shape {arr.shape}")
    out = np.empty(len(arr), dtype=float)
    for i, v in enumerate(arr):
        if v is None:
            out[i] = np.nan
            continue
        try:
            out[i] = float(v)
        except (TypeError, ValueError) as err:
            raise CorrelationInputError(f"{what}[{i}] is not a number: {v!r}") from err
    return out


def _clean(pred: Sequence[Any], mos: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate the inputs and drop NaN predictions. Returns ``(pred, mos, n_dropped)``."""
    p = _as_float_array(pred, "pred")
    m = _as_float_array(mos, "mos")
    if len(p) != len(m):
        raise CorrelationInputError(f"pred has {len(p)} items but mos has {len(m)}: they must have the same length")
    bad_mos = np.flatnonzero(~np.isfinite(m))
    if len(bad_mos):
        shown = ", ".join(f"mos[{i}]={m[i]}" for i in bad_mos[:_MAX_LISTED])
        raise CorrelationInputError(f"{len(bad_mos)} MOS value(s) are not finite: {shown}")
    bad_pred = np.flatnonzero(np.isinf(p))
    if len(bad_pred):
        shown = ", ".join(f"pred[{i}]={p[i]}" for i in bad_pred[:_MAX_LISTED])
        raise CorrelationInputError(f"{len(bad_pred)} prediction(s) are infinite: {shown}")
    keep = ~np.isnan(p)
    n_nan = int((~keep).sum())
    p, m = p[keep], m[keep]
    if len(p) < 3:
        raise CorrelationInputError(
            f"need at least 3 items with a prediction to correlate, got {len(p)} ({n_nan} NaN prediction(s) dropped)"
        )
    if np.ptp(p) == 0:
        raise CorrelationInputError(f"the predictions are constant ({p[0]!r} for all {len(p)} items)")
    if np.ptp(m) == 0:
        raise CorrelationInputError(f"the MOS is constant ({m[0]!r} for all {len(m)} items)")
    return p, m, n_nan


def _point_metrics(p: np.ndarray, m: np.ndarray) -> tuple[dict[str, float], LogisticFit]:
    fit = fit_logistic(p, m)
    values = {
        "srcc": float(stats.spearmanr(p, m).statistic),
        "plcc": float(stats.pearsonr(fit.fitted, m).statistic),
        "krcc": float(stats.kendalltau(p, m).statistic),
        "rmse": float(np.sqrt(np.mean((fit.fitted - m) ** 2))),
    }
    return values, fit


def correlations(
    pred: Sequence[float],
    mos: Sequence[float],
    *,
    n_bootstrap: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """SRCC, PLCC, KRCC and RMSE between predictions and MOS.

    SRCC and KRCC are computed on the raw predictions; PLCC and RMSE after mapping the predictions to the MOS scale
    with the 4-parameter logistic (:func:`fit_logistic`, the usual VQEG protocol: the mapping may be decreasing, so a
    model ranking the videos backwards gets a negative SRCC but a positive PLCC). When the fit fails, PLCC and RMSE
    use the raw predictions and ``plcc_fit`` is ``"raw"`` (``plcc_fit_message`` says why).

    NaN (or ``None``) predictions, e.g. parse failures, are dropped and counted in ``n_nan``. A length mismatch,
    fewer than 3 remaining items, constant predictions or MOS, non-finite MOS or infinite predictions raise
    :class:`CorrelationInputError`.

    With ``n_bootstrap > 0``, percentile intervals at ``confidence`` over that many resamples (with replacement,
    seeded by ``seed``) are added as ``<metric>_ci_low`` / ``<metric>_ci_high``; resamples whose predictions or MOS are
    constant cannot be correlated and are left out (``n_bootstrap_used`` says how many were kept).

    Returns:
        ``{"srcc", "plcc", "krcc", "rmse", "n", "n_nan", "plcc_fit", "plcc_fit_message"}`` (+ the intervals).
    """
    p, m, n_nan = _clean(pred, mos)
    values, fit = _point_metrics(p, m)
    if not fit.success:
        logger.warning("Logistic fit failed (%s): PLCC and RMSE use the raw predictions.", fit.message)
    out: dict[str, Any] = {
        **values,
        "n": int(len(p)),
        "n_nan": n_nan,
        "plcc_fit": "logistic" if fit.success else "raw",
        "plcc_fit_message": fit.message,
    }
    if n_bootstrap:
        out.update(_bootstrap(p, m, n_bootstrap, confidence, seed, progress))
    return out


def _bootstrap(
    p: np.ndarray, m: np.ndarray, n_bootstrap: int, confidence: float, seed: int, progress: bool
) -> dict[str, Any]:
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {k: [] for k in METRICS}
    raw_fallbacks = 0
    for _ in tqdm(range(n_bootstrap), desc="bootstrap", disable=not progress, leave=False):
        idx = rng.integers(0, len(p), size=len(p))
        bp, bm = p[idx], m[idx]
        if np.ptp(bp) == 0 or np.ptp(bm) == 0:
            continue
        values, fit = _point_metrics(bp, bm)
        raw_fallbacks += not fit.success
        for k in METRICS:
            samples[k].append(values[k])
    used = len(samples["srcc"])
    if used == 0:
        raise CorrelationInputError(f"none of the {n_bootstrap} bootstrap resamples could be correlated")
    alpha = (1.0 - confidence) / 2.0
    out: dict[str, Any] = {"n_bootstrap": int(n_bootstrap), "n_bootstrap_used": used, "confidence": confidence}
    for k in METRICS:
        lo, hi = np.quantile(np.asarray(samples[k]), [alpha, 1.0 - alpha])
        out[f"{k}_ci_low"], out[f"{k}_ci_high"] = float(lo), float(hi)
    out["n_bootstrap_raw_fits"] = raw_fallbacks
    return out


# --------------------------------------------------------------------------------------------------------------------
# Rows: per domain × per model, per domain × per strategy
# --------------------------------------------------------------------------------------------------------------------


def _column(ds, name: str) -> list:
    if name not in ds.column_names:
        raise KeyError(f"Column {name!r} not in the Dataset (columns: {ds.column_names})")
    return ds[name]


def _by_domain(domains: Sequence[str], keep: Sequence[str] | None) -> dict[str, np.ndarray]:
    arr = np.asarray(domains, dtype=object)
    groups = {d: np.flatnonzero(arr == d) for d in dict.fromkeys(domains)}
    if keep is None:
        return groups
    missing = [d for d in keep if d not in groups]
    if missing:
        raise KeyError(f"Domain(s) {missing} not found (the data has {list(groups)})")
    return {d: groups[d] for d in keep}


def evaluate_scored(
    ds,
    score_column: str,
    *,
    model: str,
    mos_column: str = "mos",
    group_column: str = "dataset",
    domains: Sequence[str] | None = None,
    **correlation_kwargs: Any,
) -> list[dict[str, Any]]:
    """One row per domain: ``{"domain", "model", **correlations(ds[score_column], ds[mos_column])}``.

    ``ds`` is a scored pool Dataset (``recipes/score.py`` writes the score column, NaN for parse failures).
    ``domains`` restricts and orders the domains. Errors name the model and the domain.
    """
    scores = _column(ds, score_column)
    mos = _column(ds, mos_column)
    rows = []
    for domain, idx in _by_domain(_column(ds, group_column), domains).items():
        try:
            result = correlations([scores[i] for i in idx], [mos[i] for i in idx], **correlation_kwargs)
        except CorrelationInputError as err:
            raise CorrelationInputError(f"model {model!r}, domain {domain!r}, column {score_column!r}: {err}") from err
        rows.append({"domain": domain, "model": model, **result})
    return rows


def _subset_keys(subset, id_column: str, group_column: str) -> list[tuple[str | None, str]]:
    """(domain or None, video id) for each row of a subset given as a Dataset / list of rows / list of ids."""
    if hasattr(subset, "column_names"):
        ids = [str(v) for v in _column(subset, id_column)]
        doms = [str(d) for d in subset[group_column]] if group_column in subset.column_names else [None] * len(ids)
        return list(zip(doms, ids))
    keys = []
    for item in subset:
        if isinstance(item, Mapping):
            keys.append((item.get(group_column), str(item[id_column])))
        else:
            keys.append((None, str(item)))
    return keys


def failure_identification(
    scored,
    subsets: Mapping[str, Any],
    score_column: str,
    *,
    model: str = "base",
    id_column: str = "video_id",
    mos_column: str = "mos",
    group_column: str = "dataset",
    domains: Sequence[str] | None = None,
    include_full: bool = True,
    full_name: str = "all",
    **correlation_kwargs: Any,
) -> list[dict[str, Any]]:
    """The failure-identification table's rows: the base model's correlations on each strategy's subset, per domain.

    ``scored`` is the labelled pool the strategies selected from, scored by the base model (``score_column``).
    ``subsets`` maps a strategy name to its selection: a Dataset (or list of rows) with ``id_column`` (and
    ``group_column`` when ids repeat across domains), or a list of video ids. Rows are matched to ``scored`` by
    (domain, id); an id that is not in ``scored`` raises ``KeyError`` naming it. A lower SRCC/PLCC means the strategy
    found more of the model's failures. ``include_full`` adds the whole pool as strategy ``full_name`` (reference).

    Returns rows ``{"domain", "strategy", "model", **correlations}``.
    """
    pool_ids = [str(v) for v in _column(scored, id_column)]
    pool_doms = [str(d) for d in _column(scored, group_column)]
    by_key = {}
    by_id: dict[str, list[int]] = {}
    for i, key in enumerate(zip(pool_doms, pool_ids)):
        if key in by_key:
            raise ValueError(f"Duplicate row in the scored pool: domain {key[0]!r}, {id_column} {key[1]!r}")
        by_key[key] = i
        by_id.setdefault(key[1], []).append(i)
    scores = _column(scored, score_column)
    mos = _column(scored, mos_column)
    strategies: dict[str, list[int]] = {}
    if include_full:
        if full_name in subsets:
            raise ValueError(f"A subset is named {full_name!r}, the name of the full-pool row; rename it.")
        strategies[full_name] = list(range(len(pool_ids)))
    for name, subset in subsets.items():
        rows, missing, ambiguous = [], [], []
        for dom, vid in _subset_keys(subset, id_column, group_column):
            if dom is not None:
                i = by_key.get((str(dom), vid))
                if i is None:
                    missing.append(f"{dom}/{vid}")
                else:
                    rows.append(i)
            else:
                found = by_id.get(vid, [])
                if not found:
                    missing.append(vid)
                elif len(found) > 1:
                    ambiguous.append(vid)
                else:
                    rows.append(found[0])
        if missing:
            raise KeyError(
                f"Subset {name!r}: {len(missing)} video(s) are not in the scored pool, e.g. {missing[:_MAX_LISTED]}"
                " (score the pool the subset was selected from with recipes/score.py)"
            )
        if ambiguous:
            raise KeyError(
                f"Subset {name!r}: ids {ambiguous[:_MAX_LISTED]} occur in several domains of the scored pool; "
                f"give the subset a {group_column!r} column"
            )
        if len(set(rows)) != len(rows):
            raise ValueError(f"Subset {name!r} lists the same video more than once")
        strategies[name] = rows
    out = []
    wanted = domains if domains is not None else list(dict.fromkeys(pool_doms))
    for name, rows in strategies.items():
        doms = [pool_doms[i] for i in rows]
        groups = _by_domain(doms, None)
        for domain in wanted:
            if domain not in groups:
                if domains is not None and domain not in pool_doms:
                    raise KeyError(f"Domain {domain!r} not in the scored pool (it has {sorted(set(pool_doms))})")
                logger.warning("Subset %r has no video from domain %r.", name, domain)
                continue
            sel = [rows[k] for k in groups[domain]]
            try:
                result = correlations([scores[i] for i in sel], [mos[i] for i in sel], **correlation_kwargs)
            except CorrelationInputError as err:
                raise CorrelationInputError(f"subset {name!r}, domain {domain!r}: {err}") from err
            out.append({"domain": domain, "strategy": name, "model": model, **result})
    return out


# --------------------------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------------------------


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


def _fmt(value: float, digits: int) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


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
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + [":---:"] * (len(header) - 1)) + "|"]
    for domain, row in table.iterrows():
        winners: dict[str, float] = {}
        if best is not None:
            for m in metrics:
                vals = [row[(k, m)] for k in keys if k not in exclude_from_best and not math.isnan(row[(k, m)])]
                if len(vals) > 1:
                    high = (best == "max") != (m in LOWER_IS_BETTER)
                    winners[m] = max(vals) if high else min(vals)
        cells = []
        for k in keys:
            for m in metrics:
                text = _fmt(row[(k, m)], digits)
                if (
                    m in winners
                    and k not in exclude_from_best
                    and round(row[(k, m)], digits) == round(winners[m], digits)
                ):
                    text = f"**{text}**"
                cells.append(text)
        name = f"**{domain}**" if domain == AVERAGE_ROW else str(domain)
        lines.append("| " + " | ".join([name] + cells) + " |")
    return "\n".join(lines) + "\n"


def plot_table(table: pd.DataFrame, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Grouped bar chart of :func:`wide_table` output: one panel per metric, domains on the x axis, one bar per
    column (model or strategy). Saved with matplotlib's Agg backend; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


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
