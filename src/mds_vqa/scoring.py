"""Reading a score from the quality model: a continuous expectation over answer digits, or generation + parsing.

``expectation`` (default): one forward pass over chat + ``<answer>``; the score is the probability-weighted mean of the
digit tokens 1–5 at the answer position (Q-Align style). Deterministic, continuous and differentiable, so the failure
predictor is trained through it directly.

``generate``: the paper's think + answer (or direct) generation, greedy by default or ``num_samples`` sampled answers
averaged; parsed with :func:`~mds_vqa.prompts.parse_score`. A parse failure is NaN and counted, never replaced.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .modeling import VideoSamplingConfig, prepare_inputs
from .prompts import get_prompt, parse_score

logger = logging.getLogger(__name__)

__all__ = [
    "SCORE_DIGITS",
    "ScoringConfig",
    "digit_token_ids",
    "expectation_from_logits",
    "expectation_scores",
    "generate_scores",
    "score_videos",
    "SCORING_MODES",
]

SCORE_DIGITS = (1, 2, 3, 4, 5)


@dataclass
class ScoringConfig:
    """How a score is read from the model."""

    mode: str = field(default="expectation", metadata={"help": "'expectation' (one forward) or 'generate'."})
    task: str = field(default="scoring", metadata={"help": "'scoring' (f's quality prompt) or 'difficulty' (g)."})
    prompt_variant: str | None = field(
        default=None,
        metadata={"help": "'thinking' or 'direct'; default: direct for expectation, thinking for generate."},
    )
    answer_prefix: str = field(default="<answer>", metadata={"help": "Assistant text before the score (expectation)."})
    num_samples: int = field(default=1, metadata={"help": "Generated answers per video (generate); averaged."})
    do_sample: bool | None = field(default=None, metadata={"help": "Sample (default: only when num_samples > 1)."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (generate)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling (generate)."})
    max_new_tokens: int = field(default=512, metadata={"help": "Generation budget (generate)."})

    def __post_init__(self):
        if self.mode not in SCORING_MODES:
            raise ValueError(f"Unknown scoring mode {self.mode!r}; expected one of {sorted(SCORING_MODES)}")
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")
        get_prompt(self.task, self.variant)  # validates task and variant

    @property
    def variant(self) -> str:
        """The prompt variant in use."""
        if self.prompt_variant is not None:
            return self.prompt_variant
        return "direct" if self.mode == "expectation" else "thinking"

    @property
    def prompt(self) -> str:
        """The prompt text."""
        return get_prompt(self.task, self.variant)


def digit_token_ids(tokenizer, digits: Sequence[int] = SCORE_DIGITS) -> list[int]:
    """Token ids of the single-digit strings ``"1"``…``"5"``; raises if a digit is not one token."""
    ids = []
    for d in digits:
        enc = tokenizer(str(d), add_special_tokens=False).input_ids
        if len(enc) != 1:
            raise ValueError(
                f"Digit {d!r} is not a single token for this tokenizer ({enc}); expectation scoring needs it."
            )
        ids.append(enc[0])
    return ids


def expectation_from_logits(
    logits: torch.Tensor, digit_ids: Sequence[int], digits: Sequence[int] = SCORE_DIGITS
) -> torch.Tensor:
    """``Σ_d d · softmax(logits[digit_ids])_d`` over the last dimension (differentiable)."""
    probs = torch.softmax(logits[..., list(digit_ids)].float(), dim=-1)
    values = torch.tensor(list(digits), dtype=probs.dtype, device=probs.device)
    return (probs * values).sum(-1)


def expectation_scores(model, inputs: dict[str, Any], digit_ids: Sequence[int]) -> torch.Tensor:
    """One forward pass; the expected digit at the last position of each (left-padded) row. Differentiable."""
    out = model(**inputs, logits_to_keep=1, use_cache=False)
    return expectation_from_logits(out.logits[:, -1, :], digit_ids)


def _to_device(inputs, device):
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}


@torch.no_grad()
def generate_scores(model, processor, inputs: dict[str, Any], config: ScoringConfig) -> list[dict[str, Any]]:
    """Generate ``num_samples`` answers per row and parse them. Returns, per row, ``score`` (nan-mean of the parsed
    answers, NaN when none parsed), ``texts`` and ``parse_failures``."""
    n = config.num_samples
    do_sample = config.do_sample if config.do_sample is not None else n > 1
    kwargs: dict[str, Any] = {
        "max_new_tokens": config.max_new_tokens,
        "do_sample": do_sample,
        "num_return_sequences": n,
    }
    if do_sample:
        kwargs.update(temperature=config.temperature, top_p=config.top_p)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    sequences = model.generate(**inputs, **kwargs)
    texts = processor.batch_decode(sequences[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    rows = []
    for i in range(inputs["input_ids"].shape[0]):
        mine = texts[i * n : (i + 1) * n]
        parsed = [parse_score(t) for t in mine]
        ok = [s for s in parsed if not math.isnan(s)]
        rows.append(
            {"score": sum(ok) / len(ok) if ok else math.nan, "texts": mine, "parse_failures": len(parsed) - len(ok)}
        )
    return rows


def score_videos(
    model,
    processor,
    videos: Sequence[str],
    config: ScoringConfig | None = None,
    sampling: VideoSamplingConfig | None = None,
) -> list[dict[str, Any]]:
    """Score a batch of videos. Expectation mode returns ``{"score", "digit_probs"}`` per video; generate mode
    ``{"score", "texts", "parse_failures"}``. Raises :class:`~mds_vqa.video.VideoReadError` for an unreadable video."""
    config = config or ScoringConfig()
    prefix = config.answer_prefix if config.mode == "expectation" else None
    inputs = prepare_inputs(processor, list(videos), config.prompt, sampling, assistant_prefix=prefix)
    inputs = _to_device(inputs, model.device)
    if config.mode == "expectation":
        digit_ids = digit_token_ids(processor.tokenizer)
        with torch.no_grad():
            logits = model(**inputs, logits_to_keep=1, use_cache=False).logits[:, -1, :]
        probs = torch.softmax(logits[:, digit_ids].float(), dim=-1)
        scores = expectation_from_logits(logits, digit_ids)
        return [{"score": float(s), "digit_probs": p.tolist()} for s, p in zip(scores, probs)]
    return generate_scores(model, processor, inputs, config)


SCORING_MODES = {"expectation", "generate"}
