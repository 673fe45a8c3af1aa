"""The strategies compared over seeds: per-seed metrics read from a pipeline run, means with 95 % intervals, and
the report (``experiment.json``, a Markdown section and a plot).

One seed is one world (new videos, a new initialisation of f, new rater noise) put through the pipeline with
``finetune_strategies: all``. From its report (:mod:`mds_vqa.pipeline`) :func:`seed_metrics` reads:

- ``base``: f's SRCC/PLCC on the source and the target test splits (the domain gap);
- ``g``: the SRCC of g's difficulty with f's true error ``|f(x) − MOS(x)|`` on the held-out source videos (g's own
  evaluation) and on the target pool g selected from;
- per strategy: the base f's SRCC/PLCC on the strategy's subset (*failure identification*, the paper's Table 1:
  lower = more failures found) and, after fine-tuning f on source + that subset, the test SRCC/PLCC per domain and
  its gain over the base (the paper's Table 2).

:func:`aggregate` turns the seeds into ``{"mean", "ci95": [lo, hi], "per_seed": [...]}`` per number: a Student-t
interval over seeds (:func:`mean_ci`; none with one seed).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .reporting import format_number, markdown_table, pyplot, save_figure

__all__ = ["STRATEGY_METRICS", "mean_ci", "seed_metrics", "g_target_srcc", "aggregate", "write_experiment_report"]

# per strategy, in experiment.json: what each number is
STRATEGY_METRICS = {
    "failure_id_srcc": "base f's SRCC on the subset (lower = more failures found)",
    "failure_id_plcc": "base f's PLCC on the subset",
    "finetune_target_srcc": "target test SRCC after fine-tuning on source + subset",
    "finetune_source_srcc": "source test SRCC after fine-tuning on source + subset",
    "finetune_gain_srcc": "target test SRCC gain over the base f",
    "finetune_source_gain_srcc": "source test SRCC gain over the base f",
}


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """``{"mean", "ci95": [lo, hi], "per_seed": values}``: the mean and its two-sided Student-t interval
    (``mean ± t_{(1+c)/2, n−1} · s/√n``, ``s`` the sample std). NaN values are dropped from the mean and interval
    (and kept in ``per_seed``); the interval is ``None`` with fewer than two finite values."""
    from scipy.stats import t

    per_seed = [float(v) for v in values]
    finite = np.array([v for v in per_seed if math.isfinite(v)], dtype=float)
    out: dict[str, Any] = {"mean": float(finite.mean()) if finite.size else None, "ci95": None, "per_seed": per_seed}
    if finite.size >= 2:
        half = float(t.ppf((1 + confidence) / 2, finite.size - 1) * finite.std(ddof=1) / math.sqrt(finite.size))
        out["ci95"] = [out["mean"] - half, out["mean"] + half]
    return out


def _rows(table: Mapping[str, Any], key: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["domain"], r[key]): r for r in table["rows"]}


def g_target_srcc(base_target, difficulty, *, score_column: str = "score") -> float:
    """SRCC of g's difficulty (``difficulty`` Dataset: ``video_id``, ``difficulty``) with the base f's true error on
    the same videos (``base_target``: the target pool scored by f, with ``mos``); videos without both are left out."""
    from scipy.stats import spearmanr

    error = {
        v: abs(s - m)
        for v, s, m in zip(base_target["video_id"], base_target[score_column], base_target["mos"])
        if s is not None and math.isfinite(s)
    }
    pairs = [
        (d, error[v])
        for v, d in zip(difficulty["video_id"], difficulty["difficulty"])
        if v in error and d is not None and math.isfinite(d)
    ]
    if len(pairs) < 3:
        return math.nan
    return float(spearmanr([p[0] for p in pairs], [p[1] for p in pairs]).statistic)


def seed_metrics(run_dir: str | Path, strategies: Sequence[str]) -> dict[str, Any]:
    """The numbers of one seed's pipeline run (``run_dir``, run with ``finetune_strategies: all``; see the module
    docstring). Raises ``FileNotFoundError`` naming the missing report file."""
    from datasets import load_from_disk

    run = Path(run_dir)
    report = run / "report"
    paths = {
        "correlations": report / "correlation_table.json",
        "failures": report / "failure_identification.json",
        "g": run / "round_1" / "g" / "eval_results.json",
    }
    for what, path in paths.items():
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing ({what} of the run in {run}); did the pipeline finish?")
    corr = _rows(json.loads(paths["correlations"].read_text()), "model")
    fails = _rows(json.loads(paths["failures"].read_text()), "strategy")
    domains = list(dict.fromkeys(d for d, _ in corr))
    if len(domains) != 2:
        raise ValueError(f"{paths['correlations']}: expected a source and a target domain, found {domains}")
    source, target = domains

    def srcc(domain: str, model: str, metric: str = "srcc") -> float:
        row = corr.get((domain, model))
        if row is None:
            raise KeyError(f"{paths['correlations']}: no row for model {model!r} on {domain!r}")
        return float(row[metric]) if row[metric] is not None else math.nan

    g_eval = json.loads(paths["g"].read_text())
    base_target = load_from_disk(str(run / "base" / "scored_target"))
    difficulty = load_from_disk(str(run / "round_1" / "difficulty"))
    out: dict[str, Any] = {
        "domains": {"source": source, "target": target},
        "base": {
            "source_srcc": srcc(source, "base"),
            "target_srcc": srcc(target, "base"),
            "source_plcc": srcc(source, "base", "plcc"),
            "target_plcc": srcc(target, "base", "plcc"),
        },
        "g": {
            "source_srcc_with_error": float(g_eval.get("eval_srcc", math.nan)),
            "target_srcc_with_error": g_target_srcc(base_target, difficulty),
        },
        "strategies": {},
    }
    for s in strategies:
        fail = fails.get((target, s))
        if fail is None:
            raise KeyError(f"{paths['failures']}: no failure-identification row for strategy {s!r}")
        model = f"base+{s}"
        tgt, src = srcc(target, model), srcc(source, model)
        out["strategies"][s] = {
            "failure_id_srcc": float(fail["srcc"]),
            "failure_id_plcc": float(fail["plcc"]),
            "finetune_target_srcc": tgt,
            "finetune_source_srcc": src,
            "finetune_gain_srcc": tgt - out["base"]["target_srcc"],
            "finetune_source_gain_srcc": src - out["base"]["source_srcc"],
        }
    full = fails.get((target, "all"))
    out["pool_failure_srcc"] = float(full["srcc"]) if full else math.nan
    return out


def aggregate(seeds: Sequence[int], per_seed: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``experiment.json``: every number of :func:`seed_metrics` as :func:`mean_ci` over the seeds."""
    if len(seeds) != len(per_seed) or not per_seed:
        raise ValueError(f"one metrics dict per seed expected: {len(seeds)} seeds, {len(per_seed)} results")
    first = per_seed[0]
    out: dict[str, Any] = {"seeds": list(seeds), "domains": first["domains"]}
    for block in ("base", "g"):
        out[block] = {k: mean_ci([m[block][k] for m in per_seed]) for k in first[block]}
    out["pool_failure_srcc"] = mean_ci([m["pool_failure_srcc"] for m in per_seed])
    out["strategies"] = {
        s: {k: mean_ci([m["strategies"][s][k] for m in per_seed]) for k in first["strategies"][s]}
        for s in first["strategies"]
    }
    out["metrics"] = dict(STRATEGY_METRICS)
    return out


def _cell(stat: Mapping[str, Any], digits: int = 3) -> str:
    mean = format_number(stat["mean"], digits)
    if stat["ci95"] is None:
        return mean
    lo, hi = stat["ci95"]
    return f"{mean} [{format_number(lo, digits)}, {format_number(hi, digits)}]"


def experiment_markdown(experiment: Mapping[str, Any]) -> str:
    """The experiment's tables: the domain gap, g, and one row per strategy (mean [95 % CI] over seeds)."""
    n = len(experiment["seeds"])
    base, g = experiment["base"], experiment["g"]
    lines = [
        f"Seeds: {experiment['seeds']} (n = {n}); each cell: mean [95 % CI over seeds]"
        + (" (one seed: no interval)." if n < 2 else "."),
        "",
        markdown_table(
            ["", "source test", "target test"],
            [
                ("base f SRCC", _cell(base["source_srcc"]), _cell(base["target_srcc"])),
                ("base f PLCC", _cell(base["source_plcc"]), _cell(base["target_plcc"])),
                (
                    "g: SRCC with f's error",
                    _cell(g["source_srcc_with_error"]) + " (held-out source)",
                    _cell(g["target_srcc_with_error"]) + " (target pool)",
                ),
            ],
            align="lll",
        ),
        "",
        f"Base f's SRCC on the whole target pool: {_cell(experiment['pool_failure_srcc'])}.",
        "",
    ]
    rows = []
    for s, m in experiment["strategies"].items():
        rows.append(
            (
                s,
                _cell(m["failure_id_srcc"]),
                _cell(m["finetune_target_srcc"]),
                _cell(m["finetune_gain_srcc"]),
                _cell(m["finetune_source_gain_srcc"]),
            )
        )
    lines.append(
        markdown_table(
            [
                "strategy",
                "failure id. SRCC (lower = more failures)",
                "target SRCC after fine-tuning",
                "target gain",
                "source gain",
            ],
            rows,
            align="lrrrr",
        )
    )
    return "\n".join(lines)


def plot_experiment(experiment: Mapping[str, Any], path: str | Path) -> Path:
    """Two panels over the strategies: failure-identification SRCC and target SRCC gain, mean with 95 % CI and the
    per-seed values as dots."""
    plt = pyplot()
    names = list(experiment["strategies"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, title in (
        (axes[0], "failure_id_srcc", "base f's SRCC on the subset (lower = more failures)"),
        (axes[1], "finetune_gain_srcc", "target test SRCC gain after fine-tuning"),
    ):
        for i, s in enumerate(names):
            stat = experiment["strategies"][s][key]
            mean = stat["mean"] if stat["mean"] is not None else math.nan
            ax.bar(i, mean, color="tab:blue" if s == "mds" else "tab:gray", alpha=0.7)
            if stat["ci95"] is not None:
                ax.errorbar(i, mean, yerr=[[mean - stat["ci95"][0]], [stat["ci95"][1] - mean]], color="k", capsize=3)
            ax.scatter([i] * len(stat["per_seed"]), stat["per_seed"], color="k", s=8, zorder=3)
        ax.axhline(0, color="k", linewidth=0.5)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def write_experiment_report(
    report_dir: str | Path, experiment: Mapping[str, Any], *, design: str, timings: Mapping[str, float]
) -> Path:
    """Write ``experiment.json``, ``experiment.png`` and ``README.md`` (the ``design`` written before the run, the
    tables, the plot and the seconds each seed took) into ``report_dir``; returns the README's path."""
    report = Path(report_dir)
    report.mkdir(parents=True, exist_ok=True)
    (report / "experiment.json").write_text(json.dumps(experiment, indent=2))
    plot_experiment(experiment, report / "experiment.png")
    seconds = ", ".join(f"seed {s}: {t:.0f} s" for s, t in timings.items())
    lines = [
        "# MDS-VQA on the embedded toy world",
        "",
        "## Design (written before the comparison ran)",
        "",
        design,
        "",
        "## Results",
        "",
        experiment_markdown(experiment),
        "",
        "![strategies](experiment.png)",
        "",
        f"Wall time: {seconds}. Per-seed runs: `seeds/seed_<n>/run/report/README.md`.",
        "",
    ]
    path = report / "README.md"
    path.write_text("\n".join(lines))
    return path
