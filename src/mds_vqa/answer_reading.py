"""Reading a score where the model writes it: the digit distribution at the first digit of the model's own answer,
refined by the decimals it would write, over the KV cache of one forward pass.

Qwen2's tokenizer writes every digit as a token of its own and a space or newline before a number as a token of its
own, so a model that answers ``<answer> 3.45 </answer>`` puts almost all of its next-token probability after
``<answer>`` on the space: the digit distribution at that position is not the one the model answers with.
:func:`read_answers`:

1. one forward pass over the prompt (ending in ``<answer>``), keeping the KV cache;
2. ``first_digit``: at most ``max_skip`` greedy one-token steps, batched. A row whose most likely next token is not a
   digit takes it (a space, a newline) and steps on; a row whose most likely next token is a digit is read there (and
   is fed masked padding while the others step). A row that reaches no digit within ``max_skip`` tokens (a model that
   does not answer with a number) is read at the prefix, as ``prefix`` reads every row, and reported with offset
   ``None``;
3. the first digit d ∈ 1..5 with its probabilities renormalised over 1..5, refined by ``decimals`` ∈ {0, 1, 2}: for
   each d one continuation ``d`` ``"."`` of the cache gives the first decimal's distribution over 0..9, and (for two
   decimals) one more step on its most likely value k* gives the second's. The score is
   ``Σ_d P(d)·(d + E[k | d]/10 + E[j | d, k*]/100)``: continuous even when the model is confident.

Every row takes the same number of steps: at most ``max_skip + 5·decimals`` batched steps of one or two tokens after
the prefix pass, which is the only pass that sees the video. Scoring only (no gradient): the failure predictor is
trained and scored with the fixed-position reading of :func:`mds_vqa.scoring.expectation_scores`.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["ANSWER_READINGS", "AnswerTokens", "CachedPrompt", "answer_tokens", "read_answers"]

ANSWER_READINGS = ("first_digit", "prefix")
SCORE_DIGITS = (1, 2, 3, 4, 5)


def _single_token(tokenizer, text: str, why: str) -> int:
    ids = tokenizer(text, add_special_tokens=False).input_ids
    if len(ids) != 1:
        raise ValueError(f"{text!r} is not a single token for this tokenizer ({ids}); {why}")
    return ids[0]


@dataclass(frozen=True)
class AnswerTokens:
    """Token ids a number is written with: ``digits[k]`` writes ``k`` (0..9), ``point`` writes ``"."``."""

    digits: tuple[int, ...]
    point: int
    pad: int

    @property
    def score_digits(self) -> list[int]:
        """The ids of the first digits 1..5."""
        return [self.digits[d] for d in SCORE_DIGITS]


def answer_tokens(tokenizer) -> AnswerTokens:
    """The digit, ``"."`` and padding token ids of ``tokenizer``; raises if a digit or ``"."`` is not one token."""
    why = "reading the answer digit by digit needs it"
    digits = tuple(_single_token(tokenizer, str(k), why) for k in range(10))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return AnswerTokens(digits=digits, point=_single_token(tokenizer, ".", why), pad=int(pad))


def _base_model(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _rope_deltas(model) -> torch.Tensor | None:
    """The per-row offset between text index and rotary position that a Qwen2-VL-style model stores after a prompt
    pass (video tokens share positions); ``None`` for a model without one (plain rotary positions)."""
    for module in _base_model(model).modules():
        deltas = getattr(module, "rope_deltas", None)
        if isinstance(deltas, torch.Tensor):
            return deltas
    return None


def _reset_rope_deltas(model) -> None:
    for module in _base_model(model).modules():
        if hasattr(module, "rope_deltas"):
            module.rope_deltas = None


class CachedPrompt:
    """A batch of prompts run once with a KV cache, then continued a few tokens at a time (left padding kept).

    ``mask`` is the attention mask over everything in the cache; a continuation token fed with ``keep = False`` is
    cached but masked out, so later tokens neither see it nor count it in their positions.
    """

    def __init__(self, model, inputs: dict[str, Any]):
        self.model = model
        params = inspect.signature(_base_model(model).forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5.2x
        _reset_rope_deltas(model)  # the prompt pass computes this batch's
        out = model(**inputs, use_cache=True, logits_to_keep=1)
        cache = getattr(out, "cache", None)
        self.cache = out.past_key_values if cache is None else cache
        self.logits = out.logits[:, -1, :].float()
        self.mask = inputs["attention_mask"].clone()
        deltas = _rope_deltas(model)
        rows = self.mask.shape[0]
        self.deltas = torch.zeros(rows, 1, dtype=torch.long) if deltas is None else deltas.reshape(rows, -1)[:, :1]
        self.deltas = self.deltas.to(self.mask.device)

    @property
    def length(self) -> int:
        """Tokens in the cache (masked ones included)."""
        return self.mask.shape[1]

    def step(self, tokens: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Feed ``tokens`` (rows × n) after the cache; returns the next-token logits after the last one (rows × V)."""
        device = self.mask.device
        tokens = tokens.to(device)
        new = torch.ones_like(tokens, dtype=self.mask.dtype) if keep is None else keep.to(device, self.mask.dtype)
        text_index = self.mask.sum(-1, keepdim=True) + new.cumsum(-1) - 1
        positions = (text_index.clamp(min=0) + self.deltas).unsqueeze(0).expand(3, -1, -1)
        self.mask = torch.cat([self.mask, new], dim=1)
        out = self.model(
            input_ids=tokens,
            attention_mask=self.mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_kwarg: self.cache},
        )
        return out.logits[:, -1, :].float()

    def crop(self, length: int) -> None:
        """Forget every token after the first ``length``."""
        if self.length > length:  # a negative count removes that many tokens in every transformers version
            self.cache.crop(length - self.length)
        self.mask = self.mask[:, :length]


def _first_digit(prompt: CachedPrompt, tokens: AnswerTokens, max_skip: int) -> tuple[torch.Tensor, list[int | None]]:
    """Greedy steps until each row's most likely next token is a digit (see the module docstring); returns the logits
    read per row and how many tokens each row skipped (``None``: no digit, read at the prefix)."""
    logits, start = prompt.logits, prompt.length
    read = logits.clone()
    offset = torch.full((logits.shape[0],), -1, dtype=torch.long, device=logits.device)
    is_digit = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
    is_digit[list(tokens.digits)] = True
    for step in range(max_skip + 1):
        top = logits.argmax(-1)
        hit = is_digit[top] & (offset < 0)
        read[hit] = logits[hit]
        offset[hit] = step
        pending = offset < 0
        if step == max_skip or not bool(pending.any()):
            break
        logits = prompt.step(torch.where(pending, top, tokens.pad)[:, None], keep=pending[:, None])
    missed = offset < 0
    read[missed] = prompt.logits[missed]
    prompt.mask[missed.to(prompt.mask.device), start:] = 0  # their continuations follow the prefix, not the skip
    return read, [None if o < 0 else int(o) for o in offset.tolist()]


def _digit_mean(logits: torch.Tensor, ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    probs = torch.softmax(logits[:, list(ids)], dim=-1)
    return probs, (probs * torch.arange(len(ids), dtype=probs.dtype, device=probs.device)).sum(-1)


def _digit_values(prompt: CachedPrompt, tokens: AnswerTokens, decimals: int) -> torch.Tensor:
    """``d + E[k | d]/10 (+ E[j | d, k*]/100)`` per row and first digit d (rows × 5)."""
    rows, base = prompt.mask.shape[0], prompt.length
    values = []
    digits = torch.tensor(tokens.digits, device=prompt.mask.device)
    for d in SCORE_DIGITS:
        value = torch.full((rows,), float(d), device=prompt.logits.device)
        if decimals >= 1:
            fed = torch.tensor([[tokens.digits[d], tokens.point]] * rows)
            first, mean = _digit_mean(prompt.step(fed), tokens.digits)
            value = value + mean / 10
            if decimals >= 2:
                _, second = _digit_mean(prompt.step(digits[first.argmax(-1)][:, None]), tokens.digits)
                value = value + second / 100
            prompt.crop(base)
        values.append(value)
    return torch.stack(values, dim=-1)


@torch.no_grad()
def read_answers(
    model,
    inputs: dict[str, Any],
    tokens: AnswerTokens,
    *,
    reading: str = "first_digit",
    decimals: int = 2,
    max_skip: int = 4,
) -> list[dict[str, Any]]:
    """Read each row's score from ``inputs`` (prompts ending in ``<answer>``, left-padded); see the module docstring.

    Returns, per row: ``score``; ``digit_probs`` (P(1..5) renormalised at the position read); ``digit_mass`` (the
    probability the model puts on 1..5 there, before renormalising: near 0 when it would write something else);
    ``answer_offset`` (tokens skipped before the first digit; ``None`` when no digit came within ``max_skip``).
    """
    if reading not in ANSWER_READINGS:
        raise ValueError(f"Unknown answer reading {reading!r}; expected one of {ANSWER_READINGS}")
    if decimals not in (0, 1, 2):
        raise ValueError(f"decimals must be 0, 1 or 2, got {decimals}")
    prompt = CachedPrompt(model, inputs)
    if reading == "first_digit":
        logits, offsets = _first_digit(prompt, tokens, max_skip)
    else:
        logits, offsets = prompt.logits, [0] * prompt.logits.shape[0]
    probs = torch.softmax(logits[:, tokens.score_digits], dim=-1)
    mass = torch.softmax(logits, dim=-1)[:, tokens.score_digits].sum(-1)
    if decimals:
        values = _digit_values(prompt, tokens, decimals)
    else:
        values = torch.tensor(SCORE_DIGITS, dtype=probs.dtype, device=probs.device).expand_as(probs)
    scores = (probs * values.to(probs)).sum(-1)
    return [
        {"score": float(s), "digit_probs": p.tolist(), "digit_mass": float(m), "answer_offset": o}
        for s, p, m, o in zip(scores, probs, mass, offsets)
    ]
