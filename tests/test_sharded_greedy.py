"""The sharded MDS greedy (:mod:`mds_vqa.sharded_greedy`): two gloo processes on CPU, each holding half the pool, pick
what one process picks on the whole pool with one pass per pick (``select_with_details(..., lazy=False)``), in the
same order, with the same diversity terms: ``mds`` at several λ (0 and a large one included), ``diversity``
(g ≡ 0), uniform, ragged and bfloat16 pools, with and without labelled videos; ties between duplicate videos on
either side of the shard boundary go to the lowest global index, whichever rank holds it; invalid inputs raise on
every rank; the per-pick loop dispatches no operator that reads a value back to the host."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import SYNCING_OPS, RecordOps

from mds_vqa.frame_pool import FramePool
from mds_vqa.selection import select_with_details
from mds_vqa.sharded_greedy import shard_bounds, sharded_greedy

WORLD = 2


def _features(rng: np.random.Generator, n: int, frames: int, dim: int) -> np.ndarray:
    """Clustered unit-norm features, ``(n, frames, dim)``."""
    centres = rng.normal(size=(4, dim))
    out = centres[rng.integers(4, size=n)][:, None, :] + 0.5 * rng.normal(size=(n, frames, dim))
    return (out / np.linalg.norm(out, axis=-1, keepdims=True)).astype(np.float32)


def _ragged(rng: np.random.Generator, n: int, dim: int) -> list[np.ndarray]:
    full = _features(rng, n, 6, dim)
    return [full[i, : int(c)] for i, c in enumerate(rng.integers(1, 7, size=n))]


def _dyadic(rng: np.random.Generator, n: int, frames: int, dim: int) -> np.ndarray:
    """Features in multiples of 1/2 in [−1, 1]: every product, sum and squared distance is exact in float32, so two
    copies of a video get bit-identical distances wherever they are computed (exact ties)."""
    return (rng.integers(-2, 3, size=(n, frames, dim)) / 2).astype(np.float32)


def _case(name: str) -> dict:
    """Case ``name``: ``features``, ``g`` (``None``: the diversity strategy), ``lam``, ``labelled`` (or ``None``),
    ``budget``, ``storage`` and ``swap`` (rank 0 holds the second half)."""
    kind, lam, lab = name.split("-")
    seed = sum(map(ord, name))
    rng = np.random.default_rng(seed)
    case = {"lam": float(lam), "storage": "float32", "swap": False, "labelled": None}
    if kind in ("uniform", "bf16", "diversity"):
        case["features"] = _features(rng, 37, 4, 12)
        case["budget"] = 14
        case["labelled"] = _features(rng, 3, 4, 12) if lab == "lab" else None
        case["storage"] = "bfloat16" if kind == "bf16" else "float32"
    elif kind in ("ragged", "raggeddiv"):
        case["features"] = _ragged(rng, 29, 10)
        case["budget"] = 11
        case["labelled"] = _ragged(rng, 4, 10) if lab == "lab" else None
    else:  # "tie", "tieswap", "tieragged", "tiediv": video i and i + h are copies, on either side of the boundary
        half = _dyadic(rng, 8, 3, 8)
        if kind == "tieragged":
            base = [half[i, : 1 + i % 3] for i in range(8)]
            case["features"] = base + base
        else:
            case["features"] = np.concatenate([half, half])
        case["budget"] = 16  # every video: rank 0's shard runs out before the end
        case["labelled"] = _dyadic(rng, 2, 3, 8) if lab == "lab" else None
        case["swap"] = kind == "tieswap"
        kind = "diversity" if kind == "tiediv" else kind
    n = len(case["features"])
    if kind in ("diversity", "raggeddiv"):
        case["g"] = None
    elif kind.startswith("tie"):
        gh = rng.permutation(8).astype(np.float64) / 4  # distinct within a half, equal between copies
        case["g"] = np.concatenate([gh, gh])
    else:
        case["g"] = rng.normal(3.0, 0.5, size=n)
    return case


CASES = [
    *(f"uniform-{lam}-{lab}" for lam in ("0", "0.3", "1000") for lab in ("none", "lab")),
    *(f"ragged-{lam}-{lab}" for lam in ("0", "0.7", "1000") for lab in ("none", "lab")),
    "bf16-0.5-none",
    "bf16-0.5-lab",
    "diversity-1-none",
    "diversity-1-lab",
    "raggeddiv-1-lab",
    "tie-0-none",
    "tie-0.5-none",
    "tie-0.5-lab",
    "tieswap-0-none",
    "tieswap-0.5-lab",
    "tieragged-0.5-none",
    "tiediv-1-none",
]


def _pool(features, storage: str) -> FramePool:
    return FramePool.from_features(features, dtype=storage)


def _run_case(name: str, rank: int) -> dict:
    case = _case(name)
    pool = _pool(case["features"], case["storage"])
    labelled = None if case["labelled"] is None else _pool(case["labelled"], case["storage"])
    start, stop = shard_bounds(len(pool), WORLD, WORLD - 1 - rank if case["swap"] else rank)
    g = None if case["g"] is None else torch.as_tensor(case["g"][start:stop])
    shard = pool.subset(torch.arange(start, stop))
    picks, diversity = sharded_greedy(shard, g, start, case["budget"], case["lam"], labelled=labelled)
    return {"picks": picks, "diversity": [None if np.isnan(v) else float(v) for v in diversity]}


def _errors(rank: int) -> dict:
    """Invalid inputs raise the same ValueError on every rank instead of leaving one waiting."""
    pool = _pool(_case("uniform-0-none")["features"], "float32")
    start, stop = shard_bounds(len(pool), WORLD, rank)
    shard = pool.subset(torch.arange(start, stop))
    g = torch.zeros(stop - start, dtype=torch.float64)
    out = {}
    attempts = {
        "budget": lambda: sharded_greedy(shard, g, start, 5 + rank, 0.5),
        "lam": lambda: sharded_greedy(shard, g, start, 5, 0.5 + rank),
        "overlap": lambda: sharded_greedy(shard, g, 0, 5, 0.5),
        "too_many": lambda: sharded_greedy(shard, g, start, len(pool) + 1, 0.5),
        "g_shape": lambda: sharded_greedy(shard, g[: 3 if rank else None], start, 5, 0.5),
    }
    for key, call in attempts.items():
        with pytest.raises(ValueError) as info:
            call()
        out[key] = str(info.value)
    return out


def _syncing_ops(rank: int) -> dict:
    """The host-syncing operators a call dispatches at budget 2 and 5 (ragged pool, labelled videos): the setup
    and the final copy only, none per pick, when the counts are equal."""
    case = _case("ragged-0.7-lab")
    pool, labelled = _pool(case["features"], "float32"), _pool(case["labelled"], "float32")
    start, stop = shard_bounds(len(pool), WORLD, rank)
    shard = pool.subset(torch.arange(start, stop))
    g = torch.as_tensor(case["g"][start:stop])
    out = {}
    for budget in (2, 5):
        with RecordOps() as ops:
            sharded_greedy(shard, g, start, budget, 0.7, labelled=labelled)
        out[str(budget)] = {
            "all": len(ops.names),
            "syncing": [n for n in ops.names if any(s in n for s in SYNCING_OPS)],
        }
    return out


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        results = {name: _run_case(name, rank) for name in CASES}
        results["errors"] = _errors(rank)
        results["syncing"] = _syncing_ops(rank)
        dist.barrier()  # both ranks are done with the group before either destroys it
    finally:
        dist.destroy_process_group()
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(results))


@pytest.fixture(scope="module")
def sharded_results(tmp_path_factory) -> list[dict]:
    """Every case run once in one 2-process gloo group (1 thread each); the results of each rank."""
    tmp = tmp_path_factory.mktemp("sharded")
    previous = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        mp.spawn(_worker, args=(str(tmp / "init"), str(tmp)), nprocs=WORLD, join=True)
    finally:
        if previous is None:
            os.environ.pop("OMP_NUM_THREADS")
        else:
            os.environ["OMP_NUM_THREADS"] = previous
    return [json.loads((tmp / f"rank{r}.json").read_text()) for r in range(WORLD)]


def _reference(name: str):
    case = _case(name)
    return select_with_details(
        "diversity" if case["g"] is None else "mds",
        difficulty=case["g"],
        features=case["features"],
        budget=case["budget"],
        lam=case["lam"],
        device="cpu",
        storage_dtype=case["storage"],
        lazy=False,
        labelled_features=case["labelled"],
    )


@pytest.mark.parametrize("name", CASES)
def test_two_ranks_pick_what_one_process_picks_on_the_whole_pool(sharded_results, name):
    ref = _reference(name)
    for rank in range(WORLD):
        got = sharded_results[rank][name]
        assert got["picks"] == ref.indices, (rank, name)
        div = np.array([np.nan if v is None else v for v in got["diversity"]])
        np.testing.assert_allclose(div, ref.diversity, atol=1e-6, equal_nan=True)
    if _case(name)["labelled"] is None:
        assert sharded_results[0][name]["diversity"][0] is None  # no labelled video: NaN for the first pick


@pytest.mark.parametrize("name", [c for c in CASES if c.startswith("tie")])
def test_ties_across_the_shard_boundary_go_to_the_lowest_global_index(sharded_results, name):
    picks = sharded_results[0][name]["picks"]
    assert sorted(picks) == list(range(16))
    for i in range(8):  # copies i and i + 8: the lower index, on the other side of the boundary, first
        assert picks.index(i) < picks.index(i + 8), (name, i, picks)
    case = _case(name)
    if case["lam"] == 0:  # g alone: each copy right after the lower one, in decreasing g
        order = np.argsort(-case["g"][:8], kind="stable")
        assert picks == [int(v) for i in order for v in (i, i + 8)]


def test_invalid_inputs_raise_on_every_rank(sharded_results):
    for rank in range(WORLD):
        errors = sharded_results[rank]["errors"]
        assert "disagree on budget: [5, 6]" in errors["budget"]
        assert "disagree on lam: [0.5, 1.5]" in errors["lam"]
        assert "do not tile" in errors["overlap"]
        assert "exceeds" in errors["too_many"]
    assert "g_shard must have shape" in sharded_results[1]["errors"]["g_shape"]
    assert "ranks [1] got invalid inputs" in sharded_results[0]["errors"]["g_shape"]


def test_the_per_pick_loop_dispatches_no_operator_that_syncs_with_the_host(sharded_results):
    for rank in range(WORLD):
        ops = sharded_results[rank]["syncing"]
        assert ops["5"]["all"] > ops["2"]["all"] > 0, "the dispatch mode saw the picks"
        assert ops["5"]["syncing"] == ops["2"]["syncing"]  # the setup's checks only


def test_shard_bounds_tile_the_pool_evenly():
    for n in (0, 1, 7, 8, 37):
        for world in (1, 2, 3, 8):
            bounds = [shard_bounds(n, world, r) for r in range(world)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
            sizes = [b - a for a, b in bounds]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    with pytest.raises(ValueError):
        shard_bounds(4, 2, 2)


def test_without_a_process_group_it_says_so():
    pool = FramePool.from_features(np.ones((2, 1, 3), dtype=np.float32))
    with pytest.raises(RuntimeError, match="process group"):
        sharded_greedy(pool, None, 0, 1, 0.5)
