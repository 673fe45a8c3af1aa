"""Raw ratings → rater screening → a labelled pool that fine-tuning reads."""

from __future__ import annotations

import json
import logging
import math

import pytest
from conftest import load_recipe
from datasets import Dataset

from mds_vqa.hub import HubArguments
from mds_vqa.loading import load_pool
from mds_vqa.ratings_import import import_ratings, read_ratings

# Four raters on six videos: r1-r3 agree, r4 inverts the scale (and alone rates v6).
SCORES = {"r1": [1, 2, 3, 4, 5, 5], "r2": [2, 2, 3, 4, 4, 5], "r3": [1, 3, 3, 5, 4, 5], "r4": [5, 4, 4, 2, 1, 1]}


def _subset(tmp_path) -> str:
    ids = [f"v{i}" for i in range(7)]
    subset = Dataset.from_dict(
        {
            "rank": list(range(1, 8)),
            "video_id": ids,
            "video": [f"{v}.mp4" for v in ids],  # relative to the video folder
            "dataset": ["sdr"] * 7,
            "g": [float(i) for i in range(7)],
        }
    )
    subset.save_to_disk(str(tmp_path / "subset"))
    return str(tmp_path / "subset")


def _ratings(tmp_path) -> str:
    lines = ["video_id,rater,score,phase,scale"]
    lines += ["v0,r1,5,training,acr", "v5,r1,1,training,acr"]  # training answers: never counted
    lines += [f"v{i},{r},{s},main,acr" for r, scores in SCORES.items() for i, s in enumerate(scores)]
    lines.append("v6,r4,3,main,acr")
    path = tmp_path / "ratings.csv"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_the_outlier_rater_is_screened_out_and_mos_std_and_counts_match_the_hand_computation(tmp_path, caplog):
    recipe = load_recipe("import_ratings")
    args = recipe.ImportRatingsArguments(
        subset_path=_subset(tmp_path),
        ratings=_ratings(tmp_path),
        output_dir=str(tmp_path / "labelled"),
        video_root=str(tmp_path),
    )
    with caplog.at_level(logging.INFO, logger="mds_vqa"):
        out = recipe.main(args, HubArguments(stage_dir=str(tmp_path / "labelled.hub")))
    assert "rater r4: rejected" in caplog.text
    pool = load_pool(out)
    assert pool["video_id"] == ["v0", "v1", "v2", "v3", "v4", "v5"]  # v6: rated by r4 only, left out
    by_id = {r["video_id"]: r for r in pool}
    # v0: r1 1, r2 2, r3 1 → MOS 4/3, sample std √(1/3); v1: 2, 2, 3 → 7/3, √(1/3); v5: 5, 5, 5 → 5, 0
    assert by_id["v0"]["mos"] == pytest.approx(4 / 3) and by_id["v0"]["mos_std"] == pytest.approx(math.sqrt(1 / 3))
    assert by_id["v1"]["mos"] == pytest.approx(7 / 3) and by_id["v1"]["mos_std"] == pytest.approx(math.sqrt(1 / 3))
    assert by_id["v5"]["mos"] == pytest.approx(5.0) and by_id["v5"]["mos_std"] == pytest.approx(0.0)
    assert set(pool["num_ratings"]) == {3}
    assert by_id["v0"]["video"] == str(tmp_path.resolve() / "v0.mp4")
    assert set(pool["dataset"]) == {"sdr"} and set(pool["split"]) == {"train"}
    report = json.loads((out / "screening.json").read_text())
    assert report["raters_rejected"] == ["r4"] and report["raters_kept"] == ["r1", "r2", "r3"]
    assert report["left_out"] == ["v6"] and report["ratings"] == 25 and report["ratings_used"] == 18
    raters = {r["rater"]: r for r in report["raters"]}
    assert raters["r4"]["status"] == "rejected" and raters["r4"]["plcc"] < 0
    assert all(raters[r]["status"] == "kept" and raters[r]["plcc"] >= 0.75 for r in ("r1", "r2", "r3"))
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["recipe"] == "import_ratings" and provenance["summary"]["raters_rejected"] == ["r4"]
    staged = load_pool(tmp_path / "labelled.hub")
    assert staged["mos"] == pool["mos"] and "screening.json" in {p.name for p in (tmp_path / "labelled.hub").iterdir()}
    assert "human-rated" in (tmp_path / "labelled.hub" / "README.md").read_text()


def test_the_labelled_pool_feeds_finetunes_training_set(tmp_path):
    recipe = load_recipe("import_ratings")
    args = recipe.ImportRatingsArguments(
        subset_path=_subset(tmp_path), ratings=_ratings(tmp_path), output_dir=str(tmp_path / "labelled")
    )
    out = recipe.main(args)
    finetune = load_recipe("finetune")
    train = finetune.build_train_dataset(finetune.FinetuneScriptArguments(dataset_paths=[str(out)]))
    assert len(train) == 6 and min(train["mos"]) == pytest.approx(1.0) and max(train["mos"]) == pytest.approx(5.0)
    assert train["mos_raw"][0] == pytest.approx(4 / 3) and "prompt" in train.column_names


def test_two_raters_are_not_screened_and_bad_rows_are_named_by_line(tmp_path):
    subset = load_pool(_subset(tmp_path))
    two = tmp_path / "two.csv"
    two.write_text("video_id,rater,score\n" + "".join(f"v{i},a,{i}\nv{i},b,{6 - i}\n" for i in range(1, 6)))
    result = import_ratings(subset, two)
    assert [r["status"] for r in result.raters] == ["kept", "kept"]
    assert "not screened" in result.raters[0]["reason"] and result.report["left_out"] == ["v0", "v6"]
    bad = tmp_path / "bad.csv"
    bad.write_text("video_id,rater,score\nv1,a,4\nv9,a,3\nv2,a,good\nv1,a,5\n")
    with pytest.raises(ValueError) as err:
        read_ratings(bad, known_ids=subset["video_id"])
    text = str(err.value)
    assert "bad.csv: invalid ratings" in text and "line 4: 'good'" in text and "line 3: 'v9'" in text
    assert "'a' rated 'v1' at lines [2, 5]" in text
    scales = tmp_path / "scales.csv"
    scales.write_text("video_id,rater,score,scale\nv1,a,4,acr\nv2,a,80,slider\n")
    with pytest.raises(ValueError, match=r"several scales \['acr', 'slider'\]"):
        read_ratings(scales)
    (tmp_path / "cols.csv").write_text("video_id,rater,mos\nv1,a,3\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['score'\]"):
        read_ratings(tmp_path / "cols.csv")
