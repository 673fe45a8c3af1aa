"""Scoring loose video files from the command line (``recipes/score.py --videos``), as pyiqa / DOVER users do."""

import shutil

import pytest
from conftest import load_recipe

from mds_vqa.file_scoring import find_videos
from mds_vqa.modeling import VideoSamplingConfig
from mds_vqa.scoring import ScoringConfig

score_recipe = load_recipe("score")

SMALL = VideoSamplingConfig(resized_height=56, resized_width=56)


def _score_cli(*args: str):
    import subprocess
    import sys
    from pathlib import Path

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "score.py"
    return subprocess.run([sys.executable, str(recipe), *args], capture_output=True, text=True, timeout=300)


@pytest.fixture
def clips(tmp_path, video_dir):
    """A folder of two videos (one in a subfolder, upper-case extension), a text file renamed .mp4 and a note."""
    _, rows = video_dir
    folder = tmp_path / "clips"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(rows[0]["video"], folder / "a.mp4")
    shutil.copy(rows[1]["video"], folder / "sub" / "b.MP4")
    (folder / "broken.mp4").write_text("this is a text file, not a video\n")
    (folder / "notes.txt").write_text("not scanned\n")
    return folder


def test_score_cli_on_a_folder_lists_the_broken_file_with_its_cause_and_exits_0(tmp_path, tiny_model_dir, clips):
    import csv

    small = ["--resized_height", "56", "--resized_width", "56", "--dtype", "float32"]
    out = tmp_path / "scores.csv"
    done = _score_cli("--videos", str(clips), "--model_name_or_path", tiny_model_dir, "--output_csv", str(out), *small)
    assert done.returncode == 0, done.stderr
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert table[0] == "| video | score | error |" and len(table) == 4  # notes.txt is not a video
    broken = next(line for line in table if "broken.mp4" in line)
    assert "| – |" in broken and "VideoReadError" in broken and "not a video file" in broken
    rows = list(csv.DictReader(out.open()))
    assert [r["video"] for r in rows] == [
        str(clips / "a.mp4"),
        str(clips / "broken.mp4"),
        str(clips / "sub" / "b.MP4"),
    ]
    assert rows[1]["score"] == "" and "broken.mp4" in rows[1]["error"]
    assert all(1.0 <= float(rows[i]["score"]) <= 5.0 and rows[i]["error"] == "" for i in (0, 2))
    assert "1 unreadable" in done.stdout and not out.with_name("scores.csv.work").exists()


def test_score_cli_strict_exits_non_zero_and_so_does_a_run_that_scores_nothing(tmp_path, tiny_model_dir, clips):
    small = [
        "--resized_height",
        "56",
        "--resized_width",
        "56",
        "--dtype",
        "float32",
        "--work_dir",
        str(tmp_path / "w"),
    ]
    strict = _score_cli("--videos", str(clips), "--model_name_or_path", tiny_model_dir, "--strict", "true", *small)
    assert strict.returncode != 0 and "broken.mp4" in strict.stderr
    small[-1] = str(tmp_path / "w2")
    nothing = _score_cli("--videos", str(clips / "broken.mp4"), "--model_name_or_path", tiny_model_dir, *small)
    assert nothing.returncode == 1 and "Scored 0/1 videos" in nothing.stdout  # not one file could be scored


def test_score_recipe_needs_a_pool_and_output_dir_unless_videos_are_given(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="--dataset_path and --output_dir are required unless --videos"):
        score_recipe.main(
            score_recipe.ScoreScriptArguments(model_name_or_path=tiny_model_dir, dataset_path=str(tmp_path)),
            ScoringConfig(),
            SMALL,
        )
    with pytest.raises(ValueError, match="either --videos"):
        score_recipe.main(
            score_recipe.ScoreScriptArguments(model_name_or_path=tiny_model_dir, videos=["a.mp4"], dataset_path="p"),
            ScoringConfig(),
            SMALL,
        )
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        score_recipe.main(
            score_recipe.ScoreScriptArguments(
                model_name_or_path=tiny_model_dir, videos=[str(tmp_path / "missing.mp4")]
            ),
            ScoringConfig(),
            SMALL,
        )


def test_find_videos_takes_files_as_given_and_scans_folders_for_video_extensions_in_order(clips, tmp_path):
    loose = tmp_path / "loose.webm"
    loose.write_bytes(b"")
    found = find_videos([str(loose), str(clips), str(clips / "a.mp4")])
    assert found == [str(loose), str(clips / "a.mp4"), str(clips / "broken.mp4"), str(clips / "sub" / "b.MP4")]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        find_videos([str(tmp_path / "nowhere")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No video file"):
        find_videos([str(tmp_path / "empty")])
