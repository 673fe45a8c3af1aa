"""Scoring speed, measured side by side in one run on the same videos and model.

``--what pipeline`` (default): where the time of expectation scoring goes. Preparing inputs alone (read + resize +
tokenise + processor) in this process and in DataLoader workers, the model alone on prepared inputs (already on its
device), and a pool scored end to end by ``score_pool`` serially (``num_workers`` 0: preparing waits for the model
and the model for preparing) and with ``--num_workers`` workers preparing ahead. It prints each path's end-to-end /
model-alone ratio: 1.0 means the model never waits for decoding.

``--what modes``: expectation (one forward) vs generate (think + answer): model passes per batch and videos/s. The
tiny random model writes no EOS, so its generations run to ``--max_new_tokens`` (a think + answer of
VisualQuality-R1 is typically 100–300 tokens).

    python benchmarks/scoring.py            # tiny Qwen2.5-VL, N = 16 generated 960x540 10 s clips, CPU
    python benchmarks/scoring.py --text_hidden 512 --text_intermediate 1024 --text_layers 4 --vision_depth 4 \
        --vision_hidden 256 --vision_intermediate 512 --threads 1 --num_workers 1    # mid-size, 1 core each
    python benchmarks/scoring.py --shape 7b --device cuda --dtype bfloat16 --n 64 --batch_size 8   # 7B shape, GPU
    python benchmarks/scoring.py --what modes --clip 64x64x16@8 --sampling small --batch_size 4   # the modes table
    python benchmarks/scoring.py --model hollow404/VQR1-7B-YouTubeUGC --videos_dir data/sdr --n 64   # a real model

Models are built from a config with random weights (no download): the tiny one of ``mds_vqa.testing``, the 7B shape
(``--shape 7b``: Qwen2.5-VL-7B's text and vision dimensions) or any size set with the ``--text_*``/``--vision_*``
flags. Clips are generated once (``--distinct`` of them, 960×540 takes ~30 s each on one core) and copied to N files.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from _common import SIZE_FLAGS, build_model, count_passes, hardware, make_clips, timed  # noqa: E402
from datasets import Dataset  # noqa: E402

from mds_vqa.modeling import VideoSamplingConfig  # noqa: E402
from mds_vqa.pool_scoring import PoolScoringRun, score_pool  # noqa: E402
from mds_vqa.resumable import data_parallel_state  # noqa: E402
from mds_vqa.scoring import ScoringConfig, score_inputs, score_videos  # noqa: E402
from mds_vqa.scoring_inputs import ScoringInputs, prepare_scoring_inputs, scoring_batches  # noqa: E402


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def bench_pipeline(args, model, processor, videos, sampling, device, tmp: Path) -> list[tuple[str, float]]:
    """Seconds of each way of scoring the same ``videos`` (expectation)."""
    config = ScoringConfig(num_workers=args.num_workers, prefetch_factor=args.prefetch_factor)
    batches = _chunks(videos, args.batch_size)
    items = [{"index": i, "video": v} for i, v in enumerate(videos)]
    rows = []

    def prepare():
        return [prepare_scoring_inputs(processor, b, config, sampling) for b in batches]

    seconds, prepared = timed(prepare, device)
    rows.append(("prepare alone, main process (read + resize + tokenise + processor)", seconds))

    def prepare_in_workers():
        loader = scoring_batches(
            items,
            processor,
            config,
            sampling,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            prefetch_factor=args.prefetch_factor,
            pin_memory=device.type == "cuda",
        )
        return sum(len(b.indices) for b in loader)

    seconds, _ = timed(prepare_in_workers, device)
    rows.append((f"prepare alone, {args.num_workers} DataLoader worker(s) (no model)", seconds))

    on_device = [ScoringInputs(p.videos, {m: p.model_inputs(m, device) for m in p.inputs}) for p in prepared]
    seconds, _ = timed(lambda: [score_inputs(model, processor, p, config) for p in on_device], device)
    rows.append((f"model alone on prepared inputs (on {device.type}), batch {args.batch_size}", seconds))
    on_device.clear()

    pool = Dataset.from_dict({"video_id": [f"v{i}" for i in range(len(videos))], "video": videos})
    state = data_parallel_state()
    run = PoolScoringRun(batch_size=args.batch_size, flush_every=args.batch_size)
    for workers in (0, args.num_workers):
        scoring = ScoringConfig(num_workers=workers, prefetch_factor=args.prefetch_factor)
        work = tmp / f"work_{workers}"

        def end_to_end(scoring=scoring, work=work):
            return score_pool(pool, work, model, processor, scoring, sampling, state, run, {"bench": "pipeline"})

        seconds, (_, summary) = timed(end_to_end, device)
        assert summary["scored"] == len(videos), summary
        how = "serial (num_workers 0)" if workers == 0 else f"{workers} worker(s), prefetch {args.prefetch_factor}"
        rows.append((f"end to end `score_pool`, {how}", seconds))
    return rows


def bench_modes(args, model, processor, videos, sampling, device) -> list[tuple[str, float, float]]:
    """``(mode, model passes per batch, seconds)`` of expectation and generate on ``videos``."""
    counter = count_passes(model)
    modes = {
        "expectation": ScoringConfig(mode="expectation"),
        "generate (think+answer, greedy)": ScoringConfig(mode="generate", max_new_tokens=args.max_new_tokens),
    }
    rows = []
    batches = _chunks(videos, args.batch_size)
    for name, cfg in modes.items():
        counter["n"] = 0
        seconds, _ = timed(lambda cfg=cfg: [score_videos(model, processor, b, cfg, sampling) for b in batches], device)
        rows.append((name, counter["n"] / len(batches), seconds))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--what", nargs="+", choices=["pipeline", "modes"], default=["pipeline"])
    parser.add_argument("--model", default=None, help="Model id or folder (default: built from a config).")
    parser.add_argument(
        "--shape", choices=["tiny", "small", "3b", "7b"], default="tiny", help="Config to build (random weights)."
    )
    for flag in SIZE_FLAGS:
        parser.add_argument(f"--{flag}", type=int, default=None, help="Override one size of --shape.")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--attn_implementation", default=None)
    parser.add_argument("--videos_dir", default=None, help="Folder of .mp4 files (default: generated clips).")
    parser.add_argument("--clip", default="960x540x240@24", help="Generated clips: WIDTHxHEIGHTxFRAMES@FPS.")
    parser.add_argument("--distinct", type=int, default=2, help="Distinct generated clips (copied to N files).")
    parser.add_argument(
        "--sampling",
        choices=["released", "small"],
        default="released",
        help="released: 2 fps, <= 14 frames, 512x512; small: 56x56 frames.",
    )
    parser.add_argument("--n", type=int, default=16, help="Videos scored per measurement.")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--num_workers", type=int, default=2)
    parser.add_argument("--prefetch_factor", type=int, default=2)
    parser.add_argument("--max_new_tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="torch threads of the model's process.")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    tmp = Path(tempfile.mkdtemp(prefix="mds_bench_scoring_"))
    device = torch.device(args.device)
    model, processor, described = build_model(args, tmp)
    videos = make_clips(args, tmp / "videos")
    sampling = VideoSamplingConfig(resized_height=56, resized_width=56) if args.sampling == "small" else None
    sampling = sampling or VideoSamplingConfig()
    tokens = prepare_scoring_inputs(processor, videos[:1], ScoringConfig(), sampling).inputs["expectation"]
    video_tokens = int(tokens["video_grid_thw"].prod()) // 4  # 2x2 patches merge into one token
    score_videos(model, processor, videos[: args.batch_size], ScoringConfig(), sampling)  # warm-up
    load = " / ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"

    source = args.videos_dir or f"generated clips {args.clip} ({args.distinct} distinct)"
    print(
        f"\nScoring benchmark: N = {len(videos)} videos, batch {args.batch_size}, {source}, "
        f"sampling {args.sampling} ({video_tokens} video tokens per video), {args.dtype}"
    )
    print(f"Model: {described}")
    print(f"Hardware: {hardware(device)}; load average at start {load}")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if "pipeline" in args.what:
        rows = bench_pipeline(args, model, processor, videos, sampling, device, tmp)
        model_alone = dict(rows)[next(name for name, _ in rows if name.startswith("model alone"))]
        print("\n| what | videos/s | seconds | × model alone (videos/s) |")
        print("|---|---:|---:|---:|")
        for name, sec in rows:
            print(f"| {name} | {len(videos) / sec:.2f} | {sec:.2f} | {model_alone / sec:.2f} |")
        serial, workers = rows[-2][1], rows[-1][1]
        print(
            f"\nend to end / model alone: serial {model_alone / serial:.2f}×, {args.num_workers} worker(s) "
            f"{model_alone / workers:.2f}× (workers vs serial: {serial / workers:.2f}× faster)"
        )
    if "modes" in args.what:
        rows = bench_modes(args, model, processor, videos, sampling, device)
        print("\n| mode | model passes per batch | videos/s | seconds |")
        print("|---|---:|---:|---:|")
        for name, passes, sec in rows:
            print(f"| {name} | {passes:.0f} | {len(videos) / sec:.2f} | {sec:.2f} |")
        print(
            f"| ratio expectation / generate | {rows[1][1] / rows[0][1]:.0f}x fewer passes | "
            f"{rows[1][2] / rows[0][2]:.1f}x faster | |"
        )
    if device.type == "cuda":
        print(f"\nPeak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
