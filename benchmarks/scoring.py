"""Model passes per video and videos/s: expectation scoring (one forward) vs generate (think + answer), side by side.

    python benchmarks/scoring.py                      # tiny local model, generated videos, CPU
    python benchmarks/scoring.py --model hollow404/VQR1-7B-YouTubeUGC --videos_dir data/sdr --n 64   # a real run

Counts every forward call of the model (generation runs one per new token) and times both modes on the same videos
in one run. The tiny random model writes no EOS, so its generations run to ``--max_new_tokens`` (a think + answer of
VisualQuality-R1 is typically 100–300 tokens).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from mds_vqa.modeling import VideoSamplingConfig, load_model_and_processor  # noqa: E402
from mds_vqa.scoring import ScoringConfig, score_videos  # noqa: E402
from mds_vqa.testing import Distortion, build_tiny_qwen2_5_vl, make_video_pool  # noqa: E402


def count_passes(model):
    """Attach a counter of forward calls to ``model``; returns the counter dict."""
    counter = {"n": 0}
    model.register_forward_pre_hook(lambda *a, **k: counter.__setitem__("n", counter["n"] + 1))
    return counter


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="Model id or folder (default: a tiny local Qwen2.5-VL).")
    parser.add_argument("--videos_dir", default=None, help="Folder of .mp4 files (default: generated videos).")
    parser.add_argument("--n", type=int, default=16, help="Videos scored per mode.")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--max_new_tokens", type=int, default=256)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="mds_bench_scoring_"))
    model_path = args.model or build_tiny_qwen2_5_vl(tmp / "model")
    if args.videos_dir:
        videos = sorted(str(p) for p in Path(args.videos_dir).glob("*.mp4"))[: args.n]
    else:
        videos = [
            r["video"] for r in make_video_pool(tmp / "videos", [Distortion(noise=3 * i) for i in range(args.n)])
        ]
    sampling = VideoSamplingConfig() if args.model else VideoSamplingConfig(resized_height=56, resized_width=56)
    model, processor = load_model_and_processor(model_path, dtype=args.dtype)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    counter = count_passes(model)
    modes = {
        "expectation": ScoringConfig(mode="expectation"),
        "generate (think+answer, greedy)": ScoringConfig(mode="generate", max_new_tokens=args.max_new_tokens),
    }
    score_videos(model, processor, videos[:1], modes["expectation"], sampling)  # warm-up
    rows = []
    for name, cfg in modes.items():
        counter["n"] = 0
        start = time.perf_counter()
        for i in range(0, len(videos), args.batch_size):
            score_videos(model, processor, videos[i : i + args.batch_size], cfg, sampling)
        seconds = time.perf_counter() - start
        batches = -(-len(videos) // args.batch_size)
        rows.append((name, counter["n"] / batches, len(videos) / seconds, seconds))
    hw = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores" + (
        f", {torch.cuda.get_device_name()}" if device == "cuda" else ""
    )
    print(
        f"\nScoring benchmark: N = {len(videos)} videos, batch {args.batch_size}, model {args.model or 'tiny local Qwen2.5-VL'}, {hw}"
    )
    print("| mode | model passes per batch | videos/s | seconds |")
    print("|---|---:|---:|---:|")
    for name, passes, vps, sec in rows:
        print(f"| {name} | {passes:.0f} | {vps:.2f} | {sec:.2f} |")
    print(
        f"| ratio expectation / generate | {rows[1][1] / rows[0][1]:.0f}x fewer passes | {rows[0][2] / rows[1][2]:.1f}x faster | |"
    )


if __name__ == "__main__":
    main()
