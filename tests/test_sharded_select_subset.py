"""``recipes/select_subset.py`` under ``torchrun``: two CPU processes (gloo, one thread each), each holding half the
pool's features, write the selection one process writes (same videos, same order, one output set, staged once); a
shard with non-finite features stops both processes with the same error naming the shard; strategies that cannot
shard, and ``--shard_pool false``, run on rank 0 alone while the other ranks exit without writing anything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import load_recipe
from datasets import Array2D, Dataset, Features, Value, load_from_disk

from mds_vqa.hub import HubArguments
from mds_vqa.selection import select_subset_sharded

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def _pool(n: int, seed: int, *, no_features=(), nan_features=()) -> Dataset:
    """``n`` videos with a ``difficulty`` (g) and ragged ``features`` (1 to 3 frames of d = 6)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        f = rng.normal(size=(1 + i % 3, 6)).astype(np.float32)
        if i in nan_features:
            f[0, 2] = np.nan
        rows.append(
            {
                "video_id": f"v{i:02d}",
                "difficulty": float(rng.uniform(1, 5)),
                "features": None if i in no_features else f.tolist(),
            }
        )
    features = Features(
        {
            "video_id": Value("string"),
            "difficulty": Value("float64"),
            "features": Array2D(shape=(None, 6), dtype="float32"),
        }
    )
    return Dataset.from_list(rows, features=features)


def _env(tmp_path: Path) -> dict:
    """The subprocess's environment: offline, its own Hugging Face caches, one thread, no GPU."""
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    hf = tmp_path / "hf"
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_HOME=str(hf),
        HF_DATASETS_CACHE=str(hf / "datasets"),
        HF_HUB_CACHE=str(hf / "hub"),
        OMP_NUM_THREADS="1",
        CUDA_VISIBLE_DEVICES="",
        TOKENIZERS_PARALLELISM="false",
    )
    return env


def _torchrun(tmp_path: Path, *flags: str, launcher: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    cmd = [*TORCHRUN, *launcher, str(REPO / "recipes" / "select_subset.py"), *flags]
    return subprocess.run(cmd, cwd=REPO, env=_env(tmp_path), capture_output=True, text=True, timeout=240)


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_torchrun_with_two_processes_writes_what_one_process_writes(tmp_path):
    _pool(31, 0, no_features=(5,)).save_to_disk(str(tmp_path / "pool"))  # row 5 left out: 30 videos, 15 per rank
    _pool(4, 1).save_to_disk(str(tmp_path / "labelled"))
    settings = {"budget": "7", "lam": 0.5, "device": "cpu", "drop_incomplete": True}
    recipe = load_recipe("select_subset")
    args = recipe.SelectArguments(
        pool_path=str(tmp_path / "pool"),
        output_dir=str(tmp_path / "one"),
        labelled_paths=[str(tmp_path / "labelled")],
        **settings,
    )
    recipe.main(args, HubArguments(stage_dir=str(tmp_path / "one_staged")))

    flags = [f"--{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in settings.items()]
    run = _torchrun(
        tmp_path,
        f"--pool_path={tmp_path / 'pool'}",
        f"--output_dir={tmp_path / 'two'}",
        f"--labelled_paths={tmp_path / 'labelled'}",
        f"--stage_dir={tmp_path / 'two_staged'}",
        *flags,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]

    one, two = load_from_disk(str(tmp_path / "one")), load_from_disk(str(tmp_path / "two"))
    assert len(two) == 7
    assert two["video_id"] == one["video_id"] and two["pool_index"] == one["pool_index"]  # same videos, same order
    assert two["rank"] == list(range(1, 8)) and two["g"] == one["g"]
    assert two["diversity"] == pytest.approx(one["diversity"], abs=1e-5)
    record = json.loads((tmp_path / "two" / "selection.json").read_text())
    assert record["video_id"] == one["video_id"] and record["processes"] == 2 and record["pool_size"] == 30
    # one output set: rank 0 alone wrote it (one summary line), nothing else appeared
    assert run.stdout.count("Selected 7 of 30 videos with 'mds'") == 1
    assert _listing(tmp_path / "two") == _listing(tmp_path / "one")
    assert _listing(tmp_path / "two_staged") == _listing(tmp_path / "one_staged")
    expected = {"pool", "labelled", "one", "one_staged", "two", "two_staged", "hf"}
    assert {p.name for p in tmp_path.iterdir()} <= expected


def test_a_shard_with_non_finite_features_stops_every_process_naming_it(tmp_path):
    _pool(8, 2, nan_features=(6,)).save_to_disk(str(tmp_path / "pool"))  # in rank 1's shard (rows 4–7)
    run = _torchrun(
        tmp_path,
        f"--pool_path={tmp_path / 'pool'}",
        f"--output_dir={tmp_path / 'out'}",
        "--budget=3",
        "--device=cpu",
        launcher=("--monitor-interval", "3"),  # torchrun stops the other rank only after both have printed
    )
    assert run.returncode != 0
    message = "rank 1's shard of " + str(tmp_path / "pool") + " (videos v04 … v07, pool rows 4–7): Non-finite"
    assert run.stderr.count(message) == 2, run.stderr[-5000:]  # the same error on both ranks
    assert "at rows [2]" in run.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("strategy, shard_pool", [("coreset", True), ("difficulty", True), ("mds", False)])
def test_what_cannot_shard_runs_on_rank_0_alone(tmp_path, monkeypatch, strategy, shard_pool):
    _pool(12, 3).save_to_disk(str(tmp_path / "pool"))
    recipe = load_recipe("select_subset")

    def args(out: str):
        return recipe.SelectArguments(
            pool_path=str(tmp_path / "pool"),
            output_dir=str(tmp_path / out),
            strategy=strategy,
            budget="4",
            device="cpu",
            shard_pool=shard_pool,
        )

    alone = recipe.main(args("alone"))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert recipe.main(args("launched")) is None  # rank 1 leaves at once, writing nothing
    assert not (tmp_path / "launched").exists()
    monkeypatch.setenv("RANK", "0")
    launched = recipe.main(args("launched"))  # rank 0: the one-process selection, no process group
    assert load_from_disk(str(launched))["video_id"] == load_from_disk(str(alone))["video_id"]


def test_select_subset_sharded_refuses_what_it_cannot_do():
    pool = _pool(4, 4)
    with pytest.raises(ValueError, match="Strategy 'coreset' cannot be sharded across processes"):
        select_subset_sharded(pool, "coreset")
    with pytest.raises(ValueError, match="Unknown selection strategy"):
        select_subset_sharded(pool, "best")
    with pytest.raises(RuntimeError, match="initialised torch.distributed process group"):
        select_subset_sharded(pool, "mds")
