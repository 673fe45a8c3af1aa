"""Chamfer distance: the pairwise definition, and one video against a whole pool in one batched pass."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from mds_vqa.diversity import FramePool, chamfer_distance, chamfer_many_vs_all, chamfer_one_vs_all


def brute_force_chamfer(a: np.ndarray, b: np.ndarray) -> float:
    """The paper's definition with explicit loops, in float64."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    d = np.array([[np.sqrt(np.sum((x - y) ** 2)) for y in b] for x in a])
    return 0.5 * (d.min(axis=1).mean() + d.min(axis=0).mean())


def assert_close_to_pairwise(got: torch.Tensor, want, query: int | None = None) -> None:
    """float32 one-vs-all against float64 pairwise: 1e-5 apart, except the query's distance to itself, where the
    ‖a‖² + ‖b‖² − 2a·b expansion leaves √(float32 rounding) ≈ 1e-4 instead of 0."""
    got, want = got.numpy(), np.asarray(want)
    keep = np.ones(len(want), dtype=bool)
    if query is not None:
        keep[query] = False
        assert 0.0 <= got[query] < 1e-3
    np.testing.assert_allclose(got[keep], want[keep], atol=1e-5)


def unit_rows(rng: np.random.Generator, *shape: int) -> np.ndarray:
    x = rng.normal(size=shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("m,n,d", [(1, 1, 3), (1, 7, 5), (6, 2, 8), (9, 13, 16), (4, 4, 64)])
def test_chamfer_distance_matches_brute_force_loop_on_sets_of_different_sizes(m, n, d):
    rng = np.random.default_rng(m * 100 + n)
    a, b = rng.normal(size=(m, d)), rng.normal(size=(n, d))
    got = chamfer_distance(torch.from_numpy(a), torch.from_numpy(b))
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(brute_force_chamfer(a, b), rel=1e-12, abs=1e-12)
    got32 = chamfer_distance(torch.from_numpy(a).float(), torch.from_numpy(b).float())
    assert float(got32) == pytest.approx(brute_force_chamfer(a, b), rel=1e-5)


def test_chamfer_distance_is_symmetric_and_zero_on_itself():
    rng = np.random.default_rng(0)
    a, b = torch.from_numpy(unit_rows(rng, 5, 32)), torch.from_numpy(unit_rows(rng, 8, 32))
    assert float(chamfer_distance(a, b)) == float(chamfer_distance(b, a))
    assert float(chamfer_distance(a, a)) == 0.0
    # duplicating frames of a set does not move it away from itself
    assert float(chamfer_distance(a, torch.cat([a, a[:2]]))) == 0.0
    assert float(chamfer_distance(a, b)) > 0.0


def test_chamfer_distance_rejects_different_dimensions_and_empty_sets():
    with pytest.raises(ValueError, match="different dimensions"):
        chamfer_distance(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="no frames"):
        chamfer_distance(torch.zeros(0, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="matrix"):
        chamfer_distance(torch.zeros(3), torch.zeros(2, 3))


@pytest.mark.parametrize("chunk_frames", [None, 1, 8, 9, 1000])
def test_one_vs_all_equals_pairwise_calls_with_equal_frame_counts(chunk_frames):
    rng = np.random.default_rng(1)
    feats = unit_rows(rng, 23, 8, 16)
    pool = FramePool.from_features(feats)
    assert pool.uniform_length == 8
    for q in (0, 7, 22):
        got = chamfer_one_vs_all(torch.from_numpy(feats[q]), pool, chunk_frames=chunk_frames)
        assert_close_to_pairwise(got, [brute_force_chamfer(feats[q], f) for f in feats], q)
    # a query that is not in the pool, with another number of frames
    x = unit_rows(rng, 3, 16)
    got = chamfer_one_vs_all(torch.from_numpy(x), pool, chunk_frames=chunk_frames)
    assert_close_to_pairwise(got, [brute_force_chamfer(x, f) for f in feats])


@pytest.mark.parametrize("chunk_frames", [None, 1, 5, 17])
def test_one_vs_all_equals_pairwise_calls_with_different_frame_counts(chunk_frames):
    rng = np.random.default_rng(2)
    counts = rng.integers(1, 12, size=31)
    feats = [unit_rows(rng, int(c), 12) for c in counts]
    pool = FramePool.from_features(feats)
    assert pool.uniform_length is None
    for q in (0, 13, 30):
        got = chamfer_one_vs_all(torch.from_numpy(feats[q]), pool, chunk_frames=chunk_frames)
        assert_close_to_pairwise(got, [brute_force_chamfer(feats[q], f) for f in feats], q)


def test_one_vs_all_handles_features_that_are_not_normalised():
    rng = np.random.default_rng(3)
    feats = (rng.normal(size=(10, 4, 6)) * rng.uniform(0.1, 10, size=(10, 4, 1))).astype(np.float32)
    got = chamfer_one_vs_all(feats[4], feats).numpy()
    want = np.array([brute_force_chamfer(feats[4], f) for f in feats])
    np.testing.assert_allclose(np.delete(got, 4), np.delete(want, 4), rtol=1e-5)
    assert got[4] < 1e-2  # self-distance: float32 rounding of norms up to 10² before the square root


def test_one_vs_all_on_a_half_precision_pool_equals_pairwise_calls_on_the_rounded_features():
    rng = np.random.default_rng(4)
    feats = unit_rows(rng, 15, 6, 32)
    rounded = feats.astype(np.float16).astype(np.float64)
    for dtype in ("float16", "bfloat16"):
        pool = FramePool.from_features(feats, dtype=dtype)
        assert pool.frames.dtype == getattr(torch, dtype)
        stored = pool.frames.float().numpy().reshape(15, 6, 32)
        if dtype == "float16":
            np.testing.assert_array_equal(stored, rounded)
        got = chamfer_one_vs_all(pool.video(2), pool, chunk_frames=7)
        assert_close_to_pairwise(got, [brute_force_chamfer(stored[2], f) for f in stored], 2)


def test_one_vs_all_does_not_depend_on_the_chunk_size():
    rng = np.random.default_rng(5)
    feats = unit_rows(rng, 50, 4, 24)
    pool = FramePool.from_features(feats)
    results = [chamfer_one_vs_all(pool.video(9), pool, chunk_frames=c) for c in (4, 12, 64, 10_000)]
    for a, b in itertools.pairwise(results):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("chunk_frames", [None, 3, 16])
def test_many_vs_all_equals_one_vs_all_for_each_query(chunk_frames):
    rng = np.random.default_rng(6)
    uniform = FramePool.from_features(unit_rows(rng, 23, 4, 12))
    ragged = FramePool.from_features([unit_rows(rng, int(c), 12) for c in rng.integers(1, 7, size=23)])
    for pool in (uniform, ragged):
        for picks in ([5], [0, 22, 7], [3, 3, 9, 1]):
            want = torch.stack([chamfer_one_vs_all(pool.video(i), pool) for i in picks], dim=1)
            got = chamfer_many_vs_all([pool.video(i) for i in picks], pool, chunk_frames=chunk_frames)
            assert got.shape == (23, len(picks))
            own = torch.zeros_like(got, dtype=torch.bool)
            own[picks, range(len(picks))] = True  # self-distances: √(float32 rounding noise), ≈ 1e-4 instead of 0
            torch.testing.assert_close(got[~own], want[~own], rtol=0, atol=2e-6)
            assert float(got[own].max()) < 1e-3
    stacked = torch.stack([uniform.video(i) for i in (1, 2)])  # a (Q, F, d) tensor of queries
    torch.testing.assert_close(
        chamfer_many_vs_all(stacked, ragged),
        torch.stack([chamfer_one_vs_all(uniform.video(i), ragged) for i in (1, 2)], dim=1),
        rtol=0,
        atol=2e-6,
    )
    with pytest.raises(ValueError, match="No query"):
        chamfer_many_vs_all([], uniform)
    with pytest.raises(ValueError, match=r"different dimensions.*query 1"):
        chamfer_many_vs_all([uniform.video(0), np.ones((2, 5), dtype=np.float32)], uniform)


def test_as_queries_gives_every_video_of_the_pool_without_copying():
    rng = np.random.default_rng(8)
    uniform = FramePool.from_features(unit_rows(rng, 6, 3, 8))
    view = uniform.as_queries()
    assert view.shape == (6, 3, 8) and view.data_ptr() == uniform.frames.data_ptr()
    ragged = FramePool.from_features([unit_rows(rng, int(c), 8) for c in (1, 4, 2)])
    videos = ragged.as_queries()
    assert [v.shape[0] for v in videos] == [1, 4, 2]
    for i, v in enumerate(videos):
        torch.testing.assert_close(v, ragged.video(i))


@pytest.mark.parametrize("kind", ["unit", "ragged", "unnormalised", "near_duplicates"])
def test_distance_bounds_hold_for_every_computed_distance(kind):
    rng = np.random.default_rng(7)
    if kind == "unit":
        feats = unit_rows(rng, 40, 5, 16)
    elif kind == "ragged":
        feats = [unit_rows(rng, int(c), 16) for c in rng.integers(1, 9, size=40)]
    elif kind == "unnormalised":
        feats = (rng.normal(size=(40, 3, 8)) * rng.uniform(0.1, 20, size=(40, 1, 1))).astype(np.float32)
    else:  # many videos almost the same: distances at the float32 noise floor
        base = unit_rows(rng, 1, 4, 32)
        feats = (base + 1e-4 * rng.normal(size=(40, 4, 32))).astype(np.float32)
    pool = FramePool.from_features(feats)
    bounds = pool.distance_bounds()
    assert bounds.dtype == torch.float64 and bounds.shape == (40,)
    dist = chamfer_many_vs_all([pool.video(i) for i in range(40)], pool).double()
    limit = bounds[:, None] + bounds[None, :]
    assert bool((dist <= limit).all()), float((dist - limit).max())
    # and the bound is informative: within a small factor of the largest distance for unit features
    if kind == "unit":
        assert float(limit.max()) < 2.5 * float(dist.max())


def test_frame_pool_keeps_a_float32_contiguous_tensor_without_copying_it():
    feats = torch.nn.functional.normalize(torch.randn(7, 3, 8), dim=-1)
    pool = FramePool.from_features(feats)
    assert pool.frames.data_ptr() == feats.data_ptr()
    assert len(pool) == 7 and pool.dim == 8 and pool.nbytes == feats.numel() * 4
    torch.testing.assert_close(pool.video(4), feats[4])
    sub = pool.subset([4, 0])
    torch.testing.assert_close(sub.video(0), feats[4])
    torch.testing.assert_close(sub.video(1), feats[0])


def test_frame_pool_rejects_bad_features_with_the_row_named():
    with pytest.raises(ValueError, match="empty"):
        FramePool.from_features([])
    with pytest.raises(ValueError, match="empty"):
        FramePool.from_features(np.zeros((0, 8, 4), dtype=np.float32))
    with pytest.raises(ValueError, match=r"different dimensions.*video 2 has d = 5"):
        FramePool.from_features([np.zeros((2, 4)), np.zeros((3, 4)), np.zeros((2, 5))])
    with pytest.raises(ValueError, match="Video 1 has 0 frame features"):
        FramePool.from_features([np.ones((2, 4)), np.ones((0, 4))])
    with pytest.raises(ValueError, match="Video 1 has no features"):
        FramePool.from_features([np.ones((2, 4)), None])
    bad = np.ones((6, 2, 4), dtype=np.float32)
    bad[3, 1, 2] = np.nan
    bad[5, 0, 0] = np.inf
    with pytest.raises(ValueError, match=r"Non-finite.*rows \[3, 5\]"):
        FramePool.from_features(bad)
    with pytest.raises(ValueError, match="different dimensions"):
        chamfer_one_vs_all(np.ones((2, 3), dtype=np.float32), np.ones((4, 2, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="storage dtype"):
        FramePool.from_features(np.ones((2, 2, 4), dtype=np.float32), dtype="int8")
