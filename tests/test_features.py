"""open_clip frame features: what is computed, how it is stored, resuming after a kill, corrupt videos, recipes."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_recipe
from datasets import Dataset, List, Value, load_from_disk

from mds_vqa.features import (
    FEATURES_COLUMN,
    extract_features,
    feature_dim,
    load_feature_column,
    load_open_clip,
    merge_features,
    missing_feature_rows,
    parse_num_frames,
    save_open_clip,
)
from mds_vqa.hub import read_provenance, write_provenance
from mds_vqa.loading import load_pool
from mds_vqa.resumable import load_failures
from mds_vqa.testing import Distortion, make_video_pool, register_tiny_open_clip
from mds_vqa.video import read_frames

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
ROOT = Path(__file__).resolve().parents[1]
NUM_VIDEOS = 7  # 6 generated + 1 corrupt


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A pool of generated videos (the last one corrupt) and a tiny open_clip model saved to a folder."""
    import open_clip

    root = tmp_path_factory.mktemp("features")
    rows = make_video_pool(
        root / "videos", [Distortion(blur=b, noise=n) for b, n in [(0, 0), (1, 0), (2, 5), (0, 10), (3, 0), (1, 20)]]
    )
    corrupt = root / "videos" / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    rows.append({"video_id": "corrupt", "video": str(corrupt), "mos": 1.0, "blur": 0.0, "noise": 0.0, "crf": 18})
    pool = Dataset.from_list(rows)
    name = register_tiny_open_clip()
    torch.manual_seed(0)
    model = open_clip.create_model(name, pretrained=None)
    folder = save_open_clip(model, root / "tiny_open_clip", model_config=open_clip.get_model_config(name))
    pool_path = root / "pool"
    pool.save_to_disk(str(pool_path))
    return {"root": root, "pool": pool, "pool_path": str(pool_path), "model_name": f"local-dir:{folder}"}


def run(assets, work_dir, **kwargs):
    model, preprocess = load_open_clip(assets["model_name"])
    defaults = {"num_frames": 4, "batch_size": 2, "num_workers": 0, "flush_every": 2, "progress": False}
    return extract_features(assets["pool"], work_dir, model=model, preprocess=preprocess, **{**defaults, **kwargs})


def test_a_saved_open_clip_folder_reloads_the_same_weights(assets):
    import open_clip

    torch.manual_seed(0)
    original = open_clip.create_model(register_tiny_open_clip(), pretrained=None)
    loaded, preprocess = load_open_clip(assets["model_name"])
    for (k, a), (k2, b) in zip(original.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert not loaded.training


def test_features_are_normalised_open_clip_embeddings_of_uniformly_sampled_frames(assets, tmp_path):
    summary = run(assets, tmp_path / "work")
    assert (summary.computed, summary.failed) == (NUM_VIDEOS - 1, 1)
    ds, missing = merge_features(assets["pool"], tmp_path / "work")
    assert missing == [NUM_VIDEOS - 1]
    assert feature_dim(ds) == 32 and ds.features[FEATURES_COLUMN] == List(List(Value("float32"), length=32))
    model, preprocess = load_open_clip(assets["model_name"])
    from PIL import Image

    for i in (0, 3):
        frames, meta = read_frames(assets["pool"][i]["video"], 4)
        assert meta.frames_indices == [0, 5, 10, 15]
        with torch.no_grad():
            want = model.encode_image(torch.stack([preprocess(Image.fromarray(f)) for f in frames]))
        want = torch.nn.functional.normalize(want, dim=-1).numpy()
        got = np.asarray(ds.with_format("numpy")[i][FEATURES_COLUMN])
        np.testing.assert_allclose(got, want, atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_all_frames_gives_one_feature_per_frame(assets, tmp_path):
    run(assets, tmp_path / "work", num_frames="all")
    ds, _ = merge_features(assets["pool"], tmp_path / "work")
    frames, lengths = load_feature_column(ds.select(range(NUM_VIDEOS - 1)))
    assert lengths.tolist() == [16] * (NUM_VIDEOS - 1) and frames.shape == (16 * (NUM_VIDEOS - 1), 32)


def test_a_corrupt_video_is_recorded_and_skipped(assets, tmp_path):
    run(assets, tmp_path / "work")
    failures = load_failures(tmp_path / "work")
    assert [f["id"] for f in failures] == ["corrupt"]
    assert "corrupt.mp4" in failures[0]["reason"] and "VideoReadError" in failures[0]["reason"]
    ds, missing = merge_features(assets["pool"], tmp_path / "work")
    assert missing_feature_rows(ds) == [NUM_VIDEOS - 1]
    assert ds.with_format("arrow")[FEATURES_COLUMN][NUM_VIDEOS - 1].as_py() is None
    errors = ds[f"{FEATURES_COLUMN}_error"][:]
    assert errors[:-1] == [None] * (NUM_VIDEOS - 1) and errors[-1] == failures[0]["reason"]
    assert ds.column_names.index(f"{FEATURES_COLUMN}_error") == ds.column_names.index(FEATURES_COLUMN) + 1
    with pytest.raises(ValueError, match=r"rows \[6\], ids \['corrupt'\]"):
        load_feature_column(ds)
    with pytest.raises(Exception, match="corrupt.mp4"):
        run(assets, tmp_path / "strict", strict=True)


def test_a_missing_features_value_reads_back_as_none_not_nan(assets, tmp_path):
    run(assets, tmp_path / "work")
    merged, _ = merge_features(assets["pool"], tmp_path / "work")
    merged.save_to_disk(str(tmp_path / "saved"))
    ds = load_from_disk(str(tmp_path / "saved"))
    assert ds[NUM_VIDEOS - 1][FEATURES_COLUMN] is None and ds[FEATURES_COLUMN][:][NUM_VIDEOS - 1] is None
    assert ds.with_format("numpy")[NUM_VIDEOS - 1][FEATURES_COLUMN] is None
    first = ds.with_format("numpy")[0][FEATURES_COLUMN]
    assert first.dtype == np.float32 and first.shape == (4, 32)


def test_a_killed_run_resumes_without_recomputing_anything(assets, tmp_path):
    run(assets, tmp_path / "clean")
    clean, _ = merge_features(assets["pool"], tmp_path / "clean")
    model, preprocess = load_open_clip(assets["model_name"])
    encode = model.encode_image
    calls = {"frames": 0, "batches": 0, "die_at": 3}

    def counted(pixels, **kw):
        calls["batches"] += 1
        if calls["batches"] == calls["die_at"]:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the run
        calls["frames"] += pixels.shape[0]
        return encode(pixels, **kw)

    model.encode_image = counted
    args = {"num_frames": 4, "batch_size": 2, "num_workers": 0, "flush_every": 2, "progress": False}
    with pytest.raises(KeyboardInterrupt):
        extract_features(assets["pool"], tmp_path / "work", model=model, preprocess=preprocess, **args)
    done_before = calls["frames"] // 4
    assert done_before == 4  # two batches of two videos were saved before the interruption
    calls["frames"] = 0
    model.encode_image = lambda pixels, **kw: (
        calls.__setitem__("frames", calls["frames"] + pixels.shape[0]),
        encode(pixels, **kw),
    )[1]
    summary = extract_features(assets["pool"], tmp_path / "work", model=model, preprocess=preprocess, **args)
    assert summary.skipped_done == done_before
    assert summary.computed == NUM_VIDEOS - 1 - done_before and summary.failed == 1
    assert calls["frames"] == 4 * (NUM_VIDEOS - 1 - done_before)  # only the missing videos were encoded
    resumed, _ = merge_features(assets["pool"], tmp_path / "work")
    a, _ = load_feature_column(clean.select(range(NUM_VIDEOS - 1)))
    b, _ = load_feature_column(resumed.select(range(NUM_VIDEOS - 1)))
    np.testing.assert_array_equal(a, b)
    # a third run has nothing left to do (the corrupt video is not retried unless asked)
    again = extract_features(assets["pool"], tmp_path / "work", model=model, preprocess=preprocess, **args)
    assert (again.computed, again.skipped_done) == (0, NUM_VIDEOS)


def test_decoding_workers_and_process_shares_give_the_same_features(assets, tmp_path):
    run(assets, tmp_path / "single")
    single, _ = merge_features(assets["pool"], tmp_path / "single")
    run(assets, tmp_path / "workers", num_workers=2)
    workers, _ = merge_features(assets["pool"], tmp_path / "workers")
    for rank in (0, 1):  # two data-parallel processes writing into one work_dir
        s = run(assets, tmp_path / "shared", process_index=rank, num_processes=2)
        assert s.computed + s.failed == len(range(rank, NUM_VIDEOS, 2))
    shared, _ = merge_features(assets["pool"], tmp_path / "shared")
    want, _ = load_feature_column(single.select(range(NUM_VIDEOS - 1)))
    for other in (workers, shared):
        got, _ = load_feature_column(other.select(range(NUM_VIDEOS - 1)))
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_resuming_with_another_configuration_raises(assets, tmp_path):
    run(assets, tmp_path / "work", run_config={"model_name": "a"})
    with pytest.raises(ValueError, match="another configuration.*num_frames"):
        run(assets, tmp_path / "work", num_frames=5, run_config={"model_name": "a"})


def test_num_frames_is_a_positive_int_or_all():
    assert parse_num_frames("8") == 8 and parse_num_frames(3) == 3 and parse_num_frames("ALL") == "all"
    for bad in ("0", "-2", "eight", 0, True):
        with pytest.raises(ValueError, match="num_frames"):
            parse_num_frames(bad)


# --------------------------------------------------------------------------------------------------------------------
# Recipes
# --------------------------------------------------------------------------------------------------------------------


def test_extract_then_select_recipes_write_features_subset_and_report(assets, tmp_path):
    extract = load_recipe("extract_features")
    out = extract.main(
        extract.ExtractFeaturesArguments(
            pool_path=assets["pool_path"],
            output_dir=str(tmp_path / "with_features"),
            model_name=assets["model_name"],
            num_frames="4",
            num_workers=0,
            batch_size=4,
        )
    )
    ds = load_from_disk(str(out))
    assert feature_dim(ds) == 32 and missing_feature_rows(ds) == [NUM_VIDEOS - 1]
    assert ds[f"{FEATURES_COLUMN}_error"][NUM_VIDEOS - 1].startswith("VideoReadError: Cannot read video ")
    record = read_provenance(out)
    assert record.recipe == "extract_features" and record.summary["num_frames"] == 4 and record.summary["dim"] == 32
    summary = json.loads((out / "feature_extraction.json").read_text())
    assert (summary["videos"], summary["with_features"], summary["unreadable"]) == (NUM_VIDEOS, NUM_VIDEOS - 1, 1)
    assert summary["unreadable_videos"] == [
        {"video_id": "corrupt", "row": NUM_VIDEOS - 1, "reason": ds[f"{FEATURES_COLUMN}_error"][NUM_VIDEOS - 1]}
    ]
    assert record.inputs == [{"path": assets["pool_path"], "provenance": None}]
    assert record.arguments["ExtractFeaturesArguments"]["model_name"] == assets["model_name"]
    ds = ds.add_column("difficulty", [float(x) for x in np.linspace(1, 5, len(ds))])
    ds.save_to_disk(str(tmp_path / "scored"))
    write_provenance(tmp_path / "scored", recipe="candidates", inputs=[out])  # embeds how the features were made

    select = load_recipe("select_subset")
    args = select.SelectArguments(pool_path=str(tmp_path / "scored"), output_dir=str(tmp_path / "sel"), budget="3")
    with pytest.raises(ValueError, match=r"no 'features': 1 rows, e.g. \['corrupt'\]"):
        select.main(args)
    args.drop_incomplete = True
    sel_dir = select.main(args)
    subset = load_from_disk(str(sel_dir))
    assert subset["rank"][:] == [1, 2, 3]
    assert subset["video_id"][0] == "video_0005"  # highest g among the readable videos
    assert subset["diversity"][0] is None and all(d > 0 for d in subset["diversity"][1:])
    assert FEATURES_COLUMN not in subset.column_names
    report = (sel_dir / "report.md").read_text()
    assert "feature_map.png" in report and "difficulty.png" in report and "corrupt" in report
    assert (sel_dir / "feature_map.png").stat().st_size > 0 and (sel_dir / "difficulty.png").stat().st_size > 0
    record = read_provenance(sel_dir)
    assert record.recipe == "select_subset" and record.summary["selected"] == 3 and record.summary["strategy"] == "mds"
    assert record.inputs[0]["path"] == str(tmp_path / "scored")
    assert record.nearest("extract_features").summary["num_frames"] == 4
    with pytest.raises(FileExistsError):
        select.main(args)

    # staged with a dataset card naming how the features were made
    from mds_vqa.hub import HubArguments

    args.overwrite = True
    select.main(args, HubArguments(stage_dir=str(tmp_path / "staged")))
    card = (tmp_path / "staged" / "README.md").read_text()
    assert card.startswith("---") and "| Frames per video | 4 |" in card and "| Strategy | `mds`" in card
    assert load_pool(tmp_path / "staged")["video_id"] == subset["video_id"]


@pytest.mark.slow
def test_accelerate_launch_with_two_processes_survives_a_hard_kill(assets, tmp_path):
    """The recipe under `accelerate launch` on 2 CPU processes, killed with SIGKILL (launcher and workers) after its
    first shard, then resumed: every readable video ends up with features, computed once, by both processes."""
    import subprocess
    import time

    import psutil

    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCELERATE_")}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="1")
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / "accelerate_configs" / "cpu.yaml"),
        "--main_process_port", "0", str(ROOT / "recipes" / "extract_features.py"),
        "--pool_path", assets["pool_path"], "--output_dir", str(tmp_path / "out"), "--model_name", assets["model_name"],
        "--num_frames", "4", "--num_workers", "1", "--batch_size", "1", "--flush_every", "1",
    ]  # fmt: skip
    work = tmp_path / "out.work"
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and not list(work.glob("shard-*.parquet")) and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    launcher = psutil.Process(proc.pid)
    for p in [launcher, *launcher.children(recursive=True)]:  # torchrun's workers live in their own groups
        try:
            p.kill()
        except psutil.NoSuchProcess:  # ended between the listing and the kill (a DataLoader worker): nothing to kill
            pass
    proc.wait()
    first = len(list(work.glob("shard-*.parquet")))
    # killed after its first shard and before the merge (under load it may have finished every video by then)
    assert 1 <= first <= NUM_VIDEOS - 1 and not (tmp_path / "out").exists()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ds = load_from_disk(str(tmp_path / "out"))
    assert missing_feature_rows(ds) == [NUM_VIDEOS - 1]
    shards = list(work.glob("shard-*.parquet"))
    assert len(shards) == NUM_VIDEOS - 1  # one shard per video: none computed twice
    assert {p.name.split("-")[1] for p in shards} == {"00000", "00001"}  # both processes took their share
