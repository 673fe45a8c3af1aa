"""VQA correlation metric: SRCC, PLCC (after a 4-parameter logistic fit), KRCC and RMSE between quality predictions
and mean opinion scores. A thin ``evaluate`` wrapper around :func:`mds_vqa.evaluation.correlations`."""

import datasets
import evaluate

from mds_vqa.evaluation import correlations

_CITATION = """\
@inproceedings{mdsvqa2026,
  title     = {Model-Informed Data Selection for Video Quality Assessment},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2026}
}
@techreport{vqeg2000,
  title       = {Final Report from the Video Quality Experts Group on the Validation of Objective Models of Video
                 Quality Assessment},
  institution = {Video Quality Experts Group (VQEG)},
  year        = {2000}
}
"""

_DESCRIPTION = """\
The four criteria used to evaluate video (and image) quality models against human mean opinion scores (MOS):

- SRCC: Spearman rank correlation of the raw predictions with the MOS (prediction monotonicity);
- PLCC: Pearson linear correlation after mapping the predictions to the MOS scale with the 4-parameter logistic
  y = (b1 - b2) / (1 + exp(-(x - b3) / b4)) + b2, fitted with scipy's curve_fit from
  p0 = [max(MOS), min(MOS), mean(pred), std(pred) / 4] (prediction accuracy). When the fit fails, PLCC uses the raw
  predictions and `plcc_fit` is "raw" (`plcc_fit_message` says why);
- KRCC: Kendall rank correlation of the raw predictions;
- RMSE: root mean squared error between the fitted predictions and the MOS.

NaN predictions (e.g. a model answer that could not be parsed) are dropped and counted in `n_nan`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): the model's quality scores; NaN for items the model failed to score.
    references (`list` of `float`): the mean opinion scores.
    n_bootstrap (`int`, default 0): number of bootstrap resamples for percentile confidence intervals (0 = none).
    confidence (`float`, default 0.95): the intervals' confidence level.
    seed (`int`, default 0): seed of the bootstrap resampling.

Returns:
    srcc, plcc, krcc, rmse (`float`), n (items used), n_nan (NaN predictions dropped), plcc_fit ("logistic" or
    "raw"), plcc_fit_message; with n_bootstrap > 0 also `<metric>_ci_low`, `<metric>_ci_high`, n_bootstrap,
    n_bootstrap_used, n_bootstrap_raw_fits and confidence.

Raises:
    ValueError (`mds_vqa.evaluation.CorrelationInputError`): fewer than 3 items with a prediction, constant
    predictions or MOS, non-finite MOS, or infinite predictions.

Examples:
    >>> import evaluate
    >>> metric = evaluate.load("metrics/vqa_correlation")
    >>> out = metric.compute(predictions=[1.2, 2.8, 3.1, 4.4, 4.9], references=[1.0, 2.5, 3.5, 4.0, 5.0])
    >>> round(out["srcc"], 4)
    1.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class VqaCorrelation(evaluate.Metric):
    """SRCC / PLCC / KRCC / RMSE of quality predictions against MOS (see the module card)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            module_type="metric",
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
            reference_urls=[
                "https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.spearmanr.html",
                "https://docs.scipy.org/doc/scipy/reference/generated/scipy.optimize.curve_fit.html",
            ],
        )

    def _compute(self, predictions, references, n_bootstrap: int = 0, confidence: float = 0.95, seed: int = 0):
        return correlations(predictions, references, n_bootstrap=n_bootstrap, confidence=confidence, seed=seed)
