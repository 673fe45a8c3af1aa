"""Seconds per GRPO step on the tiny model (CPU), plain vs DeepSpeed ZeRO-2, and the share of format vs Thurstone
reward over a short run. Runs ``recipes/finetune.py`` both ways on the same generated data in one invocation.

    python benchmarks/grpo.py --steps 6
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(cmd: list[str], env: dict) -> None:
    """Run a command, raising with its output tail on failure."""
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def summarize(out: Path) -> dict:
    """Mean step time (first step excluded: warm-up) and reward means from ``trainer_state.json``."""
    logs = [e for e in json.loads((out / "trainer_state.json").read_text())["log_history"] if "step_time" in e]
    steps = [e["step_time"] for e in logs[1:]] or [logs[0]["step_time"]]
    thurstone = sum(e["rewards/thurstone_reward/mean"] for e in logs) / len(logs)
    fmt = sum(e["rewards/format_reward/mean"] for e in logs) / len(logs)
    return {
        "step_s": sum(steps) / len(steps),
        "first_step_s": logs[0]["step_time"],
        "thurstone": thurstone,
        "format": fmt,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mds_bench_grpo_"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCELERATE_")}
    env.update(HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false")
    py = sys.executable
    run([py, "recipes/make_toy_data.py", "--output_dir", str(tmp / "toy"), "--videos_per_domain", "12"], env)
    for domain in ("source", "target"):
        run([py, "recipes/build_pool.py", "--config", str(tmp / "toy" / domain / "build_pool.yaml")], env)
    common = [
        "recipes/finetune.py",
        "--config",
        "recipes/configs/demo/finetune.yaml",
        "--dataset_paths",
        str(tmp / "toy/pools/source"),
        str(tmp / "toy/pools/target"),
        "--model_name_or_path",
        str(tmp / "toy/tiny_qwen2_5_vl"),
        "--max_steps",
        str(args.steps),
        "--save_strategy",
        "no",
    ]
    run([py, *common, "--output_dir", str(tmp / "plain")], env)
    accelerate = str(Path(py).parent / "accelerate")
    run(
        [
            accelerate,
            "launch",
            "--config_file",
            "accelerate_configs/zero2_cpu.yaml",
            *common,
            "--use_cpu",
            "false",
            "--output_dir",
            str(tmp / "zero2"),
        ],
        env,
    )
    plain, zero2 = summarize(tmp / "plain"), summarize(tmp / "zero2")
    print(
        f"\nGRPO benchmark: tiny Qwen2.5-VL, {args.steps} steps, 4 completions/step (2 prompts x 2 generations), "
        f"16 new tokens, {platform.machine()} CPU, {os.cpu_count()} cores"
    )
    print("| run | s/step (after the first) | first step s | Thurstone reward | format reward | format share |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in (("plain (1 process)", plain), ("DeepSpeed ZeRO-2 (1 process)", zero2)):
        share = r["format"] / (r["format"] + r["thurstone"]) if r["format"] + r["thurstone"] else float("nan")
        print(
            f"| {name} | {r['step_s']:.2f} | {r['first_step_s']:.2f} | {r['thurstone']:.3f} | {r['format']:.3f} | {share:.1%} |"
        )
    print(f"| ratio ZeRO-2 / plain | {zero2['step_s'] / plain['step_s']:.2f}x | | | | |")


if __name__ == "__main__":
    main()
