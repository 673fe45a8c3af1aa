"""The report of a selection: ``report.md`` with the settings, a summary, a 2-D map of the pool's features with the
picks, the distribution of the per-video score in the pool and in the subset, and the first picks.

The per-video score is called ``g`` for the strategies that rank by the failure predictor's difficulty (and for those
that rank by none, which only report it), and by the strategy's own name for it otherwise (``uncertainty``,
``instability``), with the column it was read from in the settings."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .diversity import mean_pairwise_distance
from .feature_column import column_values
from .reporting import format_number, markdown_table, pyplot, save_figure
from .selection_strategies import STRATEGIES

if TYPE_CHECKING:
    from .selection_data import SubsetSelection

__all__ = ["pca_2d", "plot_feature_map", "plot_difficulty_distribution", "write_selection_report"]

_FIRST_PICKS = 20  # rows of the "First picks" table
_LEFT_OUT_SHOWN = 10  # ids shown per reason in the "left out" setting


def pca_2d(frames: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each video's mean frame feature projected on the first two principal axes of the pool.

    Returns ``(coords (N, 2), explained_variance_ratio (2,))``; axis signs are fixed (largest loading positive), so
    the map is deterministic."""
    lengths = np.asarray(lengths, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    means = np.add.reduceat(np.asarray(frames, dtype=np.float64), starts, axis=0) / lengths[:, None]
    centred = means - means.mean(axis=0)
    cov = centred.T @ centred / max(1, len(centred))
    eigval, eigvec = np.linalg.eigh(cov)
    order = np.argsort(eigval)[::-1][:2]
    axes = eigvec[:, order]
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(axes.shape[1])])
    axes = axes * np.where(signs == 0, 1, signs)
    total = float(eigval.clip(min=0).sum())
    ratio = eigval[order].clip(min=0) / total if total > 0 else np.zeros(len(order))
    coords = centred @ axes
    if coords.shape[1] < 2:  # d = 1
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
        ratio = np.pad(ratio, (0, 2 - len(ratio)))
    return coords, ratio


def plot_feature_map(coords: np.ndarray, picked: Sequence[int], path: str, *, title: str, variance=None) -> str:
    """Scatter of the pool (grey) with the picked videos coloured by pick rank; saved as PNG at ``path``."""
    plt = pyplot()
    picked = np.asarray(picked, dtype=np.int64)
    fig, ax = plt.subplots(figsize=(6.4, 5.2), dpi=120)
    size = 4 if len(coords) > 5000 else 10
    ax.scatter(coords[:, 0], coords[:, 1], s=size, c="#bbbbbb", lw=0, label=f"pool ({len(coords)})", rasterized=True)
    sc = ax.scatter(
        coords[picked, 0], coords[picked, 1], s=18, c=np.arange(1, len(picked) + 1), cmap="viridis_r",
        edgecolors="black", linewidths=0.3, label=f"selected ({len(picked)})",
    )  # fmt: skip
    fig.colorbar(sc, ax=ax, label="pick rank")
    if variance is not None:
        ax.set_xlabel(f"PC1 ({100 * variance[0]:.1f} % of variance)")
        ax.set_ylabel(f"PC2 ({100 * variance[1]:.1f} % of variance)")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    return path


def plot_difficulty_distribution(
    g_pool: np.ndarray, g_picked: np.ndarray, path: str, *, title: str, xlabel: str = "difficulty g"
) -> str:
    """Histograms (densities) of g (or another per-video score, named by ``xlabel``) in the pool and in the
    selection; saved as PNG at ``path``."""
    plt = pyplot()
    g_pool = np.asarray(g_pool, dtype=np.float64)
    g_picked = np.asarray(g_picked, dtype=np.float64)
    lo, hi = float(np.nanmin(g_pool)), float(np.nanmax(g_pool))
    bins = np.linspace(lo, hi if hi > lo else lo + 1, 31)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    ax.hist(g_pool, bins=bins, density=True, alpha=0.5, color="#888888", label=f"pool (mean {np.nanmean(g_pool):.3f})")
    ax.hist(
        g_picked, bins=bins, density=True, alpha=0.6, color="#d95f02",
        label=f"selected (mean {np.nanmean(g_picked):.3f})",
    )  # fmt: skip
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    return path


def _number(value) -> str:
    return format_number(value, 4, missing="—")


def _score_label(chosen: SubsetSelection) -> str:
    """What the report calls the per-video score: ``g`` for difficulty (and strategies that rank by no score), the
    strategy's name for its score otherwise."""
    own = STRATEGIES[chosen.selection.strategy].score_column
    return "g" if own in (None, "difficulty") else own


def write_selection_report(
    out: str | os.PathLike,
    chosen: SubsetSelection,
    *,
    pool_path: str,
    lam: float,
    seed: int,
    features_column: str = "features",
    id_column: str = "video_id",
) -> Path:
    """Write ``report.md`` (and its pictures ``feature_map.png``, ``difficulty.png``) into ``out``: the settings, a
    summary table, the two pictures and the first picks. ``pool_path`` names the pool in the settings. Returns the
    report's path."""
    out = Path(out)
    result = chosen.selection
    n, b = len(chosen.pool), len(result.indices)
    lines = [
        f"# Selection: `{result.strategy}`, {b} of {n} videos",
        "",
        markdown_table(["setting", "value"], _settings(chosen, pool_path, lam, seed, features_column)),
        "",
        "## Summary",
        "",
        markdown_table(["", "pool", "selection", "random subset of the same size"], _summary(chosen)),
    ]
    lines += _pictures(chosen, out)
    lines += [
        "",
        "## First picks",
        "",
        markdown_table(["rank", "video", _score_label(chosen), "diversity"], _first_picks(chosen, id_column)),
    ]
    lines += [
        "",
        "*diversity*: mean Chamfer distance between the frame features of a pick and those of the videos picked "
        "before it; the MDS score of a pick is g + λ·diversity.",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def _settings(chosen: SubsetSelection, pool_path: str, lam: float, seed: int, features_column: str) -> list[list]:
    result = chosen.selection
    strategy, params = result.strategy, result.params
    n, b = len(chosen.pool), len(result.indices)
    rows = [
        ["pool", f"`{pool_path}` ({n} videos)"],
        ["strategy", f"`{strategy}` ({STRATEGIES[strategy].description})"],
        ["budget", f"{b} ({100 * b / n:.2f} % of the pool)"],
        ["λ", f"{lam}" if strategy == "mds" else f"not used by `{strategy}`"],
        ["seed", f"{seed}"],
    ]
    if chosen.difficulty is not None and chosen.score_column is not None:
        rows.append([f"{_score_label(chosen)} column", f"`{chosen.score_column}`"])
    rows += [
        ["device, feature storage", f"{result.device}, {params.get('storage_dtype') or '—'}"],
        ["selection time", f"{result.seconds:.2f} s"],
    ]
    if "distances_computed" in params and b > 1:
        done = params["distances_computed"]
        rows.append(
            ["Chamfer distances computed", f"{done:,} ({100 * done / (n * (b - 1)):.1f} % of one pool pass per pick)"]
        )
    if "blocks" in params:
        rows.append(
            [
                "passes over the pool",
                f"{params['pool_passes']:,} ({params['blocks']:,} blocks of up to {params['block']} picks, one pass "
                f"after each but the last; {params['failed_blocks']} retaken with one pass per pick, "
                f"{params['steps_redone']} steps in all)",
            ]
        )
    if chosen.frames is not None:
        frames, lengths = chosen.frames
        rows.append(
            [
                "features",
                f"`{features_column}`: {int(lengths.min())}–{int(lengths.max())} frames × {frames.shape[1]} per video",
            ]
        )
    for what, ids in chosen.dropped.items():
        shown = ", ".join(str(i) for i in ids[:_LEFT_OUT_SHOWN])
        rows.append([f"left out ({what})", f"{len(ids)} rows: {shown}{' …' if len(ids) > _LEFT_OUT_SHOWN else ''}"])
    return rows


def _summary(chosen: SubsetSelection) -> list[list]:
    result, g_pool = chosen.selection, chosen.difficulty
    rows = []
    if g_pool is not None:
        g_sel = g_pool[result.indices]
        label = f"mean {_score_label(chosen)}"
        rows.append([label, _number(np.nanmean(g_pool)), _number(np.nanmean(g_sel)), "—"])
    if result.diversity is not None:
        sel_div = mean_pairwise_distance(result.diversity)
        rows.append(["mean pairwise Chamfer distance", "—", _number(sel_div), _number(chosen.random_diversity)])
    return rows


def _pictures(chosen: SubsetSelection, out: Path) -> list[str]:
    """Draw the feature map and the g histograms (when their inputs exist); return the report's lines for them."""
    result, g_pool, strategy = chosen.selection, chosen.difficulty, chosen.selection.strategy
    lines = []
    if chosen.frames is not None:
        coords, var = pca_2d(*chosen.frames)
        plot_feature_map(
            coords,
            result.indices,
            str(out / "feature_map.png"),
            title=f"{strategy}: pool features (PCA)",
            variance=var,
        )
        lines += [
            "",
            "## Pool features (PCA of each video's mean frame feature)",
            "",
            "![pool features with the selected videos](feature_map.png)",
        ]
    if g_pool is not None and np.isfinite(g_pool).any():
        label = _score_label(chosen)
        name = "difficulty g" if label == "g" else label
        plot_difficulty_distribution(
            g_pool, g_pool[result.indices], str(out / "difficulty.png"), title=f"{strategy}: {name}", xlabel=name
        )
        lines += [
            "",
            f"## {name[0].upper()}{name[1:]} in the pool and in the selection",
            "",
            f"![{label} distribution](difficulty.png)",
        ]
    return lines


def _first_picks(chosen: SubsetSelection, id_column: str) -> list[list]:
    result, pool = chosen.selection, chosen.pool
    ids = column_values(pool, id_column) if id_column in pool.column_names else [str(i) for i in range(len(pool))]
    rows = []
    for rank, idx in enumerate(result.indices[:_FIRST_PICKS]):
        g = result.difficulty[rank] if result.difficulty is not None else None
        div = result.diversity[rank] if result.diversity is not None else None
        rows.append([rank + 1, f"`{ids[idx]}`", _number(g), _number(div)])
    return rows
