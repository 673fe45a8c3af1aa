"""Scoring with its inputs prepared in DataLoader workers: the same inputs, scores, failure records and resumes as the
serial path, and the one bookkeeping of ResumableRun fed prepared batches."""

import os

import pytest
import torch
from conftest import load_recipe  # noqa: E402
from datasets import Dataset, load_from_disk

from mds_vqa import pool_scoring
from mds_vqa.data import POOL_FEATURES
from mds_vqa.modeling import VideoSamplingConfig, load_model_and_processor, prepare_inputs
from mds_vqa.resumable import (
    INDEX_COLUMN,
    Batch,
    InitialFailuresError,
    ResumableRun,
    data_parallel_state,
    load_failures,
    load_results,
)
from mds_vqa.scoring import ScoringConfig
from mds_vqa.scoring_inputs import prepare_scoring_inputs, read_video, scoring_batches
from mds_vqa.video import VideoReadError

score_recipe = load_recipe("score")

SMALL = VideoSamplingConfig(resized_height=56, resized_width=56)


@pytest.fixture(scope="module")
def model_and_processor(tiny_model_dir):
    return load_model_and_processor(tiny_model_dir, dtype="float32")


@pytest.fixture
def videos_with_a_broken_one(tmp_path, video_dir):
    """The six generated videos with an unreadable file at row 2."""
    _, rows = video_dir
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 1000)
    rows = [dict(r) for r in rows]
    rows.insert(2, {"video_id": "broken", "video": str(bad), "mos": 3.0})
    return rows


def _assert_same_inputs(got: dict, expected) -> None:
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


def test_prepared_inputs_are_those_of_prepare_inputs_for_each_reading(model_and_processor, video_dir):
    _, processor = model_and_processor
    _, rows = video_dir
    videos = [r["video"] for r in rows[:3]]
    prepared = prepare_scoring_inputs(processor, videos, ScoringConfig(mode="both"), SMALL)
    assert prepared.videos == videos and set(prepared.inputs) == {"expectation", "generate"}
    direct, thinking = ScoringConfig().prompt, ScoringConfig(mode="generate").prompt
    _assert_same_inputs(
        prepared.inputs["expectation"], prepare_inputs(processor, videos, direct, SMALL, assistant_prefix="<answer>")
    )
    _assert_same_inputs(prepared.inputs["generate"], prepare_inputs(processor, videos, thinking, SMALL))


def test_a_loader_batch_sets_an_unreadable_video_apart_and_prepares_the_rest(model_and_processor, tmp_path, video_dir):
    _, processor = model_and_processor
    _, rows = video_dir
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 1000)
    items = [{"index": i, "video_id": f"v{i}", "video": v} for i, v in enumerate([rows[0]["video"], str(bad)])]
    items.append({"index": 2, "video_id": "v2", "video": rows[1]["video"]})
    config = ScoringConfig()
    (batch,) = list(scoring_batches(items, processor, config, SMALL, batch_size=3, num_workers=2))
    assert batch.indices == [0, 2] and [r["video_id"] for r in batch.rows] == ["v0", "v2"]
    ((index, row, err),) = batch.failures
    with pytest.raises(VideoReadError) as in_process:
        read_video(str(bad), SMALL)
    assert (index, row["video_id"]) == (1, "v1") and type(err) is VideoReadError
    assert str(err) == str(in_process.value) and err.cause == in_process.value.cause  # the same message
    alone = prepare_scoring_inputs(processor, [rows[0]["video"], rows[1]["video"]], config, SMALL)
    _assert_same_inputs(batch.payload.inputs["expectation"], alone.inputs["expectation"])


def test_videos_are_read_in_the_worker_processes_or_in_this_one(model_and_processor, video_dir, monkeypatch):
    from mds_vqa import scoring_inputs

    _, processor = model_and_processor
    _, rows = video_dir

    def where(video, sampling):  # the failure's cause carries the reading process (the workers are forked after this)
        raise VideoReadError(video, f"read in process {os.getpid()}")

    monkeypatch.setattr(scoring_inputs, "read_video", where)
    items = [{"index": i, "video": r["video"]} for i, r in enumerate(rows[:4])]

    def readers(num_workers):
        batches = scoring_batches(items, processor, ScoringConfig(), SMALL, batch_size=2, num_workers=num_workers)
        return {err.cause for batch in batches for _, _, err in batch.failures}

    assert readers(0) == {f"read in process {os.getpid()}"}
    workers = readers(2)
    assert len(workers) == 2 and f"read in process {os.getpid()}" not in workers


def _score(tmp_path, name, model_and_processor, rows, scoring, batch_size=4):
    model, processor = model_and_processor
    pool = Dataset.from_dict({"video_id": [r["video_id"] for r in rows], "video": [r["video"] for r in rows]})
    run = pool_scoring.PoolScoringRun(batch_size=batch_size, flush_every=batch_size)
    state = data_parallel_state()
    scored, summary = pool_scoring.score_pool(
        pool, tmp_path / name, model, processor, scoring, SMALL, state, run, {"test": name}
    )
    return scored, summary, load_failures(tmp_path / name)


def test_workers_give_the_serial_scores_and_failure_records(tmp_path, model_and_processor, videos_with_a_broken_one):
    rows = videos_with_a_broken_one
    runs = {
        workers: _score(
            tmp_path,
            f"w{workers}",
            model_and_processor,
            rows,
            ScoringConfig(mode="both", max_new_tokens=3, num_workers=workers),
        )
        for workers in (0, 2)
    }
    (serial, serial_summary, serial_failures), (loaded, summary, failures) = runs[0], runs[2]
    assert loaded["score_expectation"] == serial["score_expectation"]  # bit for bit
    assert loaded["score_texts"] == serial["score_texts"] and loaded["score_error"] == serial["score_error"]
    assert all(isinstance(s, float) for i, s in enumerate(loaded["score_expectation"]) if i != 2)
    assert failures == serial_failures and [f["id"] for f in failures] == ["broken"]
    assert (
        failures[0]["reason"].startswith("VideoReadError: Cannot read video ")
        and "broken.mp4" in failures[0]["reason"]
    )
    for key in ("scored", "unreadable", "unreadable_videos", "computed_this_run", "unreadable_this_run"):
        assert summary[key] == serial_summary[key], key
    assert (summary["scored"], summary["unreadable"]) == (len(rows) - 1, 1)


def test_the_loader_settings_are_not_part_of_what_a_resume_must_match(video_dir):
    _, rows = video_dir
    pool = Dataset.from_dict({"video_id": [r["video_id"] for r in rows], "video": [r["video"] for r in rows]})

    def config(scoring):
        return pool_scoring.scoring_run_config(
            pool, model="m", adapter=None, dtype="auto", column="score", split=None, scoring=scoring, sampling=SMALL
        )

    assert config(ScoringConfig(num_workers=0)) == config(ScoringConfig(num_workers=4, prefetch_factor=3))
    assert config(ScoringConfig()) != config(ScoringConfig(task="difficulty"))
    with pytest.raises(ValueError, match="num_workers"):
        ScoringConfig(num_workers=-1)


def test_a_run_killed_with_workers_resumes_computing_only_the_rest(tmp_path, tiny_model_dir, video_dir, monkeypatch):
    _, rows = video_dir
    n = len(rows)
    Dataset.from_dict(
        {
            "video_id": [r["video_id"] for r in rows],
            "video": [r["video"] for r in rows],
            "mos": [float(r["mos"]) for r in rows],
            "mos_std": [None] * n,
            "dataset": ["toy"] * n,
            "split": ["train"] * n,
        },
        features=POOL_FEATURES,
    ).save_to_disk(str(tmp_path / "pool"))
    args = {"dataset_path": str(tmp_path / "pool"), "model_name_or_path": tiny_model_dir, "dtype": "float32"}
    args.update(batch_size=2, flush_every=2)
    workers = ScoringConfig(num_workers=2)
    real = pool_scoring.score_inputs
    seen: list[str] = []

    def interrupted(model, processor, prepared, *a, **kw):
        if len(seen) >= 4:
            raise KeyboardInterrupt  # Ctrl-C at the third batch, the workers preparing the ones after it
        seen.extend(prepared.videos)
        return real(model, processor, prepared, *a, **kw)

    monkeypatch.setattr(pool_scoring, "score_inputs", interrupted)
    with pytest.raises(KeyboardInterrupt):
        score_recipe.main(
            score_recipe.ScoreScriptArguments(output_dir=str(tmp_path / "scored"), **args), workers, SMALL
        )
    assert sorted(load_results(tmp_path / "scored.work").column(INDEX_COLUMN).to_pylist()) == [0, 1, 2, 3]

    seen.clear()
    monkeypatch.setattr(
        pool_scoring, "score_inputs", lambda m, p, x, *a, **kw: (seen.extend(x.videos), real(m, p, x, *a, **kw))[1]
    )
    summary = score_recipe.main(
        score_recipe.ScoreScriptArguments(output_dir=str(tmp_path / "scored"), **args), workers, SMALL
    )
    assert seen == [r["video"] for r in rows[4:]]  # only the rest, in order
    assert (summary["scored"], summary["skipped_already_done"], summary["computed_this_run"]) == (len(rows), 4, 2)
    monkeypatch.setattr(pool_scoring, "score_inputs", real)
    serial = ScoringConfig(num_workers=0)
    score_recipe.main(score_recipe.ScoreScriptArguments(output_dir=str(tmp_path / "fresh"), **args), serial, SMALL)
    resumed, fresh = load_from_disk(str(tmp_path / "scored")), load_from_disk(str(tmp_path / "fresh"))
    assert resumed["score"] == fresh["score"] and resumed["video_id"] == [r["video_id"] for r in rows]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs CUDA")
def test_a_loader_for_a_cuda_model_pins_its_batches(model_and_processor, video_dir):
    _, processor = model_and_processor
    _, rows = video_dir
    items = [{"index": i, "video": r["video"]} for i, r in enumerate(rows[:2])]
    (batch,) = scoring_batches(items, processor, ScoringConfig(), SMALL, batch_size=2, num_workers=1, pin_memory=True)
    assert all(t.is_pinned() for t in batch.payload.inputs["expectation"].values() if isinstance(t, torch.Tensor))


# ------------------------------------------------------------------ ResumableRun fed prepared batches


def _unreadable(index: int) -> tuple[int, dict, VideoReadError]:
    return index, {"video_id": f"v{index}"}, VideoReadError(f"/data/v{index}.mp4", "moov atom not found")


def _prepared(*steps: tuple[list[int], list[int]]):
    """Batches of computed indices (payload: their values) and failed ones, as a loader yields them."""

    def make(todo):
        for ok, bad in steps:
            yield Batch(ok, [{"video_id": f"v{i}"} for i in ok], payload=ok, failures=[_unreadable(i) for i in bad])

    return make


def _double(payload: list[int]) -> list[dict]:
    return [{"y": 2 * i} for i in payload]


def test_prepared_batches_share_the_bookkeeping_of_batches_of_rows(tmp_path):
    summary = ResumableRun(tmp_path, _double).run_batches(5, _prepared(([0, 2], [1]), ([3, 4], [])))
    assert (summary.computed, summary.failed) == (4, 1)
    assert load_failures(tmp_path) == [
        {INDEX_COLUMN: 1, "id": "v1", "reason": "VideoReadError: Cannot read video /data/v1.mp4: moov atom not found"}
    ]
    results = load_results(tmp_path).to_pylist()
    assert sorted((r[INDEX_COLUMN], r["y"]) for r in results) == [(0, 0), (2, 4), (3, 6), (4, 8)]
    again = ResumableRun(tmp_path, _double).run_batches(5, _prepared())  # nothing left to do
    assert again.skipped_done == 5 and again.computed == 0


def test_prepared_failures_count_in_index_order_towards_max_initial_failures(tmp_path):
    # a readable video between failures counts as it would item by item: no stop
    summary = ResumableRun(tmp_path / "a", _double, max_initial_failures=2).run_batches(4, _prepared(([1], [0, 2, 3])))
    assert (summary.computed, summary.failed) == (1, 3)
    calls = []
    with pytest.raises(InitialFailuresError, match="first 2 items"):
        ResumableRun(tmp_path / "b", lambda p: calls.append(p) or _double(p), max_initial_failures=2).run_batches(
            3, _prepared(([2], [0, 1]))
        )
    assert calls == [] and [f[INDEX_COLUMN] for f in load_failures(tmp_path / "b")] == [0, 1]


def test_strict_stops_at_a_prepared_failure_and_a_lost_item_is_an_error(tmp_path):
    with pytest.raises(VideoReadError, match="v1.mp4"):
        ResumableRun(tmp_path / "a", _double, strict=True).run_batches(3, _prepared(([0, 2], [1])))
    assert load_results(tmp_path / "a") is None  # nothing of the batch was computed
    with pytest.raises(RuntimeError, match="covered 2 of the 3 items"):
        ResumableRun(tmp_path / "b", _double).run_batches(3, _prepared(([0, 2], [])))
