"""Typed arguments of the pipeline's recipe stages: what the pipeline sets for each recipe, in the recipe's own field
names. The user's per-stage fields (``score_args``, ``sampling``, …) are added on top by :meth:`RecipeStage.args`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "RecipeStage",
    "ScoreStage",
    "FeaturesStage",
    "FailurePredictorStage",
    "SelectStage",
    "FinetuneStage",
    "ImportRatingsStage",
    "EvaluateStage",
]


@dataclass
class RecipeStage:
    """Base of a recipe stage: ``recipe`` names ``recipes/<recipe>.py``; ``kind`` picks its launcher ("score" for
    inference stages, "train" for training stages)."""

    recipe: ClassVar[str]
    kind: ClassVar[str] = "score"

    def args(self, *extra: dict[str, Any] | None) -> dict[str, Any]:
        """The recipe's fields: this stage's (``None`` written as null, the recipe's own "unset"), then each ``extra``
        mapping on top, in order."""
        out = dataclasses.asdict(self)
        for more in extra:
            out.update(more or {})
        return out


@dataclass
class ScoreStage(RecipeStage):
    """``recipes/score.py``: score a pool with f (or f + an adapter, e.g. g on the difficulty prompt)."""

    recipe: ClassVar[str] = "score"

    dataset_path: str
    output_dir: str
    model_name_or_path: str
    dtype: str
    adapter: str | None = None
    score_column: str = "score"
    split: str | None = None
    task: str = "scoring"
    mode: str = "expectation"
    overwrite: bool = True


@dataclass
class FeaturesStage(RecipeStage):
    """``recipes/extract_features.py``: open_clip frame features of the unlabelled target pool."""

    recipe: ClassVar[str] = "extract_features"

    pool_path: str
    output_dir: str
    model_name: str
    pretrained: str | None
    num_frames: str
    overwrite: bool = True


@dataclass
class FailurePredictorStage(RecipeStage):
    """``recipes/train_failure_predictor.py``: train g on the source pool scored by f."""

    recipe: ClassVar[str] = "train_failure_predictor"
    kind: ClassVar[str] = "train"

    dataset_path: str
    model_name_or_path: str
    dtype: str
    output_dir: str
    seed: int
    pred_column: str = "score"
    eval_split: str = "test"
    report_to: str = "none"


@dataclass
class SelectStage(RecipeStage):
    """``recipes/select_subset.py``: pick the budget from the candidates with one strategy."""

    recipe: ClassVar[str] = "select_subset"

    pool_path: str
    output_dir: str
    strategy: str
    budget: str
    lam: float
    seed: int
    labelled_paths: list[str] | None = None
    overwrite: bool = True


@dataclass
class ImportRatingsStage(RecipeStage):
    """``recipes/import_ratings.py``: raters' answers → a labelled pool (the human annotator)."""

    recipe: ClassVar[str] = "import_ratings"

    subset_path: str
    ratings: str
    output_dir: str
    min_ratings: int
    video_root: str | None = None
    overwrite: bool = True


@dataclass
class FinetuneStage(RecipeStage):
    """``recipes/finetune.py``: GRPO + LoRA on the source pool and everything labelled so far."""

    recipe: ClassVar[str] = "finetune"
    kind: ClassVar[str] = "train"

    dataset_paths: list[str]
    model_name_or_path: str
    dtype: str
    output_dir: str
    seed: int
    report_to: str = "none"


@dataclass
class EvaluateStage(RecipeStage):
    """``recipes/evaluate_models.py``: the correlation table per domain and model, and the failure-identification
    table of every strategy's round-1 subset."""

    recipe: ClassVar[str] = "evaluate_models"

    output_dir: str
    models: list[dict[str, str]]
    failure_scores: list[dict[str, str]]
    failure_subsets: list[dict[str, str]]
    split: str = "test"
