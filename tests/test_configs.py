"""Every config shipped under recipes/configs/ parses with its recipe's own parser, on the installed versions."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from conftest import load_recipe

CONFIGS = Path(__file__).resolve().parents[1] / "recipes" / "configs"

# config file name (without .yaml, or its prefix before "_") -> the recipe that reads it
RECIPE_OF = {
    "build_pool": "build_pool",
    "score_source": "score",
    "score_difficulty": "score",
    "failure_predictor": "train_failure_predictor",
    "extract_features": "extract_features",
    "select": "select_subset",
    "finetune": "finetune",
    "evaluate": "evaluate_models",
    "gmad": "gmad",
    "pipeline": "pipeline",
    "make_weak_pairs": "make_weak_pairs",
    "pseudo_label": "pseudo_label",
    "rate": "rate",
    "import_ratings": "import_ratings",
    "pretrain_quality": "pretrain_quality",
}

# PipelineConfig fields holding another recipe's fields, and that recipe
PIPELINE_STAGE_ARGS = {
    "score_args": "score",
    "features_args": "extract_features",
    "failure_predictor_args": "train_failure_predictor",
    "select_args": "select_subset",
    "finetune_args": "finetune",
}

SHIPPED = sorted(CONFIGS.glob("*/*.yaml"))


def _recipe_of(path: Path) -> str:
    if path.stem not in RECIPE_OF:
        raise AssertionError(f"{path}: no recipe is known for this config; add it to RECIPE_OF")
    return RECIPE_OF[path.stem]


def _cpu_overrides(path: Path) -> list[str]:
    """GPU configs parse on CPU with bf16 off (TrainingArguments checks the device for bf16)."""
    config = yaml.safe_load(path.read_text()) or {}
    return ["--bf16", "false", "--use_cpu", "true"] if config.get("bf16") else []


def _field_names(parser) -> set[str]:
    return {f.name for cls in parser.dataclass_types for f in dataclasses.fields(cls)}


def test_every_config_directory_has_configs_and_every_config_has_a_recipe():
    assert len(SHIPPED) >= 20
    assert [p for p in SHIPPED if p.stem not in RECIPE_OF] == []


@pytest.mark.parametrize("path", SHIPPED, ids=[f"{p.parent.name}/{p.name}" for p in SHIPPED])
def test_shipped_config_parses_with_its_recipe_parser(path):
    parser = load_recipe(_recipe_of(path)).make_parser()
    parsed = parser.parse_args_and_config(["--config", str(path), *_cpu_overrides(path)])
    assert len(parsed) == len(parser.dataclass_types)
    written = set(yaml.safe_load(path.read_text()) or {})
    assert written <= _field_names(parser)  # every key reached a field (the parser refuses unknown ones too)


@pytest.mark.parametrize(
    "path", [p for p in SHIPPED if p.stem == "pipeline"], ids=lambda p: f"{p.parent.name}/{p.name}"
)
def test_pipeline_config_stage_fields_belong_to_their_recipes(path):
    config = yaml.safe_load(path.read_text())
    sampling_fields = {f.name for f in dataclasses.fields(load_recipe("score").VideoSamplingConfig)}
    assert set(config.get("sampling") or {}) <= sampling_fields
    for key, recipe in PIPELINE_STAGE_ARGS.items():
        unknown = set(config.get(key) or {}) - _field_names(load_recipe(recipe).make_parser())
        assert not unknown, f"{path}: {key} has fields that recipes/{recipe}.py does not know: {sorted(unknown)}"


def test_an_unknown_field_in_a_config_is_refused_naming_it(tmp_path):
    bad = tmp_path / "failure_predictor.yaml"
    bad.write_text((CONFIGS / "demo" / "failure_predictor.yaml").read_text() + "\nlearning_rat: 0.05\n")  # a typo
    with pytest.raises(ValueError, match="learning_rat"):
        load_recipe("train_failure_predictor").make_parser().parse_args_and_config(["--config", str(bad)])


RECIPES = sorted(p.stem for p in (CONFIGS.parent).glob("*.py"))


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_prints_its_help(recipe):
    parser = load_recipe(recipe).make_parser()
    text = parser.format_help()  # what `python recipes/<recipe>.py --help` prints (a stray % in a help text raises)
    assert text.startswith("usage:")
    assert all(f"--{name}" in text for name in _field_names(parser))
