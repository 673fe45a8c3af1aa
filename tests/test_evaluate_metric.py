"""The `metrics/vqa_correlation` evaluate module, loaded by path offline."""

from __future__ import annotations

import os
from pathlib import Path

import evaluate
import numpy as np
import pytest
from scipy import stats

from mds_vqa.evaluation import correlations

METRIC_DIR = Path(__file__).resolve().parents[1] / "metrics" / "vqa_correlation"


@pytest.fixture(scope="module")
def metric():
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    return evaluate.load(str(METRIC_DIR))


def test_metric_loads_by_path_offline_and_equals_correlations(metric):
    rng = np.random.default_rng(0)
    mos = rng.uniform(1, 5, 80)
    pred = mos + rng.normal(0, 0.7, 80)
    out = metric.compute(predictions=pred.tolist(), references=mos.tolist())
    ref = correlations(pred, mos)
    for k in ("srcc", "plcc", "krcc", "rmse"):
        assert out[k] == pytest.approx(ref[k], abs=1e-12)
    assert out["srcc"] == pytest.approx(stats.spearmanr(pred, mos).statistic, abs=1e-12)
    assert out["plcc_fit"] == "logistic" and out["n"] == 80


def test_metric_accumulates_batches_and_gives_bootstrap_intervals(metric):
    rng = np.random.default_rng(1)
    mos = rng.uniform(1, 5, 40)
    pred = mos + rng.normal(0, 0.5, 40)
    for start in range(0, 40, 10):
        metric.add_batch(predictions=pred[start : start + 10].tolist(), references=mos[start : start + 10].tolist())
    out = metric.compute(n_bootstrap=50, seed=0)
    assert out["n"] == 40
    assert out["srcc"] == pytest.approx(correlations(pred, mos)["srcc"], abs=1e-12)
    assert out["srcc_ci_low"] <= out["srcc"] <= out["srcc_ci_high"]
    assert out["n_bootstrap_used"] == 50


def test_metric_drops_nan_predictions_and_counts_them(metric):
    out = metric.compute(predictions=[1.0, float("nan"), 3.0, 4.0, 5.5], references=[1.0, 2.0, 3.5, 3.0, 5.0])
    assert out["n_nan"] == 1 and out["n"] == 4
    assert out["srcc"] == pytest.approx(stats.spearmanr([1, 3, 4, 5.5], [1, 3.5, 3, 5]).statistic)


def test_metric_raises_a_clear_error_on_constant_predictions(metric):
    with pytest.raises(ValueError, match="predictions are constant"):
        metric.compute(predictions=[3.0, 3.0, 3.0, 3.0], references=[1.0, 2.0, 3.0, 4.0])
