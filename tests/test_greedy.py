"""The greedy's modes: the lazy scheme and the one-pass-per-pick loop give the same picks (``mds``, ``diversity``,
``coreset``, several λ, uniform and ragged pools, float32 and 16-bit storage); the per-pick loop reads nothing back to
the host (checked on CPU by the operators it dispatches, and with CUDA's sync debug mode where a GPU exists)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SYNCING_OPS, RecordOps

from mds_vqa.diversity import FramePool, chamfer_many_vs_all, chamfer_stacked
from mds_vqa.greedy import _pass_loop
from mds_vqa.selection import select, select_with_details


def clustered(rng: np.random.Generator, n: int, frames: int, dim: int, topics: int = 6) -> np.ndarray:
    centres = rng.normal(size=(topics, dim))
    video = centres[rng.integers(topics, size=n)] + 0.6 * rng.normal(size=(n, dim))
    out = video[:, None, :] + 0.3 * rng.normal(size=(n, frames, dim))
    return (out / np.linalg.norm(out, axis=-1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lazy_and_pass_modes_pick_the_same_for_several_lambdas_and_storage_dtypes(seed):
    rng = np.random.default_rng(seed)
    feats = clustered(rng, 300, 4, 24)
    g = rng.normal(3.0, 0.5, size=300)
    for storage in ("float32", "bfloat16"):
        for lam in (0.1, 0.5, 2.0):
            a = select_with_details("mds", difficulty=g, features=feats, budget=25, lam=lam, storage_dtype=storage)
            b = select_with_details(
                "mds", difficulty=g, features=feats, budget=25, lam=lam, storage_dtype=storage, lazy=False
            )
            assert a.indices == b.indices, (storage, lam)
            np.testing.assert_allclose(a.diversity, b.diversity, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_lazy_coreset_picks_what_one_pass_per_pick_picks(seed):
    rng = np.random.default_rng(10 + seed)
    feats = clustered(rng, 250, 4, 16)
    ragged = [feats[i, : 1 + i % 4] for i in range(250)]
    for pool in (feats, ragged):
        a = select_with_details("coreset", features=pool, budget=30, seed=seed, lazy=True)
        b = select_with_details("coreset", features=pool, budget=30, seed=seed, lazy=False)
        assert a.indices == b.indices
        np.testing.assert_allclose(a.diversity, b.diversity, atol=1e-6)
        assert a.params["distances_computed"] <= 2 * b.params["distances_computed"]
    labelled = clustered(rng, 5, 4, 16)
    a = select("coreset", features=feats, budget=20, labelled_features=labelled, lazy=True)
    assert a == select("coreset", features=feats, budget=20, labelled_features=labelled, lazy=False)


def test_the_pass_loop_on_a_ragged_pool_equals_the_lazy_greedy_on_the_diversity_only_rule():
    rng = np.random.default_rng(5)
    feats = [clustered(rng, 1, int(c), 16)[0] for c in rng.integers(1, 7, size=120)]
    for lam in (0.0, 0.3, 4.0):
        g = rng.normal(size=120)
        a = select("mds", difficulty=g, features=feats, budget=15, lam=lam, lazy=True)
        assert a == select("mds", difficulty=g, features=feats, budget=15, lam=lam, lazy=False), lam


@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize("labelled", [False, True])
def test_the_pass_per_pick_loop_dispatches_no_operator_that_syncs_with_the_host(ragged, labelled):
    rng = np.random.default_rng(7)
    feats = clustered(rng, 60, 4, 16)
    pool = FramePool.from_features([f[: 1 + i % 4] for i, f in enumerate(feats)] if ragged else feats)
    g = torch.as_tensor(rng.normal(size=60), dtype=torch.float64)
    base = (torch.rand(60, dtype=torch.float64) * 3, 3) if labelled else (None, 0)
    pool.distance_bounds()  # caches built before the loop are not part of it
    with RecordOps() as ops:
        picks, _ = _pass_loop(g, pool, 12, 0.25, chunk_frames=40, base=base)
    assert ops.names, "the dispatch mode saw nothing"
    with RecordOps() as probe:  # the check sees a read-back when there is one
        int(torch.argmax(g))
    assert "_local_scalar_dense.default" in probe.names
    assert not [name for name in ops.names if any(s in name for s in SYNCING_OPS)]
    want = select("mds", difficulty=g.numpy(), features=pool, budget=12, lam=0.25, lazy=True) if not labelled else None
    if want is not None:
        assert picks.tolist() == want


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_the_pass_loop_runs_without_a_host_synchronisation_and_picks_what_the_cpu_picks():
    rng = np.random.default_rng(8)
    feats = clustered(rng, 2000, 8, 64)
    g = rng.normal(3.0, 0.5, size=2000)
    want = select("mds", difficulty=g, features=feats, budget=50, device="cpu", lazy=True)
    for storage in ("float32", "bfloat16"):
        pool = FramePool.from_features(feats, dtype=storage, device="cuda")
        g_t = torch.as_tensor(g, dtype=torch.float64, device="cuda")
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            picks, _ = _pass_loop(g_t, pool, 50, 0.25, chunk_frames=None)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        if storage == "float32":
            assert picks.tolist() == want
        else:
            assert picks.tolist() == select("mds", difficulty=g, features=feats, budget=50, storage_dtype=storage)


def test_chamfer_stacked_of_stored_queries_equals_many_vs_all_and_bounds_its_upcast_buffer():
    rng = np.random.default_rng(9)
    feats = clustered(rng, 200, 4, 32)
    for storage in ("float32", "float16"):
        pool = FramePool.from_features(feats, dtype=storage)
        xs = pool.frames.view(200, 4, 32)[:3].float()
        got = chamfer_stacked(xs, None, pool, chunk_frames=64, stored_exact=True)
        torch.testing.assert_close(got, chamfer_many_vs_all(xs, pool, chunk_frames=64), rtol=0, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_speculative_updates_leave_the_lazy_picks_those_of_one_pass_per_pick(seed, monkeypatch):
    from mds_vqa import greedy

    taken = []
    widen = greedy._LazySums._widen

    def counting(self, groups, spare, k):
        groups, extra = widen(self, groups, spare, k)
        taken.append(0 if extra is None else extra.numel())
        return groups, extra

    # small thresholds, so that a pool of a few hundred videos widens many groups
    monkeypatch.setattr(greedy, "SPEC_WIDTH", 6)
    monkeypatch.setattr(greedy, "SPEC_MIN_PICKS", 3)
    monkeypatch.setattr(greedy, "SPEC_SPARES", 12)
    monkeypatch.setattr(greedy._LazySums, "_widen", counting)
    rng = np.random.default_rng(20 + seed)
    feats = clustered(rng, 400, 4, 16)
    g = rng.normal(3.0, 0.5, size=400)
    labelled = clustered(rng, 3, 4, 16)
    for lam in (0.05, 0.25, 1.0, 4.0):
        for extra in ({}, {"labelled_features": labelled}):
            a = select_with_details("mds", difficulty=g, features=feats, budget=60, lam=lam, lazy=True, **extra)
            b = select_with_details("mds", difficulty=g, features=feats, budget=60, lam=lam, lazy=False, **extra)
            assert a.indices == b.indices, (lam, extra.keys())
            np.testing.assert_allclose(a.diversity, b.diversity, atol=1e-6)
    assert sum(taken) > 0, "no group was widened"
