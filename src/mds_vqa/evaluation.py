"""Correlation metrics (SRCC, PLCC after a 4-parameter logistic fit, KRCC, RMSE), per domain and per subset.

:func:`correlations` is the one computation behind everything here, the ``metrics/vqa_correlation`` evaluate module
and ``recipes/evaluate_models.py``. Result rows come in two shapes:

- per domain × per model (:func:`evaluate_scored`): the paper's Table 2;
- the failure-identification rows (:func:`failure_identification`): the base model's SRCC/PLCC on each selection
  strategy's subset, per domain (lower = the strategy found more of the model's failures): the paper's Table 1.

:mod:`mds_vqa.evaluation_tables` pivots them into tables and writes them as Markdown, CSV, JSON and a bar chart
(:func:`write_tables`, re-exported here); :mod:`mds_vqa.evaluation_runs` builds both from a config's scored entries.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.special import expit
from tqdm.auto import tqdm

from .evaluation_tables import AVERAGE_ROW, LOWER_IS_BETTER, plot_table, table_to_markdown, wide_table, write_tables
from .reporting import MAX_LISTED

logger = logging.getLogger(__name__)

__all__ = [
    "METRICS",
    "AVERAGE_ROW",
    "LOWER_IS_BETTER",
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
        shown = ", ".join(f"mos[{i}]={m[i]}" for i in bad_mos[:MAX_LISTED])
        raise CorrelationInputError(f"{len(bad_mos)} MOS value(s) are not finite: {shown}")
    bad_pred = np.flatnonzero(np.isinf(p))
    if len(bad_pred):
        shown = ", ".join(f"pred[{i}]={p[i]}" for i in bad_pred[:MAX_LISTED])
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
    index = _PoolIndex(pool_doms, pool_ids, id_column)
    scores = _column(scored, score_column)
    mos = _column(scored, mos_column)
    strategies: dict[str, list[int]] = {}
    if include_full:
        if full_name in subsets:
            raise ValueError(f"A subset is named {full_name!r}, the name of the full-pool row; rename it.")
        strategies[full_name] = list(range(len(pool_ids)))
    for name, subset in subsets.items():
        strategies[name] = index.rows_of(name, _subset_keys(subset, id_column, group_column), group_column)
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


class _PoolIndex:
    """The scored pool's rows by (domain, id) and by id alone, to find a subset's videos in it."""

    def __init__(self, pool_doms: list[str], pool_ids: list[str], id_column: str):
        self.by_key: dict[tuple[str, str], int] = {}
        self.by_id: dict[str, list[int]] = {}
        for i, key in enumerate(zip(pool_doms, pool_ids)):
            if key in self.by_key:
                raise ValueError(f"Duplicate row in the scored pool: domain {key[0]!r}, {id_column} {key[1]!r}")
            self.by_key[key] = i
            self.by_id.setdefault(key[1], []).append(i)

    def rows_of(self, name: str, keys: list[tuple[str | None, str]], group_column: str) -> list[int]:
        """The pool rows of subset ``name`` (its (domain or None, id) keys); ``KeyError`` for a video not in the
        pool or an id found in several domains, ``ValueError`` for a video listed twice."""
        rows, missing, ambiguous = [], [], []
        for dom, vid in keys:
            if dom is not None:
                i = self.by_key.get((str(dom), vid))
                if i is None:
                    missing.append(f"{dom}/{vid}")
                else:
                    rows.append(i)
            else:
                found = self.by_id.get(vid, [])
                if not found:
                    missing.append(vid)
                elif len(found) > 1:
                    ambiguous.append(vid)
                else:
                    rows.append(found[0])
        if missing:
            raise KeyError(
                f"Subset {name!r}: {len(missing)} video(s) are not in the scored pool, e.g. {missing[:MAX_LISTED]}"
                " (score the pool the subset was selected from with recipes/score.py)"
            )
        if ambiguous:
            raise KeyError(
                f"Subset {name!r}: ids {ambiguous[:MAX_LISTED]} occur in several domains of the scored pool; "
                f"give the subset a {group_column!r} column"
            )
        if len(set(rows)) != len(rows):
            raise ValueError(f"Subset {name!r} lists the same video more than once")
        return rows
