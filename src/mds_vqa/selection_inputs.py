"""Checking what a selection is asked for: the budget, g, the features (of the candidates and of what is labelled),
λ and the strategy's needs; every check raises a ``ValueError`` that names the offending rows or values."""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from .diversity import FramePool
from .feature_column import load_feature_column
from .reporting import MAX_LISTED
from .selection_strategies import Strategy, get_strategy

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger("mds_vqa.selection")

__all__ = [
    "resolve_budget",
    "parse_budget",
    "check_request",
    "selection_inputs",
    "labelled_pool",
    "labelled_frames",
    "warn_tf32",
]


def resolve_budget(budget: int | float, pool_size: int) -> int:
    """Number of videos to pick: an ``int`` is a count, a ``float`` in (0, 1] a fraction of the pool (rounded to the
    nearest count, half up, at least 1). Raises ``ValueError`` for ≤ 0, a count above the pool size, or a float
    outside (0, 1]."""
    if isinstance(budget, bool) or not isinstance(budget, numbers.Real):
        raise ValueError(f"budget must be an int (a count) or a float in (0, 1] (a fraction), got {budget!r}")
    if pool_size <= 0:
        raise ValueError("The pool is empty: nothing to select from.")
    if isinstance(budget, numbers.Integral):
        count = int(budget)
    else:
        frac = float(budget)
        if not math.isfinite(frac) or frac <= 0:
            raise ValueError(f"budget must be positive, got {budget!r}")
        if frac > 1:
            raise ValueError(
                f"A float budget is a fraction of the pool in (0, 1], got {budget!r}; pass an int for a count"
            )
        count = max(1, math.floor(frac * pool_size + 0.5))
    if count <= 0:
        raise ValueError(f"budget must be positive, got {budget!r}")
    if count > pool_size:
        raise ValueError(f"budget {count} exceeds the pool size {pool_size}")
    return count


def parse_budget(text: str | int | float) -> int | float:
    """A budget from a config or the command line: ``"100"`` → 100 videos, ``"0.05"`` or ``"5%"`` → 5 % of the pool."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return text
    raw = str(text).strip()
    try:
        if raw.endswith("%"):
            return float(raw[:-1]) / 100.0
        if any(c in raw for c in ".eE"):
            return float(raw)
        return int(raw)
    except ValueError:
        raise ValueError(
            f"budget must be a count (100), a fraction (0.05) or a percentage (5%), got {text!r}"
        ) from None


def _as_values(difficulty) -> np.ndarray:
    if isinstance(difficulty, torch.Tensor):
        difficulty = difficulty.detach().cpu().numpy()
    elif isinstance(difficulty, (list, tuple)):
        difficulty = [np.nan if v is None else v for v in difficulty]
    g = np.asarray(difficulty, dtype=np.float64)
    if g.ndim != 1:
        raise ValueError(f"difficulty must be one value per video, got shape {g.shape}")
    return g


def _check_difficulty(g: np.ndarray) -> None:
    if g.size == 0:
        raise ValueError("The pool is empty: difficulty has no value.")
    bad = np.flatnonzero(~np.isfinite(g))
    if bad.size:
        raise ValueError(
            f"difficulty is NaN or infinite at {bad.size} row(s): {bad[:MAX_LISTED].tolist()}"
            f"{' …' if bad.size > MAX_LISTED else ''} (a parse failure of g?); drop or rescore them first"
        )


def check_request(strategy: str, lam, difficulty, features) -> Strategy:
    """The strategy, once its name, λ and the presence of the inputs it needs are checked."""
    spec = get_strategy(strategy)
    if not isinstance(lam, numbers.Real) or not math.isfinite(lam) or lam < 0:
        raise ValueError(f"lam (λ) must be a finite number ≥ 0, got {lam!r}")
    if spec.needs_difficulty and difficulty is None:
        raise ValueError(f"Strategy {strategy!r} needs the difficulty g of every video (difficulty=None)")
    if spec.needs_features and features is None:
        raise ValueError(f"Strategy {strategy!r} needs the frame features of every video (features=None)")
    if difficulty is None and features is None:
        raise ValueError("Give difficulty or features: the pool size is unknown")
    return spec


def warn_tf32(device: torch.device) -> None:
    """Warn when CUDA float32 products run in TF32: distances lose precision and picks may change."""
    if device.type == "cuda" and torch.get_float32_matmul_precision() != "highest":
        logger.warning(
            "torch float32 matmul precision is %r (TF32): distances lose precision and picks may change; "
            "call torch.set_float32_matmul_precision('highest') for fp32 distances.",
            torch.get_float32_matmul_precision(),
        )


def labelled_pool(labelled_features, pool: FramePool | None, storage_dtype, device) -> FramePool | None:
    """The labelled videos' features as a pool like the candidates' (``None`` when there are none)."""
    if labelled_features is None or len(labelled_features) == 0:
        return None
    if pool is None:
        raise ValueError("labelled_features needs the candidates' features too (features=None)")
    labelled = FramePool.from_features(labelled_features, dtype=storage_dtype, device=device)
    if labelled.dim != pool.dim:
        raise ValueError(f"labelled_features have dimension {labelled.dim} but the pool's features {pool.dim}")
    return labelled


def selection_inputs(
    spec: Strategy, difficulty, features, storage_dtype, device: torch.device
) -> tuple[np.ndarray | None, FramePool | None]:
    """g as float64 values (checked finite when the strategy uses it) and the features as a pool on ``device``."""
    g = None
    if difficulty is not None:
        g = _as_values(difficulty)
        if spec.needs_difficulty:
            _check_difficulty(g)
    pool = None
    if features is not None:
        pool = FramePool.from_features(features, dtype=storage_dtype, device=device)
    n = len(pool) if pool is not None else len(g)
    if n == 0:
        raise ValueError("The pool is empty: nothing to select from.")
    if g is not None and pool is not None and len(g) != len(pool):
        raise ValueError(f"difficulty has {len(g)} values but features describe {len(pool)} videos")
    return g, pool


def labelled_frames(labelled: Sequence[Dataset], column: str) -> FramePool | None:
    """The frame features of every labelled Dataset as one pool (``None`` without any)."""
    parts = [load_feature_column(ds, column) for ds in labelled if len(ds)]
    if not parts:
        return None
    return FramePool.from_flat(np.concatenate([f for f, _ in parts]), np.concatenate([n for _, n in parts]))
