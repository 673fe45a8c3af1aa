"""The one config of the whole loop, and the check that its per-stage fields belong to their recipes."""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ANNOTATORS",
    "FINETUNE_STRATEGIES",
    "load_recipe",
    "PipelineConfig",
    "REPO_RECIPES",
    "STAGE_FIELDS",
    "recipe_fields",
    "check_stage_fields",
]

REPO_RECIPES = Path(__file__).resolve().parents[3] / "recipes"

# PipelineConfig fields that carry another recipe's fields, and that recipe
STAGE_FIELDS = {
    "sampling": "score",
    "score_args": "score",
    "features_args": "extract_features",
    "failure_predictor_args": "train_failure_predictor",
    "select_args": "select_subset",
    "finetune_args": "finetune",
    "import_ratings_args": "import_ratings",
}

ANNOTATORS = ("simulated", "human")
FINETUNE_STRATEGIES = ("first", "all")


@dataclass
class PipelineConfig:
    """One config for the whole loop (``recipes/pipeline.py --config …``)."""

    output_dir: str = field(default="outputs/pipeline", metadata={"help": "Everything goes here."})
    source_pool: str | None = field(default=None, metadata={"help": "Labelled source pool (with train/test split)."})
    target_pool: str | None = field(
        default=None, metadata={"help": "Target pool; its MOS is the simulated annotator's oracle, hidden otherwise."}
    )
    model_name_or_path: str = field(default="hollow404/VQR1-7B-YouTubeUGC", metadata={"help": "The quality model f."})
    dtype: str = field(default="bfloat16", metadata={"help": "Model dtype for every stage."})
    clip_model_name: str = field(default="ViT-B-32", metadata={"help": "open_clip model for the diversity features."})
    clip_pretrained: str | None = field(default="laion2b_s34b_b79k", metadata={"help": "open_clip pretrained tag."})
    num_frames: str = field(default="8", metadata={"help": "Frames per video for the features."})
    strategies: list[str] = field(
        default_factory=lambda: ["mds", "difficulty", "diversity", "coreset", "random"],
        metadata={
            "help": "Selection strategies (mds, difficulty, diversity, coreset, random, uncertainty, "
            "noise_stability); the first one is annotated and used for fine-tuning (see finetune_strategies)."
        },
    )
    finetune_strategies: str = field(
        default="first",
        metadata={
            "help": "'first': the first strategy's selection is annotated and fine-tuned on (the loop); 'all': "
            "every strategy's selection is annotated and f fine-tuned on source + it, one adapter per strategy "
            "(the paper's comparison; one round, simulated annotator)."
        },
    )
    uncertainty_samples: int = field(
        default=8, metadata={"help": "uncertainty: sampled answers of f per video (their spread is the score)."}
    )
    noise_draws: int = field(default=4, metadata={"help": "noise_stability: weight perturbations of f per video."})
    noise_std: float = field(
        default=0.02, metadata={"help": "noise_stability: perturbation std relative to each weight matrix's std."}
    )
    budget: str = field(default="0.05", metadata={"help": "Per round: a count, a fraction or a percentage."})
    lam: float = field(default=0.25, metadata={"help": "λ of the diversity term."})
    rounds: int = field(default=1, metadata={"help": "Select → annotate → fine-tune rounds."})
    annotator_noise: float = field(default=0.0, metadata={"help": "Rater noise std of the simulated annotator."})
    seed: int = field(default=0, metadata={"help": "Seed of selection, annotation noise and training."})
    launcher: str = field(
        default="python",
        metadata={
            "help": "How training stages run, e.g. 'accelerate launch'; 'inprocess' calls the recipe in this "
            "process (tiny models: saves the interpreter start-up of every stage)."
        },
    )
    score_launcher: str | None = field(
        default=None,
        metadata={"help": "How scoring/feature stages run ('python', 'accelerate launch …', 'inprocess')."},
    )
    sampling: dict[str, Any] | None = field(default=None, metadata={"help": "VideoSamplingConfig fields (YAML)."})
    score_args: dict[str, Any] | None = field(
        default=None, metadata={"help": "Extra recipes/score.py fields (every scoring stage, g's included)."}
    )
    source_score_mode: str = field(
        default="expectation",
        metadata={"help": "How f scores the source pool g learns from: 'expectation', 'generate' or 'both'."},
    )
    difficulty_score_mode: str = field(
        default="expectation", metadata={"help": "How g scores the unlabelled pool ('expectation': as g is trained)."}
    )
    eval_score_mode: str = field(
        default="expectation",
        metadata={"help": "How the evaluation scores the test splits and the base model's target pool."},
    )
    failure_predictor_args: dict[str, Any] | None = field(default=None, metadata={"help": "Extra g training fields."})
    features_args: dict[str, Any] | None = field(default=None, metadata={"help": "Extra extract_features fields."})
    select_args: dict[str, Any] | None = field(
        default=None, metadata={"help": "Extra recipes/select_subset.py fields."}
    )
    finetune_args: dict[str, Any] | None = field(default=None, metadata={"help": "Extra recipes/finetune.py fields."})
    annotator: str = field(
        default="simulated",
        metadata={
            "help": "'simulated': the target pool's MOS is revealed for the selected videos (the paper's protocol); "
            "'human': the pipeline stops after each selection until raters have rated it (recipes/rate.py)."
        },
    )
    min_ratings: int = field(default=1, metadata={"help": "human: ratings every selected video needs to go on."})
    video_root: str | None = field(
        default=None, metadata={"help": "human: folder the selection's relative video paths resolve against."}
    )
    import_ratings_args: dict[str, Any] | None = field(
        default=None, metadata={"help": "Extra recipes/import_ratings.py fields (human annotator)."}
    )
    diversity_labelled: bool = field(
        default=True,
        metadata={"help": "From round 2, the diversity term also counts the videos labelled in earlier rounds."},
    )
    diversity_include_source: bool = field(
        default=False,
        metadata={"help": "The diversity term also counts the labelled source pool (its features are extracted)."},
    )
    stage_hub: bool = field(default=True, metadata={"help": "Stage the last adapter and selection with their cards."})
    push_to_hub: bool = field(default=False, metadata={"help": "Also push them (needs the two ids below)."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Hub repo of the adapter."})
    hub_dataset_id: str | None = field(default=None, metadata={"help": "Hub repo of the selected subset."})

    def __post_init__(self):
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if not self.strategies:
            raise ValueError("strategies must name at least one strategy")
        if self.annotator not in ANNOTATORS:
            raise ValueError(f"annotator must be one of {list(ANNOTATORS)}, got {self.annotator!r}")
        if self.min_ratings < 1:
            raise ValueError(f"min_ratings must be >= 1, got {self.min_ratings}")
        if self.finetune_strategies not in FINETUNE_STRATEGIES:
            raise ValueError(
                f"finetune_strategies must be one of {list(FINETUNE_STRATEGIES)}, got {self.finetune_strategies!r}"
            )
        if self.finetune_strategies == "all" and (self.rounds != 1 or self.annotator != "simulated"):
            raise ValueError(
                "finetune_strategies 'all' compares the strategies on one round with the simulated annotator; "
                f"got rounds={self.rounds}, annotator={self.annotator!r}"
            )
        if self.uncertainty_samples < 2 or self.noise_draws < 1 or self.noise_std <= 0:
            raise ValueError(
                "uncertainty_samples must be >= 2, noise_draws >= 1 and noise_std > 0; got "
                f"{self.uncertainty_samples}, {self.noise_draws}, {self.noise_std}"
            )
        from ..scoring import SCORING_MODES

        for name in ("source_score_mode", "difficulty_score_mode", "eval_score_mode"):
            if getattr(self, name) not in SCORING_MODES:
                raise ValueError(f"{name} must be one of {list(SCORING_MODES)}, got {getattr(self, name)!r}")
        if "mode" in (self.score_args or {}):
            raise ValueError(
                "score_args.mode would set every scoring stage alike; set source_score_mode, difficulty_score_mode "
                "and eval_score_mode instead."
            )


def load_recipe(name: str):
    """``recipes/<name>.py`` imported once per process as the module ``recipe_<name>`` (recipes/ holds scripts, not
    a package)."""
    module_name = f"recipe_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, REPO_RECIPES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def recipe_fields(recipe: str) -> set[str]:
    """Every field ``recipes/<recipe>.py`` accepts (the fields of its parser's dataclasses)."""
    return {f.name for cls in load_recipe(recipe).make_parser().dataclass_types for f in dataclasses.fields(cls)}


def check_stage_fields(config: PipelineConfig) -> None:
    """Refuse, before any stage runs, a per-stage field that its recipe does not know (a typo would otherwise fail
    hours later, in the stage's subprocess). The error names the config field, the unknown keys and close matches."""
    problems = []
    for name, recipe in STAGE_FIELDS.items():
        given = getattr(config, name) or {}
        known = recipe_fields(recipe)
        for key in sorted(set(given) - known):
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{name}.{key}: not a field of recipes/{recipe}.py{hint}")
    if problems:
        raise ValueError("Unknown per-stage field(s) in the pipeline config:\n  " + "\n  ".join(problems))
