"""The MDS greedy reading the pool once per block of picks (mds_vqa.screened_greedy): the picks of one pass per pick
whatever the bounds' tightness (several λ, g ≡ 0, labelled videos, 16-bit storage, blocks whose screening fails and is
retaken), one read back to the host per block and none inside it, and the ways to ask for it (select, select_subset,
the recipe)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import SYNCING_OPS, RecordOps
from test_greedy import clustered
from test_selection_subset import _pool

from mds_vqa.diversity import FramePool
from mds_vqa.greedy import _pass_loop
from mds_vqa.screened_greedy import screened_mean_distance
from mds_vqa.selection import select, select_subset, select_with_details


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_screened_picks_are_those_of_one_pass_per_pick_for_several_lambdas_dtypes_and_labelled_videos(seed):
    rng = np.random.default_rng(30 + seed)
    feats = clustered(rng, 300, 4, 24)
    g = rng.normal(3.0, 0.5, size=300)
    labelled = clustered(rng, 4, 4, 24)
    counts = {"blocks": 0, "failed_blocks": 0}
    for storage in ("float32", "bfloat16"):
        for lam in (0.05, 0.25, 1.0, 4.0):
            for extra in ({}, {"labelled_features": labelled}):
                args = dict(difficulty=g, features=feats, budget=40, lam=lam, storage_dtype=storage, **extra)
                want = select_with_details("mds", lazy=False, **args)
                got = select_with_details("mds", lazy=False, block=8, **args)
                assert got.indices == want.indices, (storage, lam, bool(extra))
                np.testing.assert_allclose(got.diversity, want.diversity, atol=1e-6)
                assert got.params["block"] == 8
                assert got.params["pool_passes"] < want.params["pool_passes"] == 39
                for key in counts:
                    counts[key] += got.params[key]
    # both ways through a block were taken: screening that held, and blocks retaken with one pass per pick
    assert counts["failed_blocks"] > 0 and counts["blocks"] > counts["failed_blocks"]


@pytest.mark.parametrize("width", [1, 3])
def test_a_block_whose_screening_fails_is_retaken_from_its_first_failed_step(width):
    rng = np.random.default_rng(40 + width)
    feats = clustered(rng, 200, 4, 16)
    pool = FramePool.from_features(feats)
    for lam, g in ((1.0, rng.normal(size=200)), (1.0, np.zeros(200))):  # g ≡ 0: the diversity strategy's rule
        g_t = torch.as_tensor(g, dtype=torch.float64)
        want, want_div = _pass_loop(g_t, pool, 50, lam, chunk_frames=None)
        stats: dict = {}
        got, got_div = screened_mean_distance(g_t, pool, 50, lam, block=6, width=width, stats=stats)
        assert got.tolist() == want.tolist()
        torch.testing.assert_close(got_div, want_div, rtol=0, atol=1e-6, equal_nan=True)
        assert stats["failed_blocks"] > 0 and stats["steps_redone"] > 0
        # every pick is made final once: passes after the retaken steps, screened steps that held
        assert stats["pool_passes"] >= stats["steps_redone"]


def test_a_wide_screen_over_a_small_pool_takes_every_video_as_a_candidate():
    rng = np.random.default_rng(3)
    feats = clustered(rng, 40, 3, 8)
    g = rng.normal(size=40)
    for budget in (1, 2, 40):
        want = select("mds", difficulty=g, features=feats, budget=budget, lazy=False)
        assert select("mds", difficulty=g, features=feats, budget=budget, lazy=False, block=64) == want


def test_a_block_reads_one_value_back_to_the_host_at_its_end_and_none_inside():
    rng = np.random.default_rng(7)
    pool = FramePool.from_features(clustered(rng, 120, 4, 16))
    g = torch.as_tensor(rng.normal(3.0, 0.5, size=120), dtype=torch.float64)
    pool.distance_bounds()  # caches built before the loop are not part of it
    stats: dict = {}
    with RecordOps() as ops:
        picks, _ = screened_mean_distance(g, pool, 30, 0.25, block=8, width=16, stats=stats)
    reads = [name for name in ops.names if any(s in name for s in SYNCING_OPS)]
    # one read of the bound's largest value when it starts, then one per block
    assert stats["blocks"] == 4 and len(reads) == 1 + stats["blocks"]
    assert set(reads) == {"_local_scalar_dense.default"}
    assert picks.tolist() == _pass_loop(g, pool, 30, 0.25, chunk_frames=None)[0].tolist()


def test_a_ragged_pool_with_blocks_runs_one_pass_per_pick():
    rng = np.random.default_rng(5)
    feats = [clustered(rng, 1, int(c), 16)[0] for c in rng.integers(1, 7, size=80)]
    g = rng.normal(size=80)
    got = select_with_details("mds", difficulty=g, features=feats, budget=12, lazy=False, block=4)
    assert got.indices == select("mds", difficulty=g, features=feats, budget=12, lazy=False)
    assert got.params["pool_passes"] == 11 and "blocks" not in got.params


@pytest.mark.parametrize("block", [0, -2, 1.5, True])
def test_a_block_that_is_not_a_positive_integer_is_refused(block):
    with pytest.raises(ValueError, match="block must be an integer"):
        select("mds", difficulty=[1.0, 2.0], features=np.ones((2, 1, 3)), budget=1, block=block)


def test_select_subset_with_blocks_picks_what_it_picks_by_default():
    pool = _pool(n=60, frames=3, dim=6)
    default = select_subset(pool, "mds", budget=12, device="cpu", progress=False)
    blocked = select_subset(pool, "mds", budget=12, device="cpu", progress=False, block=4)
    assert blocked.selection.indices == default.selection.indices
    assert blocked.selection.params["block"] == 4 and blocked.selection.params["lazy"] is False


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_screened_blocks_pick_what_the_cpu_picks():
    rng = np.random.default_rng(8)
    feats = clustered(rng, 4000, 8, 64)
    g = rng.normal(3.0, 0.5, size=4000)
    for storage in ("float32", "bfloat16"):
        want = select("mds", difficulty=g, features=feats, budget=200, device="cpu", storage_dtype=storage)
        got = select_with_details(
            "mds", difficulty=g, features=feats, budget=200, device="cuda", storage_dtype=storage, lazy=False, block=32
        )
        assert got.indices == want, storage
        assert got.params["blocks"] > got.params["failed_blocks"]


def test_the_recipe_with_blocks_writes_the_subset_it_writes_by_default_and_refuses_a_sharded_pool(
    tmp_path, monkeypatch
):
    from datasets import load_from_disk

    from mds_vqa.pipeline.config import load_recipe

    _pool(n=40, frames=3, dim=6).save_to_disk(str(tmp_path / "pool"))
    recipe = load_recipe("select_subset")

    def args(out: str, block: int):
        return recipe.SelectArguments(
            pool_path=str(tmp_path / "pool"), output_dir=str(tmp_path / out), budget="8", device="cpu", block=block
        )

    default = load_from_disk(str(recipe.main(args("default", 1))))
    blocked = load_from_disk(str(recipe.main(args("blocked", 4))))
    assert blocked["video_id"] == default["video_id"]
    record = json.loads((tmp_path / "blocked" / "selection.json").read_text())
    assert record["block"] == 4 and record["blocks"] >= 2 and record["pool_passes"] < 7
    assert "blocks" not in json.loads((tmp_path / "default" / "selection.json").read_text())
    assert "| passes over the pool |" in (tmp_path / "blocked" / "report.md").read_text()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ValueError, match="--block 4 reads one process's whole pool"):
        recipe.main(args("sharded", 4))
    assert not (tmp_path / "sharded").exists()
