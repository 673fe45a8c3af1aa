"""Diversity against what is already labelled: the greedy averages its diversity term over the labelled videos and
the picks so far; checked against a brute-force loop over a full distance matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mds_vqa.diversity import chamfer_distance
from mds_vqa.selection import select, select_with_details


def _unit(rng, *shape):
    x = rng.normal(size=shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _cross(a, b) -> np.ndarray:
    """Chamfer distances between every video of ``a`` and every video of ``b``, in float64."""
    return np.array([[float(chamfer_distance(torch.as_tensor(x).double(), torch.as_tensor(y))) for y in b] for x in a])


def brute_force(g, pool_dist, labelled_dist, budget, lam) -> list[int]:
    """The rule written out: score(x) = g(x) + λ·mean over L ∪ D of d(x, y), recomputed from scratch every step."""
    chosen: list[int] = []
    while len(chosen) < budget:
        best, best_score = None, -np.inf
        for x in range(len(g)):
            if x in chosen:
                continue
            dists = list(labelled_dist[x]) + [pool_dist[x, y] for y in chosen]
            score = g[x] + (lam * np.mean(dists) if dists else 0.0)
            if score > best_score:  # strict: the lowest index wins ties
                best, best_score = x, score
        chosen.append(best)
    return chosen


def brute_force_k_center(pool_dist, labelled_dist, budget) -> list[int]:
    chosen: list[int] = []
    while len(chosen) < budget:
        radius = [
            -np.inf if x in chosen else min([*labelled_dist[x], *(pool_dist[x, y] for y in chosen)])
            for x in range(len(pool_dist))
        ]
        chosen.append(int(np.argmax(radius)))
    return chosen


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(3)
    pool = _unit(rng, 30, 4, 8)
    # the labelled videos sit near the first 10 candidates: a diverse pick should now avoid those
    labelled = np.stack([pool[i] + 0.05 * _unit(rng, 4, 8) for i in range(6)])
    labelled /= np.linalg.norm(labelled, axis=-1, keepdims=True)
    return {
        "pool": pool,
        "labelled": labelled,
        "g": rng.uniform(1, 5, size=30),
        "pool_dist": _cross(pool, pool),
        "labelled_dist": _cross(pool, labelled),
    }


@pytest.mark.parametrize("lazy", [True, False])
@pytest.mark.parametrize("lam", [0.0, 0.25, 1.0, 10.0])
def test_mds_with_labelled_videos_equals_the_brute_force_loop(world, lam, lazy):
    got = select(
        "mds", difficulty=world["g"], features=world["pool"], budget=8, lam=lam, lazy=lazy,
        labelled_features=world["labelled"],
    )  # fmt: skip
    assert got == brute_force(world["g"], world["pool_dist"], world["labelled_dist"], 8, lam)


@pytest.mark.parametrize("lazy", [True, False])
def test_diversity_with_labelled_videos_equals_the_brute_force_loop(world, lazy):
    zeros = np.zeros(30)
    got = select("diversity", features=world["pool"], budget=8, lazy=lazy, labelled_features=world["labelled"])
    assert got == brute_force(zeros, world["pool_dist"], world["labelled_dist"], 8, 1.0)


def test_coreset_starts_from_the_labelled_videos_as_centers(world):
    got = select("coreset", features=world["pool"], budget=8, labelled_features=world["labelled"])
    assert got == brute_force_k_center(world["pool_dist"], world["labelled_dist"], 8)


def test_no_labelled_video_is_the_released_algorithm(world):
    kwargs = dict(difficulty=world["g"], features=world["pool"], budget=8, lam=1.0)
    released = select("mds", **kwargs)
    assert select("mds", labelled_features=[], **kwargs) == released
    assert released == brute_force(world["g"], world["pool_dist"], np.zeros((30, 0)), 8, 1.0)
    with_labels = select("mds", labelled_features=world["labelled"], **kwargs)
    assert with_labels != released  # the labelled videos do change the picks here


def test_with_diversity_dominant_no_pick_lies_next_to_a_labelled_video(world):
    near = set(range(6))  # candidates 0-5 are near-copies of the labelled videos
    kwargs = dict(difficulty=world["g"], features=world["pool"], budget=8, lam=100.0)
    assert near & set(select("mds", **kwargs))  # blind to the labels, the greedy picks some of them
    assert not near & set(select("mds", labelled_features=world["labelled"], **kwargs))


def test_the_reported_diversity_averages_over_the_labelled_videos_too(world):
    sel = select_with_details(
        "mds", difficulty=world["g"], features=world["pool"], budget=5, lam=1.0, labelled_features=world["labelled"]
    )
    first, second = sel.indices[0], sel.indices[1]
    assert sel.diversity[0] == pytest.approx(world["labelled_dist"][first].mean(), rel=1e-5)
    want = (world["labelled_dist"][second].sum() + world["pool_dist"][second, first]) / 7
    assert sel.diversity[1] == pytest.approx(want, rel=1e-5)
    assert sel.params["labelled_videos"] == 6


def test_the_default_mode_is_the_faster_one_for_the_device(world):
    sel = select_with_details("mds", difficulty=world["g"], features=world["pool"], budget=5, device="cpu")
    assert sel.params["lazy"] is True  # lazy on CPU; one pass per pick on a GPU (docs/benchmarks.md)


def test_labelled_features_of_another_dimension_are_refused(world):
    with pytest.raises(ValueError, match="dimension 5 but the pool's features 8"):
        select("mds", difficulty=world["g"], features=world["pool"], budget=3, labelled_features=np.ones((2, 3, 5)))
