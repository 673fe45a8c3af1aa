"""Weak pairs from synthetic distortions: the variants decode with the source's length, size and rate, a full-reference
metric (PSNR against the source, on decoded frames) orders each family as ``level`` says, and pairs never cross a
source or a family."""

from __future__ import annotations

import math
import shutil
from collections import defaultdict
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from conftest import load_recipe
from datasets import Dataset, load_from_disk

import mds_vqa.weak_pairs as weak_pairs_module
from mds_vqa.data import POOL_FEATURES
from mds_vqa.distortions import DEFAULT_LEVELS, FAMILIES, describe_plan, variant_plan
from mds_vqa.hub import HubArguments, read_card_metadata, read_provenance
from mds_vqa.resumable import RunConfigError
from mds_vqa.testing import Distortion, make_video
from mds_vqa.video import read_frames

HEIGHT, WIDTH, FRAMES, FPS = 48, 80, 16, 8


def _pool(folder: Path, videos: list[str], name: str = "toy") -> str:
    ds = Dataset.from_dict(
        {
            "video_id": [Path(v).stem for v in videos],
            "video": videos,
            "mos": [None] * len(videos),  # labels are not needed
            "mos_std": [None] * len(videos),
            "dataset": [name] * len(videos),
            "split": ["train"] * len(videos),
        },
        features=POOL_FEATURES,
    )
    ds.save_to_disk(str(folder / "pool"))
    return str(folder / "pool")


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weak_sources")
    videos = [
        make_video(folder / f"src_{i}.mp4", Distortion(crf=16), num_frames=FRAMES, height=HEIGHT, width=WIDTH, fps=FPS,
                   seed=11 + i)
        for i in range(2)
    ]  # fmt: skip
    return folder, videos


@pytest.fixture(scope="module")
def made(sources, tmp_path_factory):
    """The recipe run once on two sources with every family at its default levels, staged with its card."""
    folder, videos = sources
    recipe = load_recipe("make_weak_pairs")
    out = tmp_path_factory.mktemp("weak_out") / "weak"
    args = recipe.WeakPairsArguments(pool_path=_pool(folder, videos), output_dir=str(out))
    summary = recipe.main(args, HubArguments(stage_dir=str(out) + ".hub"))
    return out, summary, load_from_disk(str(out / "pool")), load_from_disk(str(out / "pairs"))


def _psnr(x: np.ndarray, ref: np.ndarray) -> float:
    mse = float(np.mean((x.astype(np.float64) - ref.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def test_the_codecs_the_families_need_are_available():
    import av

    assert {"libx264", "libx265"} <= set(av.codecs_available)


def test_variants_decode_with_the_sources_length_size_and_frame_rate(made):
    out, summary, pool, _ = made
    n_variants = len(variant_plan(DEFAULT_LEVELS))
    assert summary["sources_done"] == 2 and summary["variants"] == 2 * n_variants == len(pool) - 2
    assert set(pool["distortion"]) == {"none", *FAMILIES}
    for row in pool:
        frames, meta = read_frames(row["video"], "all")
        assert frames.shape == (FRAMES, HEIGHT, WIDTH, 3), row["video_id"]
        assert meta.fps == pytest.approx(FPS)
        if row["level"] > 0:
            assert row["mos"] is None and Path(row["video"]).is_relative_to(out.resolve() / "videos")
    assert not (out / "work").exists()  # merged and removed


def test_psnr_against_the_source_orders_each_family_as_level_says(made):
    _, _, pool, _ = made
    rows = pool.to_list()
    psnr: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for source in {r["source_id"] for r in rows}:
        ref, _ = read_frames(next(r["video"] for r in rows if r["video_id"] == source), "all", backend="pyav")
        for r in rows:
            if r["source_id"] == source and r["level"] > 0:
                x, _ = read_frames(r["video"], "all", backend="pyav")
                psnr[(source, r["distortion"])][r["level"]] = _psnr(x, ref)
    assert len(psnr) == 2 * len(FAMILIES)
    for (source, family), by_level in psnr.items():
        values = [by_level[k] for k in sorted(by_level)]
        assert all(a > b for a, b in zip(values, values[1:])), f"{source} {family}: PSNR by level {values}"
        assert values[0] < 60  # level 1 is really degraded
    sources = sorted({s for s, _ in psnr})
    table = {f: [round(float(np.mean([psnr[(s, f)][k] for s in sources])), 1) for k in (1, 2, 3)] for f in FAMILIES}
    print(f"\nmean PSNR (dB) vs the source, levels 1-3: {table}")


def test_pairs_never_cross_a_source_or_a_family_and_p_says_which_is_better(made):
    out, summary, pool, pairs = made
    by_id = {r["video_id"]: r for r in pool}
    assert len(pairs) == summary["pairs"] == 2 * len(FAMILIES) * math.comb(1 + 3, 2)
    for pair in pairs:
        a, b = by_id[pair["id_a"]], by_id[pair["id_b"]]
        assert a["source_id"] == b["source_id"] == pair["source_id"]
        assert {a["distortion"], b["distortion"]} - {"none"} == {pair["distortion"]}
        assert (a["video"], b["video"]) == (pair["video_a"], pair["video_b"])
        assert pair["p"] == (1.0 if a["level"] < b["level"] else 0.0)
        assert (pair["level_a"], pair["level_b"]) == (a["level"], b["level"]) and a["level"] != b["level"]
    ones = sum(p == 1.0 for p in pairs["p"])
    assert 0 < ones < len(pairs)  # the better video is on either side
    record = read_provenance(out / "pairs")
    assert record.recipe == "make_weak_pairs" and record.inputs[0]["provenance"]["recipe"] == "make_weak_pairs"


def test_the_pairs_are_staged_with_a_weak_pairs_card(made):
    out, _, _, _ = made
    stage = Path(str(out) + ".hub")
    meta = read_card_metadata(stage)
    assert "weak-pairs" in meta["tags"]
    card = (stage / "README.md").read_text()
    assert describe_plan(variant_plan(DEFAULT_LEVELS)) in card and "x264 CRF 30/38/46" in card


def test_a_killed_run_restarts_where_it_stopped(sources, tmp_path, monkeypatch):
    folder, videos = sources
    recipe = load_recipe("make_weak_pairs")
    args = recipe.WeakPairsArguments(
        pool_path=_pool(tmp_path, videos), output_dir=str(tmp_path / "out"), families=["x264", "noise"], flush_every=1
    )
    real = weak_pairs_module.write_variants

    def killed_at_the_second_source(source, plan, paths, settings, *, seed_key):
        if seed_key == 1:
            raise KeyboardInterrupt
        return real(source, plan, paths, settings, seed_key=seed_key)

    monkeypatch.setattr(weak_pairs_module, "write_variants", killed_at_the_second_source)
    with pytest.raises(KeyboardInterrupt):
        recipe.main(args)
    assert not (tmp_path / "out" / "pool").exists()
    monkeypatch.setattr(weak_pairs_module, "write_variants", real)
    summary = recipe.main(args)
    assert (summary["computed_this_run"], summary["skipped_already_done"]) == (1, 1)
    assert summary["sources_done"] == 2 and summary["pairs"] == 2 * 2 * math.comb(4, 2)
    assert not list((tmp_path / "out" / "videos").rglob(".*partial*"))  # no half-written variant left


def test_a_resume_with_other_levels_is_refused(sources, tmp_path):
    folder, videos = sources
    recipe = load_recipe("make_weak_pairs")
    pool = _pool(tmp_path, videos[:1])
    first = recipe.WeakPairsArguments(
        pool_path=pool, output_dir=str(tmp_path / "out"), families=["blur"], keep_work_dir=True
    )
    recipe.main(first)
    for name in ("pool", "pairs"):  # as if the run had been killed before saving
        shutil.rmtree(tmp_path / "out" / name)
    other = recipe.WeakPairsArguments(
        pool_path=pool, output_dir=str(tmp_path / "out"), families=["blur"], blur_sigmas=[1.0, 5.0]
    )
    with pytest.raises(RunConfigError, match="variants"):
        recipe.main(other)
    assert recipe.main(first)["computed_this_run"] == 0  # the same plan resumes: nothing left to make
    with pytest.raises(FileExistsError, match="overwrite"):
        recipe.main(first)


def test_an_unreadable_source_is_recorded_with_its_cause_and_skipped(sources, tmp_path):
    folder, videos = sources
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    recipe = load_recipe("make_weak_pairs")
    args = recipe.WeakPairsArguments(
        pool_path=_pool(tmp_path, [videos[0], str(broken)]), output_dir=str(tmp_path / "out"), families=["stutter"]
    )
    summary = recipe.main(args)
    assert summary["sources_done"] == 1 and summary["unreadable"] == 1
    (failure,) = summary["unreadable_videos"]
    assert failure["video_id"] == "broken" and "broken.mp4" in failure["reason"]
    assert set(load_from_disk(str(tmp_path / "out" / "pairs"))["source_id"]) == {"src_0"}


@pytest.mark.parametrize(
    "levels, message",
    [
        ({"x264": [40, 30]}, "strictly increasing"),
        ({"x265": [30.5]}, "integers in \\[0, 51\\]"),
        ({"rescale": [1.0, 2.0]}, "> 1"),
        ({"stutter": [1]}, ">= 2"),
        ({"sharpen": [1]}, "Unknown distortion families"),
        ({"blur": []}, "no levels"),
    ],
)
def test_a_bad_level_plan_is_refused_naming_the_family(levels, message):
    with pytest.raises(ValueError, match=message):
        variant_plan(levels)


def test_every_pair_of_levels_is_formed_once(made):
    _, _, _, pairs = made
    seen = defaultdict(set)
    for pair in pairs:
        seen[(pair["source_id"], pair["distortion"])].add(frozenset((pair["level_a"], pair["level_b"])))
    assert all(levels == {frozenset(c) for c in combinations(range(4), 2)} for levels in seen.values())
