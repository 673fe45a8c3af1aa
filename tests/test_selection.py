"""Selection strategies: the MDS greedy against a straightforward reference, baselines, determinism, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mds_vqa.diversity import FramePool, chamfer_distance
from mds_vqa.selection import (
    STRATEGIES,
    marginal_diversity,
    mean_pairwise_distance,
    resolve_budget,
    select,
    select_with_details,
)


def unit_rows(rng: np.random.Generator, *shape: int) -> np.ndarray:
    x = rng.normal(size=shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def distance_matrix(feats) -> np.ndarray:
    """Every pairwise Chamfer distance in float64 (the reference's inputs)."""
    n = len(feats)
    d = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            d[i, j] = d[j, i] = float(chamfer_distance(torch.as_tensor(feats[i]).double(), torch.as_tensor(feats[j])))
    return d


def reference_greedy(g: np.ndarray, dist: np.ndarray, budget: int, lam: float) -> list[int]:
    """The greedy rule written out: O(B·|D|·N), the mean over D recomputed for every candidate at every step."""
    chosen = [int(np.argmax(g))]
    while len(chosen) < budget:
        best, best_score = None, -np.inf
        for x in range(len(g)):
            if x in chosen:
                continue
            score = g[x] + lam * np.mean([dist[x, y] for y in chosen])
            if score > best_score:  # strict: the lowest index wins ties
                best, best_score = x, score
        chosen.append(best)
    return chosen


def reference_k_center(dist: np.ndarray, budget: int, first: int) -> list[int]:
    """Brute-force k-center greedy: each step, the video whose nearest chosen video is farthest."""
    chosen = [first]
    while len(chosen) < budget:
        radius = [(-np.inf if x in chosen else min(dist[x, y] for y in chosen)) for x in range(len(dist))]
        chosen.append(int(np.argmax(radius)))
    return chosen


@pytest.fixture(scope="module")
def pool_data():
    rng = np.random.default_rng(0)
    counts = rng.integers(2, 7, size=36)
    variable = [unit_rows(rng, int(c), 16) for c in counts]
    uniform = unit_rows(rng, 36, 5, 16)
    g = rng.uniform(1, 5, size=36)
    return {
        "variable": (variable, distance_matrix(variable)),
        "uniform": (uniform, distance_matrix(uniform)),
        "g": g,
    }


@pytest.mark.parametrize("layout", ["uniform", "variable"])
@pytest.mark.parametrize("lam", [0.0, 0.1, 0.25, 1.0, 10.0])
def test_mds_equals_the_straightforward_greedy_for_several_lambdas(pool_data, layout, lam):
    feats, dist = pool_data[layout]
    g = pool_data["g"]
    got = select("mds", difficulty=g, features=feats, budget=12, lam=lam)
    assert got == reference_greedy(g, dist, 12, lam)


def clustered(rng: np.random.Generator, n: int, frames: int, dim: int, topics: int = 6) -> np.ndarray:
    """CLIP-like features: videos around a few topic directions, frames around their video."""
    centres = unit_rows(rng, topics, dim)
    video = centres[rng.integers(topics, size=n)] + 0.6 * unit_rows(rng, n, dim)
    out = video[:, None, :] + 0.25 * unit_rows(rng, n, frames, dim)
    return (out / np.linalg.norm(out, axis=-1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("lam", [0.0, 0.25, 1.0, 5.0])
def test_lazy_greedy_picks_what_one_pass_per_pick_picks(lam):
    rng = np.random.default_rng(11)
    feats = clustered(rng, 400, 4, 32)
    g = rng.normal(3.0, 0.5, size=400)
    lazy = select_with_details("mds", difficulty=g, features=feats, budget=40, lam=lam)
    passes = select_with_details("mds", difficulty=g, features=feats, budget=40, lam=lam, lazy=False)
    assert lazy.indices == passes.indices
    np.testing.assert_allclose(lazy.diversity, passes.diversity, atol=1e-6)
    assert passes.params["distances_computed"] == 400 * 39
    # the bounds spare most distances when g matters (λ·distance spread smaller than g's)
    if lam <= 1.0:
        assert lazy.params["distances_computed"] < passes.params["distances_computed"] / 2
    # whole-pool passes replace the per-candidate work only when it would cost at least half of them
    assert lazy.params["distances_computed"] <= 2 * passes.params["distances_computed"]


def test_lazy_greedy_on_ragged_pools_and_diversity_only():
    rng = np.random.default_rng(12)
    feats = [clustered(rng, 1, int(c), 24)[0] for c in rng.integers(1, 9, size=300)]
    g = rng.normal(size=300)
    for strategy, lam in (("mds", 0.25), ("mds", 3.0), ("diversity", 0.25)):
        a = select_with_details(strategy, difficulty=g, features=feats, budget=30, lam=lam)
        b = select_with_details(strategy, difficulty=g, features=feats, budget=30, lam=lam, lazy=False)
        assert a.indices == b.indices, (strategy, lam)
        np.testing.assert_allclose(a.diversity, b.diversity, atol=1e-6)
        assert a.params["distances_computed"] <= 2 * b.params["distances_computed"]


def test_lambda_zero_gives_the_top_g_order(pool_data):
    feats, _ = pool_data["uniform"]
    g = pool_data["g"]
    top = [int(i) for i in np.argsort(-g)[:10]]
    assert select("mds", difficulty=g, features=feats, budget=10, lam=0.0) == top
    assert select("difficulty", difficulty=g, features=None, budget=10) == top


def test_g_identically_zero_gives_the_diversity_only_greedy(pool_data):
    feats, dist = pool_data["variable"]
    zeros = np.zeros(len(feats))
    want = reference_greedy(zeros, dist, 9, 1.0)
    assert want[0] == 0  # argmax of a constant: the lowest index
    assert select("mds", difficulty=zeros, features=feats, budget=9, lam=0.25) == want
    assert select("diversity", difficulty=None, features=feats, budget=9) == want


def test_coreset_equals_brute_force_k_center(pool_data):
    feats, dist = pool_data["variable"]
    for seed in (0, 3):
        got = select("coreset", difficulty=None, features=feats, budget=10, seed=seed)
        first = int(np.random.default_rng(seed).integers(len(feats)))
        assert got == reference_k_center(dist, 10, first)


def test_ties_break_on_the_lowest_index():
    feats = np.ones((6, 2, 4), dtype=np.float32) / 2.0  # every video identical: all distances 0
    g = np.array([1.0, 3.0, 2.0, 3.0, 2.0, 3.0])
    assert select("mds", difficulty=g, features=feats, budget=6, lam=0.25) == [1, 3, 5, 2, 4, 0]
    assert select("difficulty", difficulty=g, budget=6) == [1, 3, 5, 2, 4, 0]
    assert select("diversity", features=feats, budget=3) == [0, 1, 2]


def test_selection_is_deterministic_and_independent_of_chunking(pool_data):
    feats, _ = pool_data["variable"]
    g = pool_data["g"]
    runs = [select("mds", difficulty=g, features=feats, budget=15, chunk_frames=c) for c in (None, 3, 7, 40, None)]
    assert all(r == runs[0] for r in runs)
    assert select("random", difficulty=g, budget=15, seed=4) == select("random", difficulty=g, budget=15, seed=4)
    assert select("coreset", features=feats, budget=8, seed=1) == select("coreset", features=feats, budget=8, seed=1)


def test_random_is_a_seeded_sample_without_replacement(pool_data):
    g = pool_data["g"]
    a = select("random", difficulty=g, budget=20, seed=0)
    assert len(set(a)) == 20 and all(0 <= i < len(g) for i in a)
    assert a == [int(i) for i in np.random.default_rng(0).permutation(len(g))[:20]]
    assert a != select("random", difficulty=g, budget=20, seed=1)
    feats, _ = pool_data["uniform"]
    assert select("random", features=feats, budget=20, seed=0) == a


def test_details_report_g_and_the_mean_distance_to_earlier_picks(pool_data):
    feats, dist = pool_data["variable"]
    g = pool_data["g"]
    res = select_with_details("mds", difficulty=g, features=feats, budget=8, lam=0.25)
    want = [np.nan] + [np.mean([dist[x, y] for y in res.indices[:k]]) for k, x in enumerate(res.indices) if k > 0]
    np.testing.assert_allclose(res.diversity, want, atol=1e-5)
    np.testing.assert_array_equal(res.difficulty, g[res.indices])
    np.testing.assert_allclose(marginal_diversity(feats, res.indices), res.diversity, atol=1e-6)
    pairs = [dist[a, b] for i, a in enumerate(res.indices) for b in res.indices[:i]]
    assert mean_pairwise_distance(res.diversity) == pytest.approx(np.mean(pairs), abs=1e-5)
    # strategies that do not compute distances while picking get them afterwards
    top = select_with_details("difficulty", difficulty=g, features=feats, budget=8)
    np.testing.assert_allclose(top.diversity, marginal_diversity(feats, top.indices), atol=1e-6)
    assert np.isnan(top.diversity[0])


def test_half_precision_storage_selects_from_the_rounded_features(pool_data):
    feats, _ = pool_data["uniform"]
    g = pool_data["g"]
    rounded = np.asarray(feats).astype(np.float16)
    dist16 = distance_matrix(rounded.astype(np.float64))
    got = select("mds", difficulty=g, features=feats, budget=12, lam=1.0, storage_dtype="float16")
    assert got == reference_greedy(g, dist16, 12, 1.0)


def test_budget_is_a_count_or_a_fraction():
    assert resolve_budget(100, 2000) == 100
    assert resolve_budget(0.05, 2000) == 100
    assert resolve_budget(0.5, 3) == 2  # 1.5 rounds half up
    assert resolve_budget(0.001, 10) == 1  # at least one video
    assert resolve_budget(1.0, 7) == 7
    assert resolve_budget(np.int64(3), 7) == 3


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"budget": 37}, "budget 37 exceeds the pool size 36"),
        ({"budget": 0}, "budget must be positive"),
        ({"budget": -3}, "budget must be positive"),
        ({"budget": 0.0}, "budget must be positive"),
        ({"budget": 1.5}, "fraction of the pool"),
        ({"budget": True}, "budget must be an int"),
        ({"lam": -0.1}, "lam"),
        ({"lam": float("nan")}, "lam"),
    ],
)
def test_bad_budget_or_lambda_raises_a_clear_error(pool_data, kwargs, match):
    feats, _ = pool_data["uniform"]
    args = {"difficulty": pool_data["g"], "features": feats, "budget": 5, **kwargs}
    with pytest.raises(ValueError, match=match):
        select("mds", **args)


def test_nan_difficulty_raises_naming_the_rows(pool_data):
    feats, _ = pool_data["uniform"]
    g = pool_data["g"].copy()
    g[[4, 17]] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite at 2 row\(s\): \[4, 17\]"):
        select("mds", difficulty=g, features=feats, budget=5)
    with pytest.raises(ValueError, match=r"\[2\]"):
        select("difficulty", difficulty=[1.0, 2.0, None], budget=1)
    # strategies that do not use g do not care
    assert len(select("diversity", difficulty=g, features=feats, budget=5)) == 5


def test_features_of_different_dimensions_raise():
    feats = [np.ones((2, 8), dtype=np.float32), np.ones((2, 8), dtype=np.float32), np.ones((3, 4), dtype=np.float32)]
    with pytest.raises(ValueError, match="video 2 has d = 4"):
        select("mds", difficulty=[1.0, 2.0, 3.0], features=feats, budget=2)


def test_empty_pool_raises():
    with pytest.raises(ValueError, match="empty"):
        select("mds", difficulty=[], features=[], budget=1)
    with pytest.raises(ValueError, match="empty"):
        select("difficulty", difficulty=[], budget=1)
    with pytest.raises(ValueError, match="empty"):
        select("diversity", features=np.zeros((0, 4, 8), dtype=np.float32), budget=1)


def test_missing_inputs_unknown_strategy_and_length_mismatch_raise(pool_data):
    feats, _ = pool_data["uniform"]
    g = pool_data["g"]
    with pytest.raises(ValueError, match="needs the difficulty"):
        select("mds", difficulty=None, features=feats, budget=3)
    with pytest.raises(ValueError, match="needs the frame features"):
        select("coreset", difficulty=g, features=None, budget=3)
    with pytest.raises(ValueError, match="Unknown selection strategy 'best'"):
        select("best", difficulty=g, features=feats, budget=3)
    with pytest.raises(ValueError, match="35 values but features describe 36"):
        select("mds", difficulty=g[:35], features=feats, budget=3)
    with pytest.raises(ValueError, match="pool size is unknown"):
        select("random", budget=3)


def test_registry_lists_every_strategy_of_the_design():
    assert set(STRATEGIES) == {"mds", "difficulty", "diversity", "coreset", "random", "uncertainty", "noise_stability"}
    assert STRATEGIES["mds"].needs_difficulty and STRATEGIES["mds"].needs_features
    assert not STRATEGIES["random"].needs_features


def test_a_prebuilt_frame_pool_is_used_as_is(pool_data):
    feats, _ = pool_data["uniform"]
    g = pool_data["g"]
    pool = FramePool.from_features(feats)
    assert select("mds", difficulty=g, features=pool, budget=6) == select(
        "mds", difficulty=g, features=feats, budget=6
    )
