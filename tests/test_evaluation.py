"""Correlation metrics, per-domain tables, the failure-identification table and recipes/evaluate_models.py."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import load_recipe
from datasets import Dataset
from scipy import stats
from trl import TrlParser

import mds_vqa.evaluation as evaluation
from mds_vqa.evaluation import (
    AVERAGE_ROW,
    CorrelationInputError,
    correlations,
    evaluate_scored,
    failure_identification,
    fit_logistic,
    logistic_4,
    table_to_markdown,
    wide_table,
    write_tables,
)
from mds_vqa.hub import read_provenance

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------------------------------
# correlations
# --------------------------------------------------------------------------------------------------------------------


def test_srcc_and_krcc_equal_scipy_on_random_data():
    rng = np.random.default_rng(1)
    mos = rng.uniform(1, 5, 200)
    pred = mos + rng.normal(0, 1.0, 200)
    out = correlations(pred, mos)
    assert out["srcc"] == pytest.approx(stats.spearmanr(pred, mos).statistic, abs=1e-12)
    assert out["krcc"] == pytest.approx(stats.kendalltau(pred, mos).statistic, abs=1e-12)
    assert out["n"] == 200 and out["n_nan"] == 0
    assert set(out) >= {"srcc", "plcc", "krcc", "rmse"}


def test_plcc_fit_recovers_a_known_logistic():
    rng = np.random.default_rng(2)
    true = (4.6, 1.3, 5.0, 1.2)
    x = rng.uniform(0, 10, 400)
    y = logistic_4(x, *true) + rng.normal(0, 0.05, 400)
    fit = fit_logistic(x, y)
    assert fit.success, fit.message
    np.testing.assert_allclose(fit.params, true, rtol=0.05)
    out = correlations(x, y)
    assert out["plcc_fit"] == "logistic"
    assert out["plcc"] == pytest.approx(stats.pearsonr(logistic_4(x, *fit.params), y).statistic, abs=1e-9)
    # the mapping linearises a sigmoid relation: better than the raw Pearson correlation
    assert out["plcc"] > stats.pearsonr(x, y).statistic + 0.01
    assert out["rmse"] == pytest.approx(0.05, rel=0.2)


def test_plcc_fit_starts_from_the_documented_p0(monkeypatch):
    seen = {}
    real = evaluation.curve_fit

    def recording_curve_fit(f, x, y, p0=None, **kwargs):
        seen["p0"] = list(p0)
        return real(f, x, y, p0=p0, **kwargs)

    monkeypatch.setattr(evaluation, "curve_fit", recording_curve_fit)
    x = np.array([0.5, 1.0, 2.0, 3.5, 4.0, 6.0])
    y = np.array([1.0, 1.5, 2.5, 3.0, 4.5, 4.8])
    correlations(x, y)
    assert seen["p0"] == pytest.approx([y.max(), y.min(), x.mean(), x.std() / 4])


def test_failed_logistic_fit_falls_back_to_raw_predictions_and_says_so():
    out = correlations([1.0, 2.0, 3.0], [1.0, 3.0, 2.0])  # 3 points cannot fix 4 parameters
    assert out["plcc_fit"] == "raw"
    assert "4 parameters" in out["plcc_fit_message"]
    assert out["plcc"] == pytest.approx(stats.pearsonr([1, 2, 3], [1, 3, 2]).statistic)
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 10, 100)
    fit = fit_logistic(x, logistic_4(x, 4.5, 1.2, 5, 1.3) + rng.normal(0, 0.5, 100), maxfev=3)
    assert not fit.success and "maxfev" in fit.message
    np.testing.assert_array_equal(fit.fitted, x)


def test_nan_predictions_are_dropped_and_counted():
    rng = np.random.default_rng(4)
    mos = rng.uniform(1, 5, 30)
    pred = mos + rng.normal(0, 0.5, 30)
    holed = pred.astype(object)
    holed[[3, 7]] = np.nan
    holed[11] = None
    out = correlations(list(holed), mos)
    keep = np.ones(30, dtype=bool)
    keep[[3, 7, 11]] = False
    clean = correlations(pred[keep], mos[keep])
    assert out["n_nan"] == 3 and out["n"] == 27
    for k in ("srcc", "plcc", "krcc", "rmse"):
        assert out[k] == pytest.approx(clean[k], abs=1e-12)


@pytest.mark.parametrize(
    "pred, mos, message",
    [
        ([1, 2, 3, 4], [1, 2, 3], "same length"),
        ([1, 2], [1, 2], "at least 3"),
        ([1, float("nan"), 3, float("nan")], [1, 2, 3, 4], "at least 3"),
        ([2, 2, 2, 2], [1, 2, 3, 4], "predictions are constant"),
        ([1, 2, 3, 4], [3, 3, 3, 3], "MOS is constant"),
        ([1, 2, 3, 4], [1, float("nan"), 3, 4], "mos[1]"),
        ([1, "bad", 3, 4], [1, 2, 3, 4], "pred[1] is not a number: 'bad'"),
        ([1, float("inf"), 3, 4], [1, 2, 3, 4], "infinite"),
        ([[1, 2], [3, 4]], [[1, 2], [3, 4]], "one-dimensional"),
    ],
)
def test_invalid_inputs_raise_a_clear_error(pred, mos, message):
    with pytest.raises(CorrelationInputError) as info:
        correlations(pred, mos)
    assert message in str(info.value)


def test_bootstrap_intervals_bracket_the_estimate_and_are_seeded():
    rng = np.random.default_rng(5)
    mos = rng.uniform(1, 5, 60)
    pred = mos + rng.normal(0, 0.8, 60)
    a = correlations(pred, mos, n_bootstrap=100, seed=0)
    b = correlations(pred, mos, n_bootstrap=100, seed=0)
    c = correlations(pred, mos, n_bootstrap=100, seed=1)
    for k in ("srcc", "plcc", "krcc", "rmse"):
        assert a[f"{k}_ci_low"] <= a[k] <= a[f"{k}_ci_high"]
        assert a[f"{k}_ci_low"] < a[f"{k}_ci_high"]
        assert a[f"{k}_ci_low"] == b[f"{k}_ci_low"]
    assert a["srcc_ci_low"] != c["srcc_ci_low"]
    assert a["n_bootstrap_used"] == 100
    assert "srcc_ci_low" not in correlations(pred, mos)


# --------------------------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------------------------


def _scored_pool(n_per_domain=(40, 30), noise=(0.3, 1.0), seed=0, split_every=0) -> Dataset:
    """A pool with two domains and a `score` column: MOS plus Gaussian noise of a known size per domain."""
    rng = np.random.default_rng(seed)
    rows = []
    for d, (n, sd) in enumerate(zip(n_per_domain, noise)):
        for i in range(n):
            mos = float(rng.uniform(1, 5))
            rows.append(
                {
                    "video_id": f"v{i:03d}",
                    "video": f"/videos/d{d}/v{i:03d}.mp4",
                    "mos": mos,
                    "dataset": f"domain{d}",
                    "split": "train" if split_every and i % split_every == 0 else "test",
                    "score": mos + float(rng.normal(0, sd)),
                }
            )
    return Dataset.from_list(rows)


def test_evaluate_scored_gives_one_row_per_domain():
    ds = _scored_pool()
    rows = evaluate_scored(ds, "score", model="m")
    assert [r["domain"] for r in rows] == ["domain0", "domain1"]
    for r in rows:
        idx = [i for i, d in enumerate(ds["dataset"]) if d == r["domain"]]
        ref = correlations([ds["score"][i] for i in idx], [ds["mos"][i] for i in idx])
        assert r["srcc"] == pytest.approx(ref["srcc"]) and r["plcc"] == pytest.approx(ref["plcc"])
    assert rows[0]["srcc"] > rows[1]["srcc"]  # less noise, higher correlation
    with pytest.raises(KeyError, match="nope"):
        evaluate_scored(ds, "score", model="m", domains=["nope"])
    const = ds.map(lambda r: {"score": 1.0 if r["dataset"] == "domain1" else r["score"]})
    with pytest.raises(CorrelationInputError, match="model 'm', domain 'domain1'"):
        evaluate_scored(const, "score", model="m")


def test_wide_table_has_an_average_row_and_bold_best_values():
    rows = [
        {"domain": "a", "model": "base", "srcc": 0.5, "plcc": 0.6},
        {"domain": "b", "model": "base", "srcc": 0.7, "plcc": 0.8},
        {"domain": "a", "model": "ft", "srcc": 0.9, "plcc": 0.5},
        {"domain": "b", "model": "ft", "srcc": 0.6, "plcc": 0.9},
    ]
    table = wide_table(rows)
    assert list(table.index) == ["a", "b", AVERAGE_ROW]
    assert table.loc[AVERAGE_ROW, ("base", "srcc")] == pytest.approx(0.6)
    assert table.loc[AVERAGE_ROW, ("ft", "plcc")] == pytest.approx(0.7)
    md = table_to_markdown(table)
    assert "| a | 0.5000 | **0.6000** | **0.9000** | 0.5000 |" in md
    assert "| **Average** | 0.6000 | **0.7000** | **0.7500** | **0.7000** |" in md  # a tie: both bold
    md_min = table_to_markdown(table, best="min")
    assert "| a | **0.5000** | 0.6000 | 0.9000 | **0.5000** |" in md_min
    # a model without a result on a domain has no average
    partial = wide_table(rows[:3])
    assert math.isnan(partial.loc[AVERAGE_ROW, ("ft", "srcc")])
    assert "–" in table_to_markdown(partial)
    with pytest.raises(ValueError, match="Two results"):
        wide_table(rows + [rows[0]])


def test_failure_identification_scores_each_subset_per_domain():
    ds = _scored_pool(n_per_domain=(40, 40), noise=(0.5, 0.5))
    err = np.abs(np.asarray(ds["score"]) - np.asarray(ds["mos"]))
    # "hard": the 10 largest errors per domain; "spread": every 4th video
    subsets = {}
    hard, spread = [], []
    for d in ("domain0", "domain1"):
        idx = [i for i, x in enumerate(ds["dataset"]) if x == d]
        hard += sorted(idx, key=lambda i: -err[i])[:10]
        spread += idx[::4]
    subsets["hard"] = ds.select(hard)
    subsets["spread"] = [{"video_id": ds["video_id"][i], "dataset": ds["dataset"][i]} for i in spread]
    rows = failure_identification(ds, subsets, "score", model="base")
    got = {(r["strategy"], r["domain"]): r for r in rows}
    assert set(got) == {(s, d) for s in ("all", "hard", "spread") for d in ("domain0", "domain1")}
    for d in ("domain0", "domain1"):
        sel = [i for i in hard if ds["dataset"][i] == d]
        ref = correlations([ds["score"][i] for i in sel], [ds["mos"][i] for i in sel])
        assert got[("hard", d)]["srcc"] == pytest.approx(ref["srcc"])
        assert got[("hard", d)]["n"] == 10
        # the videos with the largest errors are where the model fails
        assert got[("hard", d)]["plcc"] < got[("spread", d)]["plcc"]
    with pytest.raises(KeyError, match="v999"):
        failure_identification(ds, {"bad": [{"video_id": "v999", "dataset": "domain0"}]}, "score")
    with pytest.raises(KeyError, match="several domains"):
        failure_identification(ds, {"ids": ["v001", "v002", "v003"]}, "score")


def test_write_tables_writes_markdown_csv_json_and_a_bar_chart(tmp_path):
    ds = _scored_pool()
    rows = evaluate_scored(ds, "score", model="base") + evaluate_scored(
        ds.map(lambda r: {"score": r["mos"] * 0.5 + r["score"] * 0.5}), "score", model="ft"
    )
    paths = write_tables(rows, tmp_path, "table", metrics=("srcc", "plcc", "rmse"), title="T")
    assert set(paths) == {"md", "csv", "json", "png"}
    md = paths["md"].read_text()
    assert md.startswith("## T") and "base SRCC" in md and "ft RMSE" in md
    csv = pd.read_csv(paths["csv"], index_col=0)
    assert list(csv.index) == ["domain0", "domain1", AVERAGE_ROW]
    assert csv.loc["domain0", "ft/srcc"] == pytest.approx(rows[2]["srcc"], abs=1e-6)
    payload = json.loads(paths["json"].read_text())
    assert payload["average"]["base"]["srcc"] == pytest.approx((rows[0]["srcc"] + rows[1]["srcc"]) / 2)
    assert payload["rows"][0]["plcc_fit"] == "logistic"
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------------------------------------
# recipes/evaluate_models.py
# --------------------------------------------------------------------------------------------------------------------


def _demo_args(tmp_path):
    recipe = load_recipe("evaluate_models")
    parser = TrlParser(recipe.EvaluateArguments)
    (args,) = parser.parse_args_and_config(
        args=["--config", str(ROOT / "recipes/configs/demo/evaluate.yaml"), "--output_dir", str(tmp_path / "out")]
    )
    return recipe, args


def test_evaluate_recipe_writes_both_tables_from_the_demo_config(tmp_path):
    recipe, args = _demo_args(tmp_path)
    assert args.split == "test" and [m["name"] for m in args.models] == ["base", "base+mds"]
    pool = _scored_pool(split_every=3, seed=1)
    pool.save_to_disk(str(tmp_path / "base"))
    # the "fine-tuned" model: scores closer to the MOS
    pool.map(lambda r: {"score": 0.8 * r["mos"] + 0.2 * r["score"]}).save_to_disk(str(tmp_path / "ft"))
    pool.select(range(0, len(pool), 5)).save_to_disk(str(tmp_path / "sel_a"))
    pool.select(range(1, len(pool), 3)).save_to_disk(str(tmp_path / "sel_b"))
    args = dataclasses.replace(
        args,
        models=[
            {"name": "base", "dataset_path": str(tmp_path / "base"), "column": "score"},
            {"name": "ft", "dataset_path": str(tmp_path / "ft"), "column": "score"},
        ],
        failure_scores=[{"dataset_path": str(tmp_path / "base"), "column": "score"}],
        failure_subsets=[
            {"name": "a", "dataset_path": str(tmp_path / "sel_a")},
            {"name": "b", "dataset_path": str(tmp_path / "sel_b")},
        ],
    )
    written = recipe.main(args)
    table = json.loads(written["correlation_table"]["json"].read_text())
    test_rows = pool.filter(lambda s: s == "test", input_columns="split")
    ref = evaluate_scored(test_rows, "score", model="base")
    by = {(r["model"], r["domain"]): r for r in table["rows"]}
    assert by[("base", "domain0")]["srcc"] == pytest.approx(ref[0]["srcc"])
    assert by[("base", "domain0")]["n"] == sum(1 for d in test_rows["dataset"] if d == "domain0")
    assert by[("ft", "domain1")]["srcc"] > by[("base", "domain1")]["srcc"]
    failure = json.loads(written["failure_identification"]["json"].read_text())
    assert {r["strategy"] for r in failure["rows"]} == {"all", "a", "b"}
    all_rows = [r for r in failure["rows"] if r["strategy"] == "all"]
    assert sum(r["n"] for r in all_rows) == len(pool)  # the failure table uses the whole pool, every split
    for paths in written.values():
        assert all(p.exists() for p in paths.values())
    record = read_provenance(tmp_path / "out")
    assert record.recipe == "evaluate_models" and set(record.summary["tables"]) == set(written)
    assert [i["path"] for i in record.inputs] == [str(tmp_path / n) for n in ("base", "ft", "sel_a", "sel_b")]


def test_evaluate_recipe_reports_missing_inputs_clearly(tmp_path):
    recipe, args = _demo_args(tmp_path)
    with pytest.raises(FileNotFoundError, match="recipes/score.py"):
        recipe.main(dataclasses.replace(args, failure_scores=None))
    _scored_pool().save_to_disk(str(tmp_path / "pool"))
    bad_column = [{"name": "m", "dataset_path": str(tmp_path / "pool"), "column": "nope"}]
    with pytest.raises(KeyError, match="'nope'"):
        recipe.main(dataclasses.replace(args, models=bad_column, failure_scores=None))
    with pytest.raises(ValueError, match="lacks"):
        recipe.main(dataclasses.replace(args, models=[{"name": "m"}], failure_scores=None))
    twice = [{"name": "m", "dataset_path": str(tmp_path / "pool"), "column": "score"}] * 2
    with pytest.raises(ValueError, match="twice"):
        recipe.main(dataclasses.replace(args, models=twice, failure_scores=None))


def test_evaluate_recipe_runs_from_the_command_line(tmp_path):
    _scored_pool().save_to_disk(str(tmp_path / "pool"))
    config = {
        "output_dir": str(tmp_path / "out"),
        "models": [{"name": "m", "dataset_path": str(tmp_path / "pool"), "column": "score"}],
        "split": None,
        "metrics": ["srcc", "plcc", "krcc", "rmse"],
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "recipes/evaluate_models.py"),
            "--config",
            str(tmp_path / "c.yaml"),
            "--digits",
            "3",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "m SRCC" in proc.stdout and "**Average**" in proc.stdout
    md = (tmp_path / "out/correlation_table.md").read_text()
    assert "m KRCC" in md and "m RMSE" in md
    bad = dict(config, models=[{"name": "m", "dataset_path": str(tmp_path / "missing"), "column": "score"}])
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "recipes/evaluate_models.py"), "--config", str(tmp_path / "bad.yaml")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and "Dataset not found" in proc.stderr
