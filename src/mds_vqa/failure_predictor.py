"""The failure predictor g: LoRA on the quality model f, trained with the fidelity loss to rank videos by f's error.

g(x) is read as a continuous score — the probability-weighted expectation over the digits 1–5 at the answer position
under the difficulty prompt (:func:`mds_vqa.scoring.expectation_scores`) — so the fidelity loss is differentiated
directly. Two ways to form pairs, both within one dataset only:

- ``in_batch`` (the released code's way): the training Dataset is a pool of videos with an ``error`` column
  (``|f(x) − MOS(x)|``); every pair of same-dataset videos in a batch is used, labelled ``p = 1`` if
  ``error(x) ≥ error(y)``. Batches are drawn from one dataset at a time (:class:`DatasetGroupedSampler`).
- ``pairs``: the training Dataset is a pair Dataset from :func:`mds_vqa.data.error_pairs` (``video_a``, ``video_b``,
  ``p``).

Evaluation always runs on held-out videos with an ``error`` column and reports pairwise accuracy and SRCC between g
and the true error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr
from transformers import EvalPrediction, Trainer, TrainingArguments

from .losses import fidelity_loss
from .modeling import VideoSamplingConfig, freeze_vision_tower, model_and_processor_for, prepare_inputs
from .prompts import get_prompt
from .samplers import DatasetGroupedSampler
from .scoring import digit_token_ids, expectation_scores

logger = logging.getLogger(__name__)

__all__ = [
    "FailurePredictorConfig",
    "FailurePredictorCollator",
    "FailurePredictorTrainer",
    "DatasetGroupedSampler",
    "in_batch_pairs",
    "failure_metrics",
]


@dataclass
class FailurePredictorConfig(TrainingArguments):
    """Training arguments of the failure predictor (all of ``transformers.TrainingArguments``, plus these)."""

    pairing: str = field(
        default="in_batch",
        metadata={"help": "'in_batch' (all same-dataset pairs of a batch) or 'pairs' (pair Dataset)."},
    )
    prompt_variant: str = field(
        default="direct", metadata={"help": "Difficulty prompt variant: 'direct' or 'thinking'."}
    )
    answer_prefix: str = field(default="<answer>", metadata={"help": "Assistant text before the difficulty digit."})
    error_column: str = field(default="error", metadata={"help": "Column with |f(x) − MOS(x)| (in_batch and eval)."})
    group_column: str = field(default="dataset", metadata={"help": "Column naming each video's dataset."})
    fidelity_eps: float = field(default=1e-6, metadata={"help": "ε of the fidelity loss."})
    freeze_vision_tower: bool = field(default=True, metadata={"help": "Keep the vision tower frozen."})
    group_batches_by_dataset: bool = field(
        default=True, metadata={"help": "in_batch: draw each batch from a single dataset."}
    )
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep the video columns for the collator."})

    def __post_init__(self):
        super().__post_init__()
        if self.pairing not in ("in_batch", "pairs"):
            raise ValueError(f"pairing must be 'in_batch' or 'pairs', got {self.pairing!r}")
        get_prompt("difficulty", self.prompt_variant)


def in_batch_pairs(errors: torch.Tensor, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All pairs ``i < j`` of the batch with ``groups[i] == groups[j]``; label ``p = 1`` if ``errors[i] ≥ errors[j]``."""
    n = errors.shape[0]
    i, j = torch.triu_indices(n, n, offset=1, device=errors.device)
    same = groups[i] == groups[j]
    i, j = i[same], j[same]
    return i, j, (errors[i] >= errors[j]).to(errors.dtype)


def failure_metrics(g: np.ndarray, errors: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """SRCC between g and the true error (overall and mean per dataset) and within-dataset pairwise accuracy
    (pairs with different errors; a g tie counts as half right)."""
    g, errors, groups = np.asarray(g, float), np.asarray(errors, float), np.asarray(groups)
    out: dict[str, float] = {}
    out["srcc"] = float(spearmanr(g, errors).statistic) if len(g) > 2 else float("nan")
    per_group, correct, total = [], 0.0, 0
    for name in np.unique(groups):
        m = groups == name
        gg, ee = g[m], errors[m]
        if m.sum() > 2:
            per_group.append(spearmanr(gg, ee).statistic)
        i, j = np.triu_indices(len(gg), k=1)
        de, dg = np.sign(ee[i] - ee[j]), np.sign(gg[i] - gg[j])
        keep = de != 0
        correct += float(np.sum(de[keep] == dg[keep]) + 0.5 * np.sum(dg[keep] == 0))
        total += int(keep.sum())
    out["srcc_mean_per_dataset"] = float(np.nanmean(per_group)) if per_group else float("nan")
    out["pairwise_accuracy"] = correct / total if total else float("nan")
    out["num_pairs"] = float(total)
    return out


class FailurePredictorCollator:
    """Turns rows into model inputs under the difficulty prompt (+ ``<answer>``), with the labels the loss needs.

    Video rows (``video``, ``error``, ``dataset``) give ``errors`` and ``group_ids``; pair rows (``video_a``,
    ``video_b``, ``p``) give the 2B videos a-then-b and ``pair_p``.
    """

    def __init__(
        self,
        processor,
        *,
        prompt: str,
        sampling: VideoSamplingConfig | None = None,
        answer_prefix: str = "<answer>",
        error_column: str = "error",
        group_column: str = "dataset",
        group_index: dict[str, int] | None = None,
    ):
        self.processor = processor
        self.prompt = prompt
        self.sampling = sampling or VideoSamplingConfig()
        self.answer_prefix = answer_prefix
        self.error_column = error_column
        self.group_column = group_column
        self.group_index = dict(group_index or {})

    def _group_id(self, name: str) -> int:
        if name not in self.group_index:
            self.group_index[name] = len(self.group_index)
        return self.group_index[name]

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        if "video_a" in rows[0]:
            videos = [r["video_a"] for r in rows] + [r["video_b"] for r in rows]
            batch = dict(
                prepare_inputs(self.processor, videos, self.prompt, self.sampling, assistant_prefix=self.answer_prefix)
            )
            batch["pair_p"] = torch.tensor([float(r["p"]) for r in rows])
            return batch
        missing = [k for k in ("video", self.error_column) if k not in rows[0]]
        if missing:
            raise KeyError(f"Failure-predictor rows need {missing}; got columns {sorted(rows[0])}")
        videos = [r["video"] for r in rows]
        batch = dict(
            prepare_inputs(self.processor, videos, self.prompt, self.sampling, assistant_prefix=self.answer_prefix)
        )
        batch["errors"] = torch.tensor([float(r[self.error_column]) for r in rows])
        batch["group_ids"] = torch.tensor([self._group_id(str(r.get(self.group_column, ""))) for r in rows])
        return batch


class FailurePredictorTrainer(Trainer):
    """A ``transformers.Trainer`` for g: fidelity loss on the expectation difficulty score (see module docstring).

    Args:
        model: a model or a Hub id / folder (loaded with :func:`mds_vqa.modeling.load_model_and_processor`).
        args: :class:`FailurePredictorConfig`.
        train_dataset / eval_dataset: video rows with ``error`` (``in_batch``), or pair rows (``pairs``) for training.
        processing_class: the Qwen2.5-VL processor (loaded with the model when ``model`` is a string).
        peft_config: a ``peft.LoraConfig`` (e.g. :func:`mds_vqa.modeling.lora_config`); ``None`` trains the model as
            given (already a ``PeftModel``, or full fine-tuning).
        sampling: frame sampling for the VLM.
    """

    _tag_names = ["mds-vqa", "failure-predictor"]

    def __init__(
        self,
        model,
        args: FailurePredictorConfig,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        peft_config=None,
        sampling: VideoSamplingConfig | None = None,
        callbacks=None,
        model_init_kwargs: dict[str, Any] | None = None,
    ):
        model, processing_class = model_and_processor_for(
            "FailurePredictorTrainer", model, processing_class, model_init_kwargs
        )
        if args.freeze_vision_tower:
            freeze_vision_tower(model)
        if peft_config is not None:
            from peft import get_peft_model

            model = get_peft_model(model, peft_config)
        if args.gradient_checkpointing and hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
        if args.pairing == "pairs" and train_dataset is not None and "video_a" not in train_dataset.column_names:
            raise ValueError("pairing='pairs' needs a pair Dataset (video_a, video_b, p), e.g. from error_pairs().")
        if (
            args.pairing == "in_batch"
            and train_dataset is not None
            and args.error_column not in train_dataset.column_names
        ):
            raise ValueError(f"pairing='in_batch' needs an {args.error_column!r} column in the training Dataset.")
        groups: dict[str, int] = {}
        for ds in (train_dataset, eval_dataset):
            if ds is not None and args.group_column in ds.column_names:
                for name in ds.unique(args.group_column):
                    groups.setdefault(name, len(groups))
        self.sampling = sampling or VideoSamplingConfig()
        collator = FailurePredictorCollator(
            processing_class,
            prompt=get_prompt("difficulty", args.prompt_variant),
            sampling=self.sampling,
            answer_prefix=args.answer_prefix,
            error_column=args.error_column,
            group_column=args.group_column,
            group_index=groups,
        )
        self.digit_ids = digit_token_ids(processing_class.tokenizer)
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
        self._group_names = {v: k for k, v in groups.items()}
        # tagged as TRL's trainers tag theirs: the tags reach the saved adapter's README and the model card
        self.model.add_model_tags(self._tag_names)

    # -- sampling ------------------------------------------------------------------------------------------------
    def _get_train_sampler(self, train_dataset=None):
        ds = train_dataset if train_dataset is not None else self.train_dataset
        if (
            self.args.pairing == "in_batch"
            and self.args.group_batches_by_dataset
            and ds is not None
            and self.args.group_column in ds.column_names
        ):
            # one chunk = one DataLoader batch (per device; accelerate deals whole batches to the processes)
            return DatasetGroupedSampler(ds[self.args.group_column], self._train_batch_size, self.args.seed)
        return super()._get_train_sampler(train_dataset)

    # -- loss ----------------------------------------------------------------------------------------------------
    def _split_inputs(self, inputs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        extra = {k: inputs[k] for k in ("pair_p", "errors", "group_ids") if k in inputs}
        model_inputs = {k: v for k, v in inputs.items() if k not in extra}
        return model_inputs, extra

    def _loss_from_scores(self, g: torch.Tensor, extra: dict[str, Any]) -> torch.Tensor:
        if "pair_p" in extra:
            half = g.shape[0] // 2
            return fidelity_loss(g[:half], g[half:], extra["pair_p"].to(g), eps=self.args.fidelity_eps)
        i, j, p = in_batch_pairs(extra["errors"].to(g), extra["group_ids"].to(g.device))
        if i.numel() == 0:  # a batch without a same-dataset pair: no signal, but keep the graph
            return g.sum() * 0.0
        return fidelity_loss(g[i], g[j], p, eps=self.args.fidelity_eps)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Fidelity loss between g's pair probabilities and the error-ranking labels."""
        model_inputs, extra = self._split_inputs(inputs)
        g = expectation_scores(model, model_inputs, self.digit_ids)
        loss = self._loss_from_scores(g, extra)
        return (loss, g) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """g on held-out videos; labels are ``(error, dataset id)`` for :meth:`_compute_metrics`."""
        inputs = self._prepare_inputs(inputs)
        model_inputs, extra = self._split_inputs(inputs)
        with torch.no_grad():
            g = expectation_scores(model, model_inputs, self.digit_ids)
            loss = self._loss_from_scores(g, extra).detach()
        if prediction_loss_only or "errors" not in extra:
            return loss, None, None
        labels = torch.stack([extra["errors"].to(g), extra["group_ids"].to(g)], dim=1)
        return loss, g.detach(), labels

    def _compute_metrics(self, pred: EvalPrediction) -> dict[str, float]:
        labels = np.asarray(pred.label_ids)
        return failure_metrics(np.asarray(pred.predictions).reshape(-1), labels[:, 0], labels[:, 1].astype(int))
