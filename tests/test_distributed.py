"""Recipes launched the way users launch them: `accelerate launch` with the repository's configs, on CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset, load_from_disk

from mds_vqa.data import POOL_FEATURES

REPO = Path(__file__).resolve().parents[1]
ACCELERATE = str(Path(sys.executable).parent / "accelerate")
SMALL = ["--resized_height", "56", "--resized_width", "56"]
# Two data-parallel CPU processes, launched as a user launches them (accelerate_configs/cpu.yaml explains its type);
# port 0: any free port, so parallel runs on one machine do not collide.
TWO_CPU_PROCESSES = [ACCELERATE, "launch", "--config_file", "accelerate_configs/cpu.yaml", "--main_process_port", "0"]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCELERATE_")}
    env.update(HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false", **extra)
    return env


def _pool(path, rows, splits=None, scores=None):
    n = len(rows)
    ds = Dataset.from_dict(
        {
            "video_id": [r["video_id"] for r in rows],
            "video": [r["video"] for r in rows],
            "mos": [float(r["mos"]) for r in rows],
            "mos_std": [None] * n,
            "dataset": ["toy"] * n,
            "split": splits or ["train"] * n,
        },
        features=POOL_FEATURES,
    )
    if scores is not None:
        ds = ds.add_column("score", scores)
    ds.save_to_disk(str(path))
    return path


def _run(cmd, env, timeout=600):
    run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    return run


@pytest.mark.slow
def test_scoring_with_two_processes_equals_scoring_with_one(tmp_path, tiny_model_dir, video_dir):
    _, rows = video_dir
    pool = _pool(tmp_path / "pool", rows)
    common = [
        "recipes/score.py",
        "--dataset_path",
        str(pool),
        "--model_name_or_path",
        tiny_model_dir,
        "--dtype",
        "float32",
        "--batch_size",
        "2",
        *SMALL,
    ]
    _run([*TWO_CPU_PROCESSES, *common, "--output_dir", str(tmp_path / "ddp")], _env(ACCELERATE_USE_CPU="1"))
    _run([sys.executable, *common, "--output_dir", str(tmp_path / "single")], _env())
    ddp, single = load_from_disk(str(tmp_path / "ddp")), load_from_disk(str(tmp_path / "single"))
    assert ddp["video_id"] == single["video_id"]
    assert ddp["score"] == pytest.approx(single["score"], abs=1e-5)
    summary = json.loads((tmp_path / "ddp" / "scoring_summary.json").read_text())
    # totals gathered from both processes, each having scored its half
    assert [p["computed"] for p in summary["processes"]] == [3, 3] and summary["computed_this_run"] == len(rows)


@pytest.mark.slow
def test_failure_predictor_trains_under_deepspeed_zero2_on_cpu(tmp_path, tiny_model_dir, video_dir):
    from peft import PeftModel

    from mds_vqa.modeling import load_model_and_processor

    _, rows = video_dir
    pool = _pool(tmp_path / "scored", rows, splits=["train"] * 4 + ["test"] * 2, scores=[3.0, 2.5, 4.0, 1.5, 3.5, 2.0])
    out = tmp_path / "g"
    run = _run(
        [
            ACCELERATE,
            "launch",
            "--config_file",
            "accelerate_configs/zero2_cpu.yaml",
            "recipes/train_failure_predictor.py",
            "--config",
            "recipes/configs/demo/failure_predictor.yaml",
            "--dataset_path",
            str(pool),
            "--model_name_or_path",
            tiny_model_dir,
            "--output_dir",
            str(out),
            "--use_cpu",
            "false",
            "--max_steps",
            "2",
            "--save_steps",
            "2",
            "--eval_steps",
            "2",
            "--per_device_train_batch_size",
            "4",
        ],
        _env(),
    )
    assert "Saved the failure-predictor adapter" in run.stdout
    assert (out / "checkpoint-2" / "global_step2").is_dir()  # a DeepSpeed ZeRO checkpoint
    assert (out / "eval_results.json").exists()
    base, _ = load_model_and_processor(tiny_model_dir, dtype="float32")
    model = PeftModel.from_pretrained(base, str(out))
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and any(torch.count_nonzero(p) > 0 for p in lora_b)  # the adapter was trained


@pytest.mark.slow
def test_grpo_finetune_runs_under_deepspeed_zero2_on_cpu(tmp_path, tiny_model_dir, video_dir):
    from peft import PeftModel

    from mds_vqa.modeling import load_model_and_processor

    _, rows = video_dir
    pool = _pool(tmp_path / "pool", rows)
    out = tmp_path / "ft"
    run = _run(
        [
            ACCELERATE,
            "launch",
            "--config_file",
            "accelerate_configs/zero2_cpu.yaml",
            "recipes/finetune.py",
            "--config",
            "recipes/configs/demo/finetune.yaml",
            "--dataset_paths",
            str(pool),
            "--model_name_or_path",
            tiny_model_dir,
            "--output_dir",
            str(out),
            "--use_cpu",
            "false",
            "--max_steps",
            "2",
            "--save_steps",
            "2",
        ],
        _env(),
    )
    assert "Saved the fine-tuned adapter" in run.stdout
    assert (out / "checkpoint-2" / "global_step2").is_dir()  # a DeepSpeed ZeRO checkpoint
    base, _ = load_model_and_processor(tiny_model_dir, dtype="float32")
    PeftModel.from_pretrained(base, str(out))


def test_a_bad_argument_stops_every_process_of_a_data_parallel_score_run(tmp_path, tiny_model_dir, video_dir):
    _, rows = video_dir
    pool = _pool(tmp_path / "pool", rows[:2])
    taken = tmp_path / "scored"
    taken.mkdir()
    (taken / "keep.txt").write_text("an earlier result")
    cmd = [
        *TWO_CPU_PROCESSES,
        "recipes/score.py",
        "--dataset_path",
        str(pool),
        "--model_name_or_path",
        tiny_model_dir,
        "--output_dir",
        str(taken),
        *SMALL,
    ]
    # no --overwrite: every process refuses before the first collective, none is left waiting at a barrier
    run = subprocess.run(cmd, cwd=REPO, env=_env(ACCELERATE_USE_CPU="1"), capture_output=True, text=True, timeout=120)
    output = run.stdout + run.stderr
    assert run.returncode != 0, output[-3000:]
    assert f"{taken} exists and is not empty; pass --overwrite true" in output
    assert (taken / "keep.txt").read_text() == "an earlier result" and not Path(f"{taken}.work").exists()
