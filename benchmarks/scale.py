"""Every heavy stage of the loop at the real shapes, measured in one run on generated real-size clips.

Models are built from a config with random weights (no download): Qwen2.5-VL of the 7B or 3B shape (``--shape``),
or ``small`` (same structure, CPU-sized); open_clip's ViT-L/14 for the frame features. Clips are ``--clip``
(default 960x540, 10 s, 24 fps) at the released sampling (2 fps, <= 14 frames, 512x512).

Stages (``--stages``, all by default, run in the order given; each row is printed as ``measured: | ... |`` the
moment it is measured, and the whole table at the end):

- ``scoring``: f's expectation score (one forward) on prepared inputs already on the device (the model alone), and
  end to end through ``score_pool`` with ``--num_workers`` DataLoader workers; generation (think + answer,
  ``--max_new_tokens``, greedy) end to end. The end-to-end / model-alone ratio is 1.0 when the model never waits
  for decoding.
- ``g_step``: one optimizer step of the failure predictor g with the paper's config
  (``recipes/configs/youtube_sfv_sdr/failure_predictor.yaml``).
- ``grpo_step``: one optimizer step of GRPO with the paper's config (``recipes/configs/youtube_sfv_sdr/
  finetune.yaml``: G = 4, 8 completions per device, gradient accumulation 2, beta 0.04, LoRA r 64, gradient
  checkpointing), ``--max_completion_length`` tokens per completion (a random model never stops early), as shipped
  (vision tower once per distinct video, videos read by a DataLoader worker) and the other way
  (``cache_video_embeddings false``, ``dataloader_num_workers 0``: the tower on every completion in every pass,
  videos read in the training loop), side by side.
- ``features``: CLIP frame features (``--num_frames`` per video) end to end vs decoding + preprocessing alone.

Each row gives seconds, the rate, the mean GPU utilisation sampled every 0.2 s during the timed part (NVML through
``torch.cuda.utilization``, else ``nvidia-smi``) and the peak GPU memory, then hours per 10k videos (per 10k training
prompts for the training stages: one epoch of 10k labelled videos).

    python benchmarks/scale.py --shape small                      # CPU, a few minutes
    python benchmarks/scale.py --shape 7b --device cuda --n 32    # one GPU
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from _common import SHAPES, build_model, hardware, make_clips, sync  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from mds_vqa.configs import peft_config_from  # noqa: E402
from mds_vqa.modeling import VideoSamplingConfig  # noqa: E402
from mds_vqa.pipeline.config import load_recipe  # noqa: E402
from mds_vqa.pool_scoring import PoolScoringRun, score_pool  # noqa: E402
from mds_vqa.prompts import get_prompt  # noqa: E402
from mds_vqa.resumable import data_parallel_state  # noqa: E402
from mds_vqa.scoring import ScoringConfig, score_inputs  # noqa: E402
from mds_vqa.scoring_inputs import ScoringInputs, prepare_scoring_inputs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "recipes/configs/youtube_sfv_sdr"
STAGES = ("scoring", "g_step", "grpo_step", "features")


@dataclass
class Row:
    """One measurement: ``count`` items (videos, or optimizer steps) in ``seconds``."""

    stage: str
    what: str
    count: int
    unit: str  # "video" or "step"
    seconds: float
    gpu_util: float | None = None
    peak_gib: float | None = None
    per_10k_hours: float | None = None

    @property
    def rate(self) -> str:
        if self.unit == "step":
            return f"{self.seconds / self.count:.2f} s/step"
        return f"{self.count / self.seconds:.2f} videos/s"


class GpuSampler:
    """Samples the GPU's utilisation (%) every ``interval`` seconds in a background thread while active; ``mean``
    of the samples between two times. ``available`` is False on a CPU (or without NVML and nvidia-smi)."""

    def __init__(self, device: torch.device, interval: float = 0.2):
        self.device, self.interval = device, interval
        self.samples: list[tuple[float, float]] = []
        self._read = self._reader()
        self.available = self._read is not None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _reader(self):
        if self.device.type != "cuda":
            return None
        try:
            torch.cuda.utilization(self.device)
            return lambda: float(torch.cuda.utilization(self.device))
        except (ModuleNotFoundError, RuntimeError, ImportError):
            pass
        if shutil.which("nvidia-smi") is None:
            return None
        index = str(self.device.index or 0)
        query = ["nvidia-smi", "-i", index, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
        return lambda: float(subprocess.run(query, capture_output=True, text=True, check=True).stdout.strip())

    def __enter__(self):
        if self.available:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def _loop(self):
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), self._read()))
            self._stop.wait(self.interval)

    def mean(self, windows: list[tuple[float, float]]) -> float | None:
        """Mean utilisation over the samples inside any of the ``(start, end)`` windows."""
        values = [u for t, u in self.samples if any(a <= t <= b for a, b in windows)]
        return statistics.fmean(values) if values else None


def _peak(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def _reset(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _measure(stage, what, count, unit, fn, device, sampler) -> Row:
    """Run ``fn`` once, timed on the device, with the GPU sampled."""
    _reset(device)
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    end = time.perf_counter()
    return report(Row(stage, what, count, unit, end - start, sampler.mean([(start, end)]), _peak(device)))


def report(row: Row) -> Row:
    """Print ``row`` as one table line the moment it is measured (a run stopped part-way keeps what it measured)."""
    print(f"measured: {_table_line(row)}", flush=True)
    return row


def count_tower_videos(model) -> dict[str, int]:
    """Count the videos that go through ``model``'s vision tower (a forward pre-hook); returns the live counter."""
    counter = {"videos": 0}
    visual = next(m for n, m in model.named_modules() if n == "visual" or n.endswith(".visual"))

    def hook(module, args, kwargs):
        grid = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
        counter["videos"] += int(grid.shape[0])

    visual.register_forward_pre_hook(hook, with_kwargs=True)
    return counter


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step (synchronised with the device), and the windows for the GPU sampler."""

    def __init__(self, device: torch.device):
        self.device = device
        self.windows: list[tuple[float, float]] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        sync(self.device)
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        sync(self.device)
        self.windows.append((self._start, time.perf_counter()))


def _parse_recipe(name: str, config: Path, overrides: dict) -> tuple:
    """``recipes/<name>.py``'s dataclasses parsed from the paper's YAML with ``overrides`` (as CLI flags)."""
    flags = ["--config", str(config)]
    for key, value in overrides.items():
        flags += [f"--{key}", str(value)]
    return load_recipe(name).make_parser().parse_args_and_config(args=flags)


SMALL_SAMPLING = {"resized_height": 56, "resized_width": 56, "nframes": 2}


def _training_overrides(args, out: Path) -> dict:
    cpu = args.device == "cpu"
    return {
        **(SMALL_SAMPLING if args.sampling == "small" else {}),
        "output_dir": out,
        "max_steps": args.steps + 1,
        "save_strategy": "no",
        "report_to": "none",
        "logging_steps": 1,
        "use_cpu": str(cpu).lower(),
        "bf16": str(args.dtype == "bfloat16").lower(),
        "model_name_or_path": "random-weights",
        "dtype": args.dtype,
    }


def _timed_steps(trainer, timer: StepTimer, sampler: GpuSampler, device) -> tuple[float, float | None]:
    """Train, then the mean step time and GPU utilisation over the steps after the first (warm-up)."""
    _reset(device)
    trainer.train()
    timed = timer.windows[1:] or timer.windows
    seconds = statistics.fmean(b - a for a, b in timed)
    return seconds, sampler.mean(timed)


def _step_row(stage: str, what: str, seconds: float, util, device, items_per_step: int) -> Row:
    """A measured optimizer step, with hours per 10k training items (``items_per_step`` per step)."""
    row = Row(stage, what, 1, "step", seconds, util, _peak(device))
    row.per_10k_hours = 10_000 / items_per_step * seconds / 3600
    return report(row)


# -- stages ----------------------------------------------------------------------------------------------------------
def _model(args, tmp):
    """A fresh model of ``args.shape`` (LoRA is injected in place, so every stage builds its own)."""
    model, processor, args.described = build_model(args, tmp)
    return model, processor


def bench_scoring(args, videos, sampling, device, sampler, tmp) -> list[Row]:
    """Expectation: the model alone on prepared inputs vs end to end with workers; generation end to end."""
    model, processor = _model(args, tmp)
    config = ScoringConfig(num_workers=args.num_workers, prefetch_factor=2)
    batches = [videos[i : i + args.batch_size] for i in range(0, len(videos), args.batch_size)]
    score_inputs(model, processor, prepare_scoring_inputs(processor, batches[0], config, sampling), config)  # warm-up
    prepared = [prepare_scoring_inputs(processor, b, config, sampling) for b in batches]
    on_device = [ScoringInputs(p.videos, {m: p.model_inputs(m, device) for m in p.inputs}) for p in prepared]
    rows = [
        _measure(
            "scoring",
            f"expectation, model alone on prepared inputs (batch {args.batch_size})",
            len(videos),
            "video",
            lambda: [score_inputs(model, processor, p, config) for p in on_device],
            device,
            sampler,
        )
    ]
    on_device.clear()
    prepared.clear()
    pool = Dataset.from_dict({"video_id": [f"v{i}" for i in range(len(videos))], "video": videos})
    run = PoolScoringRun(batch_size=args.batch_size, flush_every=args.batch_size)
    state = data_parallel_state()
    for mode, extra in (("expectation", {}), ("generate", {"max_new_tokens": args.max_new_tokens})):
        cfg = ScoringConfig(mode=mode, num_workers=args.num_workers, prefetch_factor=2, **extra)
        work = tmp / f"score_{mode}"
        what = f"{mode}, end to end `score_pool`, {args.num_workers} worker(s)"
        if mode == "generate":
            what += f", {args.max_new_tokens} new tokens"
        rows.append(
            _measure(
                "scoring",
                what,
                len(videos),
                "video",
                lambda cfg=cfg, work=work: score_pool(pool, work, model, processor, cfg, sampling, state, run, {}),
                device,
                sampler,
            )
        )
    return rows


def bench_g_step(args, videos, device, sampler, tmp) -> list[Row]:
    """One optimizer step of g (the paper's config: batch 8, LoRA, fidelity on in-batch pairs)."""
    from mds_vqa.failure_predictor import FailurePredictorTrainer

    _, training_args, model_args, sampling, _ = _parse_recipe(
        "train_failure_predictor",
        PAPER / "failure_predictor.yaml",
        {
            **_training_overrides(args, tmp / "g"),
            "dataset_path": "unused",
            "eval_strategy": "no",
            "dataloader_num_workers": args.num_workers,
        },
    )
    videos_per_step = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
    n = (args.steps + 1) * videos_per_step
    rows = {
        "video": [videos[i % len(videos)] for i in range(n)],
        "error": [float(i % 7) / 3 for i in range(n)],
        "dataset": ["source"] * n,
        "video_id": [f"v{i}" for i in range(n)],
    }
    model, processor = _model(args, tmp)
    timer = StepTimer(device)
    trainer = FailurePredictorTrainer(
        model,
        training_args,
        train_dataset=Dataset.from_dict(rows),
        processing_class=processor,
        peft_config=peft_config_from(model_args),
        sampling=sampling,
        callbacks=[timer],
    )
    seconds, util = _timed_steps(trainer, timer, sampler, device)
    what = (
        f"g step, batch {training_args.per_device_train_batch_size} x accumulation "
        f"{training_args.gradient_accumulation_steps}, LoRA r {model_args.lora_r}"
    )
    row = _step_row("g_step", what, seconds, util, device, videos_per_step)
    del trainer, model
    return [row]


def bench_grpo_step(args, videos, device, sampler, tmp) -> list[Row]:
    """One GRPO optimizer step of the paper's config, as shipped and with the vision tower on every completion."""
    from mds_vqa.grpo import VideoGRPOTrainer
    from mds_vqa.rewards import get_reward_funcs

    variants = {
        "as shipped: tower once per distinct video, 1 reading worker": {},
        "tower on every completion in every pass, reading in the loop": {
            "cache_video_embeddings": "false",
            "dataloader_num_workers": 0,
        },
    }
    rows = []
    for name, extra in variants.items():
        script_args, training_args, model_args, sampling, _ = _parse_recipe(
            "finetune",
            PAPER / "finetune.yaml",
            {
                **_training_overrides(args, tmp / "grpo"),
                "max_completion_length": args.max_completion_length,
                **extra,
            },
        )
        prompts_per_step = (
            training_args.per_device_train_batch_size
            * training_args.gradient_accumulation_steps
            // training_args.num_generations
        )
        n = (args.steps + 1) * prompts_per_step
        prompt = [{"role": "user", "content": get_prompt("scoring", script_args.prompt_variant)}]
        train = Dataset.from_dict(
            {
                "video": [videos[i % len(videos)] for i in range(n)],
                "mos": [1.0 + 4.0 * (i % 5) / 4 for i in range(n)],
                "dataset": ["source"] * n,
                "prompt": [prompt] * n,
            }
        )
        model, processor = _model(args, tmp)
        encoded = count_tower_videos(model)
        timer = StepTimer(device)
        trainer = VideoGRPOTrainer(
            model=model,
            reward_funcs=get_reward_funcs(script_args.reward_funcs, num_generations=training_args.num_generations),
            args=training_args,
            train_dataset=train,
            processing_class=processor,
            peft_config=peft_config_from(model_args),
            sampling=sampling,
            callbacks=[timer],
        )
        seconds, util = _timed_steps(trainer, timer, sampler, device)
        what = (
            f"GRPO step, {name} (G {training_args.num_generations}, {prompts_per_step} prompts, "
            f"{args.max_completion_length} tokens, {encoded['videos']} videos through the vision tower in "
            f"{args.steps + 1} steps)"
        )
        rows.append(_step_row("grpo_step", what, seconds, util, device, prompts_per_step))
        del trainer, model
    return rows


def bench_features(args, videos, device, sampler, tmp) -> list[Row]:
    """CLIP features end to end vs decoding + preprocessing alone (same workers)."""
    from mds_vqa.features import VideoFrameDataset, extract_features, load_open_clip

    model, preprocess = load_open_clip(args.clip_model, pretrained=None, device=device, precision=args.clip_precision)
    pool = Dataset.from_dict({"video_id": [f"v{i}" for i in range(len(videos))], "video": videos})
    frames = VideoFrameDataset(
        [{"index": i, "video": v} for i, v in enumerate(videos)], args.num_frames, preprocess, "auto"
    )

    def decode_alone():
        loader = torch.utils.data.DataLoader(
            frames, batch_size=None, num_workers=args.num_workers, collate_fn=lambda x: x
        )
        return sum(1 for _ in loader)

    def end_to_end():
        summary = extract_features(
            pool,
            tmp / "features",
            model=model,
            preprocess=preprocess,
            num_frames=args.num_frames,
            num_workers=args.num_workers,
            device=device,
            precision=args.clip_precision,
            progress=False,
        )
        if summary.computed != len(videos):
            raise RuntimeError(
                f"features: {summary.computed} of {len(videos)} videos computed: {summary.failures[:3]}"
            )

    what = f"{args.clip_model} ({args.clip_precision}), {args.num_frames} frames, {args.num_workers} worker(s)"
    rows = [
        _measure(
            "features", f"decode + preprocess alone, {what}", len(videos), "video", decode_alone, device, sampler
        ),
        _measure(
            "features", f"end to end `extract_features`, {what}", len(videos), "video", end_to_end, device, sampler
        ),
    ]
    return rows


def _table_line(r: Row) -> str:
    """``r`` as a Markdown table line (hours per 10k videos computed for a video row that has none)."""
    if r.per_10k_hours is None and r.unit == "video":
        r.per_10k_hours = 10_000 * r.seconds / r.count / 3600
    util = f"{r.gpu_util:.0f} %" if r.gpu_util is not None else "n/a"
    peak = f"{r.peak_gib:.1f}" if r.peak_gib is not None else "n/a"
    return f"| {r.stage} | {r.what} | {r.rate} | {r.seconds:.2f} | {util} | {peak} | {r.per_10k_hours:.2f} |"


def print_table(rows: list[Row], header: str) -> None:
    """The Markdown table of ``rows`` after a header naming the run."""
    print(f"\n{header}\n")
    print("| stage | what | rate | seconds | GPU util | peak GiB | h per 10k |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(_table_line(r))
    by = {r.what: r for r in rows}
    alone = next((r for w, r in by.items() if w.startswith("expectation, model alone")), None)
    e2e = next((r for w, r in by.items() if w.startswith("expectation, end to end")), None)
    if alone and e2e:
        print(f"\nscoring: end to end / model alone (videos/s) = {alone.seconds / e2e.seconds:.2f}")
    grpo = [r for r in rows if r.stage == "grpo_step"]
    if len(grpo) == 2:
        print(
            f"GRPO: as shipped {grpo[1].seconds / grpo[0].seconds:.2f}x faster per step than the tower per completion"
        )
    feats = [r for r in rows if r.stage == "features"]
    if len(feats) == 2:
        print(f"features: end to end / decode alone (videos/s) = {feats[0].seconds / feats[1].seconds:.2f}")


def main(argv: list[str] | None = None) -> list[Row]:
    """Parse the flags, run the stages, print the table; returns the rows."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="small")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, help="Default: bfloat16 on a GPU, float32 on CPU.")
    parser.add_argument("--attn_implementation", default="sdpa")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--n", type=int, default=16, help="Videos per scoring / features measurement.")
    parser.add_argument("--clip", default="960x540x240@24", help="Generated clips: WIDTHxHEIGHTxFRAMES@FPS.")
    parser.add_argument("--distinct", type=int, default=2, help="Distinct generated clips (copied to N files).")
    parser.add_argument("--videos_dir", default=None, help="Folder of .mp4 files instead of generated clips.")
    parser.add_argument("--sampling", choices=["released", "small"], default="released")
    parser.add_argument("--batch_size", type=int, default=8, help="Scoring batch.")
    parser.add_argument("--num_workers", type=int, default=2, help="DataLoader workers of scoring, g and features.")
    parser.add_argument("--max_new_tokens", type=int, default=256, help="Scoring by generation.")
    parser.add_argument("--steps", type=int, default=2, help="Timed optimizer steps (after one warm-up step).")
    parser.add_argument("--max_completion_length", type=int, default=64, help="GRPO completion tokens.")
    parser.add_argument("--clip_model", default="ViT-L-14")
    parser.add_argument("--clip_precision", default=None, help="Default: fp16 on a GPU, fp32 on CPU.")
    parser.add_argument("--num_frames", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="torch threads of this process.")
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    args.dtype = args.dtype or ("bfloat16" if cuda else "float32")
    args.clip_precision = args.clip_precision or ("fp16" if cuda else "fp32")
    args.model = None
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    tmp = Path(tempfile.mkdtemp(prefix="mds_bench_scale_"))
    try:
        videos = make_clips(args, tmp / "videos")
        sampling = VideoSamplingConfig(**SMALL_SAMPLING) if args.sampling == "small" else VideoSamplingConfig()
        sampler = GpuSampler(device)
        rows: list[Row] = []
        benches = {
            "scoring": lambda: bench_scoring(args, videos, sampling, device, sampler, tmp),
            "g_step": lambda: bench_g_step(args, videos, device, sampler, tmp),
            "grpo_step": lambda: bench_grpo_step(args, videos, device, sampler, tmp),
            "features": lambda: bench_features(args, videos, device, sampler, tmp),
        }
        with sampler:
            for stage in dict.fromkeys(args.stages):  # in the order given, each once
                rows += benches[stage]()
        source = args.videos_dir or f"generated clips {args.clip}"
        header = (
            f"Scale benchmark: {getattr(args, 'described', 'no Qwen2.5-VL stage')}, {args.dtype}, "
            f"{args.attn_implementation}; N = {len(videos)} videos ({source}), sampling {args.sampling}, "
            f"{args.steps} timed steps after a warm-up\nHardware: {hardware(device)}"
        )
        print_table(rows, header)
        return rows
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
