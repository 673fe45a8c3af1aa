"""gMAD: level banding, the planted pair, both roles, the 2AFC summary, pictures and recipes/gmad.py."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import load_recipe
from datasets import Dataset, load_from_disk
from trl import TrlParser

from mds_vqa.gmad import (
    gmad_competition,
    gmad_levels,
    gmad_pairs,
    level_centers,
    pair_figure,
    read_2afc_answers,
    study_dataset,
    summarize_2afc,
    write_summary,
)
from mds_vqa.hub import read_provenance
from mds_vqa.testing import Distortion, make_video_pool

ROOT = Path(__file__).resolve().parents[1]


def test_planted_disagreement_is_the_pair_found():
    # Two models that agree on every video except two: A rates both 3.5, B rates one 4.9 and the other 1.1.
    a = np.append(np.linspace(1, 5, 48), [3.5, 3.5])
    b = np.append(np.linspace(1, 5, 48), [4.9, 1.1])
    pairs = gmad_pairs(a, b, n_levels=4, names=("A", "B"))
    a_defends = [p for p in pairs if p["defender"] == "A"]
    assert [p["level_center"] for p in a_defends] == pytest.approx([1.5, 2.5, 3.5, 4.5])
    planted = [p for p in a_defends if p["level"] == 2]
    assert len(planted) == 1
    assert (planted[0]["index_high"], planted[0]["index_low"]) == (48, 49)
    assert (planted[0]["attacker_high"], planted[0]["attacker_low"]) == (4.9, 1.1)
    assert planted[0]["defender_high"] == planted[0]["defender_low"] == 3.5
    # elsewhere the two models agree: the attacker's gap is only the band's width
    others = [p["attacker_high"] - p["attacker_low"] for p in a_defends if p["level"] != 2]
    assert max(others) < 0.6 < planted[0]["attacker_high"] - planted[0]["attacker_low"]
    # both roles are played
    assert {(p["defender"], p["attacker"]) for p in pairs} == {("A", "B"), ("B", "A")}
    assert all(p["pair_id"] == f"{p['defender']}_vs_{p['attacker']}_L{p['level']}" for p in pairs)
    assert {p["defender"] for p in gmad_pairs(a, b, 4, names=("A", "B"), roles="b_defends")} == {"B"}


def test_levels_split_the_defender_range_into_bands():
    np.testing.assert_allclose(level_centers(0.0, 10.0, 4), [1.25, 3.75, 6.25, 8.75])
    d = np.arange(11, dtype=float)  # 0 … 10
    att = np.array([5, 5, 1, 9, 5, 5, 5, 4, 2, 5, 5], dtype=float)
    levels = gmad_levels(d, att, 2, band_width=0.2, ids=[f"v{i}" for i in range(11)])
    assert [lv["level_center"] for lv in levels] == [2.5, 7.5]
    assert [(lv["band_low"], lv["band_high"]) for lv in levels] == [(1.5, 3.5), (6.5, 8.5)]
    assert [lv["n_candidates"] for lv in levels] == [2, 2]
    assert [(lv["id_high"], lv["id_low"]) for lv in levels] == [("v3", "v2"), ("v7", "v8")]
    # the default band is half a level: never overlapping
    default = gmad_levels(d, att, 2)
    assert [(lv["band_low"], lv["band_high"]) for lv in default] == [(1.25, 3.75), (6.25, 8.75)]
    with pytest.raises(ValueError, match="band_width"):
        gmad_levels(d, att, 2, band_width=0.6)
    with pytest.raises(ValueError, match="constant"):
        gmad_levels(np.ones(5), np.arange(5.0), 2)
    with pytest.raises(ValueError, match="same pool"):
        gmad_levels(d, att[:5], 2)
    with pytest.raises(ValueError, match="n_levels"):
        gmad_levels(d, att, 0)


def test_levels_without_a_pair_are_skipped_with_a_reason():
    d = np.array([0.0, 0.1, 5.0, 9.9, 10.0])
    levels = gmad_levels(d, np.arange(5.0), 3)
    assert [lv["skipped"] for lv in levels] == [
        "0 video(s) in the band",
        "1 video(s) in the band",
        "0 video(s) in the band",
    ]
    assert gmad_pairs(d, np.arange(5.0), 3) == []
    ties = gmad_levels(np.array([0.0, 4.9, 5.0, 5.1, 10.0]), np.array([1.0, 2.0, 2.0, 2.0, 3.0]), 3)
    assert ties[1]["n_candidates"] == 3 and "the same" in ties[1]["skipped"]


def test_videos_without_both_scores_are_left_out():
    d = np.array([0.0, 4.9, 5.0, 5.1, 10.0])
    att = np.array([1.0, np.nan, 2.0, 3.0, 4.0])
    (middle,) = [lv for lv in gmad_levels(d, att, 3) if lv["level"] == 1]
    assert middle["n_candidates"] == 2
    assert (middle["index_high"], middle["index_low"]) == (3, 2)


def test_competition_plays_every_ordered_pair_of_models():
    rng = np.random.default_rng(0)
    scores = {name: rng.uniform(1, 5, 200) for name in ("x", "y", "z")}
    levels = gmad_competition(scores, 3)
    games = {(r["defender"], r["attacker"]) for r in levels}
    assert games == {(d, a) for d in "xyz" for a in "xyz" if d != a}
    assert len(levels) == 6 * 3
    with pytest.raises(ValueError, match="two models"):
        gmad_competition({"x": scores["x"]})
    with pytest.raises(ValueError, match="same pool"):
        gmad_competition({"x": scores["x"], "y": scores["y"][:10]})


def _two_model_pairs():
    """4 pairs: A defends against B and B against A, 2 levels each (hand-made scores)."""
    a = np.array([1.0, 1.0, 3.0, 3.0, 2.0, 2.2, 2.0, 2.1])
    b = np.array([1.5, 2.5, 1.0, 1.2, 1.0, 1.0, 3.0, 3.0])
    levels = gmad_competition({"A": a, "B": b}, 2, band_width=0.5, ids=[f"v{i}" for i in range(8)])
    assert all(not r["skipped"] for r in levels), levels
    return study_dataset(levels, [f"/videos/v{i}.mp4" for i in range(8)], seed=3)


def test_study_dataset_has_paths_and_a_random_presentation_order():
    ds = _two_model_pairs()
    assert len(ds) == 4
    for r in ds:
        assert r["video_high"] == f"/videos/{r['id_high']}.mp4"
        assert {r["video_left"], r["video_right"]} == {r["video_high"], r["video_low"]}
        assert (r["video_left"] == r["video_high"]) == r["left_is_high"]
    assert len(set(ds["left_is_high"])) == 2  # both orders occur
    assert ds["left_is_high"] == _two_model_pairs()["left_is_high"]  # seeded


def test_2afc_summary_on_a_hand_made_answer_table(tmp_path):
    ds = _two_model_pairs()
    rows = {(r["defender"], r["level"]): r for r in ds}
    b_attacks_0, b_attacks_1 = rows[("A", 0)], rows[("A", 1)]
    a_attacks_0, a_attacks_1 = rows[("B", 0)], rows[("B", 1)]
    left = "left" if a_attacks_1["left_is_high"] else "right"  # the side showing the high video
    lines = ["pair_id,preferred,count"]
    lines += [f"{b_attacks_0['pair_id']},high,8", f"{b_attacks_0['pair_id']},low,2"]  # p = 0.8
    lines += [f"{b_attacks_1['pair_id']},{b_attacks_1['id_high']},6", f"{b_attacks_1['pair_id']},low,4"]  # 0.6
    lines += [f"{a_attacks_0['pair_id']},high,1", f"{a_attacks_0['pair_id']},{a_attacks_0['id_low']},9"]  # 0.1
    lines += [f"{a_attacks_1['pair_id']},{left},3", f"{a_attacks_1['pair_id']},low,7"]  # 0.3
    (tmp_path / "answers.csv").write_text("\n".join(lines) + "\n")
    summary = summarize_2afc(ds, read_2afc_answers(tmp_path / "answers.csv"))
    assert summary.aggressiveness.loc["B", "A"] == pytest.approx(0.7)
    assert summary.aggressiveness.loc["A", "B"] == pytest.approx(0.2)
    assert summary.resistance.loc["A", "B"] == pytest.approx(0.3)
    assert summary.resistance.loc["B", "A"] == pytest.approx(0.8)
    ranking = summary.ranking.set_index("model")
    assert ranking.loc["B", "global"] == pytest.approx(0.75) and ranking.loc["A", "global"] == pytest.approx(0.25)
    assert ranking.loc["B", "rank"] == 1 and ranking.loc["A", "rank"] == 2
    votes = summary.pairs.set_index("pair_id")
    assert votes.loc[b_attacks_0["pair_id"], "n_high"] == 8 and votes.loc[a_attacks_0["pair_id"], "n_low"] == 9
    # one vote per line works too, and pairs without a vote are left out
    per_vote = "pair_id,preferred\n" + "\n".join([f"{b_attacks_0['pair_id']},high"] * 3) + "\n"
    (tmp_path / "votes.csv").write_text(per_vote)
    partial = summarize_2afc(ds, read_2afc_answers(tmp_path / "votes.csv"))
    assert partial.aggressiveness.loc["B", "A"] == 1.0
    assert np.isnan(partial.aggressiveness.loc["A", "B"])
    paths = write_summary(summary, tmp_path / "out")
    md = paths["md"].read_text()
    assert "| 1 | B | 0.700 | 0.800 | 0.750 |" in md
    assert json.loads(paths["json"].read_text())["aggressiveness"]["B"]["A"] == pytest.approx(0.7)
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"


def test_2afc_answer_errors_name_the_line(tmp_path):
    ds = _two_model_pairs()
    pid = ds[0]["pair_id"]
    cases = {
        "pair_id,preferred\nnot_a_pair,high\n": "line 2: 'not_a_pair'",
        f"pair_id,preferred\n{pid},high\n{pid},v99\n": "line 3",
        f"pair_id,preferred,count\n{pid},high,-1\n": "non-negative integer",
        "pair,choice\nx,high\n": "missing column",
    }
    for i, (text, message) in enumerate(cases.items()):
        path = tmp_path / f"a{i}.csv"
        path.write_text(text)
        with pytest.raises(ValueError) as info:
            summarize_2afc(ds, read_2afc_answers(path))
        assert message in str(info.value)


def test_pair_figure_draws_both_strips(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(3, 32, 48, 3), dtype=np.uint8)
    pair = _two_model_pairs()[0]
    path = pair_figure(frames, frames[::-1], pair, tmp_path / "p.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


# --------------------------------------------------------------------------------------------------------------------
# recipes/gmad.py
# --------------------------------------------------------------------------------------------------------------------


def _scored_pools(tmp_path) -> tuple[Path, Path, list[dict]]:
    """Generated videos scored by two simple rule-based models: one sees blur, the other noise."""
    distortions = [Distortion(blur=b, noise=n, crf=c) for b, n, c in np.ndindex(3, 2, 2)]
    distortions = [Distortion(blur=0.9 * d.blur, noise=18.0 * d.noise, crf=18 + 12 * d.crf) for d in distortions]
    rows = make_video_pool(tmp_path / "videos", distortions, num_frames=4, height=32, width=32)
    base = [{"video_id": r["video_id"], "video": r["video"], "mos": r["mos"], "dataset": "demo"} for r in rows]
    sharp = Dataset.from_list([dict(b, score=5.0 - r["blur"] - r["crf"] / 40) for b, r in zip(base, rows)])
    clean = Dataset.from_list([dict(b, score=5.0 - r["noise"] / 10 - r["crf"] / 60) for b, r in zip(base, rows)])
    sharp.save_to_disk(str(tmp_path / "sharp"))
    clean.save_to_disk(str(tmp_path / "clean"))
    return tmp_path / "sharp", tmp_path / "clean", rows


def test_gmad_recipe_writes_pairs_pictures_and_summary(tmp_path):
    recipe = load_recipe("gmad")
    (args,) = TrlParser(recipe.GmadArguments).parse_args_and_config(
        args=["--config", str(ROOT / "recipes/configs/demo/gmad.yaml"), "--output_dir", str(tmp_path / "out")]
    )
    sharp, clean, rows = _scored_pools(tmp_path)
    args = dataclasses.replace(
        args,
        models=[
            {"name": "sharpness", "dataset_path": str(sharp), "column": "score"},
            {"name": "cleanliness", "dataset_path": str(clean), "column": "score"},
        ],
        n_levels=2,
        num_frames=2,
        pictures=False,
    )
    result = recipe.main(args)
    pairs = load_from_disk(str(tmp_path / "out/pairs"))
    assert len(pairs) == len(result["pairs"]) > 0
    assert {(r["defender"], r["attacker"]) for r in pairs} <= {
        ("sharpness", "cleanliness"),
        ("cleanliness", "sharpness"),
    }
    levels = pd.read_csv(tmp_path / "out/levels.csv")
    assert len(levels) == 2 * 2
    # a video that cannot be decoded is recorded, the other pictures are drawn
    broken = pairs[0]["video_high"]
    Path(broken).write_bytes(b"not a video")
    result = recipe.main(dataclasses.replace(args, pictures=True))
    failed = {f["id"] for f in result["picture_failures"]}
    using_broken = {r["pair_id"] for r in pairs if broken in (r["video_high"], r["video_low"])}
    assert failed == using_broken
    for r in pairs:
        assert Path(r["picture"]).exists() == (r["pair_id"] not in using_broken)
    # a re-run reuses the pairs and redraws nothing
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "out/pictures").glob("*.png")}
    recipe.main(dataclasses.replace(args, pictures=True))
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out/pictures").glob("*.png")} == mtimes
    # answers -> summary
    answers = "pair_id,preferred\n" + "".join(f"{r['pair_id']},left\n" for r in pairs)
    (tmp_path / "answers.csv").write_text(answers)
    result = recipe.main(dataclasses.replace(args, answers=str(tmp_path / "answers.csv")))
    assert set(result["summary"].ranking["model"]) == {"sharpness", "cleanliness"}
    assert (tmp_path / "out/gmad_summary.md").exists() and (tmp_path / "out/gmad_matrices.png").exists()
    record = read_provenance(tmp_path / "out")
    assert record.recipe == "gmad" and record.summary["pairs"] == len(pairs) and record.summary["summarized"]
    assert [i["path"] for i in record.inputs] == [str(sharp), str(clean), str(tmp_path / "answers.csv")]


def test_gmad_recipe_rejects_models_scoring_different_pools(tmp_path):
    recipe = load_recipe("gmad")
    sharp, clean, _ = _scored_pools(tmp_path)
    load_from_disk(str(clean)).select(range(5)).save_to_disk(str(tmp_path / "small"))
    args = recipe.GmadArguments(
        output_dir=str(tmp_path / "out"),
        models=[
            {"name": "sharpness", "dataset_path": str(sharp), "column": "score"},
            {"name": "small", "dataset_path": str(tmp_path / "small"), "column": "score"},
        ],
        pictures=False,
    )
    with pytest.raises(ValueError, match="different pool"):
        recipe.main(args)
    with pytest.raises(ValueError, match="at least two models"):
        recipe.main(dataclasses.replace(args, models=args.models[:1]))
    with pytest.raises(FileNotFoundError, match="recipes/score.py"):
        recipe.main(dataclasses.replace(args, models=[args.models[0], dict(args.models[1], dataset_path="nope")]))
