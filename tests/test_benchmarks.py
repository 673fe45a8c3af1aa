"""The benchmarks run as a user runs them (they measure; these tests only check that every stage runs and reports)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_benchmark(script: str, flags: str, tmp_path: Path, timeout: int) -> str:
    """``python benchmarks/<script> <flags>`` from the repository, offline, one thread; its stdout (it must exit 0)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, f"benchmarks/{script}", *flags.split()],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_the_scale_benchmark_runs_every_stage_at_the_small_shape(tmp_path):
    flags = "--shape small --clip 64x64x16@8 --sampling small --n 4 --batch_size 2 --num_workers 1 --steps 1"
    flags += " --max_new_tokens 4 --max_completion_length 4 --clip_model ViT-B-32"
    stdout = run_benchmark("scale.py", flags, tmp_path, timeout=600)
    rows = [
        line.split(" | ") for line in stdout.splitlines() if re.match(r"\| (scoring|g_step|grpo_step|features) ", line)
    ]
    assert [r[0].strip("| ") for r in rows].count("scoring") == 3
    assert {r[0].strip("| ") for r in rows} == {"scoring", "g_step", "grpo_step", "features"}
    assert all(float(r[3]) > 0 for r in rows)  # seconds
    shipped, per_completion = [r[1] for r in rows if r[0].strip("| ") == "grpo_step"]
    towers = [int(re.search(r"(\d+) videos through the vision tower", w).group(1)) for w in (shipped, per_completion)]
    assert 0 < towers[0] < towers[1]
    assert "Hardware:" in stdout


def test_the_selection_benchmark_times_each_mode_and_reports_identical_picks(tmp_path):
    flags = "--reference-size 0 --floor-size 0 --sizes 3000 --passes-sizes --frames 4 --dim 64"
    flags += " --modes lazy:float32 screened:float32 passes:float32:40 --block 8"
    stdout = run_benchmark("selection.py", flags, tmp_path, timeout=300)
    rows = [
        [c.strip() for c in line.strip("|").split("|")] for line in stdout.splitlines() if line.startswith("| 3,000 ")
    ]
    assert [r[2] for r in rows] == ["lazy", "screened", "passes (first 40 picks)"]
    assert [r[1] for r in rows] == ["150", "150", "40"]
    assert rows[1][12] == "identical over the first 150" and rows[2][12] == "identical over the first 40"
    assert int(rows[1][8]) < 150 // 8 + 2 and int(rows[2][8]) == 39  # pool passes: one per block, one per pick
