"""The toy world, the per-seed metrics, their intervals over seeds, and the experiment's report."""

import json
import math

import numpy as np
import pytest
from datasets import Dataset
from scipy import stats

from mds_vqa.experiment import aggregate, g_target_srcc, mean_ci
from mds_vqa.testing import Distortion
from mds_vqa.toy_world import DEFAULT_DOMAINS, ToyWorld, describe_world, draw_distortions, write_world


@pytest.mark.parametrize("values", [[0.1, 0.4, 0.35], [0.2, -0.1], [1.0, 2.0, 4.0, 8.0, 16.0]])
def test_the_interval_is_scipys_student_t_interval_over_seeds(values):
    got = mean_ci(values)
    lo, hi = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert got["mean"] == pytest.approx(np.mean(values))
    assert got["ci95"] == pytest.approx([lo, hi])
    assert got["per_seed"] == values


def test_the_interval_drops_nan_seeds_and_needs_two_values():
    got = mean_ci([0.5, math.nan, 0.7])
    lo, hi = stats.t.interval(0.95, 1, loc=0.6, scale=stats.sem([0.5, 0.7]))
    assert got["mean"] == pytest.approx(0.6) and got["ci95"] == pytest.approx([lo, hi])
    assert math.isnan(got["per_seed"][1])
    one = mean_ci([0.3])
    assert one["mean"] == 0.3 and one["ci95"] is None


def _seed(x: float) -> dict:
    return {
        "domains": {"source": "toy_source", "target": "toy_target"},
        "base": {"source_srcc": 0.8 + x, "target_srcc": 0.4 + x},
        "g": {"source_srcc_with_error": x, "target_srcc_with_error": -x},
        "pool_failure_srcc": 0.4 + x,
        "strategies": {
            s: {"failure_id_srcc": x + i, "finetune_gain_srcc": x - i} for i, s in enumerate(["mds", "random"])
        },
    }


def test_the_aggregate_has_every_number_as_mean_interval_and_per_seed_values():
    exp = aggregate([0, 1, 2], [_seed(0.0), _seed(0.1), _seed(0.2)])
    assert exp["seeds"] == [0, 1, 2]
    assert exp["base"]["target_srcc"]["per_seed"] == pytest.approx([0.4, 0.5, 0.6])
    assert exp["base"]["target_srcc"]["mean"] == pytest.approx(0.5)
    assert exp["g"]["target_srcc_with_error"]["mean"] == pytest.approx(-0.1)
    random = exp["strategies"]["random"]["failure_id_srcc"]
    assert random["per_seed"] == pytest.approx([1.0, 1.1, 1.2]) and random["ci95"][0] < 1.1 < random["ci95"][1]
    json.dumps(exp)  # serialisable as experiment.json
    with pytest.raises(ValueError, match="one metrics dict per seed"):
        aggregate([0, 1], [_seed(0.0)])


def test_g_target_srcc_correlates_g_with_the_base_models_true_error():
    base = Dataset.from_dict(
        {
            "video_id": ["a", "b", "c", "d", "e"],
            "score": [3.0, 3.0, 3.0, float("nan"), 3.0],
            "mos": [3.1, 4.0, 1.0, 2, 2.5],
        }
    )
    # errors: a 0.1, b 1.0, c 2.0, e 0.5 (d unscored: left out)
    difficulty = Dataset.from_dict({"video_id": ["e", "c", "b", "a", "d"], "difficulty": [2.0, 4.0, 3.0, 1.0, 5.0]})
    assert g_target_srcc(base, difficulty) == pytest.approx(1.0)
    reversed_g = difficulty.map(lambda r: {"difficulty": -r["difficulty"]})
    assert g_target_srcc(base, reversed_g) == pytest.approx(-1.0)


def test_each_profile_gets_its_share_and_only_its_distortions():
    rng = np.random.default_rng(0)
    distortions, kinds = draw_distortions(DEFAULT_DOMAINS["target"], 50, rng)
    assert len(distortions) == 50 and kinds.count("blur/noise") == 20 and kinds.count("pixelated") == 15
    for d, k in zip(distortions, kinds):
        if k == "pixelated":
            assert 1 <= d.pixelate <= 8 and d.washout == 0 and d.blur == 0
        elif k == "washed out":
            assert 0 <= d.washout <= 0.7 and d.pixelate == 1
        else:
            assert d.pixelate == 1 and d.washout == 0
    source, _ = draw_distortions(DEFAULT_DOMAINS["source"], 20, rng)
    assert all(d.pixelate == 1 and d.washout == 0 for d in source)  # the source never shows the target's new kinds


def test_new_distortions_lower_the_true_quality():
    assert Distortion(pixelate=4).quality() < Distortion(pixelate=2).quality() < Distortion().quality() == 5.0
    assert Distortion(washout=0.6).quality() < Distortion(washout=0.2).quality() < 5.0


def test_pixelate_makes_blocks_and_washout_flattens_contrast(tmp_path):
    from mds_vqa.testing import make_video
    from mds_vqa.video import read_frames

    clean, _ = read_frames(make_video(tmp_path / "a.mp4", Distortion(crf=0), seed=3), 2)
    blocky, _ = read_frames(make_video(tmp_path / "b.mp4", Distortion(pixelate=8, crf=0), seed=3), 2)
    flat, _ = read_frames(make_video(tmp_path / "c.mp4", Distortion(washout=0.7, crf=0), seed=3), 2)
    clean, blocky, flat = (np.asarray(x, dtype=float) for x in (clean, blocky, flat))

    def inner_block_variation(frames):  # pixel differences inside 8x8 blocks
        return np.abs(np.diff(frames.reshape(*frames.shape[:1], 8, 8, 8, 8, -1)[..., :, :, :], axis=2)).mean()

    assert inner_block_variation(blocky) < 0.3 * inner_block_variation(clean)
    assert flat.std() < 0.5 * clean.std()


def test_a_seed_writes_the_same_world_and_another_seed_a_new_one(tmp_path):
    world = ToyWorld(source_videos=4, target_videos=6, source_contents=2, target_contents=3, num_frames=4, size=32)
    write_world(tmp_path / "a", world, seed=1)
    write_world(tmp_path / "b", world, seed=1)
    write_world(tmp_path / "c", world, seed=2)
    for domain in ("source", "target"):
        a = (tmp_path / "a" / domain / "mos.csv").read_text()
        assert a == (tmp_path / "b" / domain / "mos.csv").read_text()
        assert a != (tmp_path / "c" / domain / "mos.csv").read_text()
        table = (tmp_path / "a" / domain / "distortions.csv").read_text().splitlines()
        assert table[0].startswith("video_id,content,kind,true_quality") and len(table) == 1 + world.videos(domain)
        rows = [line.split(",") for line in a.splitlines()[1:]]
        contents = [r.split(",")[1] for r in table[1:]]
        split_of_content = {}
        for (_, _, _, split), content in zip(rows, contents):  # a content is wholly train or wholly test
            assert split_of_content.setdefault(content, split) == split
        assert set(split_of_content.values()) == {"train", "test"}
    text = describe_world(world)
    assert "pixelated" in text and "washed out" in text and "4 source (2 contents), 6 target (3 contents)" in text


@pytest.mark.slow
def test_a_two_seed_tiny_experiment_reports_every_number_and_fine_tuning_changes_f(tmp_path, monkeypatch):
    """The demo's experiment end to end at the smallest sizes: two seeds, every strategy, every number."""
    from conftest import load_recipe
    from datasets import load_from_disk

    monkeypatch.chdir(tmp_path)
    demo = load_recipe("demo")
    args = demo.DemoArguments(
        output_dir=str(tmp_path / "demo"),
        seeds=2,
        source_videos=16,
        target_videos=24,
        budget="0.25",
        pretrain_steps=4,
        fp_steps=2,
        grpo_steps=1,
    )
    demo.main(args)
    report = tmp_path / "demo" / "report"
    exp = json.loads((report / "experiment.json").read_text())
    assert exp["seeds"] == [0, 1]

    def check(stat):
        assert set(stat) == {"mean", "ci95", "per_seed"} and len(stat["per_seed"]) == 2
        finite = [v for v in stat["per_seed"] if math.isfinite(v)]
        assert stat["ci95"] is None or (len(stat["ci95"]) == 2 and stat["ci95"][0] <= stat["mean"] <= stat["ci95"][1])
        assert (stat["mean"] is None) == (not finite)

    for key in ("source_srcc", "target_srcc"):
        check(exp["base"][key])
    for key in ("source_srcc_with_error", "target_srcc_with_error"):
        check(exp["g"][key])
    assert list(exp["strategies"]) == demo.ALL_STRATEGIES
    for metrics in exp["strategies"].values():
        for key in ("failure_id_srcc", "failure_id_plcc", "finetune_gain_srcc", "finetune_source_gain_srcc"):
            check(metrics[key])
    text = (report / "README.md").read_text()
    assert "Design (written before the comparison ran)" in text and "pixelated" in text
    assert all(f"| {s} |" in text for s in demo.ALL_STRATEGIES) and (report / "experiment.png").stat().st_size > 0
    assert (report / "design.md").read_text().strip() in text

    # every arm's adapter changed f: its target test scores are not the base f's
    run = tmp_path / "demo" / "seeds" / "seed_0" / "run"
    base = load_from_disk(str(run / "base" / "scored_target"))
    base_test = dict((v, s) for v, s, sp in zip(base["video_id"], base["score"], base["split"]) if sp == "test")
    for strategy in demo.ALL_STRATEGIES:
        tuned = load_from_disk(str(run / "round_1" / "arms" / strategy / "eval" / "target"))
        assert sorted(tuned["video_id"]) == sorted(base_test)
        assert any(abs(s - base_test[v]) > 1e-6 for v, s in zip(tuned["video_id"], tuned["score"])), strategy
    # the selections differ by strategy and each arm was annotated with its own selection
    for strategy in demo.ALL_STRATEGIES:
        picked = sorted(load_from_disk(str(run / "round_1" / "selection" / strategy))["video_id"])
        labelled = sorted(load_from_disk(str(run / "round_1" / "arms" / strategy / "labelled"))["video_id"])
        assert picked == labelled and len(picked) > 0
