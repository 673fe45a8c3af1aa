"""Quality pretraining: train a Qwen2.5-VL on a labelled source pool until it scores video quality, so that it can
serve as the base quality model f.

Each training video is shown twice, once under each variant of the scoring prompt (:mod:`mds_vqa.prompts`), with a
supervised answer built from its MOS (on f's 1–5 scale, formatted with two decimals):

- the **direct** prompt, answered ``<answer>{mos:.2f}</answer>``;
- the **thinking** prompt, answered ``<think>{think_text}</think><answer>{mos:.2f}</answer>`` (a fixed rationale, so
  that greedy generation writes the format the GRPO format reward checks and a number that tracks quality).

Both answers end with the end-of-turn token, so generation stops after ``</answer>``. The loss of a batch is

``fidelity_weight · fidelity + sft_weight · CE``

- ``fidelity``: the fidelity loss (:func:`mds_vqa.losses.fidelity_loss`) over every same-dataset pair ``i < j`` of
  the batch (:func:`mds_vqa.failure_predictor.in_batch_pairs`, label ``p = 1`` if ``mos_i ≥ mos_j``) of the
  expectation score: the probability-weighted mean of the digits 1–5 predicted right after ``<answer>`` under the
  direct prompt (the ``prefix`` reading of :func:`mds_vqa.scoring.expectation_from_logits`);
- ``CE``: the token cross-entropy of the supervised answers (mean over the answer tokens of both prompts; the prompt,
  the video and the padding carry no label).

The expectation score is read from the same forward pass as the direct answer's cross-entropy (the position before
the first digit of the answer sees only the prompt and ``<answer>``), so one forward pass over ``2·B`` rows serves a
batch of ``B`` videos. Batches are drawn from one dataset at a time (:class:`~mds_vqa.samplers.DatasetGroupedSampler`).

Evaluation reports SRCC / PLCC / KRCC / RMSE of the expectation score against the MOS
(:func:`mds_vqa.evaluation.correlations`); :func:`quality_readings_metrics` measures what the saved model gives the
rest of the pipeline: the ``first_digit`` expectation reading of ``recipes/score.py`` and greedy thinking generation
(parse rate, format rate, correlations of the parsed numbers).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import EvalPrediction, Trainer, TrainingArguments

from .evaluation import CorrelationInputError, correlations
from .failure_predictor import in_batch_pairs
from .losses import fidelity_loss, pair_probability
from .modeling import (
    VideoSamplingConfig,
    build_messages,
    chat_texts,
    fetch_videos,
    freeze_vision_tower,
    model_and_processor_for,
    processor_inputs,
)
from .prompts import get_prompt
from .rewards import format_reward
from .samplers import DatasetGroupedSampler
from .scoring import ScoringConfig, digit_token_ids, expectation_from_logits, score_videos

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_THINK_TEXT",
    "METRICS_FILE",
    "QualityPretrainConfig",
    "QualityPretrainCollator",
    "QualityPretrainTrainer",
    "quality_metrics",
    "quality_readings_metrics",
    "write_pretrain_metrics",
]

DEFAULT_THINK_TEXT = "I check the sharpness, noise and compression of the video."
METRICS_FILE = "pretrain_metrics.json"
_CORRELATION_KEYS = ("srcc", "plcc", "krcc", "rmse")


@dataclass
class QualityPretrainConfig(TrainingArguments):
    """Training arguments of quality pretraining (all of ``transformers.TrainingArguments``, plus these)."""

    mos_column: str = field(default="mos", metadata={"help": "Column with the MOS on f's 1–5 scale."})
    group_column: str = field(default="dataset", metadata={"help": "Column naming each video's dataset."})
    sft_weight: float = field(default=1.0, metadata={"help": "Weight of the answers' token cross-entropy."})
    fidelity_weight: float = field(
        default=1.0, metadata={"help": "Weight of the in-batch fidelity loss of the expectation score."}
    )
    think_text: str = field(
        default=DEFAULT_THINK_TEXT, metadata={"help": "The fixed rationale inside <think></think> of the answer."}
    )
    answer_prefix: str = field(default="<answer>", metadata={"help": "Answer text before the score's first digit."})
    sft_reduction: str = field(
        default="token",
        metadata={
            "help": "'token': the cross-entropy is the mean over every answer token of the batch; 'answer': each "
            "answer's summed token losses, averaged over the answers (its score digits weigh as much as a whole "
            "answer of the mean)."
        },
    )
    fidelity_labels: str = field(
        default="hard",
        metadata={
            "help": "'hard': p = 1 if mos_i >= mos_j else 0; 'soft': p = Φ((mos_i − mos_j)/√2), the fidelity's own "
            "model of the pair, whose optimum puts the scores' differences at the MOS differences."
        },
    )
    fidelity_on_thinking: bool = field(
        default=False,
        metadata={
            "help": "Also apply the fidelity loss to the expectation score read after <answer> in the thinking "
            "answer (the two fidelity losses are averaged)."
        },
    )
    fidelity_eps: float = field(default=1e-6, metadata={"help": "ε of the fidelity loss."})
    freeze_vision_tower: bool = field(default=False, metadata={"help": "Keep the vision tower frozen."})
    vision_warmup_steps: int = field(
        default=0,
        metadata={
            "help": "First optimizer steps that train only the vision tower, through the vision probe's fidelity loss "
            "(a model trained from scratch: the language model otherwise learns the answers before the video matters)."
        },
    )
    vision_probe_weight: float = field(
        default=0.0, metadata={"help": "Weight of the vision probe's fidelity loss after the warm-up."}
    )
    group_batches_by_dataset: bool = field(default=True, metadata={"help": "Draw each batch from a single dataset."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep the video columns for the collator."})

    def __post_init__(self):
        super().__post_init__()
        if self.sft_weight < 0 or self.fidelity_weight < 0 or self.sft_weight + self.fidelity_weight == 0:
            raise ValueError(
                f"sft_weight and fidelity_weight must be >= 0 and not both 0, got {self.sft_weight}, "
                f"{self.fidelity_weight}"
            )
        if self.fidelity_labels not in ("hard", "soft"):
            raise ValueError(f"fidelity_labels must be 'hard' or 'soft', got {self.fidelity_labels!r}")
        if self.sft_reduction not in ("token", "answer"):
            raise ValueError(f"sft_reduction must be 'token' or 'answer', got {self.sft_reduction!r}")
        if self.vision_warmup_steps < 0 or self.vision_probe_weight < 0:
            raise ValueError(
                f"vision_warmup_steps and vision_probe_weight must be >= 0, got {self.vision_warmup_steps}, "
                f"{self.vision_probe_weight}"
            )
        if self.freeze_vision_tower and (self.vision_warmup_steps or self.vision_probe_weight):
            raise ValueError("The vision probe trains the vision tower: it needs freeze_vision_tower=False.")
        if "</think>" in self.think_text or "<answer>" in self.think_text:
            raise ValueError(f"think_text must not contain </think> or <answer>: {self.think_text!r}")


def quality_metrics(scores: Sequence[float], mos: Sequence[float], groups: Sequence[Any] | None = None) -> dict:
    """SRCC / PLCC / KRCC / RMSE of ``scores`` against ``mos`` (:func:`mds_vqa.evaluation.correlations`), and the mean
    SRCC over datasets when ``groups`` names more than one. Scores that cannot be correlated (constant, fewer than 3)
    give NaN, with a warning."""
    try:
        result = correlations(scores, mos)
        out = {k: float(result[k]) for k in _CORRELATION_KEYS}
    except CorrelationInputError as err:
        logger.warning("Cannot correlate the scores with the MOS: %s", err)
        out = dict.fromkeys(_CORRELATION_KEYS, math.nan)
    if groups is not None and len(set(groups)) > 1:
        scores_a, mos_a, groups_a = np.asarray(scores, float), np.asarray(mos, float), np.asarray(groups)
        per = []
        for name in np.unique(groups_a):
            m = groups_a == name
            try:
                per.append(correlations(scores_a[m], mos_a[m])["srcc"])
            except CorrelationInputError:
                continue
        out["srcc_mean_per_dataset"] = float(np.mean(per)) if per else math.nan
    return out


class QualityPretrainCollator:
    """Turns video rows into one batch of ``2·B`` chats: the ``B`` videos under the direct scoring prompt, then the
    same videos under the thinking prompt, each followed by its supervised answer and the end-of-turn token.

    Returns the processor's model inputs plus ``labels`` (the answer tokens, ``-100`` elsewhere), ``score_positions``
    (for the ``B`` direct rows: the position whose next-token logits give the first digit after ``<answer>``), ``mos``
    and ``group_ids``. Works with left or right padding.
    """

    def __init__(
        self,
        processor,
        *,
        sampling: VideoSamplingConfig | None = None,
        think_text: str = DEFAULT_THINK_TEXT,
        answer_prefix: str = "<answer>",
        mos_column: str = "mos",
        group_column: str = "dataset",
        group_index: dict[str, int] | None = None,
    ):
        self.processor = processor
        self.sampling = sampling or VideoSamplingConfig()
        self.think_text = think_text
        self.answer_prefix = answer_prefix
        self.mos_column = mos_column
        self.group_column = group_column
        self.group_index = dict(group_index or {})
        self.direct_prompt = get_prompt("scoring", "direct")
        self.thinking_prompt = get_prompt("scoring", "thinking")
        tokenizer = processor.tokenizer
        if tokenizer.eos_token is None:
            raise ValueError("The tokenizer has no end-of-turn (eos) token to end the supervised answers with.")
        self.end_of_turn = tokenizer.eos_token

    def _group_id(self, name: str) -> int:
        if name not in self.group_index:
            self.group_index[name] = len(self.group_index)
        return self.group_index[name]

    def answers(self, mos: float) -> tuple[str, str]:
        """The supervised direct and thinking answers for a video of this MOS (without the end-of-turn token)."""
        number = f"{mos:.2f}"
        direct = f"{self.answer_prefix}{number}</answer>"
        return direct, f"<think>{self.think_text}</think>{direct}"

    def _completion_tokens(self, text: str) -> tuple[list[int], int]:
        """The token ids of an answer followed by the end-of-turn token, and the index of the token before the
        score's first digit (whose next-token logits give the expectation score)."""
        encoded = self.processor.tokenizer(
            text + self.end_of_turn, add_special_tokens=False, return_offsets_mapping=True
        )
        number_start = text.rindex(self.answer_prefix) + len(self.answer_prefix)
        starts = [start for start, _ in encoded["offset_mapping"]]
        if number_start not in starts:
            raise ValueError(f"In {text!r} the score does not start a token of its own; cannot read it.")
        return list(encoded["input_ids"]), starts.index(number_start) - 1

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        missing = [k for k in ("video", self.mos_column) if k not in rows[0]]
        if missing:
            raise KeyError(f"Quality-pretraining rows need {missing}; got columns {sorted(rows[0])}")
        mos = [float(r[self.mos_column]) for r in rows]
        pairs = [self.answers(m) for m in mos]
        completions = [d for d, _ in pairs] + [t for _, t in pairs]
        messages = [build_messages(r["video"], self.direct_prompt, self.sampling) for r in rows]
        messages += [build_messages(r["video"], self.thinking_prompt, self.sampling) for r in rows]
        texts = chat_texts(self.processor, messages, [c + self.end_of_turn for c in completions])
        frames, metadata = fetch_videos(messages[: len(rows)])  # each video is read once for its two chats
        batch = dict(processor_inputs(self.processor, texts, frames + frames, metadata + metadata))
        input_ids, mask = batch["input_ids"], batch["attention_mask"]
        labels = torch.full_like(input_ids, -100)
        positions = []
        for i, text in enumerate(completions):
            ids, before_score = self._completion_tokens(text)
            end = int(mask[i].nonzero().max()) + 1  # one past the row's last real token
            start = end - len(ids)
            if input_ids[i, start:end].tolist() != ids:
                raise ValueError(
                    f"The answer {text!r} does not tokenise the same inside the chat as alone; cannot place its labels."
                )
            labels[i, start:end] = input_ids[i, start:end]
            positions.append(start + before_score)
        batch["labels"] = labels
        batch["score_positions"] = torch.tensor(positions)
        batch["mos"] = torch.tensor(mos)
        batch["group_ids"] = torch.tensor([self._group_id(str(r.get(self.group_column, ""))) for r in rows])
        return batch


def _vision_tower(model) -> torch.nn.Module:
    """The vision tower of a Qwen2.5-VL (``model.visual``, under a wrapper or a PEFT model)."""
    for name, module in model.named_modules():
        if name == "visual" or name.endswith(".visual"):
            return module
    raise ValueError(f"No vision tower (a module named 'visual') in {type(model).__name__}.")


class QualityPretrainTrainer(Trainer):
    """A ``transformers.Trainer`` that trains all weights of a Qwen2.5-VL (the vision tower too, unless
    ``freeze_vision_tower``) to score quality; see the module docstring for the loss.

    **Vision probe.** A model trained from scratch learns the fixed parts of its answers long before its video tokens
    carry any quality information, and then ignores them. With ``vision_warmup_steps`` (and ``vision_probe_weight``)
    a linear probe on the mean of each video's vision-tower embeddings is trained with the same in-batch fidelity
    loss: alone for the first ``vision_warmup_steps`` steps, then with weight ``vision_probe_weight`` next to the
    loss above. The probe belongs to the trainer, not to the model: it is not saved, and it is re-initialised when a
    run resumes from a checkpoint.

    Args:
        model: a model or a Hub id / folder (loaded with :func:`mds_vqa.modeling.load_model_and_processor`).
        args: :class:`QualityPretrainConfig`.
        train_dataset / eval_dataset: video rows with ``video``, the MOS column (1–5) and the dataset column.
        processing_class: the Qwen2.5-VL processor (loaded with the model when ``model`` is a string).
        sampling: frame sampling for the VLM.
    """

    _tag_names = ["mds-vqa", "quality-pretraining"]
    loss_is_scaled_for_ga = False  # compute_loss returns a batch mean: the Trainer divides it by the accumulation

    def __init__(
        self,
        model,
        args: QualityPretrainConfig,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        sampling: VideoSamplingConfig | None = None,
        callbacks=None,
        model_init_kwargs: dict[str, Any] | None = None,
    ):
        model, processing_class = model_and_processor_for(
            "QualityPretrainTrainer", model, processing_class, model_init_kwargs
        )
        freeze_vision_tower(model, args.freeze_vision_tower)
        if args.gradient_checkpointing and hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
        groups: dict[str, int] = {}
        for ds in (train_dataset, eval_dataset):
            if ds is None:
                continue
            missing = [c for c in ("video", args.mos_column) if c not in ds.column_names]
            if missing:
                raise ValueError(f"Quality pretraining needs the columns {missing} (columns: {ds.column_names}).")
            if args.group_column in ds.column_names:
                for name in ds.unique(args.group_column):
                    groups.setdefault(name, len(groups))
        self.sampling = sampling or VideoSamplingConfig()
        collator = QualityPretrainCollator(
            processing_class,
            sampling=self.sampling,
            think_text=args.think_text,
            answer_prefix=args.answer_prefix,
            mos_column=args.mos_column,
            group_column=args.group_column,
            group_index=groups,
        )
        self.digit_ids = digit_token_ids(processing_class.tokenizer)
        self.vision_probe: torch.nn.Linear | None = None
        self._video_embeds: torch.Tensor | None = None
        if args.vision_warmup_steps or args.vision_probe_weight:
            tower = _vision_tower(model)
            hidden = model.config.vision_config.out_hidden_size
            generator = torch.Generator().manual_seed(args.seed)
            self.vision_probe = torch.nn.Linear(hidden, 1)
            with torch.no_grad():
                bound = 1.0 / math.sqrt(hidden)
                self.vision_probe.weight.uniform_(-bound, bound, generator=generator)
                self.vision_probe.bias.zero_()
            tower.register_forward_hook(self._keep_video_embeds)
        super().__init__(
            model=model,
            args=args,
            data_collator=collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            compute_metrics=self._compute_metrics,
            callbacks=callbacks,
        )
        if self.vision_probe is not None:
            self.vision_probe.to(self.args.device)
        self._part_sums: dict[str, float] = {}
        self._part_count = 0
        self.model.add_model_tags(self._tag_names)

    # -- sampling and optimiser ----------------------------------------------------------------------------------
    def _get_train_sampler(self, train_dataset=None):
        ds = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.group_batches_by_dataset and ds is not None and self.args.group_column in ds.column_names:
            return DatasetGroupedSampler(ds[self.args.group_column], self._train_batch_size, self.args.seed)
        return super()._get_train_sampler(train_dataset)

    def create_optimizer(self, model=None):
        """The Trainer's optimiser, with the vision probe's parameters as one more group (no weight decay)."""
        optimizer = super().create_optimizer(model)
        if self.vision_probe is not None:
            optimizer.add_param_group({"params": list(self.vision_probe.parameters()), "weight_decay": 0.0})
        return optimizer

    def training_step(self, model, inputs, num_items_in_batch=None):
        """The Trainer's step; with several processes the vision probe's gradients are averaged across them (the
        model's are, by the distributed wrapper)."""
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.vision_probe is not None and self.accelerator.num_processes > 1:
            for param in self.vision_probe.parameters():
                if param.grad is not None:
                    param.grad = self.accelerator.reduce(param.grad, reduction="mean")
        return loss

    # -- loss ----------------------------------------------------------------------------------------------------
    def _keep_video_embeds(self, module, args, output) -> None:
        self._video_embeds = getattr(output, "pooler_output", output)

    def in_vision_warmup(self) -> bool:
        """Whether the current optimizer step is one of the vision warm-up steps (training only)."""
        return self.model.training and self.state.global_step < self.args.vision_warmup_steps

    def _pair_fidelity(self, scores: torch.Tensor, inputs: dict[str, Any]) -> torch.Tensor:
        mos = inputs["mos"].to(scores)
        i, j, p = in_batch_pairs(mos, inputs["group_ids"].to(scores.device))
        if i.numel() == 0:  # a batch without a same-dataset pair gives no ranking signal
            return scores.sum() * 0.0
        if self.args.fidelity_labels == "soft":
            p = pair_probability(mos[i], mos[j])
        return fidelity_loss(scores[i], scores[j], p, eps=self.args.fidelity_eps)

    def _probe_scores(self, inputs: dict[str, Any]) -> torch.Tensor:
        """The probe's score of each video of the batch (its direct-prompt copy), from the embeddings the vision tower
        produced in this forward pass."""
        videos = inputs["mos"].shape[0]
        merge = _vision_tower(self.accelerator.unwrap_model(self.model)).spatial_merge_size
        counts = (inputs["video_grid_thw"].prod(-1) // merge**2).tolist()
        pooled = torch.stack([e.float().mean(0) for e in torch.split(self._video_embeds, counts)[:videos]])
        return self.vision_probe(pooled).squeeze(-1)

    def loss_parts(self, model, inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        """One forward pass over the batch; returns ``scores`` (the expectation score of each video under the direct
        prompt), ``fidelity`` (the in-batch fidelity loss; 0 without a same-dataset pair), ``ce`` (the answers' token
        cross-entropy), ``loss`` (their weighted sum) and, with the vision probe in training, ``probe`` (the probe's
        fidelity loss, in ``loss`` with its weight; alone during the warm-up)."""
        extra_keys = ("labels", "score_positions", "mos", "group_ids")
        model_inputs = {k: v for k, v in inputs.items() if k not in extra_keys}
        labels, positions = inputs["labels"], inputs["score_positions"]
        answered = (labels != -100).any(0).nonzero()
        # logits from the position before the earliest answer token on: they predict every answer token and include
        # every score position (inside the direct answers)
        first = int(answered.min()) - 1
        out = model(**model_inputs, logits_to_keep=labels.shape[1] - first, use_cache=False)
        logits = out.logits
        targets = labels[:, first + 1 :]
        token_ce = torch.nn.functional.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]),
            targets.reshape(-1),
            ignore_index=-100,
            reduction="none",
        ).reshape(targets.shape)
        if self.args.sft_reduction == "answer":
            ce = token_ce.sum(-1).mean()
        else:
            ce = token_ce.sum() / (targets != -100).sum()
        rows = torch.arange(positions.shape[0], device=logits.device)
        read = expectation_from_logits(logits[rows, positions.to(logits.device) - first], self.digit_ids)
        videos = inputs["mos"].shape[0]
        scores, thinking_scores = read[:videos], read[videos:]
        fidelity = self._pair_fidelity(scores, inputs)
        if self.args.fidelity_on_thinking:
            fidelity = 0.5 * (fidelity + self._pair_fidelity(thinking_scores, inputs))
        loss = self.args.fidelity_weight * fidelity + self.args.sft_weight * ce
        parts = {"fidelity": fidelity, "ce": ce, "scores": scores}
        if self.vision_probe is not None and model.training:
            probe = self._pair_fidelity(self._probe_scores(inputs), inputs)
            parts["probe"] = probe
            # warm-up: the answers' loss is kept in the graph at weight 0 (every parameter takes part in the loss, as
            # distributed training expects) but only the probe's loss trains
            loss = loss * 0.0 + probe if self.in_vision_warmup() else loss + self.args.vision_probe_weight * probe
        parts["loss"] = loss
        return parts

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """``fidelity_weight · fidelity + sft_weight · CE`` (module docstring), with the vision probe's term when it is
        on."""
        parts = self.loss_parts(model, inputs)
        if model.training:
            for key in ("fidelity", "ce", "probe"):
                if key in parts:
                    self._part_sums[key] = self._part_sums.get(key, 0.0) + float(parts[key].detach())
            self._part_count += 1
        return (parts["loss"], parts["scores"]) if return_outputs else parts["loss"]

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        """The Trainer's log, with the mean of each loss part over the steps since the last training log."""
        if "loss" in logs and self._part_count:
            logs.update({k: round(v / self._part_count, 4) for k, v in self._part_sums.items()})
            self._part_sums, self._part_count = {}, 0
        super().log(logs, *args, **kwargs)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """The loss (the answers' loss, without the probe) and the expectation scores of held-out videos; labels are
        ``(mos, dataset id)``."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            parts = self.loss_parts(model, inputs)
        loss = parts["loss"].detach()
        if prediction_loss_only:
            return loss, None, None
        scores = parts["scores"].detach()
        labels = torch.stack([inputs["mos"].to(scores), inputs["group_ids"].to(scores)], dim=1)
        return loss, scores, labels

    def _compute_metrics(self, pred: EvalPrediction) -> dict[str, float]:
        labels = np.asarray(pred.label_ids)
        return quality_metrics(np.asarray(pred.predictions).reshape(-1), labels[:, 0], labels[:, 1].astype(int))


def _batches(items: Sequence[Any], size: int):
    for k in range(0, len(items), size):
        yield items[k : k + size]


def quality_readings_metrics(
    model,
    processor,
    videos: Sequence[str],
    mos: Sequence[float],
    *,
    sampling: VideoSamplingConfig | None = None,
    batch_size: int = 8,
    max_new_tokens: int = 64,
    generate: bool = True,
) -> dict[str, Any]:
    """How the pipeline will read the model: correlations with ``mos`` of the ``first_digit`` expectation score
    (``recipes/score.py``'s default reading, prefixed ``expectation_``) and, with ``generate``, of greedy generation
    under the thinking prompt (prefixed ``generate_``), with ``generate_parse_rate`` (answers holding a number) and
    ``generate_format_rate`` (answers the GRPO format reward accepts) and one example answer."""
    was_training = model.training
    model.eval()
    videos, mos = list(videos), [float(m) for m in mos]
    expectation_config = ScoringConfig(mode="expectation", num_workers=0)
    exp_scores = [
        row["score"]
        for chunk in _batches(videos, batch_size)
        for row in score_videos(model, processor, chunk, expectation_config, sampling)
    ]
    out: dict[str, Any] = {f"expectation_{k}": v for k, v in quality_metrics(exp_scores, mos).items()}
    if generate:
        gen_config = ScoringConfig(
            mode="generate", prompt_variant="thinking", max_new_tokens=max_new_tokens, num_workers=0
        )
        rows = [
            row
            for chunk in _batches(videos, batch_size)
            for row in score_videos(model, processor, chunk, gen_config, sampling)
        ]
        texts = [row["texts"][0] for row in rows]
        scores = [row["score"] for row in rows]
        parsed = [not math.isnan(s) for s in scores]
        out["generate_parse_rate"] = float(np.mean(parsed))
        out["generate_format_rate"] = float(np.mean(format_reward(texts)))
        out.update({f"generate_{k}": v for k, v in quality_metrics(scores, mos).items()})
        out["generate_example"] = texts[0] if texts else ""
    if was_training:
        model.train()
    return out


def write_pretrain_metrics(output_dir: str | os.PathLike, metrics: dict[str, Any]) -> Path:
    """Write ``metrics`` as JSON to ``<output_dir>/pretrain_metrics.json`` (NaN as ``null``); returns the path."""
    path = Path(output_dir) / METRICS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}
    path.write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n")
    return path
