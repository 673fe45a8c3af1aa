"""Every recipe reads its Datasets through mds_vqa.loading.load_pool: a save_to_disk folder, a staged (Hub-layout)
folder or a Hub id, with relative video paths resolved against --video_root and checked where videos are read."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import load_recipe
from datasets import Array2D, Dataset, Features, Value, load_from_disk

from mds_vqa.hub import DatasetCardInfo, stage_dataset
from mds_vqa.modeling import VideoSamplingConfig
from mds_vqa.pools import build_pool
from mds_vqa.scoring import ScoringConfig

ROOT = Path(__file__).resolve().parents[1]
SMALL = VideoSamplingConfig(resized_height=56, resized_width=56)
HUB_ID = "nobody/no-such-pool"  # the suite runs offline (tests/conftest.py): never reachable


def _stage(ds, folder: Path, kind: str = "pool") -> Path:
    return stage_dataset(ds, folder, DatasetCardInfo(kind=kind, settings={}))


@pytest.fixture
def moved_pool(tmp_path, video_dir):
    """A pool of 3 videos built with relative paths, staged in Hub layout, then staged folder and videos both moved
    to another place (the originals are gone): ``(staged folder, the videos' new folder, video names)``."""
    source, rows = video_dir
    videos = tmp_path / "machine1" / "videos"
    videos.mkdir(parents=True)
    names = [Path(r["video"]).name for r in rows[:3]]
    for name in names:
        shutil.copy(source / name, videos / name)
    table = tmp_path / "machine1" / "mos.csv"
    table.write_text("name,mos\n" + "".join(f"{n},{i + 2}.0\n" for i, n in enumerate(names)))
    pool = build_pool(table, videos, "toy", relative_paths=True)
    assert pool["video"] == names  # relative: the pool travels
    stage = _stage(pool, tmp_path / "machine1" / "stage")
    (tmp_path / "machine2").mkdir()
    moved = Path(shutil.move(stage, tmp_path / "machine2" / "pool"))
    clips = Path(shutil.move(videos, tmp_path / "machine2" / "clips"))
    return moved, clips, names


# --------------------------------------------------------------------------------------------------------------------
# score.py: a staged relative pool, moved elsewhere
# --------------------------------------------------------------------------------------------------------------------


def _score_args(recipe, pool: Path, out: Path, model_dir: str, **kw):
    return recipe.ScoreScriptArguments(
        dataset_path=str(pool), output_dir=str(out), model_name_or_path=model_dir, dtype="float32", batch_size=3, **kw
    )


def test_a_moved_staged_relative_pool_is_scored_with_video_root_and_refused_without_it(
    moved_pool, tmp_path, tiny_model_dir, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # relative paths do not resolve against the working folder either
    stage, clips, names = moved_pool
    score = load_recipe("score")
    with pytest.raises(FileNotFoundError) as err:
        score.main(_score_args(score, stage, tmp_path / "unscored", tiny_model_dir), ScoringConfig(), SMALL)
    text = str(err.value)
    assert text.startswith(f"{stage}: 3 video file(s) not found (relative paths: pass video_root")
    assert f"row 0 video: {names[0]}" in text and f"row 2 video: {names[2]}" in text
    assert not (tmp_path / "unscored").exists() and not (tmp_path / "unscored.work").exists()

    out = tmp_path / "scored"
    summary = score.main(_score_args(score, stage, out, tiny_model_dir, video_root=str(clips)), ScoringConfig(), SMALL)
    assert (summary["videos"], summary["scored"], summary["unreadable"]) == (3, 3, 0)
    scored = load_from_disk(str(out))
    assert scored["video"] == [str(clips.resolve() / n) for n in names]  # recorded resolved
    assert all(isinstance(s, float) and 1.0 <= s <= 5.0 for s in scored["score"])
    assert scored["score_error"] == [None, None, None]


def test_a_wrong_video_root_names_it_and_the_missing_files(moved_pool, tmp_path, tiny_model_dir):
    stage, clips, names = moved_pool
    (tmp_path / "empty").mkdir()
    score = load_recipe("score")
    args = _score_args(score, stage, tmp_path / "scored", tiny_model_dir, video_root=str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError) as err:
        score.main(args, ScoringConfig(), SMALL)
    text = str(err.value)
    assert f"resolved against video_root {(tmp_path / 'empty').resolve()}" in text
    assert f"row 1 video: {(tmp_path / 'empty').resolve() / names[1]}" in text


def test_only_the_rows_a_recipe_uses_are_checked(moved_pool):
    stage, clips, names = moved_pool
    keep = clips.parent / "one_clip"
    keep.mkdir()
    shutil.copy(clips / names[0], keep / names[0])  # the other two videos are not on this machine
    weak = load_recipe("make_weak_pairs")
    args = weak.WeakPairsArguments(pool_path=str(stage), output_dir="unused", video_root=str(keep), max_sources=1)
    assert weak._load_pool(args)["video"] == [str(keep.resolve() / names[0])]
    args.max_sources = None
    with pytest.raises(FileNotFoundError, match=r"2 video file\(s\) not found"):
        weak._load_pool(args)


# --------------------------------------------------------------------------------------------------------------------
# finetune.py: staged pools and pair Datasets with relative paths
# --------------------------------------------------------------------------------------------------------------------


def test_finetune_reads_staged_pools_and_pairs_through_one_video_root(moved_pool, tmp_path, monkeypatch):
    from mds_vqa.configs import VQAModelConfig
    from mds_vqa.grpo import VideoGRPOConfig

    monkeypatch.chdir(tmp_path)
    stage, clips, names = moved_pool
    pairs = Dataset.from_dict(
        {"video_a": [names[0]], "video_b": [names[2]], "p": [1.0], "dataset": ["toy"], "split": ["train"]}
    )
    pairs_stage = _stage(pairs, tmp_path / "pairs", kind="weak-pairs")
    finetune = load_recipe("finetune")
    args = finetune.FinetuneScriptArguments(
        dataset_paths=[str(stage)], pair_dataset_paths=[str(pairs_stage)], split=None, video_root=str(clips)
    )
    train = finetune.build_train_dataset(args)
    root = clips.resolve()
    assert train["video"] == [str(root / n) for n in names] + [str(root / names[0]), str(root / names[2])]
    assert train["pair_side"] == [None, None, None, "a", "b"]
    # without video_root the run stops before the model loads (there is no model at that path)
    args.video_root = None
    training = VideoGRPOConfig(
        output_dir=str(tmp_path / "grpo"), use_cpu=True, report_to=[], num_generations=2, per_device_train_batch_size=4
    )
    with pytest.raises(FileNotFoundError) as err:
        finetune.main(args, training, VQAModelConfig(model_name_or_path=str(tmp_path / "no-model")), SMALL)
    text = str(err.value)
    assert text.startswith("The training rows: 5 video file(s) not found (relative paths: pass video_root")
    assert f"row 0 video: {names[0]}" in text and f"row 4 video: {names[2]}" in text


# --------------------------------------------------------------------------------------------------------------------
# Selection, evaluation and gMAD on staged Datasets
# --------------------------------------------------------------------------------------------------------------------


def _features_pool(n: int = 12, frames: int = 3, dim: int = 8) -> Dataset:
    rng = np.random.default_rng(0)
    features = Features(
        {
            "video_id": Value("string"),
            "video": Value("string"),
            "difficulty": Value("float64"),
            "features": Array2D(shape=(None, dim), dtype="float32"),
        }
    )
    rows = {
        "video_id": [f"v{i:02d}" for i in range(n)],
        "video": [f"v{i:02d}.mp4" for i in range(n)],
        "difficulty": rng.uniform(1, 5, n).tolist(),
        "features": [rng.normal(size=(frames, dim)).astype(np.float32).tolist() for _ in range(n)],
    }
    return Dataset.from_dict(rows, features=features)


def test_select_subset_on_a_staged_features_pool_picks_what_the_saved_pool_gives(tmp_path):
    pool = _features_pool()
    pool.save_to_disk(str(tmp_path / "saved"))
    labelled = _features_pool(4).map(lambda r: {"video_id": "old-" + r["video_id"]})
    labelled.save_to_disk(str(tmp_path / "labelled"))
    staged, staged_labelled = _stage(pool, tmp_path / "staged"), _stage(labelled, tmp_path / "staged_labelled")
    select = load_recipe("select_subset")

    def run(pool_path, labelled_path, name, **kw):
        args = select.SelectArguments(
            pool_path=str(pool_path),
            output_dir=str(tmp_path / name),
            budget="4",
            lam=2.0,
            device="cpu",
            compare_random=False,
            labelled_paths=[str(labelled_path)],
            **kw,
        )
        return load_from_disk(str(select.main(args)))

    saved = run(tmp_path / "saved", tmp_path / "labelled", "from_saved")
    from_stage = run(staged, staged_labelled, "from_staged", video_root=str(tmp_path))
    assert from_stage["video_id"] == saved["video_id"] and len(saved) == 4
    assert from_stage["diversity"] == pytest.approx(saved["diversity"])
    assert from_stage["video"] == [str(tmp_path.resolve() / v) for v in saved["video"]]  # recorded resolved


def _scored(ids, scores) -> Dataset:
    """A scored pool whose video paths are relative (``<id>.mp4``)."""
    return Dataset.from_dict(
        {
            "video_id": list(ids),
            "video": [f"{i}.mp4" for i in ids],
            "mos": [float(i) for i in range(len(ids))],
            "dataset": ["toy"] * len(ids),
            "split": ["test"] * len(ids),
            "score": list(scores),
        }
    )


def test_the_scored_entries_of_evaluate_and_gmad_load_from_staged_folders(tmp_path):
    from mds_vqa.scored import aligned_scores, scored_table

    ids = [f"v{i}" for i in range(8)]
    a, b = _scored(ids, np.linspace(1, 5, 8)), _scored(ids[::-1], np.linspace(2, 3, 8))
    a.save_to_disk(str(tmp_path / "a_saved"))
    entries = [{"dataset_path": str(_stage(a, tmp_path / "a", kind="scored")), "column": "score"}]
    table = scored_table(entries, "model 'a'", split="test")
    assert (
        table.to_dict()
        == scored_table([{"dataset_path": str(tmp_path / "a_saved"), "column": "score"}], "", split="test").to_dict()
    )
    models = [
        {"name": "a", **entries[0]},
        {"name": "b", "dataset_path": str(_stage(b, tmp_path / "b", kind="scored")), "column": "score"},
    ]
    scores, got_ids, videos = aligned_scores(models, video_root=tmp_path)
    assert got_ids == ids and videos == [str(tmp_path.resolve() / f"{i}.mp4") for i in ids]
    assert scores["b"] == pytest.approx(np.linspace(2, 3, 8)[::-1].tolist())


# --------------------------------------------------------------------------------------------------------------------
# An unreachable Hub id: a clear FileNotFoundError from every recipe, exit code 2 from a script
# --------------------------------------------------------------------------------------------------------------------


def _score(tmp_path):
    recipe = load_recipe("score")
    args = recipe.ScoreScriptArguments(
        model_name_or_path="unused", dataset_path=HUB_ID, output_dir=str(tmp_path / "o")
    )
    recipe.main(args, ScoringConfig(), SMALL)


def _extract_features(tmp_path):
    recipe = load_recipe("extract_features")
    recipe.main(recipe.ExtractFeaturesArguments(pool_path=HUB_ID, output_dir=str(tmp_path / "o")))


def _select_subset(tmp_path):
    recipe = load_recipe("select_subset")
    recipe.main(recipe.SelectArguments(pool_path=HUB_ID, output_dir=str(tmp_path / "o")))


def _train_failure_predictor(tmp_path):
    recipe = load_recipe("train_failure_predictor")
    training = recipe.FailurePredictorConfig(output_dir=str(tmp_path / "o"), use_cpu=True, report_to="none")
    recipe.prepare_datasets(recipe.FailurePredictorScriptArguments(dataset_path=HUB_ID), training)


def _finetune(tmp_path):
    recipe = load_recipe("finetune")
    recipe.build_train_dataset(recipe.FinetuneScriptArguments(pair_dataset_paths=[HUB_ID]))


def _make_weak_pairs(tmp_path):
    recipe = load_recipe("make_weak_pairs")
    recipe.main(recipe.WeakPairsArguments(pool_path=HUB_ID, output_dir=str(tmp_path / "o")))


def _pseudo_label(tmp_path):
    recipe = load_recipe("pseudo_label")
    teacher = [{"name": "f", "dataset_path": HUB_ID, "column": "score", "revision": "v1"}]
    _scored(["a", "b"], [1.0, 2.0]).save_to_disk(str(tmp_path / "pool"))
    recipe.main(
        recipe.PseudoLabelArguments(pool_path=str(tmp_path / "pool"), output_dir=str(tmp_path / "o"), teachers=teacher)
    )


def _evaluate_models(tmp_path):
    recipe = load_recipe("evaluate_models")
    models = [{"name": "f", "dataset_path": HUB_ID, "column": "score", "revision": "main"}]
    recipe.main(recipe.EvaluateArguments(output_dir=str(tmp_path / "o"), models=models))


def _gmad(tmp_path):
    recipe = load_recipe("gmad")
    models = [{"name": m, "dataset_path": HUB_ID, "column": "score"} for m in ("f", "g")]
    recipe.main(recipe.GmadArguments(output_dir=str(tmp_path / "o"), models=models))


@pytest.mark.parametrize(
    "run",
    [
        _score,
        _extract_features,
        _select_subset,
        _train_failure_predictor,
        _finetune,
        _make_weak_pairs,
        _pseudo_label,
        _evaluate_models,
        _gmad,
    ],
    ids=lambda f: f.__name__.lstrip("_"),
)
def test_an_unreachable_hub_id_is_a_clear_error_from_every_recipe(run, tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"Could not load the Hub dataset '{HUB_ID}' \(HF_HUB_OFFLINE is set"):
        run(tmp_path)


def test_a_recipe_script_exits_with_code_2_and_the_message_for_an_unreachable_hub_id(tmp_path):
    cmd = [sys.executable, str(ROOT / "recipes" / "select_subset.py"), "--pool_path", HUB_ID]
    done = subprocess.run(
        [*cmd, "--output_dir", str(tmp_path / "o")], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )
    assert done.returncode == 2
    assert f"error: Could not load the Hub dataset '{HUB_ID}'" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "o").exists()
