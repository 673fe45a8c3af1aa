"""One loader for every Dataset the project writes: save_to_disk folders, staged Hub-layout folders, Hub ids."""

from __future__ import annotations

import json
import shutil

import pytest
from datasets import Dataset, DatasetDict

from mds_vqa.hub import DatasetCardInfo, stage_dataset
from mds_vqa.loading import load_pool, resolve_videos, staged_data_files


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


# --------------------------------------------------------------------------------------------------------------------
# Video paths: relative pools resolved against video_root
# --------------------------------------------------------------------------------------------------------------------


def _video_folder(root, names=("a.mp4", "sub/b.mp4", "c.mp4")):
    """A folder of (empty) video files and a MOS table naming them: path existence is all the pool checks."""
    for name in names:
        (root / "videos" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "videos" / name).write_bytes(b"")
    table = root / "mos.csv"
    table.write_text("name,mos\n" + "".join(f"{n},{i + 1}.5\n" for i, n in enumerate(names)))
    return root / "videos", table


def test_build_pool_records_absolute_paths_by_default_and_relative_ones_when_asked(tmp_path):
    from mds_vqa.pools import build_pool

    videos, table = _video_folder(tmp_path)
    absolute = build_pool(table, videos, "mine")
    assert absolute["video"] == [str((videos / n).resolve()) for n in ("a.mp4", "sub/b.mp4", "c.mp4")]
    relative = build_pool(table, videos, "mine", relative_paths=True)
    assert relative["video"] == ["a.mp4", "sub/b.mp4", "c.mp4"]


def test_a_staged_relative_pool_finds_its_videos_on_another_machine_through_video_root(tmp_path):
    from mds_vqa.pools import build_pool

    videos, table = _video_folder(tmp_path / "machine1")
    pool = build_pool(table, videos, "mine", relative_paths=True)
    # the staged folder: the code path a Hub id takes (load_dataset("parquet", data_files=...))
    stage = stage_dataset(pool, tmp_path / "stage", DatasetCardInfo(kind="pool", settings={}))
    elsewhere = tmp_path / "machine2" / "clips"
    shutil.copytree(videos, elsewhere)
    shutil.rmtree(videos)
    loaded = load_pool(stage, video_root=elsewhere, check_videos=True)
    assert loaded["video"] == [str(elsewhere.resolve() / n) for n in ("a.mp4", "sub/b.mp4", "c.mp4")]
    assert loaded.column_names == pool.column_names and loaded["mos"] == pool["mos"]
    # as recorded without video_root; the check names the cause and the rows
    assert load_pool(stage)["video"] == ["a.mp4", "sub/b.mp4", "c.mp4"]
    with pytest.raises(FileNotFoundError, match=r"3 video file\(s\) not found \(relative paths: pass video_root"):
        load_pool(stage, check_videos=True)


def test_absolute_paths_are_kept_and_pair_columns_are_resolved(tmp_path):
    (tmp_path / "v").mkdir()
    for name in ("x.mp4", "y.mp4"):
        (tmp_path / "v" / name).write_bytes(b"")
    elsewhere = str(tmp_path / "kept.mp4")
    pairs = Dataset.from_dict({"video_a": ["x.mp4", elsewhere], "video_b": ["y.mp4", "x.mp4"], "p": [1.0, 0.0]})
    resolved = resolve_videos(pairs, tmp_path / "v")
    root = (tmp_path / "v").resolve()
    assert resolved["video_a"] == [str(root / "x.mp4"), elsewhere]
    assert resolved["video_b"] == [str(root / "y.mp4"), str(root / "x.mp4")]
    assert resolved["p"] == [1.0, 0.0]


def test_missing_videos_are_listed_with_row_column_and_path_and_the_count(tmp_path):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "there.mp4").write_bytes(b"")
    names = ["there.mp4"] + [f"gone{i}.mp4" for i in range(25)]
    _subset(names).add_column("video", names).save_to_disk(str(tmp_path / "pool"))
    with pytest.raises(FileNotFoundError) as err:
        load_pool(tmp_path / "pool", video_root=tmp_path / "v", check_videos=True)
    text = str(err.value)
    assert "25 video file(s) not found" in text and "the first 20:" in text
    assert f"row 1 video: {(tmp_path / 'v').resolve() / 'gone0.mp4'}" in text
    assert "gone24.mp4" not in text  # only the first ones are listed
    with pytest.raises(FileNotFoundError, match="video_root .* is not a folder"):
        load_pool(tmp_path / "pool", video_root=tmp_path / "nowhere")


def test_a_dataset_dict_resolves_every_split(tmp_path):
    dd = DatasetDict(train=Dataset.from_dict({"video": ["a.mp4"]}), test=Dataset.from_dict({"video": ["/abs/b.mp4"]}))
    dd.save_to_disk(str(tmp_path / "dd"))
    loaded = load_pool(tmp_path / "dd", split=None, video_root=tmp_path)
    assert loaded["train"]["video"] == [str(tmp_path.resolve() / "a.mp4")]
    assert loaded["test"]["video"] == ["/abs/b.mp4"]


def test_an_unreachable_hub_id_is_a_clear_error_with_a_video_root_too(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"Could not load the Hub dataset 'nobody/rated-subset' \(HF_HUB_OFFLINE"
    ):
        load_pool("nobody/rated-subset", video_root=tmp_path, check_videos=True)


def test_build_pool_recipe_relative_paths_option_is_recorded(tmp_path):
    from conftest import load_recipe

    videos, table = _video_folder(tmp_path)
    recipe = load_recipe("build_pool")
    (args, hub) = recipe.make_parser().parse_args_and_config(
        ["--mos_table", str(table), "--video_dir", str(videos), "--dataset_name", "mine"]
        + ["--output_dir", str(tmp_path / "pool"), "--relative_paths", "true"]
    )
    out = recipe.main(args, hub)
    assert load_pool(out, video_root=videos, check_videos=True)["video"][0] == str(videos.resolve() / "a.mp4")
    assert json.loads((out / "provenance.json").read_text())["summary"]["relative_paths"] is True


def test_checking_relative_paths_only_leaves_missing_absolute_ones_to_the_reader(tmp_path):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "here.mp4").write_bytes(b"")
    gone = str(tmp_path / "elsewhere" / "gone.mp4")  # absolute: the reader records it as an unreadable row
    pool = Dataset.from_dict({"video": ["here.mp4", gone, "lost.mp4"]})
    with pytest.raises(FileNotFoundError) as err:
        resolve_videos(pool, tmp_path / "v", check="relative", source="my pool")
    text = str(err.value)
    assert text.startswith("my pool: 1 video file(s) not found (relative paths resolved against video_root")
    assert f"row 2 video: {(tmp_path / 'v').resolve() / 'lost.mp4'}" in text and "gone.mp4" not in text
    resolved = resolve_videos(pool.select([0, 1]), tmp_path / "v", check="relative")
    assert resolved["video"] == [str((tmp_path / "v").resolve() / "here.mp4"), gone]
    with pytest.raises(FileNotFoundError, match=r"2 video file\(s\) not found"):
        resolve_videos(pool, tmp_path / "v", check=True)
