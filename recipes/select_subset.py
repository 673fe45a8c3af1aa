"""Pick the videos of a pool to send to human raters, and write the subset with a report.

Usage:
    python recipes/select_subset.py --config recipes/configs/youtube_sfv_sdr/select.yaml
    python recipes/select_subset.py --pool_path pools/sdr_features --output_dir selections/sdr_mds --budget 5% --lam 0.25

The pool needs a ``difficulty`` column (g, from the failure predictor) for ``mds`` and ``difficulty``, and a
``features`` column (``recipes/extract_features.py``) for ``mds``, ``diversity`` and ``coreset``. The output folder
is the selected subset as a Dataset (``load_from_disk``), in pick order, with the columns ``rank`` (1 = first pick),
``g``, ``diversity`` (mean Chamfer distance to the videos picked before: the term λ multiplies) and ``pool_index``,
plus ``report.md`` with a 2-D map of the pool's features and the distribution of g in the pool and in the subset.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from datasets import Dataset

    from mds_vqa.selection import Selection

logger = logging.getLogger("mds_vqa.select")


@dataclass
class SelectArguments:
    """Select a subset of a pool (``recipes/select_subset.py``)."""

    pool_path: str = field(metadata={"help": "Pool Dataset folder with the difficulty and/or features columns."})
    output_dir: str = field(metadata={"help": "Where the selected subset (Dataset) and report.md are written."})
    strategy: str = field(default="mds", metadata={"help": "mds, difficulty, diversity, coreset or random."})
    budget: str = field(default="0.05", metadata={"help": "A count (100), a fraction (0.05) or a percentage (5%)."})
    lam: float = field(default=0.25, metadata={"help": "λ, weight of the diversity term (0.25 for CLIP features)."})
    seed: int = field(default=0, metadata={"help": "Seed of `random` and of the first `coreset` center."})
    difficulty_column: str = field(default="difficulty", metadata={"help": "Column holding g."})
    features_column: str = field(default="features", metadata={"help": "Column holding the frame features."})
    id_column: str = field(default="video_id", metadata={"help": "Column naming each video."})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, cuda:1, ... (auto: CUDA when available)."})
    storage_dtype: str = field(
        default="float32", metadata={"help": "Keep features as float32, float16 or bfloat16 during selection."}
    )
    drop_incomplete: bool = field(
        default=False, metadata={"help": "Leave out rows without features or with a NaN g instead of stopping."}
    )
    keep_features: bool = field(default=False, metadata={"help": "Keep the features column in the subset."})
    compare_random: bool = field(
        default=True, metadata={"help": "Report the diversity of a random subset of the same size."}
    )
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing output_dir."})


def _incomplete_rows(ds: Dataset, args: SelectArguments, use_features: bool) -> dict[str, list[int]]:
    import numpy as np

    from mds_vqa.features import column_values, missing_feature_rows
    from mds_vqa.selection import STRATEGIES

    problems: dict[str, list[int]] = {}
    if use_features:
        missing = missing_feature_rows(ds, args.features_column)
        if missing:
            problems[f"no {args.features_column!r}"] = missing
    if STRATEGIES[args.strategy].needs_difficulty:
        g = np.asarray([np.nan if v is None else v for v in column_values(ds, args.difficulty_column)], dtype=float)
        bad = np.flatnonzero(~np.isfinite(g)).tolist()
        if bad:
            problems[f"NaN {args.difficulty_column!r}"] = bad
    return problems


def _fmt(x: float | None, digits: int = 4) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def write_report(
    out: Path,
    args: SelectArguments,
    ds: Dataset,
    result: Selection,
    *,
    g_pool: np.ndarray | None,
    frames: tuple[np.ndarray, np.ndarray] | None,
    random_diversity: float | None,
    dropped: dict[str, list[int]],
) -> Path:
    """``report.md`` with the settings, a summary table, the two pictures and the first picks."""
    import numpy as np

    from mds_vqa.features import column_values
    from mds_vqa.selection import (
        STRATEGIES,
        mean_pairwise_distance,
        pca_2d,
        plot_difficulty_distribution,
        plot_feature_map,
    )

    n, b = len(ds), len(result.indices)
    ids = column_values(ds, args.id_column) if args.id_column in ds.column_names else [str(i) for i in range(n)]
    lines = [
        f"# Selection: `{args.strategy}`, {b} of {n} videos",
        "",
        "| setting | value |",
        "|---|---|",
        f"| pool | `{args.pool_path}` ({n} videos) |",
        f"| strategy | `{args.strategy}` ({STRATEGIES[args.strategy].description}) |",
        f"| budget | {b} ({100 * b / n:.2f} % of the pool) |",
        f"| λ | {args.lam} |" if args.strategy == "mds" else f"| λ | not used by `{args.strategy}` |",
        f"| seed | {args.seed} |",
        f"| device, feature storage | {result.device}, {result.params.get('storage_dtype') or '—'} |",
        f"| selection time | {result.seconds:.2f} s |",
    ]
    if "distances_computed" in result.params and b > 1:
        done = result.params["distances_computed"]
        lines.append(
            f"| Chamfer distances computed | {done:,} ({100 * done / (n * (b - 1)):.1f} % of one pool pass per pick) |"
        )
    if frames is not None:
        lengths = frames[1]
        lines.append(
            f"| features | `{args.features_column}`: {int(lengths.min())}–{int(lengths.max())} frames × "
            f"{frames[0].shape[1]} per video |"
        )
    for what, rows in dropped.items():
        shown = ", ".join(str(ids_all) for ids_all in rows[:10])
        lines.append(f"| left out ({what}) | {len(rows)} rows: {shown}{' …' if len(rows) > 10 else ''} |")
    sel_div = mean_pairwise_distance(result.diversity) if result.diversity is not None else None
    lines += [
        "",
        "## Summary",
        "",
        "| | pool | selection | random subset of the same size |",
        "|---|---|---|---|",
    ]
    if g_pool is not None:
        g_sel = g_pool[result.indices]
        lines.append(f"| mean g | {_fmt(np.nanmean(g_pool))} | {_fmt(np.nanmean(g_sel))} | — |")
    if sel_div is not None:
        lines.append(f"| mean pairwise Chamfer distance | — | {_fmt(sel_div)} | {_fmt(random_diversity)} |")
    if frames is not None:
        coords, var = pca_2d(*frames)
        plot_feature_map(
            coords, result.indices, str(out / "feature_map.png"), title=f"{args.strategy}: pool features (PCA)",
            variance=var,
        )  # fmt: skip
        lines += [
            "",
            "## Pool features (PCA of each video's mean frame feature)",
            "",
            "![pool features with the selected videos](feature_map.png)",
        ]
    if g_pool is not None and np.isfinite(g_pool).any():
        plot_difficulty_distribution(
            g_pool, g_pool[result.indices], str(out / "difficulty.png"), title=f"{args.strategy}: difficulty g"
        )
        lines += ["", "## Difficulty g in the pool and in the selection", "", "![g distribution](difficulty.png)"]
    lines += ["", "## First picks", "", "| rank | video | g | diversity |", "|---|---|---|---|"]
    for rank, idx in enumerate(result.indices[:20]):
        g = result.difficulty[rank] if result.difficulty is not None else None
        div = result.diversity[rank] if result.diversity is not None else None
        lines.append(f"| {rank + 1} | `{ids[idx]}` | {_fmt(g)} | {_fmt(div)} |")
    lines += [
        "",
        "*diversity*: mean Chamfer distance between the frame features of a pick and those of the videos picked "
        "before it; the MDS score of a pick is g + λ·diversity.",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def main(args: SelectArguments, hub_args=None) -> Path:
    """Select, save the subset and write the report (staged with a dataset card, and pushed, when ``hub_args`` asks);
    return the output folder."""
    import numpy as np
    from datasets import load_from_disk

    from mds_vqa.diversity import FramePool
    from mds_vqa.features import column_values, load_feature_column
    from mds_vqa.selection import (
        STRATEGIES,
        marginal_diversity,
        mean_pairwise_distance,
        parse_budget,
        select_with_details,
    )

    if hub_args is not None:
        hub_args.check("dataset")  # a push without a repo id fails now, not after the selection
    if args.strategy not in STRATEGIES:
        raise ValueError(f"Unknown selection strategy {args.strategy!r}; available: {sorted(STRATEGIES)}")
    spec = STRATEGIES[args.strategy]
    out = Path(args.output_dir)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass --overwrite true to replace it.")
    budget = parse_budget(args.budget)
    pool = load_from_disk(args.pool_path)
    has_g = args.difficulty_column in pool.column_names
    has_features = args.features_column in pool.column_names
    if spec.needs_difficulty and not has_g:
        raise KeyError(f"Strategy {args.strategy!r} needs a {args.difficulty_column!r} column in {args.pool_path}")
    if spec.needs_features and not has_features:
        raise KeyError(
            f"Strategy {args.strategy!r} needs a {args.features_column!r} column in {args.pool_path} "
            "(run recipes/extract_features.py first)"
        )
    problems = _incomplete_rows(pool, args, has_features)
    keep = np.arange(len(pool))
    if problems:
        ids = column_values(pool, args.id_column) if args.id_column in pool.column_names else list(range(len(pool)))
        text = "; ".join(
            f"{what}: {len(rows)} rows, e.g. {[ids[i] for i in rows[:10]]}" for what, rows in problems.items()
        )
        if not args.drop_incomplete:
            raise ValueError(
                f"Incomplete rows in {args.pool_path}: {text}. Pass --drop_incomplete true to leave them out."
            )
        logger.warning("Leaving out incomplete rows: %s", text)
        bad = sorted({i for rows in problems.values() for i in rows})
        keep = np.setdiff1d(keep, bad)
        pool = pool.select(keep.tolist())
        problems = {what: [ids[i] for i in rows] for what, rows in problems.items()}
    g_pool = None
    if has_g:
        values = column_values(pool, args.difficulty_column)
        g_pool = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    frames = None
    features = None
    if has_features:
        frames = load_feature_column(pool, args.features_column)
        features = FramePool.from_flat(*frames)
    result = select_with_details(
        args.strategy,
        difficulty=g_pool,
        features=features,
        budget=budget,
        lam=args.lam,
        seed=args.seed,
        device=args.device,
        storage_dtype=args.storage_dtype,
        progress=True,
    )
    random_div = None
    if args.compare_random and features is not None:
        order = np.random.default_rng(args.seed).permutation(len(pool))[: len(result.indices)]
        random_div = mean_pairwise_distance(
            marginal_diversity(features, order, device=result.device, storage_dtype=args.storage_dtype)
        )
    subset = pool.select(result.indices)
    if not args.keep_features and args.features_column in subset.column_names:
        subset = subset.remove_columns(args.features_column)
    subset = subset.flatten_indices()
    for name in ("rank", "g", "diversity", "pool_index"):
        if name in subset.column_names:
            subset = subset.remove_columns(name)
    diversity = result.diversity
    subset = subset.add_column("rank", list(range(1, len(result.indices) + 1)))
    picked_g = [None] * len(result.indices) if g_pool is None else [float(v) for v in g_pool[result.indices]]
    subset = subset.add_column("g", picked_g)
    subset = subset.add_column(
        "diversity",
        [None] * len(result.indices)
        if diversity is None
        else [None if not np.isfinite(v) else float(v) for v in diversity],
    )
    subset = subset.add_column("pool_index", [int(keep[i]) for i in result.indices])
    if out.exists() and args.overwrite:
        shutil.rmtree(out)
    subset.save_to_disk(str(out))
    report = write_report(
        out, args, pool, result, g_pool=g_pool, frames=frames, random_diversity=random_div, dropped=problems
    )
    record = {
        **asdict(args),
        "pool_size": len(pool),
        "selected": len(result.indices),
        "seconds": result.seconds,
        "computed_on": result.device,
        "pool_index": [int(keep[i]) for i in result.indices],
        "video_id": column_values(subset, args.id_column) if args.id_column in subset.column_names else None,
    }
    (out / "selection.json").write_text(json.dumps(record, indent=2))
    print(
        f"Selected {len(result.indices)} of {len(pool)} videos with {args.strategy!r} in {result.seconds:.2f} s "
        f"on {result.device} -> {out} (report: {report})"
    )
    if hub_args is not None:
        from mds_vqa.hub import publish_dataset

        publish_dataset(str(out), hub_args)
    return out


def make_parser():
    """The recipe's parser (a ``trl.TrlParser``): YAML via ``--config``, CLI flags override it."""
    from trl import TrlParser

    from mds_vqa.hub import HubArguments

    return TrlParser((SelectArguments, HubArguments))


if __name__ == "__main__":
    from mds_vqa.hub import HubPushError
    from mds_vqa.log import setup_logging

    setup_logging()
    script_args, hub_arguments = make_parser().parse_args_and_config()
    try:
        main(script_args, hub_arguments)
    except (FileNotFoundError, FileExistsError, ValueError, KeyError, HubPushError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
