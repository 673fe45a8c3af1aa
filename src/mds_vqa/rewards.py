"""GRPO rewards of VisualQuality-R1: the Thurstone ranking reward and the format reward, with a name registry.

``thurstone_rewards`` is the pure function (DESIGN.md's formula). For response j of prompt i and every other prompt
z ≠ i of the same dataset in the batch::

    p  = Φ((s_ij − μ_z) / √(σ²_i + σ²_z + ε))      μ, σ²: mean and unbiased variance of a prompt's parsed scores
    gt = 1 if MOS_i > MOS_z, 0 if MOS_i < MOS_z, 0.5 if equal
    r  = √(p·gt + ε) + √((1 − p)(1 − gt) + ε)

and the reward is the mean of r over z, with ε = 1e-6 (VisualQuality-R1's code). Decisions where the formula is
silent (documented and tested):

- an unparseable response gets the lowest reward, 0, and its score is left out of its prompt's μ and σ²;
- a prompt whose responses all fail to parse cannot serve as a comparison z;
- a prompt with a single parsed response (``num_generations = 1``) has σ² = 0 (the unbiased variance is undefined);
- a prompt with no other same-dataset prompt in the batch gets the neutral reward 0.5 for each parsed response (a
  constant within the group, so it adds no advantage) and is counted.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from accelerate import PartialState
from accelerate.utils import gather_object
from scipy.stats import norm

from .prompts import parse_score

__all__ = [
    "THURSTONE_EPS",
    "NEUTRAL_REWARD",
    "ThurstoneResult",
    "thurstone_rewards",
    "thurstone_rewards_detailed",
    "format_reward",
    "thurstone_reward",
    "REWARD_FUNCS",
    "get_reward_funcs",
    "completion_text",
]

THURSTONE_EPS = 1e-6  # VisualQuality-R1's
NEUTRAL_REWARD = 0.5
_FORMAT_RE = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)


class ThurstoneResult(list):
    """The rewards (a ``list[float]``) with counts: ``lonely_prompts`` (no same-dataset partner in the batch) and
    ``unparseable`` responses."""

    lonely_prompts: int = 0
    unparseable: int = 0


def _per_row(values: Sequence[Any], n_rows: int, n_prompts: int, num_generations: int, what: str) -> list[Any]:
    values = list(values)
    if len(values) == n_rows:
        return values
    if len(values) == n_prompts:
        return [v for v in values for _ in range(num_generations)]
    raise ValueError(
        f"{what} has {len(values)} values; expected one per response ({n_rows}) or per prompt ({n_prompts})."
    )


def _thurstone_core(
    score_groups: Sequence[np.ndarray], prompt_mos: np.ndarray, prompt_group: Sequence[Any], eps: float, neutral: float
) -> ThurstoneResult:
    """Rewards for prompts with any number of responses each (``score_groups[i]``: prompt i's parsed scores)."""
    n_prompts = len(score_groups)
    if not np.all(np.isfinite(prompt_mos)):
        raise ValueError(f"Non-finite MOS for prompts {np.flatnonzero(~np.isfinite(prompt_mos)).tolist()}")
    parsed = [np.isfinite(g) for g in score_groups]
    counts = np.asarray([int(m.sum()) for m in parsed])
    mu = np.asarray([g[m].mean() if m.any() else np.nan for g, m in zip(score_groups, parsed)])
    var = np.asarray([np.var(g[m], ddof=1) if m.sum() > 1 else 0.0 for g, m in zip(score_groups, parsed)])
    out_groups, lonely = [], 0
    for i in range(n_prompts):
        rewards = np.zeros(len(score_groups[i]))
        partners = [z for z in range(n_prompts) if z != i and prompt_group[z] == prompt_group[i] and counts[z] > 0]
        if not partners:
            lonely += 1
            rewards[parsed[i]] = neutral
            out_groups.append(rewards)
            continue
        z = np.asarray(partners)
        gt = np.where(prompt_mos[i] > prompt_mos[z], 1.0, np.where(prompt_mos[i] < prompt_mos[z], 0.0, 0.5))
        for j in np.flatnonzero(parsed[i]):  # unparseable responses keep the lowest reward, 0
            p = norm.cdf((score_groups[i][j] - mu[z]) / np.sqrt(var[i] + var[z] + eps))
            rewards[j] = float((np.sqrt(p * gt + eps) + np.sqrt((1 - p) * (1 - gt) + eps)).mean())
        out_groups.append(rewards)
    out = ThurstoneResult(np.concatenate(out_groups).tolist() if out_groups else [])
    out.lonely_prompts = lonely
    out.unparseable = int(sum((~m).sum() for m in parsed))
    return out


def thurstone_rewards_detailed(
    scores: Sequence[float],
    mos: Sequence[float],
    num_generations: int,
    groups: Sequence[Any] | None = None,
    *,
    eps: float = THURSTONE_EPS,
    neutral: float = NEUTRAL_REWARD,
) -> ThurstoneResult:
    """:func:`thurstone_rewards` plus the counts (see :class:`ThurstoneResult`)."""
    if num_generations < 1:
        raise ValueError(f"num_generations must be >= 1, got {num_generations}")
    s = np.asarray([math.nan if v is None else float(v) for v in scores], dtype=float)
    n = len(s)
    if n % num_generations:
        raise ValueError(f"{n} scores is not a multiple of num_generations={num_generations}")
    n_prompts = n // num_generations
    mos_rows = _per_row(mos, n, n_prompts, num_generations, "mos")
    group_rows = _per_row(groups if groups is not None else [None] * n, n, n_prompts, num_generations, "groups")
    for i in range(n_prompts):
        block = {float(v) for v in mos_rows[i * num_generations : (i + 1) * num_generations]}
        if len(block) != 1:
            raise ValueError(f"Prompt {i}: the responses of one prompt carry different MOS {sorted(block)}")
        block = set(group_rows[i * num_generations : (i + 1) * num_generations])
        if len(block) != 1:
            raise ValueError(
                f"Prompt {i}: the responses of one prompt carry different groups {sorted(map(str, block))}"
            )
    prompt_mos = np.asarray([float(mos_rows[i * num_generations]) for i in range(n_prompts)])
    prompt_group = [group_rows[i * num_generations] for i in range(n_prompts)]
    return _thurstone_core(list(s.reshape(n_prompts, num_generations)), prompt_mos, prompt_group, eps, neutral)


def thurstone_rewards(
    scores: Sequence[float],
    mos: Sequence[float],
    num_generations: int,
    groups: Sequence[Any] | None = None,
    *,
    eps: float = THURSTONE_EPS,
    neutral: float = NEUTRAL_REWARD,
) -> list[float]:
    """Thurstone ranking rewards of VisualQuality-R1 (module docstring).

    Args:
        scores: parsed scores, one per response, the ``num_generations`` responses of a prompt consecutive; NaN (or
            None) for an unparseable response.
        mos: the MOS, one per response (repeated within a prompt) or one per prompt.
        num_generations: responses per prompt.
        groups: dataset names (per response or per prompt); comparisons stay within a group. ``None``: one group.

    Returns:
        One reward per response, in [0, ~1].
    """
    return list(thurstone_rewards_detailed(scores, mos, num_generations, groups, eps=eps, neutral=neutral))


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or a conversation whose last message's content is the answer."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content", "")
        if isinstance(content, list):
            return "".join(part.get("text", "") for part in content if isinstance(part, dict))
        return str(content)
    raise TypeError(f"Unsupported completion type {type(completion).__name__}: {completion!r}")


def format_reward(completions: Sequence[Any], **kwargs) -> list[float]:
    """1.0 if a completion fully matches ``<think>.*?</think>\\s*<answer>.*?</answer>`` (DOTALL), else 0.0."""
    return [1.0 if _FORMAT_RE.fullmatch(completion_text(c)) else 0.0 for c in completions]


def thurstone_reward(
    completions: Sequence[Any],
    mos: Sequence[float],
    dataset: Sequence[str] | None = None,
    video: Sequence[str] | None = None,
    log_metric: Callable[[str, float], None] | None = None,
    *,
    num_generations: int,
    **kwargs,
) -> list[float]:
    """TRL-facing Thurstone reward; build it with ``get_reward_funcs(["thurstone"], num_generations=...)``.

    TRL calls reward functions on each process's share of the generation batch, which may hold part of a prompt's
    ``num_generations`` responses and never holds the prompts of the other processes. So the parsed scores
    (:func:`~mds_vqa.prompts.parse_score`) and the ``mos``/``dataset``/``video`` columns are gathered from all
    processes in process order (the order of TRL's gathered rewards, whose consecutive blocks of ``num_generations``
    rows are the prompts), the rewards are computed on the whole batch with :func:`thurstone_rewards`, and this
    process's slice is returned. Each block must carry one MOS, one dataset and one video (else a ``ValueError``, as
    when the total is not a multiple of ``num_generations``: the bound value must be the trainer's, and TRL's
    evaluation groups by ``num_generations_eval``). The unparseable fraction and the lonely-prompt count of the whole
    batch go to TRL's ``log_metric`` (the same on every process, so TRL's average over processes reports them).
    """
    state = PartialState()
    n_local = len(completions)
    scores = [parse_score(completion_text(c)) for c in completions]
    datasets = list(dataset) if dataset is not None else [None] * n_local
    videos = list(video) if video is not None else [None] * n_local
    local = list(zip(scores, [float(m) for m in mos], datasets, videos, strict=True))
    per_process = gather_object([local])  # one list per process, in process order (no-op with one process)
    rows = [row for part in per_process for row in part]
    if len(rows) % num_generations:
        raise ValueError(
            f"thurstone_reward: {len(rows)} completions gathered from {len(per_process)} process(es) "
            f"({[len(p) for p in per_process]}) is not a multiple of num_generations={num_generations}; the `mos`, "
            "`dataset` and `video` fields must come one per completion, the responses of a prompt in consecutive rows."
        )
    g_scores, g_mos, g_datasets, g_videos = ([row[k] for row in rows] for k in range(4))
    for i in range(0, len(rows), num_generations):
        block = set(g_videos[i : i + num_generations])
        if len(block) != 1:
            raise ValueError(
                f"thurstone_reward: prompt {i // num_generations} has responses of several videos {block}"
            )
    res = thurstone_rewards_detailed(g_scores, g_mos, num_generations, g_datasets)
    if log_metric is not None:
        log_metric("thurstone/unparseable_frac", res.unparseable / max(1, len(rows)))
        log_metric("thurstone/lonely_prompts", float(res.lonely_prompts))
    offset = sum(len(p) for p in per_process[: state.process_index])
    return list(res)[offset : offset + n_local]


REWARD_FUNCS: dict[str, Callable[..., list[float]]] = {
    "thurstone": thurstone_reward,
    "format": format_reward,
}


def get_reward_funcs(names: Sequence[str], num_generations: int | None = None) -> list[Callable[..., list[float]]]:
    """Reward functions by name from :data:`REWARD_FUNCS`, as TRL's ``reward_funcs``.

    Rewards that need the group size (``thurstone``) get ``num_generations`` bound (a ``functools.partial``: TRL logs
    it under the function's name, ``rewards/thurstone_reward/mean``).
    """
    unknown = [n for n in names if n not in REWARD_FUNCS]
    if unknown:
        raise ValueError(f"Unknown reward function(s) {unknown}; available: {sorted(REWARD_FUNCS)}")
    funcs = []
    for name in names:
        func = REWARD_FUNCS[name]
        if "num_generations" in inspect.signature(func).parameters:
            if num_generations is None or num_generations < 1:
                raise ValueError(f"Reward {name!r} needs num_generations >= 1, got {num_generations}")
            func = functools.partial(func, num_generations=num_generations)
        funcs.append(func)
    return funcs
