"""The uncertainty baselines: ``uncertainty`` (spread of sampled scores, ``<column>_std``) and ``noise_stability``
(score change under fixed weight noise, ``<column>_instability``), from scoring to selection."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import load_recipe  # noqa: E402
from datasets import Dataset, load_from_disk

from mds_vqa import pool_scoring
from mds_vqa.data import POOL_FEATURES
from mds_vqa.modeling import VideoSamplingConfig, load_model_and_processor, lora_config, prepare_inputs
from mds_vqa.prompts import SCORING_PROMPT, SCORING_PROMPT_DIRECT, parse_score
from mds_vqa.resumable import data_parallel_state
from mds_vqa.scoring import ScoringConfig, generate_scores, score_videos
from mds_vqa.selection import STRATEGIES, select, select_subset
from mds_vqa.selection_report import write_selection_report
from mds_vqa.weight_noise import noise_layers, weight_noise

score_recipe = load_recipe("score")
select_recipe = load_recipe("select_subset")

SMALL = VideoSamplingConfig(resized_height=56, resized_width=56)


@pytest.fixture(scope="module")
def model_and_processor(tiny_model_dir):
    return load_model_and_processor(tiny_model_dir, dtype="float32")


# ------------------------------------------------------------------ the strategies on planted scores


def _sampled_scores() -> np.ndarray:
    """Five sampled scores for each of 12 videos: every video's spread is small except video 7's (then video 2's)."""
    rng = np.random.default_rng(0)
    samples = 3.0 + 0.05 * rng.standard_normal((12, 5))
    samples[7] = [1.0, 5.0, 1.5, 4.5, 3.0]
    samples[2] = [2.0, 4.0, 2.5, 3.5, 3.0]
    return samples


def test_the_strategies_name_the_column_their_score_is_read_from():
    assert {name: STRATEGIES[name].score_column for name in STRATEGIES} == {
        "mds": "difficulty",
        "difficulty": "difficulty",
        "diversity": None,
        "coreset": None,
        "random": None,
        "uncertainty": "uncertainty",
        "noise_stability": "instability",
    }
    for name in ("uncertainty", "noise_stability"):
        assert STRATEGIES[name].needs_difficulty and not STRATEGIES[name].needs_features


@pytest.mark.parametrize("strategy", ["uncertainty", "noise_stability"])
def test_a_top_k_baseline_picks_the_planted_video_first_and_breaks_ties_on_the_lowest_index(strategy):
    spread = np.std(_sampled_scores(), axis=1, ddof=1)
    picks = select(strategy, difficulty=spread, budget=3)
    assert picks[:2] == [7, 2] and picks == np.argsort(-spread, kind="stable")[:3].tolist()
    tied = [0.5, 2.0, 1.0, 2.0, 2.0]
    assert select(strategy, difficulty=tied, budget=3) == [1, 3, 4]
    with pytest.raises(ValueError, match="NaN"):
        select(strategy, difficulty=[0.1, math.nan, 0.3], budget=1)


def _score_pool(column: str, values: np.ndarray) -> Dataset:
    n = len(values)
    return Dataset.from_dict(
        {"video_id": [f"v{i:02d}" for i in range(n)], column: values.tolist(), "difficulty": np.linspace(5, 1, n)}
    )


@pytest.mark.parametrize(("strategy", "column"), [("uncertainty", "uncertainty"), ("noise_stability", "instability")])
def test_select_subset_reads_the_strategys_own_column_and_reports_it(tmp_path, strategy, column):
    spread = np.std(_sampled_scores(), axis=1, ddof=1)
    pool = _score_pool(column, spread)
    chosen = select_subset(pool, strategy, budget=3, progress=False)
    assert chosen.selection.indices == select(strategy, difficulty=spread, budget=3)
    assert chosen.selection.indices[0] == 7 and chosen.score_column == column
    assert chosen.subset["video_id"][0] == "v07"
    assert chosen.subset["g"] == pytest.approx(spread[chosen.selection.indices].tolist())  # the score ranked by
    text = write_selection_report(tmp_path, chosen, pool_path="pools/x", lam=0.25, seed=0).read_text()
    assert f"| {column} column | `{column}` |" in text
    picked = spread[chosen.selection.indices]
    assert f"| mean {column} | {np.mean(spread):.4f} | {np.mean(picked):.4f} | — |" in text
    assert f"| rank | video | {column} | diversity |" in text and f"| 1 | `v07` | {spread[7]:.4f} | — |" in text
    assert (tmp_path / "difficulty.png").read_bytes()[:4] == b"\x89PNG"
    # the difficulty column is not what these strategies read
    assert chosen.selection.indices != select("difficulty", difficulty=pool["difficulty"], budget=3)


def test_select_subset_takes_an_explicit_score_column_and_names_a_missing_one():
    spread = np.std(_sampled_scores(), axis=1, ddof=1)
    pool = _score_pool("score_std", spread)
    chosen = select_subset(pool, "uncertainty", budget=2, difficulty_column="score_std", progress=False)
    assert chosen.selection.indices == [7, 2] and chosen.score_column == "score_std"
    with pytest.raises(KeyError, match=r"'uncertainty' needs a 'uncertainty' column in my_pool.*'score_std'"):
        select_subset(pool, "uncertainty", budget=2, progress=False, source="my_pool")
    with pytest.raises(KeyError, match=r"'noise_stability' needs a 'instability' column in the pool"):
        select_subset(pool, "noise_stability", budget=2, progress=False)
    assert select_subset(pool, "difficulty", budget=2, progress=False).selection.indices == [0, 1]
    nan_row = pool.map(lambda r, i: {"score_std": math.nan if i == 7 else r["score_std"]}, with_indices=True)
    chosen = select_subset(
        nan_row, "uncertainty", budget=2, difficulty_column="score_std", drop_incomplete=True, progress=False
    )
    assert chosen.dropped == {"NaN 'score_std'": ["v07"]} and chosen.subset["video_id"][0] == "v02"


def test_select_recipe_defaults_to_the_strategys_column_and_records_the_one_read(tmp_path):
    spread = np.std(_sampled_scores(), axis=1, ddof=1)
    _score_pool("score_instability", spread).save_to_disk(str(tmp_path / "pool"))
    args = select_recipe.SelectArguments(
        pool_path=str(tmp_path / "pool"),
        output_dir=str(tmp_path / "sel"),
        strategy="noise_stability",
        budget="2",
        difficulty_column="score_instability",
        device="cpu",
    )
    out = select_recipe.main(args)
    assert load_from_disk(str(out))["video_id"] == ["v07", "v02"]
    assert json.loads((out / "selection.json").read_text())["difficulty_column"] == "score_instability"
    parsed = select_recipe.make_parser().parse_args_and_config(
        ["--pool_path", "p", "--output_dir", "o", "--strategy", "uncertainty"]
    )[0]
    assert parsed.difficulty_column is None and parsed.strategy == "uncertainty"


# ------------------------------------------------------------------ sampled-score spread


def test_generate_scores_records_the_sample_std_of_the_parsed_answers(model_and_processor, video_dir, monkeypatch):
    model, processor = model_and_processor
    _, rows = video_dir
    videos = [r["video"] for r in rows[:3]]
    inputs = prepare_inputs(processor, videos, SCORING_PROMPT, SMALL)
    config = ScoringConfig(mode="generate", num_samples=3, max_new_tokens=3)
    torch.manual_seed(0)
    real = generate_scores(model, processor, inputs, config)  # the tiny model's own sampled texts
    for row in real:
        ok = [s for s in map(parse_score, row["texts"]) if not math.isnan(s)]
        assert len(row["texts"]) == 3
        if len(ok) >= 2:
            assert row["std"] == pytest.approx(float(np.std(ok, ddof=1)))
        else:
            assert math.isnan(row["std"])
    # known texts for the decode step: the spread of each video's parsed answers, exactly
    texts = ["<answer>4.5</answer>", "<answer>3.5</answer>", "<answer>1.0</answer>"]
    texts += ["<answer>2</answer>", "no number", "<answer>3</answer>"]
    texts += ["<answer>2.5</answer>", "nothing", "none"]
    monkeypatch.setattr(processor, "batch_decode", lambda seqs, **kw: texts)
    out = generate_scores(model, processor, inputs, config)
    assert out[0]["std"] == pytest.approx(float(np.std([4.5, 3.5, 1.0], ddof=1)))
    assert out[1]["std"] == pytest.approx(float(np.std([2.0, 3.0], ddof=1))) and out[1]["parse_failures"] == 1
    assert math.isnan(out[2]["std"]) and out[2]["score"] == 2.5  # one parsed answer: no spread


# ------------------------------------------------------------------ weight noise


def _logits(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


def test_weight_noise_perturbs_the_language_model_inside_and_restores_it_exactly(model_and_processor, video_dir):
    model, processor = model_and_processor
    _, rows = video_dir
    inputs = prepare_inputs(processor, [rows[0]["video"], rows[3]["video"]], SCORING_PROMPT_DIRECT, SMALL)
    layers = noise_layers(model)
    assert len(layers) == 14 and all("language_model" in n and "visual" not in n for n, _, _ in layers)
    seen: list[torch.Tensor] = []  # the vision tower's output (the video tokens' embeddings) at every forward
    handle = model.model.visual.merger.register_forward_hook(lambda module, args, output: seen.append(output.clone()))
    try:
        before = _logits(model, inputs)
        with weight_noise(model, std=0.05, seed=3) as count:
            inside = _logits(model, inputs)
            again = _logits(model, inputs)  # the same draw for every batch
        with weight_noise(model, std=0.05, seed=3):
            same_seed = _logits(model, inputs)
        with weight_noise(model, std=0.05, seed=4):
            other_seed = _logits(model, inputs)
        after = _logits(model, inputs)
    finally:
        handle.remove()
    assert count == 14
    assert torch.equal(before, after)  # exactly the model it was
    assert not torch.allclose(before, inside, atol=1e-6)
    assert torch.equal(inside, again) and torch.equal(inside, same_seed)
    assert not torch.allclose(inside, other_seed, atol=1e-6)
    assert len(seen) == 6 and all(torch.equal(seen[0], s) for s in seen)  # the vision tower is untouched
    assert not any(m._forward_hooks for _, m, _ in layers)
    with pytest.raises(ValueError, match="std"):
        with weight_noise(model, std=-0.1, seed=0):
            pass


def test_weight_noise_draws_the_same_noise_with_an_adapter_around_its_base_weights(
    tiny_model_dir, model_and_processor, video_dir
):
    from peft import get_peft_model

    model, processor = model_and_processor
    _, rows = video_dir
    inputs = prepare_inputs(processor, [rows[1]["video"]], SCORING_PROMPT_DIRECT, SMALL)
    wrapped = get_peft_model(load_model_and_processor(tiny_model_dir, dtype="float32")[0], lora_config()).eval()
    wrapped_names = [n.removeprefix("base_model.model.") for n, _, _ in noise_layers(wrapped)]
    assert wrapped_names == [n for n, _, _ in noise_layers(model)]  # the same layers, in the same order
    with weight_noise(model, std=0.05, seed=1):
        plain = _logits(model, inputs)
    with weight_noise(wrapped, std=0.05, seed=1):
        adapted = _logits(wrapped, inputs)  # a fresh LoRA adds zero: the same perturbed model
    torch.testing.assert_close(adapted, plain, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(_logits(wrapped, inputs), plain, atol=1e-6)


# ------------------------------------------------------------------ instability under weight noise


def test_expectation_scoring_records_the_mean_score_change_over_the_noise_draws(model_and_processor, video_dir):
    model, processor = model_and_processor
    _, rows = video_dir
    videos = [r["video"] for r in rows[:3]]
    config = ScoringConfig(noise_draws=2, noise_std=0.3, noise_seed=5)
    got = score_videos(model, processor, videos, config, SMALL)
    clean = score_videos(model, processor, videos, ScoringConfig(), SMALL)
    assert [r["score"] for r in got] == [r["score"] for r in clean]  # the clean score is untouched
    draws = []
    for d in range(2):
        with weight_noise(model, std=0.3, seed=5 + d):
            draws.append([r["score"] for r in score_videos(model, processor, videos, ScoringConfig(), SMALL)])
    for i, row in enumerate(got):
        want = sum(abs(draw[i] - clean[i]["score"]) for draw in draws) / 2
        assert row["instability"] >= 0 and row["instability"] == pytest.approx(want, abs=1e-6)
    assert any(r["instability"] > 0 for r in got)
    silent = score_videos(model, processor, videos, ScoringConfig(noise_draws=2, noise_std=0.0), SMALL)
    assert [r["instability"] for r in silent] == [0.0, 0.0, 0.0]
    assert "instability" not in clean[0]


def test_noise_draws_are_validated_and_belong_to_the_expectation_reading():
    with pytest.raises(ValueError, match="noise_draws > 0 .* 'expectation' or 'both'"):
        ScoringConfig(mode="generate", noise_draws=2)
    with pytest.raises(ValueError, match="noise_draws"):
        ScoringConfig(noise_draws=-1)
    with pytest.raises(ValueError, match="noise_std"):
        ScoringConfig(noise_draws=1, noise_std=-0.01)
    both = ScoringConfig(mode="both", noise_draws=3)
    assert both.for_mode("expectation").noise_draws == 3 and both.for_mode("generate").noise_draws == 0
    assert ScoringConfig(mode="generate").noise_draws == 0


def _saved_pool(tmp_path, rows) -> str:
    ds = Dataset.from_dict(
        {
            "video_id": [r["video_id"] for r in rows],
            "video": [r["video"] for r in rows],
            "mos": [float(r["mos"]) for r in rows],
            "mos_std": [None] * len(rows),
            "dataset": ["toy"] * len(rows),
            "split": ["train"] * len(rows),
        },
        features=POOL_FEATURES,
    )
    ds.save_to_disk(str(tmp_path / "pool"))
    return str(tmp_path / "pool")


def test_score_recipe_writes_the_std_and_instability_columns(tmp_path, tiny_model_dir, video_dir):
    _, rows = video_dir
    args = score_recipe.ScoreScriptArguments(
        dataset_path=_saved_pool(tmp_path, rows[:3]),
        output_dir=str(tmp_path / "scored"),
        model_name_or_path=tiny_model_dir,
        dtype="float32",
        batch_size=2,
    )
    parser = score_recipe.make_parser()
    _, scoring, _, _ = parser.parse_args_and_config(
        ["--model_name_or_path", "m", "--mode", "both", "--num_samples", "3", "--max_new_tokens", "3"]
        + ["--noise_draws", "2", "--noise_std", "0.3", "--noise_seed", "1", "--num_workers", "0"]
    )
    assert (scoring.noise_draws, scoring.noise_std, scoring.noise_seed, scoring.num_samples) == (2, 0.3, 1, 3)
    summary = score_recipe.main(args, scoring, SMALL)
    ds = load_from_disk(str(tmp_path / "scored"))
    assert {"score_instability", "score_std", "score_expectation", "score_generate"} <= set(ds.column_names)
    assert all(v >= 0 for v in ds["score_instability"]) and summary["noise_draws"] == 2
    assert summary["mean_instability"] == pytest.approx(float(np.mean(ds["score_instability"])))
    for std, texts in zip(ds["score_std"], ds["score_texts"]):
        ok = [s for s in map(parse_score, texts) if not math.isnan(s)]
        assert math.isnan(std) if len(ok) < 2 else std == pytest.approx(float(np.std(ok, ddof=1)))
    alone = score_videos(
        *load_model_and_processor(tiny_model_dir, dtype="float32"),
        ds["video"],
        ScoringConfig(noise_draws=2, noise_std=0.3, noise_seed=1),
        SMALL,
    )
    assert ds["score_instability"] == pytest.approx([r["instability"] for r in alone], abs=1e-5)
    record = json.loads((tmp_path / "scored" / "scoring_summary.json").read_text())
    assert record["scoring"]["noise_draws"] == 2 and record["scoring"]["noise_std"] == 0.3


def test_pool_scoring_in_expectation_mode_writes_instability_and_records_the_noise_settings(
    tmp_path, model_and_processor, video_dir
):
    model, processor = model_and_processor
    _, rows = video_dir
    pool = Dataset.from_dict({"video_id": [r["video_id"] for r in rows[:2]], "video": [r["video"] for r in rows[:2]]})
    scoring = ScoringConfig(noise_draws=2, noise_std=0.3, num_workers=0)
    config = pool_scoring.scoring_run_config(
        pool, model="m", adapter=None, dtype="float32", column="g", split=None, scoring=scoring, sampling=SMALL
    )
    assert (config["scoring.noise_draws"], config["scoring.noise_std"], config["scoring.noise_seed"]) == (2, 0.3, 0)
    run = pool_scoring.PoolScoringRun(column="g", batch_size=2)
    scored, _ = pool_scoring.score_pool(
        pool, tmp_path / "work", model, processor, scoring, SMALL, data_parallel_state(), run, config
    )
    assert "g_instability" in scored.column_names and "g_std" not in scored.column_names
    assert all(v >= 0 for v in scored["g_instability"])
    plain = pool_scoring.score_pool(
        pool,
        tmp_path / "work_plain",
        model,
        processor,
        ScoringConfig(num_workers=0),
        SMALL,
        data_parallel_state(),
        run,
        {"plain": True},
    )[0]
    assert "g_instability" not in plain.column_names and plain["g"] == scored["g"]
