"""GRPO on videos: a subclass of TRL's ``GRPOTrainer`` that shows the model the video in every forward pass.

TRL 1.16's ``GRPOTrainer`` handles images, not videos: generation sees a video prompt, but the log-prob forward
passes (old, reference and the training forward) get only ``input_ids``/``attention_mask``, so the policy is trained
without the pixels and nothing complains. :class:`VideoGRPOTrainer` fixes that without forking TRL:

- prompts are tokenised and their frames read through :mod:`mds_vqa.modeling` (the project's reader with
  qwen-vl-utils' sampling rules and the right ``video_metadata``; each distinct video decoded once per batch, not
  once per generation);
- the video tensors (``pixel_values_videos``, ``video_grid_thw``, ``second_per_grid_ts``, and ``mm_token_type_ids``
  for Qwen's 3-D rotary positions) go into generation, into the old/reference log-probs, and into the training
  forward, sliced per sample so TRL's shuffling and gradient-accumulation splits keep them aligned;
- reading and processing run ahead of the model in DataLoader workers (``dataloader_num_workers``, default 1:
  :class:`VideoPromptCollator` prepares the next generation batch while the model trains on the current one);
- with the vision tower frozen (the paper's setting), the tower runs **once per distinct video of a generation
  batch** (``cache_video_embeddings``): its output is reused by generation and by every log-prob pass (old,
  reference, training forward and its gradient-checkpointing recompute) through the model's ``mm_encoder_outputs``
  input, instead of running the tower again on each of the ``G`` completions in each pass;
- batches are drawn one dataset at a time (:class:`DatasetRepeatSampler`), so Thurstone comparisons are between
  videos rated on the same scale.

The training set holds a conversational ``prompt`` (the text), a ``video`` path, ``mos`` and ``dataset``; the
trainer inserts the video into the prompt.

**Pair rows.** The training set may also hold rows from pair Datasets (:mod:`mds_vqa.pair_prompts`): one prompt per
video of a pair, the two sharing a ``pair_id`` (column ``pair_column``), with ``pair_side`` and ``pair_p`` and a null
``mos``. The sampler keeps the two prompts of a pair in one generation batch (:func:`mds_vqa.samplers.grouped_chunks`:
a generation batch is whole pairs of one dataset, or MOS prompts of one dataset, so ``generation_batch_size //
num_generations`` must be even), and the TRL-facing Thurstone reward, which sees the whole generation batch gathered
from every process, takes a pair prompt's ground truth from ``pair_p`` (:mod:`mds_vqa.rewards`). A ``weight_column``
(``sample_weight``), when the training set has one, scales each prompt's advantages: a per-prompt loss weight, e.g.
``pair_weight`` for weak pairs next to human MOS.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling
from trl import GRPOConfig, GRPOTrainer
from trl.models.utils import unwrap_model_for_generation
from trl.trainer.utils import pad

from .modeling import VideoSamplingConfig, fetch_videos, freeze_vision_tower, processor_inputs
from .samplers import DatasetRepeatSampler

logger = logging.getLogger(__name__)

__all__ = [
    "VideoGRPOConfig",
    "VideoGRPOTrainer",
    "DatasetRepeatSampler",
    "VIDEO_FIELDS",
    "EMBED_FIELDS",
    "build_video_prompt",
]

VIDEO_FIELDS = ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts")
# per-sample fields of a batch whose vision tower ran once per distinct video (cache_video_embeddings)
EMBED_FIELDS = ("video_embeds", "video_grid_thw", "second_per_grid_ts")


@dataclass
class VideoGRPOConfig(GRPOConfig):
    """``trl.GRPOConfig`` plus the video options of :class:`VideoGRPOTrainer`."""

    group_batches_by_dataset: bool = field(
        default=True, metadata={"help": "Draw every generation batch from a single dataset (Thurstone needs it)."}
    )
    group_column: str = field(default="dataset", metadata={"help": "Column naming each video's dataset."})
    video_column: str = field(default="video", metadata={"help": "Column with the video path."})
    freeze_vision_tower: bool = field(default=True, metadata={"help": "Keep the vision tower frozen."})
    dataloader_num_workers: int = field(
        default=1,
        metadata={
            "help": "DataLoader workers that read and process the next generation batch's videos while the model "
            "trains (0: in the training loop). One worker suffices (a batch is decoded once); more workers each "
            "decode the batch again for its repeats (steps_per_generation x num_iterations)."
        },
    )
    cache_video_embeddings: bool = field(
        default=True,
        metadata={
            "help": "With a frozen vision tower, run it once per distinct video of a generation batch and reuse its "
            "output in generation and in every log-prob pass (no effect when the tower trains, or under ZeRO-3)."
        },
    )
    pair_column: str = field(
        default="pair_id", metadata={"help": "Column naming the pair of a pair row (null on MOS rows)."}
    )
    weight_column: str = field(
        default="sample_weight", metadata={"help": "Column of per-prompt loss weights (scales the advantages)."}
    )


def build_video_prompt(
    prompt: list[dict[str, Any]], video: str, sampling: VideoSamplingConfig
) -> list[dict[str, Any]]:
    """Insert the video element before the text of the (last) user message of a conversational prompt."""
    out = [dict(m) for m in prompt]
    for msg in reversed(out):
        if msg["role"] == "user":
            content = msg["content"]
            parts = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
            msg["content"] = [sampling.video_element(video), *parts]
            return out
    raise ValueError(f"Prompt has no user message: {prompt!r}")


def video_of(prompt: Any) -> str | None:
    """The video path of a conversational prompt (its first ``{"type": "video"}`` part), or None."""
    if not isinstance(prompt, list):
        return None
    for msg in prompt:
        if isinstance(msg.get("content"), list):
            for part in msg["content"]:
                if isinstance(part, dict) and part.get("type") == "video":
                    return part["video"]
    return None


@dataclass
class PreparedVideoPrompt:
    """One (video, prompt) read and processed: unpadded prompt ids (with the video placeholders), their
    ``mm_token_type_ids`` (or None), the video's ``pixel_values_videos`` rows, ``video_grid_thw`` and
    ``second_per_grid_ts``."""

    input_ids: list[int]
    mm_token_type_ids: list[int] | None
    pixel_values_videos: torch.Tensor
    video_grid_thw: torch.Tensor
    second_per_grid_ts: torch.Tensor


def prepare_video_prompts(
    processor, prompts: list, chat_template_kwargs: dict | None = None
) -> dict[tuple[str, str], PreparedVideoPrompt]:
    """Read and process each distinct (video, chat text) of conversational video ``prompts`` once: the frames through
    :func:`mds_vqa.modeling.fetch_videos`, the text and frames through one processor call. Keyed by
    ``(video path, chat text)``."""
    texts = [
        processor.apply_chat_template(p, tokenize=False, add_generation_prompt=True, **(chat_template_kwargs or {}))
        for p in prompts
    ]
    keys = [(video_of(p), t) for p, t in zip(prompts, texts)]
    unique = list(dict.fromkeys(keys))
    first = {k: prompts[keys.index(k)] for k in unique}
    videos, metadata = fetch_videos([first[k] for k in unique])
    enc = processor_inputs(processor, [k[1] for k in unique], videos, metadata)
    mask = enc["attention_mask"].bool()
    pixels = torch.split(enc["pixel_values_videos"], enc["video_grid_thw"].prod(-1).tolist(), dim=0)
    return {
        k: PreparedVideoPrompt(
            input_ids=enc["input_ids"][i][mask[i]].tolist(),
            mm_token_type_ids=enc["mm_token_type_ids"][i][mask[i]].tolist() if "mm_token_type_ids" in enc else None,
            pixel_values_videos=pixels[i],
            video_grid_thw=enc["video_grid_thw"][i],
            second_per_grid_ts=enc["second_per_grid_ts"][i],
        )
        for i, k in enumerate(unique)
    }


PREPARED_KEY = "_prepared_video_prompts"


class VideoPromptCollator:
    """The generation batch's collator: rows unchanged, plus (under ``PREPARED_KEY`` of the first row) every distinct
    (video, prompt) of the batch read and processed (:func:`prepare_video_prompts`). Run in DataLoader workers, it
    prepares the next batch while the model trains; a worker that is handed the same batch again (its repeats for
    ``steps_per_generation`` and ``num_iterations``) returns what it prepared without reading again."""

    def __init__(
        self, processor, sampling: VideoSamplingConfig, video_column: str = "video", chat_template_kwargs=None
    ):
        self.processor = processor
        self.sampling = sampling
        self.video_column = video_column
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self._last: tuple[tuple, dict] | None = None

    def __call__(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not rows or self.video_column not in rows[0] or video_of(rows[0]["prompt"]) is not None:
            return rows
        prompts = [build_video_prompt(r["prompt"], r[self.video_column], self.sampling) for r in rows]
        signature = tuple((r[self.video_column], repr(r["prompt"])) for r in rows)
        if self._last is not None and self._last[0] == signature:
            prepared = self._last[1]
        else:
            prepared = prepare_video_prompts(self.processor, prompts, self.chat_template_kwargs)
            self._last = (signature, prepared)
        rows = [dict(r) for r in rows]
        rows[0][PREPARED_KEY] = prepared
        return rows


class VideoGRPOTrainer(GRPOTrainer):
    """``trl.GRPOTrainer`` for video prompts (see the module docstring).

    Args (besides ``GRPOTrainer``'s):
        sampling: frame sampling for the VLM (:class:`~mds_vqa.modeling.VideoSamplingConfig`).
    """

    _tag_names = ["trl", "grpo", "mds-vqa", "video-quality-assessment"]

    def __init__(
        self,
        model,
        reward_funcs,
        args: VideoGRPOConfig | None = None,
        *,
        sampling: VideoSamplingConfig | None = None,
        **kwargs,
    ):
        self.sampling = sampling or VideoSamplingConfig()
        self._active_video: dict[str, Any] | None = None
        super().__init__(model=model, reward_funcs=reward_funcs, args=args, **kwargs)
        if getattr(self.args, "freeze_vision_tower", True):
            n = freeze_vision_tower(self.model)
            logger.info("Vision tower frozen (%d tensors).", n)
        self.data_collator = VideoPromptCollator(
            self.processing_class,
            self.sampling,
            getattr(self.args, "video_column", "video"),
            self.chat_template_kwargs,
        )
        self._prepared: dict[tuple[str, str], PreparedVideoPrompt] = {}
        # (video, prompt) pairs read in the training loop (not by a DataLoader worker) and videos through the vision
        # tower, since the start; each generation batch's share is logged as video/read_in_loop and video/encoded
        self.video_reads = 0
        self.vision_encoder_calls = 0
        self._cache_vision = self._can_cache_vision()
        config = self.model.config
        self._video_token_id = getattr(config, "video_token_id", None)
        self._image_token_id = getattr(config, "image_token_id", None)
        self._suppress_vision_tokens(config)

    def _can_cache_vision(self) -> bool:
        """Whether the vision tower's output can be computed once per generation batch and reused: the option is on,
        no vision parameter trains (a frozen tower, no adapter on it), generation is transformers' own (not vLLM)
        and the parameters are not partitioned (ZeRO-3)."""
        if not getattr(self.args, "cache_video_embeddings", True):
            return False
        trainable = [n for n, p in self.model.named_parameters() if p.requires_grad and ".visual." in f".{n}"]
        if trainable:
            logger.info("The vision tower trains (%s, ...): its output is recomputed in every pass.", trainable[0])
            return False
        if getattr(self, "use_vllm", False) or getattr(self, "use_transformers_continuous_batching", False):
            return False
        if getattr(self.accelerator.state, "deepspeed_plugin", None) is not None:
            if self.accelerator.state.deepspeed_plugin.zero_stage == 3:
                return False
        return True

    def _suppress_vision_tokens(self, config) -> None:
        """Never sample a vision placeholder (video/image pad, vision start/end): TRL suppresses the image token only,
        and a sampled video token makes the log-prob pass count more video tokens than the video has features."""
        ids = [
            getattr(config, name, None)
            for name in ("video_token_id", "image_token_id", "vision_start_token_id", "vision_end_token_id")
        ]
        ids = [i for i in ids if i is not None]
        generation_config = getattr(self, "generation_config", None)
        if not ids or generation_config is None:  # vLLM generation: its own sampling parameters
            return
        suppress = sorted(set(generation_config.suppress_tokens or []) | set(ids))
        generation_config.suppress_tokens = suppress
        if isinstance(getattr(self, "generation_kwargs", None), dict):
            self.generation_kwargs["suppress_tokens"] = suppress

    # -- sampling --------------------------------------------------------------------------------------------------
    def _get_train_sampler(self, dataset=None):
        dataset = dataset if dataset is not None else self.train_dataset
        column = getattr(self.args, "group_column", "dataset")
        columns = getattr(dataset, "column_names", [])
        pair_column = getattr(self.args, "pair_column", "pair_id")
        pair_ids = dataset[pair_column] if pair_column in columns else None
        if getattr(self.args, "group_batches_by_dataset", True) and column in columns:
            return DatasetRepeatSampler(
                dataset[column],
                mini_repeat_count=self.num_generations,
                batch_size=self.args.generation_batch_size // self.num_generations,
                repeat_count=self.num_iterations * self.args.steps_per_generation,
                shuffle=self.shuffle_dataset,
                seed=self.args.seed,
                pair_ids=pair_ids,
            )
        if pair_ids is not None and any(k is not None for k in pair_ids):
            raise ValueError(
                f"The training set has pair rows ({pair_column!r}): they need group_batches_by_dataset=True and a "
                f"{column!r} column, so that both prompts of a pair share a generation batch."
            )
        return super()._get_train_sampler(dataset)

    # -- prompts and generation ------------------------------------------------------------------------------------
    def _tokenize_prompts(self, prompts: list):
        """Video prompts: each distinct (video, prompt) read and processed once (by the DataLoader worker that
        prepared the batch, or here), and with a cacheable vision tower each distinct video encoded once. Returns
        unpadded prompt ids and the video fields; stores the per-sample fields for generation and the log-prob
        passes."""
        if not prompts or video_of(prompts[0]) is None:
            return super()._tokenize_prompts(prompts)
        processor = self.processing_class
        texts = [
            processor.apply_chat_template(p, tokenize=False, add_generation_prompt=True, **self.chat_template_kwargs)
            for p in prompts
        ]
        keys = [(video_of(p), t) for p, t in zip(prompts, texts)]
        unique = list(dict.fromkeys(keys))
        prepared = {k: self._prepared[k] for k in unique if k in self._prepared}
        missing = [k for k in unique if k not in prepared]
        if missing:
            first = [prompts[keys.index(k)] for k in missing]
            prepared.update(prepare_video_prompts(processor, first, self.chat_template_kwargs))
            self.video_reads += len(missing)
        items = [prepared[k] for k in keys]
        device = self.accelerator.device
        grid = torch.stack([x.video_grid_thw for x in items])
        seconds = torch.stack([x.second_per_grid_ts for x in items])
        fields: dict[str, Any] = {"video_grid_thw": grid, "second_per_grid_ts": seconds}
        if self._cache_vision:
            where = {k: i for i, k in enumerate(unique)}
            embeds = self._encode_videos(
                torch.cat([prepared[k].pixel_values_videos for k in unique]),
                torch.stack([prepared[k].video_grid_thw for k in unique]),
            )
            self._active_video = {
                "video_embeds": [embeds[where[k]] for k in keys],  # one tensor per distinct video, shared by its rows
                "video_grid_thw": grid.to(device),
                "second_per_grid_ts": seconds.to(device),
            }
        else:
            on_device = {k: prepared[k].pixel_values_videos.to(device) for k in unique}
            self._active_video = {
                "pixel_values_videos": [on_device[k] for k in keys],
                "video_grid_thw": grid.to(device),
                "second_per_grid_ts": seconds.to(device),
            }
            fields["pixel_values_videos"] = torch.cat([x.pixel_values_videos for x in items])
        if items[0].mm_token_type_ids is not None:
            fields["mm_token_type_ids"] = [x.mm_token_type_ids for x in items]
        return [x.input_ids for x in items], None, fields

    @torch.no_grad()
    def _encode_videos(self, pixel_values_videos: torch.Tensor, video_grid_thw: torch.Tensor) -> list[torch.Tensor]:
        """The frozen vision tower's output (merged video tokens, ``(tokens_i, hidden)``) for each video."""
        model = self.accelerator.unwrap_model(self.model)
        device = self.accelerator.device
        with self.accelerator.autocast():
            out = model.get_video_features(
                pixel_values_videos=pixel_values_videos.to(device),
                video_grid_thw=video_grid_thw.to(device),
                return_dict=True,
            )
        self.vision_encoder_calls += int(video_grid_thw.shape[0])
        return list(out.pooler_output)

    @staticmethod
    def _encoder_outputs(embeds: list[torch.Tensor]) -> dict[str, BaseModelOutputWithPooling]:
        """``mm_encoder_outputs`` of the model's forward/generate for per-sample video embeddings."""
        return {"video": BaseModelOutputWithPooling(pooler_output=tuple(embeds))}

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        """TRL's generation with transformers, fed the cached video embeddings instead of the pixels (so the vision
        tower does not run again for each of the ``G`` completions); TRL's own path otherwise."""
        video = self._active_video
        if video is None or "video_embeds" not in video or not self._cache_vision:
            return super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, has_tool_images=has_tool_images
            )
        device = self.accelerator.device
        pad_id = self._tokenizer.pad_token_id
        prompts = [torch.tensor(ids) for ids in prompt_ids]
        inputs = {
            "input_ids": pad(
                prompts, padding_value=pad_id, padding_side="left", pad_to_multiple_of=self.pad_to_multiple_of
            ),
            "attention_mask": pad(
                [torch.ones_like(t) for t in prompts],
                padding_value=0,
                padding_side="left",
                pad_to_multiple_of=self.pad_to_multiple_of,
            ),
            "video_grid_thw": video["video_grid_thw"],
            "second_per_grid_ts": video["second_per_grid_ts"],
        }
        if "mm_token_type_ids" in multimodal_fields:
            inputs["mm_token_type_ids"] = pad(
                [torch.tensor(x) for x in multimodal_fields["mm_token_type_ids"]],
                padding_value=0,
                padding_side="left",
                pad_to_multiple_of=self.pad_to_multiple_of,
            )
        inputs = {k: v.to(device) for k, v in inputs.items()}
        with (
            unwrap_model_for_generation(
                self.model_wrapped,
                self.accelerator,
                gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                generation_kwargs=self.generation_kwargs,
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
            ) as unwrapped_model,
            torch.no_grad(),
            self._dist.summon_full_params(self.model_wrapped, recurse=False),  # FSDP: TRL's own generation does it
        ):
            sequences = unwrapped_model.generate(
                **inputs,
                mm_encoder_outputs=self._encoder_outputs(video["video_embeds"]),
                generation_config=self.generation_config,
            )
        completion_ids = sequences[:, inputs["input_ids"].size(1) :]
        # keep each completion up to and including its first EOS (TRL's rule)
        is_eos = torch.isin(completion_ids, torch.tensor(self.eos_token_ids, device=completion_ids.device))
        first_eos = torch.where(is_eos.any(dim=1), is_eos.int().argmax(dim=1), is_eos.size(1))
        keep = (torch.arange(is_eos.size(1), device=completion_ids.device)[None] <= first_eos[:, None]).cpu()
        return [c[m].tolist() for c, m in zip(completion_ids.cpu(), keep)], None

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        """Insert each row's video into its prompt, run TRL's generation and scoring with the video fields active
        (old/ref log-probs see the pixels), and return the batch with per-sample video fields attached."""
        self._prepared = {}
        for x in inputs:  # what the collator prepared (in a DataLoader worker), keyed by (video, chat text)
            self._prepared.update(x.get(PREPARED_KEY) or {})
        inputs = [{k: v for k, v in x.items() if k != PREPARED_KEY} for x in inputs]
        column = getattr(self.args, "video_column", "video")
        if inputs and column in inputs[0] and video_of(inputs[0]["prompt"]) is None:
            inputs = [{**x, "prompt": build_video_prompt(x["prompt"], x[column], self.sampling)} for x in inputs]
        self._active_video = None
        reads, encoded = self.video_reads, self.vision_encoder_calls
        try:
            output = super()._generate_and_score_completions(inputs)
            if self._active_video is not None:
                output.update(self._active_video)
        finally:
            self._active_video = None
            self._prepared = {}
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["video/read_in_loop"].append(float(self.video_reads - reads))
        self._metrics[mode]["video/encoded"].append(float(self.vision_encoder_calls - encoded))
        weight = getattr(self.args, "weight_column", None)
        if weight and inputs and weight in inputs[0]:
            w = [1.0 if x[weight] is None else float(x[weight]) for x in inputs]
            output["advantages"] = output["advantages"] * torch.tensor(w, device=output["advantages"].device)
        return output

    # -- log-probs and loss ----------------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """TRL's GRPO loss, with the batch's video tensors active for the training forward."""
        if "video_embeds" in inputs:
            self._active_video = {k: inputs[k] for k in EMBED_FIELDS}
        elif "pixel_values_videos" in inputs:
            self._active_video = {k: inputs[k] for k in VIDEO_FIELDS}
        try:
            return super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
        finally:
            self._active_video = None

    def _mm_token_type_ids(self, input_ids: torch.Tensor, logits_to_keep: int) -> torch.Tensor:
        mm = torch.zeros_like(input_ids)
        if self._video_token_id is not None:
            mm[input_ids == self._video_token_id] = 2
        if self._image_token_id is not None:
            mm[input_ids == self._image_token_id] = 1
        mm[:, input_ids.size(1) - logits_to_keep :] = 0  # completion tokens are text, whatever they are
        return mm

    def _get_per_token_logps_and_entropies(
        self,
        model,
        input_ids,
        attention_mask,
        logits_to_keep,
        batch_size=None,
        compute_entropy=False,
        compute_aux_loss=False,
        **kwargs,
    ):
        """TRL's chunked log-prob computation, fed the active video tensors (sliced per chunk) when there are any."""
        video = self._active_video
        if video is None:
            return super()._get_per_token_logps_and_entropies(
                model,
                input_ids,
                attention_mask,
                logits_to_keep,
                batch_size,
                compute_entropy,
                compute_aux_loss,
                **kwargs,
            )
        n = input_ids.size(0)
        per_sample = video["video_embeds"] if "video_embeds" in video else video["pixel_values_videos"]
        if len(per_sample) != n:
            raise RuntimeError(f"{n} sequences but {len(per_sample)} videos: the batch lost alignment")
        batch_size = batch_size or n
        all_logps, all_entropies, all_aux = [], [], []
        for start in range(0, n, batch_size):
            end = min(start + batch_size, n)
            ids = input_ids[start:end]
            mask = attention_mask[start:end]
            model_inputs = {
                "input_ids": ids,
                "attention_mask": mask,
                "video_grid_thw": video["video_grid_thw"][start:end],
                "second_per_grid_ts": video["second_per_grid_ts"][start:end],
                "mm_token_type_ids": self._mm_token_type_ids(ids, logits_to_keep),
            }
            if "video_embeds" in video:  # the tower's output, computed once per distinct video
                model_inputs["mm_encoder_outputs"] = self._encoder_outputs(list(video["video_embeds"][start:end]))
            else:
                model_inputs["pixel_values_videos"] = torch.cat(list(video["pixel_values_videos"][start:end]))
            if compute_aux_loss:
                model_inputs["output_router_logits"] = True
            labels = ids.masked_fill(mask == 0, -100)
            labels[:, :-logits_to_keep] = -100
            with self.accelerator.autocast():
                outputs = model(**model_inputs, labels=labels, fused_lm_head=True)
            all_logps.append(outputs.log_probs[:, -logits_to_keep:])
            if compute_entropy:
                all_entropies.append(outputs.entropy[:, -logits_to_keep:])
            if compute_aux_loss:
                all_aux.append(outputs.aux_loss)
        logps = torch.cat(all_logps, dim=0)
        entropies = torch.cat(all_entropies, dim=0) if compute_entropy else None
        aux = torch.stack(all_aux).mean() if compute_aux_loss else None
        return logps, entropies, aux
