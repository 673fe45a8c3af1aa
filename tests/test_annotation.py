import json

import pytest
from datasets import Dataset

from mds_vqa.annotation import SimulatedAnnotator, hide_mos
from mds_vqa.data import POOL_FEATURES


@pytest.fixture
def oracle():
    n = 10
    return Dataset.from_dict(
        {
            "video_id": [f"v{i}" for i in range(n)],
            "video": [f"/v{i}.mp4" for i in range(n)],
            "mos": [float(i) for i in range(n)],
            "mos_std": [0.1] * n,
            "dataset": ["t"] * n,
            "split": ["train"] * n,
        },
        features=POOL_FEATURES,
    )


def test_only_the_selected_videos_get_a_mos(oracle, tmp_path):
    annotator = SimulatedAnnotator(oracle, log_path=tmp_path / "log.jsonl")
    labelled = annotator.annotate(["v3", "v7"])
    assert labelled["video_id"] == ["v3", "v7"] and labelled["mos"] == [3.0, 7.0]
    assert labelled.features == POOL_FEATURES and set(labelled["split"]) == {"train"}
    assert annotator.spent == 2
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert log == [{"note": "", "requested": 2, "spent": 2, "video_ids": ["v3", "v7"]}]


def test_rater_noise_is_seeded_and_only_perturbs_the_revealed_mos(oracle):
    a = SimulatedAnnotator(oracle, noise_std=0.5, seed=1).annotate(["v2", "v5"])
    b = SimulatedAnnotator(oracle, noise_std=0.5, seed=1).annotate(["v2", "v5"])
    assert a["mos"] == b["mos"] and a["mos"] != [2.0, 5.0]
    assert all(abs(m - t) < 3 for m, t in zip(a["mos"], [2.0, 5.0]))


def test_a_videos_noise_depends_on_the_seed_and_its_id_not_on_the_request_order(oracle):
    one = SimulatedAnnotator(oracle, noise_std=0.5, seed=3)
    first = dict(zip(["v2", "v5"], one.annotate(["v2", "v5"])["mos"]))
    two = SimulatedAnnotator(oracle, noise_std=0.5, seed=3)
    two.annotate(["v1"])
    later = dict(zip(["v5", "v2"], two.annotate(["v5", "v2"])["mos"]))
    assert first == later
    other = SimulatedAnnotator(oracle, noise_std=0.5, seed=4).annotate(["v2"])["mos"][0]
    assert other != first["v2"]


def test_a_video_is_never_annotated_twice_and_unknown_ids_are_refused(oracle):
    annotator = SimulatedAnnotator(oracle)
    annotator.annotate(["v1"])
    with pytest.raises(ValueError, match="twice"):
        annotator.annotate(["v1", "v2"])
    with pytest.raises(ValueError, match="twice"):
        annotator.annotate(["v4", "v4"])
    with pytest.raises(KeyError, match="ghost"):
        annotator.annotate(["ghost"])
    assert annotator.spent == 1


def test_hide_mos_removes_every_label_column(oracle):
    hidden = hide_mos(oracle)
    assert "mos" not in hidden.column_names and "mos_std" not in hidden.column_names
    assert hidden["video_id"] == oracle["video_id"]
