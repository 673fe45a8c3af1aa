"""Teacher pseudo-labels: rank normalisation within each dataset, the mean over teachers, the teachers' agreement, and
clear errors when a teacher does not cover the pool."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import load_recipe
from datasets import Dataset, load_from_disk
from scipy.stats import spearmanr

from mds_vqa.data import POOL_FEATURES
from mds_vqa.hub import HubArguments, read_card_metadata, read_provenance
from mds_vqa.pseudo_labels import (
    TeacherError,
    pseudo_label_pool,
    pseudo_mos,
    rank_normalize,
    teacher_agreement,
    teacher_scores,
)

IDS = ["a0", "a1", "a2", "b0", "b1"]
GROUPS = ["a", "a", "a", "b", "b"]


def test_rank_normalisation_maps_each_dataset_onto_one_to_five():
    # dataset a: three scores on a 0-100 scale; dataset b: two on a 1-5 scale; only the order within a dataset counts
    got = rank_normalize([70.0, 10.0, 40.0, 4.2, 1.1], GROUPS)
    np.testing.assert_allclose(got, [5.0, 1.0, 3.0, 5.0, 1.0])


def test_rank_normalisation_averages_ties_keeps_nan_and_centres_a_single_video():
    got = rank_normalize([2.0, 2.0, 9.0, math.nan, 0.3], GROUPS)
    np.testing.assert_allclose(got[:3], [2.0, 2.0, 5.0])  # ranks 1.5, 1.5, 3 of 3
    assert math.isnan(got[3]) and got[4] == 3.0  # b has one finite score: the midpoint


def test_pseudo_mos_is_the_mean_of_the_teachers_normalised_scores():
    scores = {"f": [3.0, 1.0, 2.0, 0.2, 0.9], "g": [1.0, 3.0, 2.0, math.nan, 0.5]}
    mos, per_teacher = pseudo_mos(scores, GROUPS)
    np.testing.assert_allclose(per_teacher["f"], [5, 1, 3, 1, 5])
    np.testing.assert_allclose(per_teacher["g"][:3], [1, 5, 3])
    np.testing.assert_allclose(mos, [3.0, 3.0, 3.0, 1.0, 4.0])  # b0: only f scored it; b1: g's lone score is 3


def test_agreement_is_the_pairwise_srcc_within_each_dataset_and_overall():
    a = np.arange(6, dtype=float)
    scores = {"f": np.r_[a, a + 10], "g": np.r_[a * 2, -a], "h": np.r_[a**3, a**3 + 200]}
    groups = ["x"] * 6 + ["y"] * 6
    rows = {(r["teacher_a"], r["teacher_b"], r["dataset"]): r for r in teacher_agreement(scores, groups)}
    assert len(rows) == 3 * 3  # 3 teacher pairs x (x, y, all)
    assert rows[("f", "g", "x")]["srcc"] == pytest.approx(1.0)
    assert rows[("f", "g", "y")]["srcc"] == pytest.approx(-1.0)
    assert rows[("f", "h", "all")]["srcc"] == pytest.approx(1.0) and rows[("f", "h", "all")]["n"] == 12
    assert teacher_agreement({"f": a}, ["x"] * 6) == []  # one teacher: nothing to agree on


def test_a_teacher_missing_a_pool_id_is_an_error_naming_the_teacher_and_the_id():
    teacher = Dataset.from_dict({"video_id": ["a0", "a1", "a2", "b0"], "score": [1.0, 2.0, 3.0, 4.0]})
    with pytest.raises(TeacherError, match=r"Teacher 'g'.*scored/g.*\['b1'\]") as err:
        teacher_scores(IDS, teacher, "g", "score", where="scored/g")
    assert err.value.teacher == "g"
    twice = Dataset.from_dict({"video_id": IDS + ["a0"], "score": [1.0] * 6})
    with pytest.raises(TeacherError, match="'a0' appears twice"):
        teacher_scores(IDS, twice, "f", "score")
    with pytest.raises(TeacherError, match="no column 'difficulty'"):
        teacher_scores(IDS, teacher, "g", "difficulty")


def _pool(mos=None) -> Dataset:
    return Dataset.from_dict(
        {
            "video_id": IDS,
            "video": [f"/videos/{i}.mp4" for i in IDS],
            "mos": mos or [None] * 5,
            "mos_std": [None] * 5,
            "dataset": GROUPS,
            "split": ["train"] * 5,
        },
        features=POOL_FEATURES,
    )


def test_a_video_no_teacher_scored_is_dropped_and_the_pool_keeps_its_own_mos():
    pool = _pool(mos=[50.0, 60.0, 70.0, 1.0, 2.0])
    labelled, summary = pseudo_label_pool(pool, {"f": [1.0, 2.0, 3.0, math.nan, 5.0]})
    assert labelled["video_id"] == ["a0", "a1", "a2", "b1"] and summary["dropped_videos"] == ["b0"]
    assert labelled["mos"] == [1.0, 3.0, 5.0, 3.0] and labelled["mos_original"] == [50.0, 60.0, 70.0, 2.0]
    assert labelled.column_names[:6] == list(POOL_FEATURES) and labelled["pseudo_teachers"] == [1, 1, 1, 1]


def test_the_recipe_turns_an_unlabelled_pool_into_a_weakly_labelled_pool(tmp_path):
    pool = _pool()
    pool.save_to_disk(str(tmp_path / "pool"))
    scores = {"f": [3.1, 2.0, 4.5, 1.0, 2.5], "g": [2.0, 1.5, 2.5, 1.0, 2.0]}
    for name, values in scores.items():
        pool.add_column("score", values).save_to_disk(str(tmp_path / name))
    recipe = load_recipe("pseudo_label")
    teachers = [{"name": n, "dataset_path": str(tmp_path / n), "column": "score"} for n in ("f", "g")]
    args = recipe.PseudoLabelArguments(
        pool_path=str(tmp_path / "pool"), output_dir=str(tmp_path / "out"), teachers=teachers
    )
    summary = recipe.main(args, HubArguments(stage_dir=str(tmp_path / "out.hub")))
    out = load_from_disk(str(tmp_path / "out"))
    assert out["mos"] == [3.0, 1.0, 5.0, 1.0, 5.0]  # the two teachers agree within each dataset
    assert out["pseudo_f"] == out["pseudo_g"] == out["mos"] and out["mos_std"] == [None] * 5
    agreement = json.loads((tmp_path / "out" / "agreement.json").read_text())
    overall = spearmanr(scores["f"], scores["g"])[0]  # raw scores over both datasets: the scales differ
    assert {r["dataset"]: r["srcc"] for r in agreement} == {"a": pytest.approx(1.0), "b": None, "all": overall}
    assert "| f | g | a | 1.0000 | 3 |" in (tmp_path / "out" / "agreement.md").read_text()
    record = read_provenance(tmp_path / "out")
    assert record.recipe == "pseudo_label" and [i["path"] for i in record.inputs][1:] == [
        t["dataset_path"] for t in teachers
    ]
    assert summary["videos"] == 5 and "pseudo-labelled-pool" in read_card_metadata(tmp_path / "out.hub")["tags"]
    # the weakly labelled pool trains like a labelled one: finetune's loader normalises its MOS per dataset
    train = load_recipe("finetune").build_train_dataset(
        load_recipe("finetune").FinetuneScriptArguments(dataset_paths=[str(tmp_path / "out")])
    )
    assert len(train) == 5 and min(train["mos"]) == 1.0 and max(train["mos"]) == 5.0


def test_the_recipe_names_the_teacher_that_misses_a_video(tmp_path):
    pool = _pool()
    pool.save_to_disk(str(tmp_path / "pool"))
    pool.select(range(4)).add_column("score", [1.0, 2.0, 3.0, 4.0]).save_to_disk(str(tmp_path / "g"))
    recipe = load_recipe("pseudo_label")
    args = recipe.PseudoLabelArguments(
        pool_path=str(tmp_path / "pool"),
        output_dir=str(tmp_path / "out"),
        teachers=[{"name": "g", "dataset_path": str(tmp_path / "g"), "column": "score"}],
    )
    with pytest.raises(TeacherError, match=r"Teacher 'g': 1 pool video id\(s\) missing .*\['b1'\]"):
        recipe.main(args)
    assert not (tmp_path / "out").exists()


def test_a_teacher_whose_lower_scores_are_better_is_turned_around(tmp_path):
    pool = _pool()
    pool.save_to_disk(str(tmp_path / "pool"))
    pool.add_column("score", [3.0, 1.0, 2.0, 0.5, 0.7]).save_to_disk(str(tmp_path / "f"))
    pool.add_column("dmos", [10.0, 90.0, 50.0, 80.0, 20.0]).save_to_disk(str(tmp_path / "d"))
    recipe = load_recipe("pseudo_label")
    teachers = [
        {"name": "f", "dataset_path": str(tmp_path / "f"), "column": "score"},
        {"name": "d", "dataset_path": str(tmp_path / "d"), "column": "dmos", "higher_is_better": False},
    ]
    args = recipe.PseudoLabelArguments(
        pool_path=str(tmp_path / "pool"), output_dir=str(tmp_path / "out"), teachers=teachers
    )
    summary = recipe.main(args)
    out = load_from_disk(str(tmp_path / "out"))
    assert out["pseudo_d"] == out["pseudo_f"] == out["mos"] == [5.0, 1.0, 3.0, 1.0, 5.0]
    assert {r["dataset"]: r["srcc"] for r in summary["agreement"]}["a"] == pytest.approx(1.0)
