"""Selecting from a pool Dataset (mds_vqa.selection.select_subset) and its report (write_selection_report)."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import Array2D, Dataset, Features, Value

from mds_vqa.selection import select, select_subset
from mds_vqa.selection_report import write_selection_report


def _pool(n: int = 30, frames: int = 3, dim: int = 6, *, no_features=(), nan_g=()) -> Dataset:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        f = rng.normal(size=(frames, dim)).astype(np.float32)
        rows.append(
            {
                "video_id": f"v{i:02d}",
                "difficulty": None if i in nan_g else float(rng.uniform(1, 5)),
                "features": None if i in no_features else f.tolist(),
                "rank": -1,  # an old column of the same name is replaced
            }
        )
    features = Features(
        {
            "video_id": Value("string"),
            "difficulty": Value("float64"),
            "features": Array2D(shape=(None, dim), dtype="float32"),
            "rank": Value("int64"),
        }
    )
    return Dataset.from_list(rows, features=features)


def test_select_subset_picks_what_select_picks_and_annotates_the_subset():
    pool = _pool()
    chosen = select_subset(pool, "mds", budget="20%", device="cpu", progress=False)
    g = np.asarray(pool["difficulty"])
    feats = [np.asarray(f, dtype=np.float32) for f in pool["features"]]
    assert chosen.selection.indices == select("mds", difficulty=g, features=feats, budget=6, device="cpu")
    subset = chosen.subset
    assert "features" not in subset.column_names
    assert subset["rank"] == list(range(1, 7))
    assert subset["pool_index"] == chosen.pool_index == chosen.selection.indices
    assert subset["g"] == pytest.approx(g[chosen.selection.indices].tolist())
    assert subset["diversity"][0] is None and all(d > 0 for d in subset["diversity"][1:])
    assert chosen.random_diversity > 0 and chosen.dropped == {}


def test_select_subset_names_incomplete_rows_or_leaves_them_out():
    pool = _pool(no_features=(4,), nan_g=(7,))
    with pytest.raises(ValueError, match=r"Incomplete rows in my_pool: no 'features': 1 rows, e.g. \['v04'\]"):
        select_subset(pool, "mds", budget=5, device="cpu", progress=False, source="my_pool")
    chosen = select_subset(pool, "mds", budget=5, device="cpu", progress=False, drop_incomplete=True)
    assert len(chosen.pool) == 28
    assert chosen.dropped == {"no 'features'": ["v04"], "NaN 'difficulty'": ["v07"]}
    kept = [i for i in range(30) if i not in (4, 7)]
    assert chosen.pool_index == [kept[i] for i in chosen.selection.indices]
    with pytest.raises(KeyError, match="needs a 'g' column in the pool"):
        select_subset(pool, "difficulty", difficulty_column="g", progress=False)
    with pytest.raises(ValueError, match="Unknown selection strategy"):
        select_subset(pool, "best", progress=False)


def test_write_selection_report_writes_the_tables_and_pictures(tmp_path):
    chosen = select_subset(_pool(nan_g=(2,)), "mds", budget=4, device="cpu", progress=False, drop_incomplete=True)
    path = write_selection_report(tmp_path, chosen, pool_path="pools/x", lam=0.25, seed=0)
    text = path.read_text()
    assert text.startswith("# Selection: `mds`, 4 of 29 videos\n\n| setting | value |\n|---|---|\n")
    assert "| pool | `pools/x` (29 videos) |" in text
    assert "| left out (NaN 'difficulty') | 1 rows: v02 |" in text
    assert "| | pool | selection | random subset of the same size |" in text
    first = chosen.subset["video_id"][0]
    assert f"| 1 | `{first}` | {chosen.subset['g'][0]:.4f} | — |" in text
    for picture in ("feature_map.png", "difficulty.png"):
        assert (tmp_path / picture).read_bytes()[:4] == b"\x89PNG"


def test_select_subset_counts_the_labelled_datasets_in_the_diversity_term():
    pool, labelled = _pool(30), _pool(8)  # two Datasets: the candidates, and videos labelled before
    chosen = select_subset(pool, "mds", budget=6, lam=2.0, device="cpu", progress=False, labelled=[labelled])
    g = np.asarray(pool["difficulty"])
    feats = [np.asarray(f, dtype=np.float32) for f in pool["features"]]
    known = [np.asarray(f, dtype=np.float32) for f in labelled["features"]]
    want = select("mds", difficulty=g, features=feats, budget=6, lam=2.0, device="cpu", labelled_features=known)
    assert chosen.selection.indices == want
    assert chosen.selection.params["labelled_videos"] == 8
    blind = select_subset(pool, "mds", budget=6, lam=2.0, device="cpu", progress=False)
    assert blind.selection.params["labelled_videos"] == 0
