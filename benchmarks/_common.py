"""What the benchmarks share: models of the real shapes built from a config with random weights (no download),
generated real-size clips, timing on the device and a line naming the hardware. Imported by the scripts of this
folder (``python benchmarks/<name>.py`` puts it on the path)."""

from __future__ import annotations

import os
import platform
import shutil
import time
from pathlib import Path

import torch

from mds_vqa.modeling import load_model_and_processor, resolve_dtype
from mds_vqa.testing import Distortion, build_tiny_qwen2_5_vl, make_video

# Qwen2.5-VL's dimensions (the config.json of the 7B and the 3B); the vocabulary is the real size, the tokenizer the
# tiny one. "small" is a CPU-sized model with the same structure; "tiny" the test suite's model.
SHAPE_7B = {
    "text_hidden": 3584,
    "text_intermediate": 18944,
    "text_layers": 28,
    "text_heads": 28,
    "text_kv_heads": 4,
    "vision_depth": 32,
    "vision_hidden": 1280,
    "vision_intermediate": 3420,
    "vision_heads": 16,
    "vocab_size": 152064,
}
SHAPES = {
    "7b": SHAPE_7B,
    "3b": {
        **SHAPE_7B,
        "text_hidden": 2048,
        "text_intermediate": 11008,
        "text_layers": 36,
        "text_heads": 16,
        "text_kv_heads": 2,
        "vocab_size": 151936,
        "tie_word_embeddings": True,
    },
    "small": {
        "text_hidden": 256,
        "text_intermediate": 512,
        "text_layers": 4,
        "text_heads": 4,
        "text_kv_heads": 2,
        "vision_depth": 4,
        "vision_hidden": 128,
        "vision_intermediate": 256,
        "vision_heads": 4,
        "vocab_size": 0,
    },
    "tiny": {
        "text_hidden": 64,
        "text_intermediate": 128,
        "text_layers": 2,
        "text_heads": 4,
        "text_kv_heads": 2,
        "vision_depth": 2,
        "vision_hidden": 32,
        "vision_intermediate": 64,
        "vision_heads": 2,
        "vocab_size": 0,
    },
}
SIZE_FLAGS = tuple(SHAPE_7B)
# The processor must keep the frames the sampling resized (its default budget would shrink 504x504 ones).
PROCESSOR_PIXELS = {"min_pixels": 28 * 28, "max_pixels": 768 * 28 * 28}


def count_passes(model):
    """Attach a counter of forward calls to ``model``; returns the counter dict."""
    counter = {"n": 0}
    model.register_forward_pre_hook(lambda *a, **k: counter.__setitem__("n", counter["n"] + 1))
    return counter


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _mrope(head_dim: int) -> list[int]:
    """Rotary sections (temporal, height, width) over ``head_dim / 2``: Qwen2.5-VL's [16, 24, 24] at 128."""
    if head_dim == 128:
        return [16, 24, 24]
    third = head_dim // 2 // 3
    return [head_dim // 2 - 2 * third, third, third]


def _sized_model(folder: str, sizes: dict, device: torch.device, dtype, attn_implementation: str | None = None):
    """A Qwen2.5-VL with the tiny model's config resized by ``sizes`` and random weights, built on ``device``."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tiny = Qwen2_5_VLConfig.from_pretrained(folder).to_dict()
    text, vision = tiny["text_config"], tiny["vision_config"]
    text.pop("layer_types", None)  # recomputed for the new depth
    head_dim = sizes["text_hidden"] // sizes["text_heads"]
    text.update(
        hidden_size=sizes["text_hidden"],
        intermediate_size=sizes["text_intermediate"],
        num_hidden_layers=sizes["text_layers"],
        num_attention_heads=sizes["text_heads"],
        num_key_value_heads=sizes["text_kv_heads"],
        vocab_size=sizes["vocab_size"],
        rope_parameters={**text["rope_parameters"], "mrope_section": _mrope(head_dim)},
    )
    vision.update(
        depth=sizes["vision_depth"],
        hidden_size=sizes["vision_hidden"],
        intermediate_size=sizes["vision_intermediate"],
        num_heads=sizes["vision_heads"],
        out_hidden_size=sizes["text_hidden"],
        window_size=112,
        fullatt_block_indexes=[i for i in range(sizes["vision_depth"]) if i % 8 == 7] or [sizes["vision_depth"] - 1],
    )
    if not sizes.get("tie_word_embeddings", sizes["vocab_size"] <= 1000):  # the 7B does not tie its LM head
        tiny["tie_word_embeddings"] = text["tie_word_embeddings"] = False
    config = Qwen2_5_VLConfig(**tiny)
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype, **extra)
    return model.eval()


def build_model(args, tmp: Path):
    """``(model, processor, description)`` on ``args.device``: ``args.model`` loaded, or a Qwen2.5-VL of
    ``args.shape`` (:data:`SHAPES`, any size overridden by the ``--text_*``/``--vision_*`` flags) with random
    weights."""
    device, dtype = torch.device(args.device), resolve_dtype(args.dtype)
    attn = getattr(args, "attn_implementation", None)
    if getattr(args, "model", None):
        model, processor = load_model_and_processor(args.model, dtype=dtype, attn_implementation=attn)
        return model.to(device), processor, args.model
    folder = tmp / "tiny_model"
    if not folder.exists():
        build_tiny_qwen2_5_vl(folder, **PROCESSOR_PIXELS)
    sizes = dict(SHAPES[args.shape])
    sizes.update({k: getattr(args, k) for k in SIZE_FLAGS if getattr(args, k, None) is not None})
    if sizes == SHAPES["tiny"]:
        model, processor = load_model_and_processor(folder, dtype=dtype, attn_implementation=attn)
        return model.to(device), processor, "tiny local Qwen2.5-VL (random)"
    _, processor = load_model_and_processor(folder, dtype=dtype)
    sizes["vocab_size"] = max(sizes["vocab_size"], len(processor.tokenizer))
    model = _sized_model(folder, sizes, device, dtype, attn)
    params = sum(p.numel() for p in model.parameters())
    count = f"{params / 1e9:.2f} B" if params >= 1e8 else f"{params / 1e6:.1f} M"
    shape = ", ".join(f"{k} {v}" for k, v in sizes.items())
    return model, processor, f"Qwen2.5-VL from a config, random weights, {count} parameters ({shape})"


def make_clips(args, folder: Path) -> list[str]:
    """``args.n`` video files: ``args.distinct`` generated clips copied round-robin (decoding cost is per file)."""
    if args.videos_dir:
        return sorted(str(p) for p in Path(args.videos_dir).glob("*.mp4"))[: args.n]
    size, fps = args.clip.split("@")
    width, height, frames = (int(v) for v in size.split("x"))
    start = time.perf_counter()
    sources = [
        make_video(
            folder / f"source_{i}.mp4",
            Distortion(noise=3 + 3 * i),
            num_frames=frames,
            height=height,
            width=width,
            fps=int(fps),
            seed=i,
        )
        for i in range(min(args.distinct, args.n))
    ]
    print(
        f"generated {len(sources)} clip(s) of {width}x{height}, {frames} frames at {fps} fps in "
        f"{time.perf_counter() - start:.0f} s"
    )
    videos = []
    for i in range(args.n):
        videos.append(str(shutil.copy(sources[i % len(sources)], folder / f"video_{i:04d}.mp4")))
    return videos


def timed(fn, device: torch.device) -> tuple[float, object]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def hardware(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").exists():
        names = [
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    out = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads"
    if device.type == "cuda":
        out += f", {torch.cuda.get_device_name(device)}"
    return out
