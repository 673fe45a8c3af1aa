import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset, load_from_disk
from scipy.stats import norm

from mds_vqa.data import (
    POOL_FEATURES,
    PoolValidationError,
    build_pool,
    error_pairs,
    merge_pairs,
    mos_to_pairs,
    normalize_mos,
    sample_pair_indices,
)

REPO = Path(__file__).resolve().parents[1]


def _pool(mos, dataset="a", std=None, prefix=None):
    prefix = prefix or dataset
    n = len(mos)
    return Dataset.from_dict(
        {
            "video_id": [f"{prefix}{i}" for i in range(n)],
            "video": [f"/videos/{prefix}{i}.mp4" for i in range(n)],
            "mos": [float(m) for m in mos],
            "mos_std": [None] * n if std is None else [float(s) for s in std],
            "dataset": [dataset] * n,
            "split": ["train"] * n,
        },
        features=POOL_FEATURES,
    )


# ------------------------------------------------------------------ normalisation


def test_normalize_mos_maps_each_dataset_to_1_5_and_keeps_the_raw_mos():
    from datasets import concatenate_datasets

    ds = concatenate_datasets(
        [_pool([10, 20, 30], "a", std=[1, 2, 3]), _pool([0.0, 0.5, 1.0, 0.25], "b", std=[0.1] * 4)]
    )
    out = normalize_mos(ds)
    assert out["mos"] == pytest.approx([1, 3, 5, 1, 3, 5, 2])
    assert out["mos_raw"] == pytest.approx([10, 20, 30, 0, 0.5, 1, 0.25])
    assert out["mos_std"] == pytest.approx([0.2, 0.4, 0.6, 0.4, 0.4, 0.4, 0.4])  # scaled by 4 / range
    assert out.column_names == ds.column_names + ["mos_raw"]


def test_normalize_mos_refuses_a_constant_dataset_and_a_second_pass():
    with pytest.raises(ValueError, match="'a'.*constant"):
        normalize_mos(_pool([3, 3, 3]))
    with pytest.raises(ValueError, match="already"):
        normalize_mos(normalize_mos(_pool([1, 2, 3])))


# ------------------------------------------------------------------ MOS pairs


def test_hard_pairs_cover_all_unordered_pairs_with_ties_at_one_half():
    pairs = mos_to_pairs(_pool([1.0, 2.0, 2.0]))
    got = {(a, b): p for a, b, p in zip(pairs["id_a"], pairs["id_b"], pairs["p"])}
    assert got == {("a0", "a1"): 0.0, ("a0", "a2"): 0.0, ("a1", "a2"): 0.5}
    assert set(pairs.column_names) >= {"video_a", "video_b", "p", "dataset"}
    assert pairs["video_a"][0] == "/videos/a0.mp4"


def test_thurstone_pairs_follow_the_normal_cdf():
    pairs = mos_to_pairs(_pool([3.0, 2.0, 2.0], std=[0.3, 0.4, 0.0]), label="thurstone")
    got = {(a, b): p for a, b, p in zip(pairs["id_a"], pairs["id_b"], pairs["p"])}
    assert got[("a0", "a1")] == pytest.approx(norm.cdf(1.0 / 0.5))
    assert got[("a0", "a2")] == pytest.approx(norm.cdf(1.0 / 0.3))
    assert got[("a1", "a2")] == pytest.approx(0.5)


def test_thurstone_with_zero_std_on_both_sides_falls_back_to_the_hard_label():
    pairs = mos_to_pairs(_pool([3.0, 2.0], std=[0.0, 0.0]), label="thurstone")
    assert pairs["p"] == [1.0]


def test_thurstone_pairs_need_a_std_for_every_video():
    with pytest.raises(ValueError, match="a1"):
        mos_to_pairs(
            _pool([3.0, 2.0], std=None).map(lambda r, i: {"mos_std": 0.2 if i == 0 else None}, with_indices=True),
            label="thurstone",
        )


def test_pairs_never_cross_datasets_and_merge_without_rescaling():
    a = mos_to_pairs(_pool([1, 2, 3], "a"))
    b = mos_to_pairs(_pool([10, 50], "b"))
    merged = merge_pairs(a, b)
    assert len(merged) == 3 + 1
    for ia, ib, d in zip(merged["id_a"], merged["id_b"], merged["dataset"]):
        assert ia.startswith(d) and ib.startswith(d)
    assert merged.filter(lambda r: r["dataset"] == "b")["p"] == [0.0]  # 10 < 50: same label on any scale

    from datasets import concatenate_datasets

    both = mos_to_pairs(concatenate_datasets([_pool([1, 2, 3], "a"), _pool([10, 50], "b")]))
    assert sorted(zip(both["id_a"], both["id_b"], both["p"])) == sorted(
        zip(merged["id_a"], merged["id_b"], merged["p"])
    )


def test_large_pools_get_a_seeded_capped_sample_of_distinct_pairs():
    pool = _pool(np.random.default_rng(0).normal(size=300))
    pairs = mos_to_pairs(pool, max_pairs_per_dataset=1000, seed=1)
    assert len(pairs) == 1000
    keys = list(zip(pairs["id_a"], pairs["id_b"]))
    assert len(set(keys)) == 1000 and all(a != b for a, b in keys)
    assert keys == list(zip(*[mos_to_pairs(pool, max_pairs_per_dataset=1000, seed=1)[c] for c in ("id_a", "id_b")]))
    assert keys != list(zip(*[mos_to_pairs(pool, max_pairs_per_dataset=1000, seed=2)[c] for c in ("id_a", "id_b")]))


@pytest.mark.parametrize("n", [2, 3, 7, 50])
def test_sampled_pair_indices_invert_the_triangle_exactly(n):
    i, j = sample_pair_indices(n, max_pairs=max(1, n * (n - 1) // 2 - 1), rng=np.random.default_rng(0))
    full_i, full_j = np.triu_indices(n, k=1)
    allowed = set(zip(full_i.tolist(), full_j.tolist()))
    assert set(zip(i.tolist(), j.tolist())) <= allowed and len(set(zip(i.tolist(), j.tolist()))) == len(i)


# ------------------------------------------------------------------ error pairs


def test_error_pairs_label_whichever_video_f_gets_more_wrong():
    ds = _pool([1.0, 3.0, 5.0]).add_column("pred", [1.5, 3.0, 2.0])  # errors 0.5, 0.0, 3.0
    pairs = error_pairs(ds, "pred")
    got = {(a, b): p for a, b, p in zip(pairs["id_a"], pairs["id_b"], pairs["p"])}
    assert got == {("a0", "a1"): 1.0, ("a0", "a2"): 0.0, ("a1", "a2"): 0.0}
    assert pairs["error_a"][0] == pytest.approx(0.5)


def test_error_pairs_ties_count_as_a_erring_at_least_as_much():
    ds = _pool([1.0, 3.0]).add_column("pred", [2.0, 2.0])
    assert error_pairs(ds, "pred")["p"] == [1.0]


def test_error_pairs_drop_nan_predictions_and_stay_within_a_dataset():
    from datasets import concatenate_datasets

    ds = concatenate_datasets([_pool([1, 2, 3], "a"), _pool([1, 5], "b")])
    ds = ds.add_column("pred", [1.0, float("nan"), 2.0, 4.0, 4.0])
    pairs = error_pairs(ds, "pred")
    assert len(pairs) == 1 + 1  # a: (a0, a2) only; b: (b0, b1)
    assert "a1" not in list(pairs["id_a"]) + list(pairs["id_b"])
    assert all(x[0] == y[0] == d for x, y, d in zip(pairs["id_a"], pairs["id_b"], pairs["dataset"]))


# ------------------------------------------------------------------ build_pool


@pytest.fixture
def shipped(tmp_path, video_dir):
    """A dataset folder as a user downloads it: videos + a MOS table."""
    folder, rows = video_dir
    return folder, rows, tmp_path


def _write(path, text):
    path.write_text(text)
    return path


def test_build_pool_reads_a_csv_and_finds_the_videos(shipped):
    folder, rows, tmp = shipped
    table = _write(tmp / "mos.csv", "name,mos,std\n" + "".join(f"{r['video_id']},{r['mos']},0.5\n" for r in rows))
    ds = build_pool(table, folder, "toy", mos_std_column="std")
    assert ds.features == POOL_FEATURES and len(ds) == len(rows)
    assert ds["video_id"] == [r["video_id"] for r in rows]
    assert ds["video"] == [str(Path(r["video"]).resolve()) for r in rows]
    assert ds["mos"] == pytest.approx([r["mos"] for r in rows])
    assert ds["mos_std"] == [0.5] * len(rows) and set(ds["dataset"]) == {"toy"} and set(ds["split"]) == {"train"}


def test_build_pool_reads_whitespace_txt_without_header_and_with_extensions(shipped):
    folder, rows, tmp = shipped
    table = _write(tmp / "mos.txt", "".join(f"{r['video_id']}.mp4   {r['mos']}\n" for r in rows))
    ds = build_pool(table, folder, "toy", has_header=False)
    assert ds["video_id"] == [r["video_id"] for r in rows]
    assert ds["mos_std"] == [None] * len(rows)


def test_build_pool_reads_tsv_and_flips_dmos(shipped):
    folder, rows, tmp = shipped
    table = _write(tmp / "dmos.tsv", "video\tdmos\n" + "".join(f"{r['video_id']}\t{i}\n" for i, r in enumerate(rows)))
    ds = build_pool(table, folder, "toy", higher_is_better=False)
    assert ds["mos"] == pytest.approx([len(rows) - 1 - i for i in range(len(rows))])


def test_build_pool_seeded_test_split_and_split_column(shipped):
    folder, rows, tmp = shipped
    table = _write(
        tmp / "mos.csv",
        "name,mos,set\n"
        + "".join(f"{r['video_id']},{r['mos']},{'test' if i % 2 else 'train'}\n" for i, r in enumerate(rows)),
    )
    ds = build_pool(table, folder, "toy", test_size=0.5, seed=3)
    assert sorted(ds["split"]) == ["test"] * 3 + ["train"] * 3
    assert ds["split"] == build_pool(table, folder, "toy", test_size=0.5, seed=3)["split"]
    ds = build_pool(table, folder, "toy", split_column="set")
    assert ds["split"] == ["train", "test"] * 3


def test_build_pool_rejects_an_empty_table(shipped):
    folder, _, tmp = shipped
    with pytest.raises(PoolValidationError, match="empty table"):
        build_pool(_write(tmp / "empty.csv", "name,mos\n"), folder, "toy")
    with pytest.raises(PoolValidationError, match="empty table"):
        build_pool(_write(tmp / "zero.csv", ""), folder, "toy")


def test_build_pool_lists_missing_video_files(shipped):
    folder, rows, tmp = shipped
    table = _write(tmp / "mos.csv", f"name,mos\n{rows[0]['video_id']},3\nghost_1,2\nghost_2,4\n")
    with pytest.raises(PoolValidationError, match="missing video files: 2") as info:
        build_pool(table, folder, "toy")
    assert "ghost_1" in str(info.value) and "ghost_2" in str(info.value) and "line 3" in str(info.value)


def test_build_pool_lists_duplicate_ids(shipped):
    folder, rows, tmp = shipped
    vid = rows[1]["video_id"]
    table = _write(tmp / "mos.csv", f"name,mos\n{vid},3\n{rows[0]['video_id']},2\n{vid}.mp4,4\n")
    with pytest.raises(PoolValidationError, match=f"duplicate video ids.*\\n.*'{vid}' at lines 2 and 4"):
        build_pool(table, folder, "toy")


def test_build_pool_lists_nan_and_non_numeric_mos(shipped):
    folder, rows, tmp = shipped
    table = _write(
        tmp / "mos.csv",
        f"name,mos\n{rows[0]['video_id']},3\n{rows[1]['video_id']},NaN\n{rows[2]['video_id']},good\n{rows[3]['video_id']},\n",
    )
    with pytest.raises(PoolValidationError, match="non-numeric MOS: 3") as info:
        build_pool(table, folder, "toy")
    assert "'good'" in str(info.value) and "'NaN'" in str(info.value) and "line 5" in str(info.value)


def test_build_pool_rejects_a_single_valued_mos_column(shipped):
    folder, rows, tmp = shipped
    table = _write(tmp / "mos.csv", "name,mos\n" + "".join(f"{r['video_id']},3.5\n" for r in rows))
    with pytest.raises(PoolValidationError, match="single value"):
        build_pool(table, folder, "toy")


def test_build_pool_names_an_unknown_column(shipped):
    folder, rows, tmp = shipped
    table = _write(tmp / "mos.csv", "clip,rating\na,1\n")
    with pytest.raises(PoolValidationError, match="no video column found"):
        build_pool(table, folder, "toy")
    with pytest.raises(PoolValidationError, match="'quality_score' not found"):
        build_pool(table, folder, "toy", video_column="clip", mos_column="quality_score")


def test_build_pool_recipe_writes_a_loadable_dataset_from_yaml(shipped):
    folder, rows, tmp = shipped
    table = _write(tmp / "mos.csv", "name,mos\n" + "".join(f"{r['video_id']},{r['mos']}\n" for r in rows))
    config = _write(
        tmp / "build.yaml",
        f"mos_table: {table}\nvideo_dir: {folder}\ndataset_name: toy\noutput_dir: {tmp / 'pool'}\ntest_size: 0.34\n",
    )
    run = subprocess.run(
        [sys.executable, str(REPO / "recipes/build_pool.py"), "--config", str(config), "--seed", "5"],
        capture_output=True,
        text=True,
        cwd=tmp,
    )
    assert run.returncode == 0, run.stderr
    ds = load_from_disk(str(tmp / "pool"))
    assert len(ds) == len(rows) and ds["split"].count("test") == 2
    assert "Saved pool 'toy': 6 videos" in run.stdout


def test_build_pool_recipe_fails_cleanly_with_the_offenders(shipped):
    folder, rows, tmp = shipped
    table = _write(tmp / "bad.csv", "name,mos\nghost,2\nghost,3\n")
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "recipes/build_pool.py"),
            "--mos_table",
            str(table),
            "--video_dir",
            str(folder),
            "--dataset_name",
            "toy",
            "--output_dir",
            str(tmp / "out"),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert "duplicate video ids" in run.stderr and "missing video files" in run.stderr
    assert not (tmp / "out").exists()
