"""Reading a score from the quality model: a continuous expectation over answer digits, generation + parsing, or both.

``expectation`` (default): the probability-weighted mean of the digits 1–5 the model would answer with after
``<answer>`` (Q-Align style), refined by its decimals; deterministic and continuous. Where it is read
(``answer_reading``):

- ``first_digit`` (default for f's quality prompt): at the first digit of the model's own answer, after the few
  tokens (a space, a newline) it writes after ``<answer>``, over a KV cache; see :mod:`mds_vqa.answer_reading`.
- ``prefix`` (default for g's difficulty prompt): right after ``<answer>``, one forward pass, the first digit only.
  This is how the failure predictor g is trained (:func:`expectation_scores`, differentiable: a fixed position gives
  a smooth loss and works with gradient checkpointing, where the greedy skip would move the read position as LoRA
  changes the argmax), so g is scored the same way by default.

``noise_draws`` > 0 (expectation and both): the expectation is read again with the language model's weights
perturbed by each of ``noise_draws`` fixed Gaussian draws (:func:`mds_vqa.weight_noise.weight_noise`, relative std
``noise_std``, draw ``d`` seeded with ``noise_seed + d``), and ``instability`` is the mean over draws of
``|s_d − s|``, ``s`` the clean score: the ``noise_stability`` selection baseline reads it.

``generate``: the paper's think + answer (or direct) generation, greedy by default or sampled (``do_sample``,
``top_k``, ``temperature``, ``top_p``; ``num_samples`` answers averaged); parsed with
:func:`~mds_vqa.prompts.parse_score`. A parse failure is NaN and counted, never replaced. ``std`` is the sample
standard deviation of a video's parsed answers: the ``uncertainty`` selection baseline reads it.

``both``: both readings of every video; ``score`` is the ``both_primary`` one, ``score_expectation`` and
``score_generate`` the two.

Scoring runs in two halves: preparing a batch's inputs on CPU (:mod:`mds_vqa.scoring_inputs`: read, resize,
tokenise, process; in ``DataLoader`` workers when a pool is scored) and running the model on them
(:func:`score_inputs`). :func:`score_videos` does both in this process.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .answer_reading import ANSWER_READINGS, answer_tokens, read_answers
from .modeling import VideoSamplingConfig
from .prompts import get_prompt, parse_score
from .scoring_inputs import ScoringInputs, prepare_scoring_inputs
from .weight_noise import weight_noise

logger = logging.getLogger(__name__)

__all__ = [
    "LOADER_FIELDS",
    "SCORE_DIGITS",
    "SCORING_MODES",
    "ScoringConfig",
    "digit_token_ids",
    "expectation_from_logits",
    "expectation_scores",
    "generate_scores",
    "score_inputs",
    "score_videos",
]

SCORE_DIGITS = (1, 2, 3, 4, 5)
SCORING_MODES = ("expectation", "generate", "both")
READING_MODES = ("expectation", "generate")
LOADER_FIELDS = ("num_workers", "prefetch_factor")  # how inputs are prepared, not what a score is


@dataclass
class ScoringConfig:
    """How a score is read from the model."""

    mode: str = field(
        default="expectation", metadata={"help": "'expectation' (digit distribution), 'generate' or 'both'."}
    )
    task: str = field(default="scoring", metadata={"help": "'scoring' (f's quality prompt) or 'difficulty' (g)."})
    prompt_variant: str | None = field(
        default=None,
        metadata={"help": "'thinking' or 'direct'; default: direct for expectation, thinking for generate."},
    )
    answer_prefix: str = field(default="<answer>", metadata={"help": "Assistant text before the score (expectation)."})
    answer_reading: str | None = field(
        default=None,
        metadata={
            "help": "expectation: 'first_digit' (at the first digit the model writes) or 'prefix' (right after "
            "answer_prefix, as g is trained); default: prefix for the difficulty task, first_digit otherwise."
        },
    )
    answer_decimals: int | None = field(
        default=None,
        metadata={"help": "expectation: decimals refining the digit (0-2); default: 2 for first_digit, 0 for prefix."},
    )
    max_skip_tokens: int = field(
        default=4, metadata={"help": "first_digit: at most this many non-digit tokens are skipped after the prefix."}
    )
    both_primary: str = field(
        default="generate", metadata={"help": "mode both: the reading written to the score column."}
    )
    num_samples: int = field(default=1, metadata={"help": "Generated answers per video (generate); averaged."})
    do_sample: bool | None = field(default=None, metadata={"help": "Sample (default: only when num_samples > 1)."})
    temperature: float | None = field(
        default=1.0, metadata={"help": "Sampling temperature (generate); null: the checkpoint's generation_config."}
    )
    top_p: float | None = field(
        default=1.0, metadata={"help": "Nucleus sampling (generate); null: the checkpoint's generation_config."}
    )
    top_k: int | None = field(
        default=None, metadata={"help": "Top-k sampling (generate; the released code: 50); null: the checkpoint's."}
    )
    max_new_tokens: int = field(default=512, metadata={"help": "Generation budget (generate)."})
    noise_draws: int = field(
        default=0,
        metadata={
            "help": "expectation/both: also read the expectation under this many fixed Gaussian perturbations of the "
            "language model's weights and record the mean |change| as `instability` (noise_stability selection; "
            "0: off)."
        },
    )
    noise_std: float = field(
        default=0.02, metadata={"help": "Weight noise std, relative to each layer's weight std (noise_draws > 0)."}
    )
    seed: int = field(
        default=0, metadata={"help": "Seed of sampled answers (generate with sampling); process i uses seed + i."}
    )
    noise_seed: int = field(default=0, metadata={"help": "Seed of the first weight-noise draw (draw d: seed + d)."})
    num_workers: int = field(
        default=2,
        metadata={
            "help": "DataLoader workers reading and processing videos ahead of the model when a pool is scored "
            "(0: in the main process, serially with the model)."
        },
    )
    prefetch_factor: int = field(default=2, metadata={"help": "Batches each worker prepares ahead."})

    def __post_init__(self):
        if self.mode not in SCORING_MODES:
            raise ValueError(f"Unknown scoring mode {self.mode!r}; expected one of {list(SCORING_MODES)}")
        if self.answer_reading is not None and self.answer_reading not in ANSWER_READINGS:
            raise ValueError(f"Unknown answer_reading {self.answer_reading!r}; expected one of {ANSWER_READINGS}")
        if self.answer_decimals is not None and self.answer_decimals not in (0, 1, 2):
            raise ValueError(f"answer_decimals must be 0, 1 or 2, got {self.answer_decimals}")
        if self.both_primary not in READING_MODES:
            raise ValueError(f"both_primary must be one of {list(READING_MODES)}, got {self.both_primary!r}")
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")
        if self.noise_draws < 0 or not self.noise_std >= 0 or self.noise_seed < 0:
            raise ValueError(
                f"noise_draws, noise_std and noise_seed must be >= 0, got {self.noise_draws}, {self.noise_std}, "
                f"{self.noise_seed}"
            )
        if self.noise_draws > 0 and "expectation" not in self.reading_modes:
            raise ValueError(
                f"noise_draws > 0 perturbs the expectation reading: it needs mode 'expectation' or 'both', "
                f"not {self.mode!r}"
            )
        if self.max_skip_tokens < 0:
            raise ValueError(f"max_skip_tokens must be >= 0, got {self.max_skip_tokens}")
        if self.num_workers < 0 or self.prefetch_factor < 1:
            raise ValueError(
                f"num_workers must be >= 0 and prefetch_factor >= 1, got {self.num_workers}, {self.prefetch_factor}"
            )
        for mode in self.reading_modes:
            get_prompt(self.task, self.variant_for(mode))  # validates task and variant

    @property
    def reading_modes(self) -> list[str]:
        """The readings this mode computes (``both``: expectation and generate)."""
        return list(READING_MODES) if self.mode == "both" else [self.mode]

    def variant_for(self, mode: str) -> str:
        """The prompt variant the reading ``mode`` uses."""
        if self.prompt_variant is not None:
            return self.prompt_variant
        return "direct" if mode == "expectation" else "thinking"

    def for_mode(self, mode: str) -> ScoringConfig:
        """This config with one reading ``mode`` (``expectation`` or ``generate``; the weight-noise draws belong to the
        expectation reading only)."""
        return dataclasses.replace(self, mode=mode, noise_draws=self.noise_draws if mode == "expectation" else 0)

    @property
    def primary_mode(self) -> str:
        """The reading written to the score column."""
        return self.both_primary if self.mode == "both" else self.mode

    @property
    def variant(self) -> str:
        """The prompt variant of the primary reading."""
        return self.variant_for(self.primary_mode)

    @property
    def prompt(self) -> str:
        """The prompt text of the primary reading."""
        return get_prompt(self.task, self.variant)

    @property
    def reading(self) -> str:
        """Where the expectation is read: ``first_digit`` or ``prefix``."""
        if self.answer_reading is not None:
            return self.answer_reading
        return "prefix" if self.task == "difficulty" else "first_digit"

    @property
    def decimals(self) -> int:
        """Decimals refining the expectation."""
        if self.answer_decimals is not None:
            return self.answer_decimals
        return 2 if self.reading == "first_digit" else 0


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
    """The ``prefix`` reading: one forward pass, the expected first digit at the last position of each (left-padded)
    row. Differentiable; the failure predictor g is trained through it."""
    out = model(**inputs, logits_to_keep=1, use_cache=False)
    return expectation_from_logits(out.logits[:, -1, :], digit_ids)


def _generation_kwargs(config: ScoringConfig) -> dict[str, Any]:
    do_sample = config.do_sample if config.do_sample is not None else config.num_samples > 1
    kwargs: dict[str, Any] = {
        "max_new_tokens": config.max_new_tokens,
        "do_sample": do_sample,
        "num_return_sequences": config.num_samples,
    }
    if do_sample:  # a None leaves the checkpoint's generation_config value in place
        kwargs.update(
            {k: v for k, v in (("temperature", config.temperature), ("top_p", config.top_p)) if v is not None}
        )
        if config.top_k is not None:
            kwargs["top_k"] = config.top_k
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    return kwargs


@torch.no_grad()
def generate_scores(model, processor, inputs: dict[str, Any], config: ScoringConfig) -> list[dict[str, Any]]:
    """Generate ``num_samples`` answers per row and parse them. Returns, per row, ``score`` (nan-mean of the parsed
    answers, NaN when none parsed), ``std`` (their sample standard deviation, ddof 1: NaN when fewer than two parsed),
    ``texts`` and ``parse_failures``."""
    n = config.num_samples
    sequences = model.generate(**inputs, **_generation_kwargs(config))
    texts = processor.batch_decode(sequences[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    rows = []
    for i in range(inputs["input_ids"].shape[0]):
        mine = texts[i * n : (i + 1) * n]
        parsed = [parse_score(t) for t in mine]
        ok = [s for s in parsed if not math.isnan(s)]
        rows.append(
            {
                "score": sum(ok) / len(ok) if ok else math.nan,
                "std": float(np.std(ok, ddof=1)) if len(ok) >= 2 else math.nan,
                "texts": mine,
                "parse_failures": len(parsed) - len(ok),
            }
        )
    return rows


def _read_expectation(model, processor, inputs: dict[str, Any], config: ScoringConfig) -> list[dict[str, Any]]:
    """The expectation reading; with ``noise_draws`` > 0 also each row's ``instability``: the mean over the weight-noise
    draws of ``|s_d − s|``, ``s`` the clean score and ``s_d`` the score read under draw ``d``."""
    tokens = answer_tokens(processor.tokenizer)

    def read() -> list[dict[str, Any]]:
        return read_answers(
            model, inputs, tokens, reading=config.reading, decimals=config.decimals, max_skip=config.max_skip_tokens
        )

    rows = read()
    if config.noise_draws == 0:
        return rows
    moved = [0.0] * len(rows)
    for d in range(config.noise_draws):
        with weight_noise(model, std=config.noise_std, seed=config.noise_seed + d):
            noisy = read()
        for i, (clean, perturbed) in enumerate(zip(rows, noisy)):
            moved[i] += abs(perturbed["score"] - clean["score"])
    return [{**row, "instability": m / config.noise_draws} for row, m in zip(rows, moved)]


def _read(model, processor, inputs: dict[str, Any], config: ScoringConfig) -> list[dict[str, Any]]:
    """One reading (``config.mode``: expectation or generate) of a batch's inputs, on the model's device."""
    if config.mode == "generate":
        return generate_scores(model, processor, inputs, config)
    return _read_expectation(model, processor, inputs, config)


def score_inputs(model, processor, prepared: ScoringInputs, config: ScoringConfig) -> list[dict[str, Any]]:
    """Run the model on a prepared batch (:mod:`mds_vqa.scoring_inputs`, built with the same ``config``); returns
    what :func:`score_videos` returns."""
    readings = {
        mode: _read(model, processor, prepared.model_inputs(mode, model.device), config.for_mode(mode))
        for mode in config.reading_modes
    }
    if config.mode != "both":
        return readings[config.mode]
    rows = []
    for exp, gen in zip(readings["expectation"], readings["generate"]):
        row = {**exp, **gen, "score_expectation": exp["score"], "score_generate": gen["score"]}
        row["score"] = row[f"score_{config.both_primary}"]
        rows.append(row)
    return rows


def score_videos(
    model,
    processor,
    videos: Sequence[str],
    config: ScoringConfig | None = None,
    sampling: VideoSamplingConfig | None = None,
) -> list[dict[str, Any]]:
    """Score a batch of videos in this process (read, process, then the model). Expectation mode returns
    ``{"score", "digit_probs", "digit_mass", "answer_offset"}`` per video (see
    :func:`mds_vqa.answer_reading.read_answers`), and ``instability`` with ``noise_draws`` > 0; generate mode
    ``{"score", "std", "texts", "parse_failures"}``; both mode all of these, with ``score`` the primary reading's and
    ``score_expectation`` / ``score_generate``. Raises :class:`~mds_vqa.video.VideoReadError` for an unreadable
    video."""
    config = config or ScoringConfig()
    prepared = prepare_scoring_inputs(processor, list(videos), config, sampling or VideoSamplingConfig())
    return score_inputs(model, processor, prepared, config)
