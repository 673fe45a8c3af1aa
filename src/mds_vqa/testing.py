"""Tiny local models and generated videos, for the tests and the offline demo.

Everything here is built on this machine, with no download: a randomly initialised Qwen2.5-VL (a few hundred thousand
parameters) with a byte-level BPE tokenizer trained in memory, a tiny open_clip ViT registered under a local name,
and short mp4 videos with controlled distortions whose quality order is known. The models are saved to a folder and
loaded back by path through the same ``from_pretrained`` code that loads the real 7B model.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .prompts import PROMPTS

__all__ = [
    "QWEN_SPECIAL_TOKENS",
    "QWEN2_VL_CHAT_TEMPLATE",
    "build_tiny_tokenizer",
    "build_tiny_qwen2_5_vl",
    "TINY_OPEN_CLIP_NAME",
    "tiny_open_clip_config",
    "register_tiny_open_clip",
    "Distortion",
    "make_video",
    "make_video_pool",
]

QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# The Qwen2-VL / Qwen2.5-VL chat template.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: "
    "{% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _tokenizer_corpus() -> list[str]:
    texts = [p for task in PROMPTS.values() for p in task.values()]
    texts += ["You are a helpful assistant.", "system", "user", "assistant"]
    texts += [
        f"<think>The video looks {w}.</think> <answer>{s:.2f}</answer>"
        for w in ("sharp", "blurry", "noisy", "fine")
        for s in np.linspace(1, 5, 17)
    ]
    texts += [" ".join(str(i) for i in range(100))]
    return texts * 4


def build_tiny_tokenizer(vocab_size: int = 512):
    """A byte-level BPE trained in memory, wrapped in ``Qwen2Tokenizer`` with the Qwen special tokens and template."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    bpe.train_from_iterator(_tokenizer_corpus(), trainer=trainer)
    state = json.loads(bpe.to_str())
    vocab = state["model"]["vocab"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["model"]["merges"]]
    tok = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=QWEN_SPECIAL_TOKENS[1:],
    )
    tok.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL_TOKENS[1:]})
    tok.chat_template = QWEN2_VL_CHAT_TEMPLATE
    return tok


def build_tiny_qwen2_5_vl(
    output_dir: str | os.PathLike,
    *,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    min_pixels: int = 28 * 28,
    max_pixels: int = 56 * 56,
) -> str:
    """Build a randomly initialised Qwen2.5-VL (text hidden 64, 2 layers; vision depth 2, hidden 32) with a locally
    trained tokenizer and a Qwen processor, save model + processor to ``output_dir`` and return the path.

    Load it with :func:`mds_vqa.modeling.load_model_and_processor` exactly like ``hollow404/VQR1-7B-YouTubeUGC``.
    """
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    tok = build_tiny_tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    heads, kv_heads = 4, 2
    head_dim = hidden_size // heads
    third = head_dim // 2 // 3
    mrope = [head_dim // 2 - 2 * third, third, third]
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tok),
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": num_layers,
            "num_attention_heads": heads,
            "num_key_value_heads": kv_heads,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "tie_word_embeddings": True,
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": hidden_size,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "fullatt_block_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    image_processor = Qwen2VLImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels)
    video_processor = Qwen2VLVideoProcessor(min_pixels=min_pixels, max_pixels=max_pixels)
    processor = Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        video_processor=video_processor,
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return str(out)


# --------------------------------------------------------------------------------------------------------------------
# open_clip
# --------------------------------------------------------------------------------------------------------------------

TINY_OPEN_CLIP_NAME = "mds-tiny-vit"


def tiny_open_clip_config(embed_dim: int = 32) -> dict:
    """An open_clip model config: a ViT with 2 layers, width 64, 32×32 input (a few hundred thousand parameters) and a
    tiny text tower (unused for features, required by open_clip)."""
    return {
        "embed_dim": embed_dim,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
        "text_cfg": {"context_length": 16, "vocab_size": 512, "width": 32, "heads": 2, "layers": 1},
    }


def register_tiny_open_clip(name: str = TINY_OPEN_CLIP_NAME, embed_dim: int = 32) -> str:
    """Register :func:`tiny_open_clip_config` with open_clip under ``name`` (a JSON file in a cache folder);
    build it with ``open_clip.create_model_and_transforms(name, pretrained=None)``. Returns ``name``."""
    import tempfile

    import open_clip

    folder = Path(tempfile.gettempdir()) / "mds_vqa_open_clip_configs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(tiny_open_clip_config(embed_dim)))
    open_clip.add_model_config(path)
    return name


# --------------------------------------------------------------------------------------------------------------------
# Generated videos
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Distortion:
    """Controlled distortions: Gaussian ``blur`` sigma (pixels), additive Gaussian ``noise`` std (0–255 scale), x264
    ``crf`` (0 = lossless … 51 = worst), ``pixelate`` (block size in pixels: the frame is shrunk by this factor and
    enlarged back with nearest-neighbour, 1 = none) and ``washout`` (contrast lost towards mid-grey, 0 = none … 1 =
    flat grey)."""

    blur: float = 0.0
    noise: float = 0.0
    crf: int = 18
    pixelate: int = 1
    washout: float = 0.0

    def severity(self) -> float:
        """A scalar badness: 0 for a pristine video, growing with every distortion (used to define true quality)."""
        return (
            self.blur / 2.0
            + self.noise / 25.0
            + max(0, self.crf - 18) / 16.0
            + (max(1, self.pixelate) - 1) / 4.0
            + 2.5 * self.washout
        )

    def quality(self) -> float:
        """The "true" quality in [1, 5]: 5 for pristine, decreasing monotonically with :meth:`severity`."""
        return 1.0 + 4.0 * math.exp(-self.severity())


def _pixelate(frames: np.ndarray, block: int) -> np.ndarray:
    """Shrink each frame by ``block`` (block means) and enlarge it back with nearest-neighbour."""
    t, h, w, c = frames.shape
    hb, wb = -(-h // block), -(-w // block)
    padded = np.pad(frames, ((0, 0), (0, hb * block - h), (0, wb * block - w), (0, 0)), mode="edge")
    means = padded.reshape(t, hb, block, wb, block, c).mean(axis=(2, 4))
    return np.repeat(np.repeat(means, block, axis=1), block, axis=2)[:, :h, :w]


def _content(num_frames: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Moving colour gradients and a bouncing square: textured content on which blur and noise are visible."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, size=3)
    freq = rng.uniform(0.05, 0.25, size=3)
    colour = rng.uniform(60, 220, size=3)
    frames = np.empty((num_frames, height, width, 3), dtype=np.float32)
    side = max(4, min(height, width) // 4)
    for t in range(num_frames):
        for c in range(3):
            frames[t, :, :, c] = 128 + 90 * np.sin(freq[c] * (xx + 2 * t) + phase[c]) * np.cos(
                freq[(c + 1) % 3] * (yy - t)
            )
        y0 = int((height - side) * (0.5 + 0.5 * math.sin(0.3 * t + phase[0])))
        x0 = int((width - side) * (0.5 + 0.5 * math.cos(0.2 * t + phase[1])))
        frames[t, y0 : y0 + side, x0 : x0 + side] = colour
        frames[t, y0 + side // 3 : y0 + 2 * side // 3, x0 : x0 + side] = 255 - colour  # sharp edges
    return frames


def make_video(
    path: str | os.PathLike,
    distortion: Distortion = Distortion(),
    *,
    num_frames: int = 16,
    height: int = 64,
    width: int = 64,
    fps: int = 8,
    seed: int = 0,
    faststart: bool = False,
) -> str:
    """Write a short H.264 mp4 (PyAV/libx264, yuv420p) of generated content with ``distortion`` applied.

    Blur, pixelation, washout and noise are applied to the pixels (in that order), compression through the x264 CRF.
    Same ``seed`` → same content, so two videos that differ only in their distortion have a known quality order.
    Returns the path as a string.
    """
    import av
    from scipy.ndimage import gaussian_filter

    if height % 2 or width % 2:
        raise ValueError(f"libx264 with yuv420p needs even frame sizes, got {width}x{height}")
    rng = np.random.default_rng(seed)
    frames = _content(num_frames, height, width, rng)
    if distortion.blur > 0:
        frames = gaussian_filter(frames, sigma=(0, distortion.blur, distortion.blur, 0))
    if distortion.pixelate > 1:
        frames = _pixelate(frames, int(distortion.pixelate))
    if distortion.washout > 0:
        frames = 128.0 + (frames - 128.0) * (1.0 - float(distortion.washout))
    if distortion.noise > 0:
        frames = frames + np.random.default_rng(seed + 1).normal(0, distortion.noise, size=frames.shape)
    frames = np.clip(frames, 0, 255).astype(np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # no lookahead: x264's lookahead (macroblock tree) made the 2nd and later videos of a process differ from
        # run to run, so the same seed gave other pixels and tests trained on them drifted
        stream.options = {"crf": str(int(distortion.crf)), "preset": "veryfast", "x264-params": "rc-lookahead=0"}
        for index, arr in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            frame.pts = index  # timestamps in 1/fps
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


def make_video_pool(
    folder: str | os.PathLike,
    distortions: Sequence[Distortion],
    *,
    prefix: str = "video",
    seed: int = 0,
    same_content: bool = False,
    **video_kwargs,
) -> list[dict]:
    """Write one video per distortion into ``folder``; return rows ``{video_id, video, mos, blur, noise, crf}`` where
    ``mos`` is the true quality (:meth:`Distortion.quality`). ``same_content=True`` reuses one content seed."""
    rows = []
    for i, d in enumerate(distortions):
        vid = f"{prefix}_{i:04d}"
        path = make_video(
            Path(folder) / f"{vid}.mp4", d, seed=seed if same_content else seed + 7919 * i, **video_kwargs
        )
        rows.append({"video_id": vid, "video": path, "mos": d.quality(), **asdict(d)})
    return rows
