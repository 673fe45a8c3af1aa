"""The selection strategies and their registry: ``STRATEGIES`` maps a name to a :class:`Strategy`.

- ``mds``: first pick = argmax g, then the MDS greedy (:func:`~mds_vqa.greedy.greedy_mean_distance`);
- ``difficulty``: the top-g videos (λ = 0);
- ``diversity``: the same greedy with g ≡ 0 (first pick: row 0);
- ``coreset``: k-center greedy: the first center is drawn with ``seed``, then each step picks the video farthest
  (largest min Chamfer distance) from the picked set;
- ``random``: a seeded uniform sample;
- ``uncertainty``: the videos whose sampled scores spread most (top-k of the per-video standard deviation of the
  ``num_samples`` answers generated for it: ``<column>_std`` of a pool scored with ``mode: generate``);
- ``noise_stability``: the videos whose score moves most under weight noise (top-k of the mean ``|s_d − s|`` over
  fixed Gaussian perturbations of the language model's weights, deep active learning via noise stability:
  ``<column>_instability`` of a pool scored with ``noise_draws`` > 0).

The top-k strategies (``difficulty``, ``uncertainty``, ``noise_stability``) break ties on the lowest index. Each
strategy names the pool column it reads its per-video score from by default (:attr:`Strategy.score_column`);
:func:`mds_vqa.selection.select` takes that score as ``difficulty`` whatever it measures.

With ``labelled`` (a :class:`~mds_vqa.frame_pool.FramePool` of videos labelled before: earlier rounds, the source),
``mds`` and ``diversity`` average their diversity term over the labelled videos and the picks so far
(:func:`~mds_vqa.greedy.labelled_sums`), and ``coreset`` starts with the labelled videos as centers (its first pick is
then the video farthest from them, not a random one), as ranked-batch and core-set active learning do.

A strategy is ``fn(g, pool, budget, *, lam, seed, device, progress, chunk_frames, lazy, block, stats, labelled)`` returning
``(indices, diversity_or_None)``, ``g`` being its per-video score; add one with :func:`register_strategy`. Run them through
:func:`mds_vqa.selection.select`, which validates the inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .diversity import chamfer_many_vs_all
from .greedy import argmax_lowest, greedy_k_center, greedy_mean_distance, labelled_sums

__all__ = ["STRATEGIES", "Strategy", "get_strategy", "register_strategy"]


@dataclass(frozen=True)
class Strategy:
    """A registered strategy: the function, which inputs it needs (``needs_difficulty``: a per-video score, passed
    as ``difficulty``) and ``score_column``, the pool column that score is read from by default (``None`` for a
    strategy that reads none)."""

    fn: Callable
    needs_difficulty: bool
    needs_features: bool
    description: str
    score_column: str | None = None


STRATEGIES: dict[str, Strategy] = {}


def register_strategy(
    name: str, *, needs_difficulty: bool, needs_features: bool, description: str, score_column: str | None = None
):
    """Decorator: add a strategy ``fn(g, pool, budget, *, lam, seed, device, progress, chunk_frames, lazy,
    block, stats, labelled)`` to the registry; it returns ``(indices, diversity_or_None)`` and may record counters in the
    ``stats`` dict (they land in :attr:`mds_vqa.selection.Selection.params`). ``score_column``: the pool column its
    per-video score ``g`` is read from by default (with ``needs_difficulty``)."""

    def wrap(fn: Callable) -> Callable:
        STRATEGIES[name] = Strategy(fn, needs_difficulty, needs_features, description, score_column)
        return fn

    return wrap


def get_strategy(name: str) -> Strategy:
    """The registered strategy ``name``; ``ValueError`` listing the available ones when there is none."""
    if name not in STRATEGIES:
        raise ValueError(f"Unknown selection strategy {name!r}; available: {sorted(STRATEGIES)}")
    return STRATEGIES[name]


@register_strategy(
    "mds",
    needs_difficulty=True,
    needs_features=True,
    description="difficulty × diversity greedy (MDS-VQA)",
    score_column="difficulty",
)
def _mds(g, pool, budget, *, lam, seed, device, progress, chunk_frames, lazy=True, block=1, stats=None, labelled=None):
    g_t = torch.as_tensor(g, dtype=torch.float64, device=device)
    base = labelled_sums(pool, labelled, chunk_frames=chunk_frames) if labelled is not None else None
    return greedy_mean_distance(
        g_t,
        pool,
        budget,
        lam,
        progress=progress,
        chunk_frames=chunk_frames,
        desc="mds",
        lazy=lazy,
        block=block,
        stats=stats,
        base_sums=base,
        base_count=len(labelled) if labelled is not None else 0,
    )


@register_strategy("diversity", needs_difficulty=False, needs_features=True, description="the MDS greedy with g ≡ 0")
def _diversity(
    g, pool, budget, *, lam, seed, device, progress, chunk_frames, lazy=True, block=1, stats=None, labelled=None
):
    zeros = torch.zeros(len(pool), dtype=torch.float64, device=device)
    # With g ≡ 0 the score is λ·mean distance; λ only scales it, so use 1 (any λ > 0 gives the same order).
    return _mds(
        zeros,
        pool,
        budget,
        lam=1.0,
        seed=seed,
        device=device,
        progress=progress,
        chunk_frames=chunk_frames,
        lazy=lazy,
        block=block,
        stats=stats,
        labelled=labelled,
    )


def _top_k(g: np.ndarray, budget: int) -> list[int]:
    """The ``budget`` highest values of ``g``, highest first; ties keep the lowest index first."""
    order = np.argsort(-g, kind="stable")[:budget]
    return [int(i) for i in order]


@register_strategy(
    "difficulty", needs_difficulty=True, needs_features=False, description="top-g (λ = 0)", score_column="difficulty"
)
def _difficulty(
    g, pool, budget, *, lam, seed, device, progress, chunk_frames, lazy=True, block=1, stats=None, labelled=None
):
    return _top_k(g, budget), None


@register_strategy(
    "uncertainty",
    needs_difficulty=True,
    needs_features=False,
    description="top-k spread (standard deviation) of the sampled scores",
    score_column="uncertainty",
)
def _uncertainty(
    g, pool, budget, *, lam, seed, device, progress, chunk_frames, lazy=True, block=1, stats=None, labelled=None
):
    return _top_k(g, budget), None


@register_strategy(
    "noise_stability",
    needs_difficulty=True,
    needs_features=False,
    description="top-k score change under weight noise (noise stability)",
    score_column="instability",
)
def _noise_stability(
    g, pool, budget, *, lam, seed, device, progress, chunk_frames, lazy=True, block=1, stats=None, labelled=None
):
    return _top_k(g, budget), None


@register_strategy(
    "coreset", needs_difficulty=False, needs_features=True, description="k-center greedy on the min distance"
)
def _coreset(
    g, pool, budget, *, lam, seed, device, progress, chunk_frames, lazy=True, block=1, stats=None, labelled=None
):
    n = len(pool)
    sums = torch.zeros(n, dtype=torch.float64, device=device)
    nearest = torch.full((n,), float("inf"), dtype=torch.float32, device=device)
    m = len(labelled) if labelled is not None else 0
    for b0 in range(0, m, 32):  # the labelled videos are the first centers
        queries = labelled.subset(torch.arange(b0, min(m, b0 + 32))).as_queries()
        block = chamfer_many_vs_all(queries, pool, chunk_frames=chunk_frames)
        sums += block.to(torch.float64).sum(dim=1)
        torch.minimum(nearest, block.min(dim=1).values, out=nearest)
    first = argmax_lowest(nearest) if m else int(np.random.default_rng(seed).integers(n))
    return greedy_k_center(
        pool,
        budget,
        first,
        progress=progress,
        chunk_frames=chunk_frames,
        lazy=lazy,
        stats=stats,
        nearest=nearest,
        base_sums=sums,
        base_count=m,
    )


@register_strategy("random", needs_difficulty=False, needs_features=False, description="seeded uniform sample")
def _random(
    g, pool, budget, *, lam, seed, device, progress, chunk_frames, lazy=True, block=1, stats=None, labelled=None
):
    n = len(pool) if pool is not None else len(g)
    return [int(i) for i in np.random.default_rng(seed).permutation(n)[:budget]], None
