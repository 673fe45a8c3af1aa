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

**Pair ground truth.** A prompt may come from a pair Dataset instead of a MOS pool (weak pairs with a known order,
:mod:`mds_vqa.weak_pairs`, or any pair Dataset of :func:`mds_vqa.data.mos_to_pairs`): it carries a
:class:`PairTruth` (the pair's id, its side ``"a"``/``"b"`` and the pair's ``p``, the probability that ``video_a`` is
the better) and no MOS. Its comparisons z are the other prompts **of the same pair** (the sampler puts both in one
generation batch, :class:`mds_vqa.samplers.DatasetRepeatSampler`), with ``gt = p`` for side a against side b,
``1 − p`` for side b against side a, and 0.5 against a repeat of its own side; the formula is otherwise unchanged, so
with ``p = 1`` for the higher-MOS video a pair gets exactly the MOS-based reward. Pair prompts and MOS prompts are
never compared with each other (there is no common scale), and a pair prompt whose partner is not in the batch is a
lonely prompt.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
from accelerate import PartialState
from accelerate.utils import gather_object
from scipy.stats import norm

from .prompts import parse_score

__all__ = [
    "THURSTONE_EPS",
    "NEUTRAL_REWARD",
    "ThurstoneResult",
    "PairTruth",
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


class PairTruth(NamedTuple):
    """The ground truth of a prompt from a pair Dataset: its pair, its side (``"a"`` or ``"b"``) and the pair's
    ``p`` (probability that ``video_a`` is the better video)."""

    pair_id: str
    side: str
    p: float

    def check(self) -> PairTruth:
        """This truth once its side and ``p`` are valid (else ``ValueError`` naming the pair)."""
        if self.side not in ("a", "b"):
            raise ValueError(f"Pair {self.pair_id!r}: side must be 'a' or 'b', got {self.side!r}")
        if not 0.0 <= float(self.p) <= 1.0:
            raise ValueError(f"Pair {self.pair_id!r}: p must be in [0, 1], got {self.p!r}")
        return self

    def gt_against(self, other: PairTruth) -> float:
        """The probability that this prompt's video beats ``other``'s (a prompt of the same pair)."""
        if other.side == self.side:
            return 0.5
        return float(self.p) if self.side == "a" else 1.0 - float(self.p)


def _comparisons(
    i: int, prompt_mos: np.ndarray, prompt_group: Sequence[Any], pairs: Sequence[PairTruth | None], counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Prompt ``i``'s comparison prompts z (parsed, ≠ i) and the ground truth against each: same-dataset MOS prompts
    by MOS order, or the prompts of its own pair by the pair's ``p`` (module docstring)."""
    others = [z for z in range(len(pairs)) if z != i and counts[z] > 0]
    mine = pairs[i]
    if mine is None:
        z = np.asarray([z for z in others if pairs[z] is None and prompt_group[z] == prompt_group[i]], dtype=int)
        gt = np.where(prompt_mos[i] > prompt_mos[z], 1.0, np.where(prompt_mos[i] < prompt_mos[z], 0.0, 0.5))
        return z, gt
    z = [z for z in others if pairs[z] is not None and pairs[z].pair_id == mine.pair_id]
    return np.asarray(z, dtype=int), np.asarray([mine.gt_against(pairs[k]) for k in z], dtype=float)


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
    score_groups: Sequence[np.ndarray],
    prompt_mos: np.ndarray,
    prompt_group: Sequence[Any],
    eps: float,
    neutral: float,
    prompt_pair: Sequence[PairTruth | None] | None = None,
) -> ThurstoneResult:
    """Rewards for prompts with any number of responses each (``score_groups[i]``: prompt i's parsed scores; a prompt
    with a ``prompt_pair`` entry takes its ground truth from its pair, the others from ``prompt_mos``)."""
    n_prompts = len(score_groups)
    pairs = list(prompt_pair) if prompt_pair is not None else [None] * n_prompts
    bad = [i for i in range(n_prompts) if pairs[i] is None and not np.isfinite(prompt_mos[i])]
    if bad:
        raise ValueError(f"Non-finite MOS for prompts {bad} (and no pair ground truth)")
    parsed = [np.isfinite(g) for g in score_groups]
    counts = np.asarray([int(m.sum()) for m in parsed])
    mu = np.asarray([g[m].mean() if m.any() else np.nan for g, m in zip(score_groups, parsed)])
    var = np.asarray([np.var(g[m], ddof=1) if m.sum() > 1 else 0.0 for g, m in zip(score_groups, parsed)])
    out_groups, lonely = [], 0
    for i in range(n_prompts):
        rewards = np.zeros(len(score_groups[i]))
        z, gt = _comparisons(i, prompt_mos, prompt_group, pairs, counts)
        if not len(z):
            lonely += 1
            rewards[parsed[i]] = neutral
            out_groups.append(rewards)
            continue
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
    pairs: Sequence[PairTruth | tuple | None] | None = None,
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
    mos_rows = [math.nan if v is None else float(v) for v in _per_row(mos, n, n_prompts, num_generations, "mos")]
    group_rows = _per_row(groups if groups is not None else [None] * n, n, n_prompts, num_generations, "groups")
    pair_rows = [
        None if t is None else PairTruth(*t).check()
        for t in _per_row(pairs if pairs is not None else [None] * n, n, n_prompts, num_generations, "pairs")
    ]
    for i in range(n_prompts):
        rows = slice(i * num_generations, (i + 1) * num_generations)
        block = set(pair_rows[rows])
        if len(block) != 1:
            raise ValueError(
                f"Prompt {i}: the responses of one prompt carry different pairs {sorted(map(str, block))}"
            )
        block = {"nan" if math.isnan(v) else v for v in mos_rows[rows]}
        if pair_rows[rows.start] is None and len(block) != 1:  # a pair prompt's MOS is not read
            raise ValueError(f"Prompt {i}: the responses of one prompt carry different MOS {sorted(map(str, block))}")
        block = set(group_rows[rows])
        if len(block) != 1:
            raise ValueError(
                f"Prompt {i}: the responses of one prompt carry different groups {sorted(map(str, block))}"
            )
    starts = range(0, n, num_generations)
    prompt_mos = np.asarray([mos_rows[k] for k in starts])
    return _thurstone_core(
        list(s.reshape(n_prompts, num_generations)),
        prompt_mos,
        [group_rows[k] for k in starts],
        eps,
        neutral,
        [pair_rows[k] for k in starts],
    )


def thurstone_rewards(
    scores: Sequence[float],
    mos: Sequence[float],
    num_generations: int,
    groups: Sequence[Any] | None = None,
    *,
    pairs: Sequence[PairTruth | tuple | None] | None = None,
    eps: float = THURSTONE_EPS,
    neutral: float = NEUTRAL_REWARD,
) -> list[float]:
    """Thurstone ranking rewards of VisualQuality-R1 (module docstring).

    Args:
        scores: parsed scores, one per response, the ``num_generations`` responses of a prompt consecutive; NaN (or
            None) for an unparseable response.
        mos: the MOS, one per response (repeated within a prompt) or one per prompt; NaN or None for a pair prompt.
        num_generations: responses per prompt.
        groups: dataset names (per response or per prompt); comparisons stay within a group. ``None``: one group.
        pairs: per response or per prompt, a :class:`PairTruth` (or ``(pair_id, side, p)``) for a prompt from a pair
            Dataset, ``None`` for a MOS prompt. ``None``: every prompt has a MOS.

    Returns:
        One reward per response, in [0, ~1].
    """
    return list(
        thurstone_rewards_detailed(scores, mos, num_generations, groups, pairs=pairs, eps=eps, neutral=neutral)
    )


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
    pair_id: Sequence[str | None] | None = None,
    pair_side: Sequence[str | None] | None = None,
    pair_p: Sequence[float | None] | None = None,
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

    Rows from a pair Dataset (``recipes/finetune.py --pair_dataset_paths``) carry ``pair_id``, ``pair_side`` and
    ``pair_p`` columns (null on MOS rows) and a null ``mos``: they are gathered with the rest and become the
    :class:`PairTruth` of their prompt; ``thurstone/pair_prompts`` is then logged too.
    """
    state = PartialState()
    n_local = len(completions)
    scores = [parse_score(completion_text(c)) for c in completions]
    datasets = list(dataset) if dataset is not None else [None] * n_local
    videos = list(video) if video is not None else [None] * n_local
    truths: list[tuple | None] = [None] * n_local
    if pair_id is not None:
        sides = list(pair_side) if pair_side is not None else [None] * n_local
        ps = list(pair_p) if pair_p is not None else [None] * n_local
        truths = [None if k is None else (k, s, p) for k, s, p in zip(pair_id, sides, ps, strict=True)]
    mos_values = [math.nan if m is None else float(m) for m in mos]
    local = list(zip(scores, mos_values, datasets, videos, truths, strict=True))
    per_process = gather_object([local])  # one list per process, in process order (no-op with one process)
    rows = [row for part in per_process for row in part]
    if len(rows) % num_generations:
        raise ValueError(
            f"thurstone_reward: {len(rows)} completions gathered from {len(per_process)} process(es) "
            f"({[len(p) for p in per_process]}) is not a multiple of num_generations={num_generations}; the `mos`, "
            "`dataset` and `video` fields must come one per completion, the responses of a prompt in consecutive rows."
        )
    g_scores, g_mos, g_datasets, g_videos, g_pairs = ([row[k] for row in rows] for k in range(5))
    for i in range(0, len(rows), num_generations):
        block = set(g_videos[i : i + num_generations])
        if len(block) != 1:
            raise ValueError(
                f"thurstone_reward: prompt {i // num_generations} has responses of several videos {block}"
            )
    has_pairs = any(t is not None for t in g_pairs)
    res = thurstone_rewards_detailed(
        g_scores, g_mos, num_generations, g_datasets, pairs=g_pairs if has_pairs else None
    )
    if log_metric is not None:
        log_metric("thurstone/unparseable_frac", res.unparseable / max(1, len(rows)))
        log_metric("thurstone/lonely_prompts", float(res.lonely_prompts))
        if has_pairs:
            log_metric("thurstone/pair_prompts", sum(t is not None for t in g_pairs) / num_generations)
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
