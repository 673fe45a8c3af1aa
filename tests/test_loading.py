"""One loader for every Dataset the project writes: save_to_disk folders, staged Hub-layout folders, Hub ids."""

from __future__ import annotations

import pytest
from datasets import Dataset, DatasetDict

from mds_vqa.hub import DatasetCardInfo, stage_dataset
from mds_vqa.loading import load_pool, staged_data_files


def _subset(ids: list[str]) -> Dataset:
    return Dataset.from_dict({"video_id": ids, "difficulty": [float(i) for i in range(len(ids))]})


def test_same_named_staged_folders_each_load_their_own_rows_with_one_shared_cache(tmp_path):
    # one cache for both loads: the session's (tests/conftest.py), as a user's default cache is
    info = DatasetCardInfo(kind="selection", settings={})
    first = stage_dataset(_subset([f"a{i}" for i in range(6)]), tmp_path / "run1" / "selection", info)
    assert load_pool(first)["video_id"] == [f"a{i}" for i in range(6)]
    second = stage_dataset(_subset(["b0", "b1"]), tmp_path / "run2" / "selection", info)
    assert load_pool(second)["video_id"] == ["b0", "b1"]
    # staging again into the first folder replaces its rows, and the loader sees the new ones
    stage_dataset(_subset(["c0", "c1", "c2"]), first, info)
    assert load_pool(first)["video_id"] == ["c0", "c1", "c2"]


def test_a_staged_dataset_dict_loads_each_split_in_shard_order(tmp_path):
    train = _subset([f"t{i:03d}" for i in range(40)])
    test = _subset(["x0", "x1"])
    info = DatasetCardInfo(kind="scored", settings={})
    stage = stage_dataset(DatasetDict(train=train, test=test), tmp_path / "stage", info, max_shard_bytes=200)
    assert len(staged_data_files(stage)["train"]) > 1
    assert load_pool(stage)["video_id"] == train["video_id"]
    assert load_pool(stage, split="test")["video_id"] == ["x0", "x1"]
    assert sorted(load_pool(stage, split=None)) == ["test", "train"]
    with pytest.raises(KeyError, match="no split 'validation'"):
        load_pool(stage, split="validation")


def test_a_save_to_disk_folder_loads_as_saved(tmp_path):
    _subset(["v0", "v1", "v2"]).save_to_disk(str(tmp_path / "pool"))
    assert load_pool(tmp_path / "pool")["video_id"] == ["v0", "v1", "v2"]


def test_a_folder_without_a_dataset_and_an_unreachable_hub_id_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="neither a save_to_disk folder"):
        load_pool(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_pool(tmp_path / "missing" / "pool")
    # the suite runs offline (tests/conftest.py): the Hub cannot be reached
    with pytest.raises(FileNotFoundError, match="Could not load the Hub dataset 'nobody/no-such-subset'"):
        load_pool("nobody/no-such-subset")
