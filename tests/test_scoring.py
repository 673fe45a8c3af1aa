import math
import shutil

import pytest
import torch
from conftest import load_recipe  # noqa: E402
from datasets import Dataset, load_from_disk

from mds_vqa import pool_scoring
from mds_vqa.data import POOL_FEATURES
from mds_vqa.hub import read_provenance
from mds_vqa.modeling import VideoSamplingConfig, load_model_and_processor, prepare_inputs
from mds_vqa.prompts import DIFFICULTY_PROMPT_DIRECT, SCORING_PROMPT
from mds_vqa.scoring import ScoringConfig, digit_token_ids, expectation_scores, generate_scores, score_videos

score_recipe = load_recipe("score")

SMALL = VideoSamplingConfig(resized_height=56, resized_width=56)


@pytest.fixture(scope="module")
def model_and_processor(tiny_model_dir):
    return load_model_and_processor(tiny_model_dir, dtype="float32")


def test_scoring_config_defaults_direct_prompt_for_expectation_and_thinking_for_generate():
    assert ScoringConfig().variant == "direct" and ScoringConfig(mode="generate").variant == "thinking"
    assert ScoringConfig(task="difficulty").prompt == DIFFICULTY_PROMPT_DIRECT
    assert ScoringConfig(mode="generate").prompt == SCORING_PROMPT
    with pytest.raises(ValueError, match="mode"):
        ScoringConfig(mode="sample")
    with pytest.raises(ValueError, match="task"):
        ScoringConfig(task="aesthetics")


def test_f_is_read_at_its_first_digit_with_decimals_and_g_where_it_is_trained():
    f, g = ScoringConfig(), ScoringConfig(task="difficulty")
    assert (f.reading, f.decimals) == ("first_digit", 2) and (g.reading, g.decimals) == ("prefix", 0)
    assert ScoringConfig(answer_reading="prefix").decimals == 0  # the old reading, exactly
    assert ScoringConfig(answer_reading="prefix", answer_decimals=1).decimals == 1
    both = ScoringConfig(mode="both")
    assert both.reading_modes == ["expectation", "generate"] and both.primary_mode == "generate"
    assert both.prompt == SCORING_PROMPT and both.for_mode("expectation").variant == "direct"
    with pytest.raises(ValueError, match="answer_reading"):
        ScoringConfig(answer_reading="last_digit")
    with pytest.raises(ValueError, match="answer_decimals"):
        ScoringConfig(answer_decimals=3)
    with pytest.raises(ValueError, match="both_primary"):
        ScoringConfig(mode="both", both_primary="both")


def test_sampling_settings_reach_generate_and_none_leaves_the_checkpoints_own():
    from mds_vqa.scoring import _generation_kwargs

    released = ScoringConfig(mode="generate", do_sample=True, top_k=50, top_p=1.0, temperature=None)
    kwargs = _generation_kwargs(released)
    assert kwargs["do_sample"] and kwargs["top_k"] == 50 and kwargs["top_p"] == 1.0 and "temperature" not in kwargs
    greedy = _generation_kwargs(ScoringConfig(mode="generate"))
    assert not greedy["do_sample"] and greedy["top_k"] is None and greedy["temperature"] is None


def test_prefix_reading_equals_a_manual_softmax_over_the_digit_logits(model_and_processor, video_dir):
    model, processor = model_and_processor
    _, rows = video_dir
    videos = [r["video"] for r in rows[:3]]
    got = score_videos(model, processor, videos, ScoringConfig(answer_reading="prefix"), SMALL)
    inputs = prepare_inputs(processor, videos, ScoringConfig().prompt, SMALL, assistant_prefix="<answer>")
    with torch.no_grad():
        logits = model(**inputs).logits[:, -1, :]  # full forward, no logits_to_keep
    ids = [processor.tokenizer.convert_tokens_to_ids(str(d)) for d in range(1, 6)]
    for row, r in zip(logits, got):
        e = torch.exp(row[ids] - row[ids].max())
        probs = (e / e.sum()).tolist()
        assert r["digit_probs"] == pytest.approx(probs, abs=1e-5)
        assert r["score"] == pytest.approx(sum((d + 1) * p for d, p in enumerate(probs)), abs=1e-5)
        assert 1.0 <= r["score"] <= 5.0
        full = torch.softmax(row, dim=-1)[ids].sum()
        assert r["digit_mass"] == pytest.approx(float(full), abs=1e-5) and r["answer_offset"] == 0


def test_g_is_scored_exactly_as_it_is_trained_differentiably_and_batch_independently(model_and_processor, video_dir):
    model, processor = model_and_processor
    _, rows = video_dir
    videos = [r["video"] for r in rows[:3]]
    ids = digit_token_ids(processor.tokenizer)
    inputs = prepare_inputs(processor, videos, DIFFICULTY_PROMPT_DIRECT, SMALL, assistant_prefix="<answer>")
    g = expectation_scores(model, inputs, ids)  # what FailurePredictorTrainer differentiates
    assert g.requires_grad and g.shape == (3,)
    scored = score_videos(model, processor, videos, ScoringConfig(task="difficulty"), SMALL)  # what g's stage reads
    assert [r["score"] for r in scored] == pytest.approx(g.detach().tolist(), abs=1e-5)
    one = score_videos(model, processor, videos[1:2], ScoringConfig(task="difficulty"), SMALL)[0]["score"]
    assert float(g[1].detach()) == pytest.approx(one, abs=1e-4)  # left padding does not change a row's score


def test_generate_parses_answers_and_counts_failures_as_nan(model_and_processor, video_dir, monkeypatch):
    model, processor = model_and_processor
    _, rows = video_dir
    videos = [r["video"] for r in rows[:2]]
    inputs = prepare_inputs(processor, videos, SCORING_PROMPT, SMALL)
    # the decode step returns known texts, so the parsing and counting are checked exactly
    answers = iter([["<think>ok</think><answer>4.5</answer>", "<answer>3.5</answer>", "no number"], ["gibberish"] * 3])
    monkeypatch.setattr(processor, "batch_decode", lambda seqs, **kw: next(answers) + next(answers))
    out = generate_scores(model, processor, inputs, ScoringConfig(mode="generate", num_samples=3, max_new_tokens=2))
    assert out[0]["score"] == pytest.approx(4.0) and out[0]["parse_failures"] == 1
    assert math.isnan(out[1]["score"]) and out[1]["parse_failures"] == 3
    assert out[1]["texts"] == ["gibberish"] * 3


def test_generate_mode_runs_the_real_model_end_to_end(model_and_processor, video_dir):
    model, processor = model_and_processor
    _, rows = video_dir
    out = score_videos(model, processor, [rows[0]["video"]], ScoringConfig(mode="generate", max_new_tokens=6), SMALL)
    assert set(out[0]) == {"score", "std", "texts", "parse_failures"} and len(out[0]["texts"]) == 1
    # the random tiny model rarely writes a number: whatever it wrote is parsed, never replaced by a random value
    from mds_vqa.prompts import parse_score

    parsed = parse_score(out[0]["texts"][0])
    assert (math.isnan(parsed) and math.isnan(out[0]["score"])) or parsed == out[0]["score"]


# ------------------------------------------------------------------ the score recipe


def _pool(tmp_path, rows, broken=False):
    rows = [dict(r) for r in rows]
    if broken:
        bad = tmp_path / "broken.mp4"
        bad.write_bytes(b"\x00" * 1000)
        rows.insert(2, {"video_id": "broken", "video": str(bad), "mos": 3.0})
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
    return tmp_path / "pool"


def _args(tmp_path, model_dir, name, **kw):
    return score_recipe.ScoreScriptArguments(
        dataset_path=str(tmp_path / "pool"),
        output_dir=str(tmp_path / name),
        model_name_or_path=model_dir,
        dtype="float32",
        batch_size=2,
        flush_every=2,
        **kw,
    )


def test_score_recipe_resumes_after_a_kill_without_recomputing_or_losing_anything(
    tmp_path, tiny_model_dir, video_dir, monkeypatch
):
    _, rows = video_dir
    _pool(tmp_path, rows)
    real = pool_scoring.score_inputs
    seen: list[str] = []

    def interrupted(model, processor, prepared, *a, **kw):
        if len(seen) >= 4:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the third batch
        seen.extend(prepared.videos)
        return real(model, processor, prepared, *a, **kw)

    monkeypatch.setattr(pool_scoring, "score_inputs", interrupted)
    with pytest.raises(KeyboardInterrupt):
        score_recipe.main(_args(tmp_path, tiny_model_dir, "scored"), ScoringConfig(), SMALL)
    first = list(seen)
    assert len(first) == 4 and not (tmp_path / "scored").exists()

    seen.clear()
    monkeypatch.setattr(
        pool_scoring, "score_inputs", lambda m, p, x, *a, **kw: (seen.extend(x.videos), real(m, p, x, *a, **kw))[1]
    )
    summary = score_recipe.main(_args(tmp_path, tiny_model_dir, "scored"), ScoringConfig(), SMALL)
    assert sorted(seen) == sorted(r["video"] for r in rows[4:])  # only the rest
    assert summary["scored"] == len(rows) and summary["skipped_already_done"] == 4
    assert summary["computed_this_run"] == len(rows) - 4
    assert summary["processes"] == [
        {"process_index": 0, "computed": len(rows) - 4, "skipped_done": 4, "failed": 0, "seconds": summary["seconds"]}
    ]

    fresh = score_recipe.main(_args(tmp_path, tiny_model_dir, "fresh"), ScoringConfig(), SMALL)
    assert fresh["scored"] == len(rows)
    resumed, clean = load_from_disk(str(tmp_path / "scored")), load_from_disk(str(tmp_path / "fresh"))
    assert resumed["score"] == pytest.approx(clean["score"], abs=1e-5)
    assert resumed["video_id"] == [r["video_id"] for r in rows]
    assert not (tmp_path / "scored.work").exists()  # shards removed once merged


def test_score_recipe_refuses_to_resume_with_another_model_or_prompt(tmp_path, tiny_model_dir, video_dir, monkeypatch):
    from mds_vqa.resumable import RunConfigError

    _, rows = video_dir
    _pool(tmp_path, rows)
    real = pool_scoring.score_inputs
    batches: list[list[str]] = []

    def interrupted(model, processor, prepared, *a, **kw):
        if batches:
            raise KeyboardInterrupt  # killed during the second batch
        batches.append(list(prepared.videos))
        return real(model, processor, prepared, *a, **kw)

    monkeypatch.setattr(pool_scoring, "score_inputs", interrupted)
    with pytest.raises(KeyboardInterrupt):
        score_recipe.main(_args(tmp_path, tiny_model_dir, "scored"), ScoringConfig(), SMALL)
    work = tmp_path / "scored.work"
    shards = sorted(work.glob("shard-*.parquet"))
    assert len(batches) == 1 and shards

    other_model = str(shutil.copytree(tiny_model_dir, tmp_path / "another_model"))
    with pytest.raises(RunConfigError) as info:
        score_recipe.main(_args(tmp_path, other_model, "scored"), ScoringConfig(), SMALL)
    message = str(info.value)
    assert f"model_name_or_path: '{tiny_model_dir}' -> '{other_model}'" in message
    assert f"Delete {work} to start over, or pass another work_dir" in message
    with pytest.raises(RunConfigError, match="scoring.task: 'scoring' -> 'difficulty'"):
        score_recipe.main(_args(tmp_path, tiny_model_dir, "scored"), ScoringConfig(task="difficulty"), SMALL)
    assert sorted(work.glob("shard-*.parquet")) == shards and len(batches) == 1  # nothing was scored or mixed in
    monkeypatch.setattr(pool_scoring, "score_inputs", real)

    summary = score_recipe.main(
        _args(tmp_path, other_model, "other", work_dir=str(tmp_path / "w2")), ScoringConfig(), SMALL
    )
    assert summary["computed_this_run"] == len(rows)  # another work_dir starts afresh


def test_score_recipe_records_an_unreadable_video_and_scores_the_rest(tmp_path, tiny_model_dir, video_dir):
    _, rows = video_dir
    _pool(tmp_path, rows[:4], broken=True)
    summary = score_recipe.main(
        _args(tmp_path, tiny_model_dir, "scored", score_column="difficulty"), ScoringConfig(task="difficulty"), SMALL
    )
    assert summary["scored"] == 4 and summary["unreadable"] == 1
    assert (
        summary["unreadable_videos"][0]["video_id"] == "broken"
        and "broken.mp4" in summary["unreadable_videos"][0]["reason"]
    )
    ds = load_from_disk(str(tmp_path / "scored"))
    assert ds["difficulty"][2] is None and "broken.mp4" in ds["difficulty_error"][2]
    assert all(isinstance(s, float) for i, s in enumerate(ds["difficulty"]) if i != 2)
    assert (tmp_path / "scored" / "scoring_summary.json").exists()
    record = read_provenance(tmp_path / "scored")
    assert record.recipe == "score" and record.summary == summary  # scoring_summary.json's content
    assert record.inputs == [{"path": str(tmp_path / "pool"), "provenance": None}]
    assert record.arguments["ScoringConfig"]["task"] == "difficulty" and "VideoSamplingConfig" in record.arguments


def test_score_recipe_strict_mode_stops_at_the_unreadable_video(tmp_path, tiny_model_dir, video_dir):
    from mds_vqa.video import VideoReadError

    _, rows = video_dir
    _pool(tmp_path, rows[:2], broken=True)
    with pytest.raises(VideoReadError, match="broken.mp4"):
        score_recipe.main(_args(tmp_path, tiny_model_dir, "scored", strict=True), ScoringConfig(), SMALL)


def test_score_recipe_generate_mode_counts_parse_failures(tmp_path, tiny_model_dir, video_dir):
    _, rows = video_dir
    _pool(tmp_path, rows[:3])
    summary = score_recipe.main(
        _args(tmp_path, tiny_model_dir, "gen"), ScoringConfig(mode="generate", max_new_tokens=4), SMALL
    )
    ds = load_from_disk(str(tmp_path / "gen"))
    nan = sum(math.isnan(s) for s in ds["score"])
    assert summary["nan_scores"] == nan and summary["parse_failures"] == sum(ds["score_parse_failures"])
    assert summary["parse_failures"] >= nan and all(len(t) == 1 for t in ds["score_texts"])


# ------------------------------------------------------------------ mode both: the two readings and their agreement


def test_reading_agreement_is_srcc_and_mean_abs_diff_over_the_videos_both_read():
    from scipy.stats import spearmanr

    from mds_vqa.pool_scoring import reading_agreement

    expectation, generated = [3.1, 2.0, 4.4, None, 3.0, 1.5], [3.5, 2.2, 4.0, 3.0, math.nan, 1.0]
    got = reading_agreement(expectation, generated)
    kept = ([3.1, 2.0, 4.4, 1.5], [3.5, 2.2, 4.0, 1.0])
    assert got["n"] == 4 and got["srcc"] == pytest.approx(spearmanr(*kept).statistic)
    assert got["mean_abs_diff"] == pytest.approx((0.4 + 0.2 + 0.4 + 0.5) / 4)
    assert reading_agreement([math.nan], [1.0]) == {"n": 0, "srcc": None, "mean_abs_diff": None}


def test_mode_both_writes_both_readings_and_the_summary_reports_their_agreement(
    tmp_path, model_and_processor, video_dir, monkeypatch
):
    from scipy.stats import spearmanr

    from mds_vqa.resumable import data_parallel_state

    model, processor = model_and_processor
    _, rows = video_dir
    pool = Dataset.from_dict({"video_id": [r["video_id"] for r in rows[:4]], "video": [r["video"] for r in rows[:4]]})
    # the random tiny model writes no number: its decoded answers are replaced by known ones, the rest is real
    answers = ["<think>sharp</think><answer>4.20</answer>", "<answer>1.5</answer>", "<answer>3.75</answer>", "none"]
    monkeypatch.setattr(processor, "batch_decode", lambda seqs, **kw: answers[: len(seqs)])
    scoring = ScoringConfig(mode="both", max_new_tokens=2)
    config = {"test": "both"}
    run = pool_scoring.PoolScoringRun(batch_size=4)
    scored, summary = pool_scoring.score_pool(
        pool, tmp_path / "work", model, processor, scoring, SMALL, data_parallel_state(), run, config
    )
    assert scored["score_generate"][:3] == [4.2, 1.5, 3.75] and math.isnan(scored["score_generate"][3])
    assert scored["score"][:3] == scored["score_generate"][:3]  # the primary reading: generate by default
    alone = score_videos(model, processor, pool["video"], ScoringConfig(), SMALL)
    assert scored["score_expectation"] == pytest.approx([r["score"] for r in alone], abs=1e-5)
    assert summary["parse_failures"] == 1 and summary["nan_scores"] == 1 and summary["primary_reading"] == "generate"
    agreement = summary["agreement"]
    assert agreement["n"] == 3
    assert agreement["srcc"] == pytest.approx(spearmanr(scored["score_expectation"][:3], [4.2, 1.5, 3.75]).statistic)
    diffs = [abs(e - g) for e, g in zip(scored["score_expectation"][:3], [4.2, 1.5, 3.75])]
    assert agreement["mean_abs_diff"] == pytest.approx(sum(diffs) / 3)
