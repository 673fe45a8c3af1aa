"""Scored-entry loading shared by recipes/evaluate_models.py and recipes/gmad.py: errors name the entry, file, column."""

from __future__ import annotations

import math

import pytest
from datasets import Dataset, DatasetDict

from mds_vqa.scored import aligned_scores, check_entry, load_scored, load_scored_entry, scored_table


def _pool(path, ids=("a", "b", "c"), scores=(1.0, 2.0, None), split=("test", "test", "train")):
    ds = Dataset.from_dict(
        {
            "video_id": list(ids),
            "video": [f"/v/{i}.mp4" for i in ids],
            "mos": [1.0 + k for k in range(len(ids))],
            "dataset": ["d"] * len(ids),
            "split": list(split),
            "pred": list(scores),
        }
    )
    ds.save_to_disk(str(path))
    return str(path)


def test_check_entry_names_the_list_the_entry_and_the_missing_keys():
    entry = {"name": "m", "column": ""}
    with pytest.raises(ValueError) as info:
        check_entry(entry, ("name", "dataset_path", "column"), "models", 3)
    message = str(info.value)
    assert "models entry 3" in message and "'name': 'm'" in message
    assert "['dataset_path', 'column']" in message
    assert check_entry({"name": "m"}, ("name",), "models", 0) == {"name": "m"}


def test_load_scored_entry_names_the_entry_the_file_and_the_column(tmp_path):
    path = _pool(tmp_path / "pool")
    entry = {"name": "m", "dataset_path": path, "column": "pred"}
    assert load_scored_entry(entry, "model 'm'", columns=("video_id",))["pred"][:2] == [1.0, 2.0]
    with pytest.raises(KeyError) as info:
        load_scored_entry(dict(entry, column="score"), "model 'm'")
    assert all(part in str(info.value) for part in ("model 'm'", "'score'", path, "columns:"))
    with pytest.raises(KeyError, match="'video_path'"):
        load_scored_entry(entry, "model 'm'", columns=("video_path",))
    with pytest.raises(FileNotFoundError, match=r"nope.*recipes/score.py"):
        load_scored_entry(dict(entry, dataset_path=str(tmp_path / "nope")), "model 'm'")


def test_load_scored_picks_the_split_of_a_dataset_dict(tmp_path):
    ds = Dataset.from_dict({"x": [1, 2]})
    DatasetDict({"test": ds, "train": ds.select([0])}).save_to_disk(str(tmp_path / "dd"))
    assert len(load_scored(tmp_path / "dd", "train")) == 1
    with pytest.raises(ValueError, match="DatasetDict with splits"):
        load_scored(tmp_path / "dd")


def test_scored_table_concatenates_filters_the_split_and_rejects_duplicates(tmp_path):
    a = _pool(tmp_path / "a")
    b = _pool(tmp_path / "b", ids=("x", "y"), scores=(3.0, 4.0), split=("test", "test"))
    table = scored_table(
        [{"dataset_path": a, "column": "pred"}, {"dataset_path": b, "column": "pred"}], "model 'm'", split="test"
    )
    assert table.column_names == ["video_id", "dataset", "mos", "score"]
    assert table["video_id"] == ["a", "b", "x", "y"] and table["score"] == [1.0, 2.0, 3.0, 4.0]
    with pytest.raises(ValueError, match="model 'm': the same video appears twice"):
        scored_table([{"dataset_path": a, "column": "pred"}] * 2, "model 'm'", split=None)
    with pytest.raises(ValueError, match="no rows left"):
        scored_table([{"dataset_path": a, "column": "pred"}], "model 'm'", split="val")


def test_aligned_scores_follow_the_first_pool_order_and_refuse_another_pool(tmp_path):
    first = _pool(tmp_path / "first")
    shuffled = _pool(tmp_path / "shuffled", ids=("c", "a", "b"), scores=(30.0, 10.0, None))
    scores, ids, videos = aligned_scores(
        [
            {"name": "m1", "dataset_path": first, "column": "pred"},
            {"name": "m2", "dataset_path": shuffled, "column": "pred"},
        ]
    )
    assert ids == ["a", "b", "c"] and videos == ["/v/a.mp4", "/v/b.mp4", "/v/c.mp4"]
    assert scores["m1"][:2] == [1.0, 2.0] and math.isnan(scores["m1"][2])
    assert scores["m2"][0] == 10.0 and math.isnan(scores["m2"][1]) and scores["m2"][2] == 30.0
    other = _pool(tmp_path / "other", ids=("a", "b", "z"))
    models = [{"name": "m1", "dataset_path": first, "column": "pred"}]
    with pytest.raises(ValueError, match=r"scored a different pool .* 1 video\(s\) missing, e.g. \['c'\]"):
        aligned_scores(models + [{"name": "m3", "dataset_path": other, "column": "pred"}])
    with pytest.raises(ValueError, match="used twice"):
        aligned_scores(models * 2)
    with pytest.raises(KeyError, match=r"model 'm4': column 'nope' not in"):
        aligned_scores(models + [{"name": "m4", "dataset_path": other, "column": "nope"}])
