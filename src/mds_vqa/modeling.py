"""Loading the Qwen2.5-VL quality model, building its chat inputs for videos, and the LoRA configuration.

The same code loads ``hollow404/VQR1-7B-YouTubeUGC`` from the Hub and a tiny local model from a folder.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

logger = logging.getLogger(__name__)

__all__ = [
    "LANGUAGE_MODEL_LINEAR_MODULES",
    "VideoSamplingConfig",
    "load_model_and_processor",
    "model_and_processor_for",
    "build_messages",
    "prepare_inputs",
    "chat_texts",
    "processor_inputs",
    "fetch_videos",
    "lora_config",
    "freeze_vision_tower",
    "resolve_dtype",
]

LANGUAGE_MODEL_LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# A full-match regex for PEFT: every linear layer of the language model, none of the vision tower (whose MLP also
# has gate/up/down projections) and not the LM head.
LANGUAGE_MODEL_LORA_REGEX = r".*language_model.*\.(?:" + "|".join(LANGUAGE_MODEL_LINEAR_MODULES) + r")"


@dataclass
class VideoSamplingConfig:
    """How frames are sampled and resized for the VLM (qwen-vl-utils' rules), with the released code's defaults.

    Frames are taken uniformly (deterministic) at ``fps`` frames per second, between ``min_frames`` and
    ``max_frames`` (both rounded to an even number: Qwen2.5-VL merges frames in pairs), and resized to
    ``resized_height`` × ``resized_width`` snapped to multiples of 28. Set ``nframes`` to take exactly that many
    frames instead, or set the resize fields to ``None`` to resize by ``min_pixels``/``max_pixels``.
    """

    fps: float | None = field(default=2.0, metadata={"help": "Frames per second sampled for the model."})
    max_frames: int = field(default=14, metadata={"help": "At most this many frames."})
    min_frames: int = field(default=4, metadata={"help": "At least this many frames (capped by the video length)."})
    nframes: int | None = field(default=None, metadata={"help": "Exactly this many frames (overrides fps)."})
    resized_height: int | None = field(default=512, metadata={"help": "Frame height (snapped to a multiple of 28)."})
    resized_width: int | None = field(default=512, metadata={"help": "Frame width (snapped to a multiple of 28)."})
    min_pixels: int | None = field(default=None, metadata={"help": "Min pixels per frame when not resizing."})
    max_pixels: int | None = field(default=None, metadata={"help": "Max pixels per frame when not resizing."})

    def video_element(self, video: str) -> dict[str, Any]:
        """The ``{"type": "video", ...}`` content element (qwen-vl-utils' keys) that :func:`fetch_videos` reads."""
        ele: dict[str, Any] = {"type": "video", "video": str(video)}
        if self.nframes is not None:
            ele["nframes"] = self.nframes
        else:
            ele["fps"] = self.fps if self.fps is not None else 2.0
            ele["max_frames"] = self.max_frames
            ele["min_frames"] = self.min_frames
        if self.resized_height is not None and self.resized_width is not None:
            ele["resized_height"], ele["resized_width"] = self.resized_height, self.resized_width
        if self.min_pixels is not None:
            ele["min_pixels"] = self.min_pixels
        if self.max_pixels is not None:
            ele["max_pixels"] = self.max_pixels
        return ele


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | str | None:
    """``"bfloat16"`` → ``torch.bfloat16``; ``"auto"``/``None``/a dtype pass through."""
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    if not hasattr(torch, str(dtype)) or not isinstance(getattr(torch, str(dtype)), torch.dtype):
        raise ValueError(f"Unknown dtype {dtype!r}; use 'auto', 'bfloat16', 'float16' or 'float32'.")
    return getattr(torch, str(dtype))


def load_model_and_processor(
    model_name_or_path: str,
    *,
    adapter: str | None = None,
    dtype: str | torch.dtype | None = "auto",
    attn_implementation: str | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
    device_map: str | dict | None = None,
    padding_side: str = "left",
    merge_adapter: bool = False,
):
    """Load a Qwen2.5-VL model and its processor by Hub id or local path (optionally with a PEFT adapter).

    Args:
        model_name_or_path: e.g. ``"hollow404/VQR1-7B-YouTubeUGC"`` or a folder saved with ``save_pretrained``.
        adapter: a PEFT adapter folder or Hub id loaded with ``PeftModel.from_pretrained``.
        dtype: ``"auto"`` (the checkpoint's), ``"bfloat16"``, ``"float32"``…
        attn_implementation: ``"flash_attention_2"``, ``"sdpa"`` or ``"eager"`` (``None``: transformers' default).
        trust_remote_code: off by default; Qwen2.5-VL is native to transformers.
        padding_side: the tokenizer's padding side; ``"left"`` for batched generation and last-position scoring.
        merge_adapter: merge the adapter into the weights (faster inference, no longer a ``PeftModel``).

    Returns:
        ``(model, processor)``, the model in eval mode.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if revision is not None:
        kwargs["revision"] = revision
    processor = AutoProcessor.from_pretrained(model_name_or_path, **kwargs)
    processor.tokenizer.padding_side = padding_side
    model_kwargs = dict(kwargs)
    if dtype is not None:
        model_kwargs["dtype"] = resolve_dtype(dtype)
    if attn_implementation is not None:
        model_kwargs["attn_implementation"] = attn_implementation
    if device_map is not None:
        model_kwargs["device_map"] = device_map
    model = AutoModelForImageTextToText.from_pretrained(model_name_or_path, **model_kwargs)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
        if merge_adapter:
            model = model.merge_and_unload()
    model.eval()
    return model, processor


def model_and_processor_for(trainer: str, model, processing_class=None, model_init_kwargs: dict | None = None):
    """A trainer's ``(model, processor)``: ``model`` as given, or loaded with :func:`load_model_and_processor` when it
    is a Hub id / folder (its processor then unless ``processing_class`` is given). Raises naming ``trainer`` when no
    processor is known."""
    if isinstance(model, str):
        model, loaded_processor = load_model_and_processor(model, **(model_init_kwargs or {}))
        processing_class = processing_class or loaded_processor
    if processing_class is None:
        raise ValueError(f"{trainer} needs the model's processor (processing_class).")
    return model, processing_class


def build_messages(video: str, prompt: str, sampling: VideoSamplingConfig | None = None) -> list[dict[str, Any]]:
    """One user turn holding the video and the prompt text (the VisualQuality-R1 layout)."""
    sampling = sampling or VideoSamplingConfig()
    return [{"role": "user", "content": [sampling.video_element(video), {"type": "text", "text": prompt}]}]


def fetch_videos(messages: Sequence[list[dict[str, Any]]]) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """Read and resize the video of each conversation: the project's reader (:mod:`mds_vqa.video`) with
    qwen-vl-utils' sampling and resize rules (:func:`mds_vqa.qwen_frames.fetch_video`). Returns the frame tensors and
    their metadata (for the processor's ``video_metadata``).

    Raises:
        VideoReadError: a video cannot be read (the error names the file and the cause).
        ValueError: a conversation holds no video, or its sampling settings are invalid.
    """
    from .qwen_frames import fetch_video

    videos, metadata = [], []
    for conversation in messages:
        elements = [
            ele
            for msg in conversation
            if isinstance(msg["content"], list)
            for ele in msg["content"]
            if isinstance(ele, dict) and "video" in ele
        ]
        if not elements:
            raise ValueError(f"No video in conversation: {conversation}")
        for element in elements:
            video, meta = fetch_video(element)
            videos.append(video)
            metadata.append(meta)
    return videos, metadata


def prepare_inputs(
    processor,
    videos: Sequence[str],
    prompt: str | Sequence[str],
    sampling: VideoSamplingConfig | None = None,
    *,
    add_generation_prompt: bool = True,
    assistant_prefix: str | Sequence[str] | None = None,
    return_tensors: str = "pt",
):
    """Tokenise a batch of (video, prompt) chats and process their frames into model inputs.

    Frames are read and resized by :func:`fetch_videos` (as ``qwen_vl_utils.process_vision_info(...,
    return_video_metadata=True)`` would); the metadata (source fps, frame indices) goes to the processor so that
    temporal positions (``second_per_grid_ts``) are right. ``assistant_prefix`` is text appended after the generation
    prompt (e.g. ``"<answer>"`` to read the score distribution at the answer position).

    Raises:
        VideoReadError: a video cannot be read (the error names the file and the cause).
    """
    if isinstance(videos, str):
        videos = [videos]
    prompts = [prompt] * len(videos) if isinstance(prompt, str) else list(prompt)
    if len(prompts) != len(videos):
        raise ValueError(f"Got {len(videos)} videos but {len(prompts)} prompts.")
    prefixes = (
        [assistant_prefix] * len(videos)
        if assistant_prefix is None or isinstance(assistant_prefix, str)
        else list(assistant_prefix)
    )
    messages = [build_messages(v, p, sampling) for v, p in zip(videos, prompts)]
    texts = chat_texts(processor, messages, prefixes, add_generation_prompt=add_generation_prompt)
    video_inputs, video_metadata = fetch_videos(messages)
    return processor_inputs(processor, texts, video_inputs, video_metadata, return_tensors=return_tensors)


def chat_texts(
    processor,
    messages: Sequence[list[dict[str, Any]]],
    prefixes: Sequence[str | None],
    *,
    add_generation_prompt: bool = True,
) -> list[str]:
    """The chat template of each conversation, followed by its assistant prefix (``None``: none)."""
    return [
        processor.apply_chat_template(m, tokenize=False, add_generation_prompt=add_generation_prompt) + (pre or "")
        for m, pre in zip(messages, prefixes)
    ]


def processor_inputs(processor, texts: Sequence[str], frames, metadata, *, return_tensors: str = "pt"):
    """Model inputs for chat ``texts`` and their videos' read ``frames`` + ``video_metadata`` (frames already sampled,
    so the processor samples none)."""
    return processor(
        text=list(texts),
        videos=list(frames),
        video_metadata=list(metadata),
        do_sample_frames=False,
        padding=True,
        return_tensors=return_tensors,
    )


def lora_config(
    r: int = 64,
    lora_alpha: int = 128,
    lora_dropout: float = 0.05,
    target_modules: str | Sequence[str] | None = None,
    task_type: str = "CAUSAL_LM",
    **kwargs,
):
    """The LoRA of DESIGN.md: r 64, α 128, dropout 0.05 on every linear layer of the language model (the vision
    tower is left out). ``target_modules`` overrides the default regex."""
    from peft import LoraConfig

    return LoraConfig(
        r=r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=target_modules if target_modules is not None else LANGUAGE_MODEL_LORA_REGEX,
        task_type=task_type,
        **kwargs,
    )


def freeze_vision_tower(model: torch.nn.Module, freeze: bool = True) -> int:
    """Set ``requires_grad = not freeze`` on the vision tower's parameters; returns how many tensors were changed."""
    count = 0
    for name, param in model.named_parameters():
        if ".visual." in f".{name}" or name.startswith("visual."):
            param.requires_grad_(not freeze)
            count += 1
    if count == 0:
        logger.warning("freeze_vision_tower: no parameter named '*visual*' found in %s", type(model).__name__)
    return count
