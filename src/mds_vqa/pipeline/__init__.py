"""The whole MDS-VQA loop from one config (``recipes/pipeline.py``): :class:`Pipeline` runs :class:`PipelineConfig`
stage by stage, each stage being the recipe a user can also run alone, resuming by key."""

from .config import PipelineConfig, check_stage_fields
from .loop import Pipeline, RoundResult
from .stages import AwaitingRatings, StageError, StagePlan, StageRunner

__all__ = [
    "AwaitingRatings",
    "Pipeline",
    "PipelineConfig",
    "RoundResult",
    "StageError",
    "StagePlan",
    "StageRunner",
    "check_stage_fields",
]
