"""Weak supervision without raters: degraded variants of every pool video and the pairs among them, with a known order.

Usage:
    python recipes/make_weak_pairs.py --pool_path pools/target --output_dir weak/target
    python recipes/make_weak_pairs.py --config recipes/configs/demo/make_weak_pairs.yaml
    accelerate launch --cpu --num_processes 8 recipes/make_weak_pairs.py --config ...   # data-parallel on CPU

Any pool works (labels are not needed): a ``save_to_disk`` folder, a staged (Hub-layout) folder or a Hub id
(``--revision``), its relative video paths joined with ``--video_root`` (a relative path of a source to degrade that
is not a file stops the run, naming the column and the first missing files). Each video is decoded once and
re-encoded with PyAV into every planned variant: x264 and x265 at several CRFs, downscale→upscale, Gaussian blur,
noise, and frame dropping (stutter); the levels of each family are set by ``--x264_crf``, ``--x265_crf``,
``--rescale_factors``, ``--blur_sigmas``, ``--noise_stds``, ``--stutter_steps`` (``--families`` picks families).
Writes into ``output_dir``:

- ``videos/<row>-<id>/<family>-<level>.mp4``: the variants (same frame count, size and frame rate as the source);
- ``pool/``: a pool Dataset of the sources and their variants (``source_id``, ``distortion``, ``level``: 0 = the
  source itself, higher = worse, ``strength``; the usual pool columns; a variant's MOS is null);
- ``pairs/``: the pair Dataset (``video_a``, ``video_b``, ``id_a``, ``id_b``, ``p``, ``dataset``, ...): every two
  levels of one source and one family, ``p = 1`` when ``video_a`` is the better one; ids are ``pool/``'s.

Both carry a ``provenance.json``; ``--stage_dir``/``--push_to_hub`` (with ``--hub_dataset_id``) publish the pairs
with their dataset card (kind ``weak-pairs``). Resumable: each source's variants are recorded in ``<output_dir>/work``
as they are written, so a killed run restarts where it stopped; a resume with another plan is refused. An unreadable
source is recorded with its cause and skipped (``--strict true`` stops instead).
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from trl import TrlParser

from mds_vqa.cli import run_recipe
from mds_vqa.distortions import DEFAULT_LEVELS, FAMILIES, EncodeSettings, describe_plan, variant_plan
from mds_vqa.hub import HubArguments, print_published, publish_dataset, write_provenance
from mds_vqa.loading import load_pool, resolve_videos
from mds_vqa.resumable import data_parallel_state
from mds_vqa.weak_pairs import VariantRun, make_variants, variant_pool, weak_pairs

logger = logging.getLogger("mds_vqa.make_weak_pairs")

# family -> the argument holding its levels
LEVEL_FIELDS = {
    "x264": "x264_crf",
    "x265": "x265_crf",
    "rescale": "rescale_factors",
    "blur": "blur_sigmas",
    "noise": "noise_stds",
    "stutter": "stutter_steps",
}


def _levels(family: str, kind: type = float) -> list:
    """The default levels of ``family`` (:data:`mds_vqa.distortions.DEFAULT_LEVELS`) as ``kind``."""
    return [kind(v) for v in DEFAULT_LEVELS[family]]


@dataclass
class WeakPairsArguments:
    """The pool, the distortions and their levels, and the output of ``recipes/make_weak_pairs.py``."""

    pool_path: str = field(
        metadata={"help": "Pool Dataset (labels not needed): a save_to_disk folder, a staged folder or a Hub id."}
    )
    output_dir: str = field(metadata={"help": "Folder receiving videos/, pool/ and pairs/."})
    revision: str | None = field(default=None, metadata={"help": "Hub revision of a Hub id pool_path."})
    video_root: str | None = field(
        default=None, metadata={"help": "Folder that relative video paths are relative to (absolute paths are kept)."}
    )
    split: str | None = field(default=None, metadata={"help": "Degrade only the rows of this split (None: all)."})
    max_sources: int | None = field(default=None, metadata={"help": "Degrade at most the first N videos."})
    families: list[str] = field(default_factory=lambda: list(FAMILIES), metadata={"help": "Distortion families."})
    x264_crf: list[int] = field(
        default_factory=lambda: _levels("x264", int), metadata={"help": "x264 levels: CRFs, increasing."}
    )
    x265_crf: list[int] = field(
        default_factory=lambda: _levels("x265", int), metadata={"help": "x265 levels: CRFs, increasing."}
    )
    rescale_factors: list[float] = field(
        default_factory=lambda: _levels("rescale"), metadata={"help": "Downscale→upscale levels: factors > 1."}
    )
    blur_sigmas: list[float] = field(
        default_factory=lambda: _levels("blur"), metadata={"help": "Blur levels: Gaussian sigmas in pixels."}
    )
    noise_stds: list[float] = field(
        default_factory=lambda: _levels("noise"), metadata={"help": "Noise levels: Gaussian std (0-255 scale)."}
    )
    stutter_steps: list[int] = field(
        default_factory=lambda: _levels("stutter", int),
        metadata={"help": "Frame-dropping levels: keep every k-th frame and hold it (k >= 2)."},
    )
    preset: str = field(default="veryfast", metadata={"help": "x264/x265 preset."})
    reencode_crf: int = field(default=10, metadata={"help": "libx264 CRF of the pixel families (near-lossless)."})
    threads: int = field(default=0, metadata={"help": "Encoder threads per variant (0: the codec's default)."})
    seed: int = field(default=0, metadata={"help": "Seed of the noise and of the pair sides."})
    random_sides: bool = field(default=True, metadata={"help": "Put the better video on a random side of a pair."})
    flush_every: int = field(default=4, metadata={"help": "Sources recorded per shard of the work dir."})
    strict: bool = field(default=False, metadata={"help": "Stop at the first unreadable source."})
    retry_failures: bool = field(default=False, metadata={"help": "Retry sources that failed in an earlier run."})
    max_initial_failures: int | None = field(
        default=8, metadata={"help": "Stop when this many sources fail before one succeeds (0 or null: never)."}
    )
    keep_work_dir: bool = field(default=False, metadata={"help": "Keep <output_dir>/work after the merge."})
    overwrite: bool = field(default=False, metadata={"help": "Start over: delete earlier videos, pool and pairs."})


def _check(args: WeakPairsArguments, hub_args: HubArguments) -> Path:
    """Every argument check, on every process before any work; returns the output folder."""
    hub_args.check("dataset")
    unknown = sorted(set(args.families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"Unknown families {unknown}; known: {list(FAMILIES)}")
    out = Path(args.output_dir)
    finished = [out / name for name in ("pool", "pairs") if (out / name).exists()]
    if finished and not args.overwrite:
        raise FileExistsError(f"{finished[0]} exists; pass --overwrite true to make the variants again.")
    return out


def _load_pool(args: WeakPairsArguments):
    """The sources to degrade (rows of ``split``, at most ``max_sources``), their relative paths resolved and
    checked."""
    pool = load_pool(args.pool_path, revision=args.revision)
    missing = [c for c in ("video_id", "video", "dataset") if c not in pool.column_names]
    if missing:
        raise ValueError(f"{args.pool_path} lacks the column(s) {missing} (columns: {pool.column_names})")
    if args.split is not None:
        if "split" not in pool.column_names:
            raise ValueError(f"{args.pool_path} has no 'split' column; drop --split to degrade every row.")
        pool = pool.filter(lambda s: s == args.split, input_columns="split", desc=f"split={args.split}")
    if args.max_sources is not None:
        pool = pool.select(range(min(args.max_sources, len(pool))))
    if len(pool) == 0:
        raise ValueError(f"No video to degrade in {args.pool_path} (split={args.split!r}).")
    # a missing absolute path is recorded as an unreadable source
    return resolve_videos(pool, args.video_root, check="relative", source=args.pool_path)


def main(args: WeakPairsArguments, hub_args: HubArguments | None = None) -> dict:
    """Make the variants, save ``pool/`` and ``pairs/`` with their provenance, publish the pairs when asked; return
    the summary (main process; ``{}`` on the others)."""
    hub_args = hub_args or HubArguments()
    out = _check(args, hub_args)
    plan = variant_plan({f: getattr(args, LEVEL_FIELDS[f]) for f in args.families})
    settings = EncodeSettings(preset=args.preset, reencode_crf=args.reencode_crf, seed=args.seed, threads=args.threads)
    pool = _load_pool(args)
    state = data_parallel_state()
    work_dir = out / "work"
    videos_dir = out.resolve() / "videos"  # absolute: the pool and pairs work from any folder
    if args.overwrite and state.is_main_process:
        for name in ("pool", "pairs", "work", "videos"):
            shutil.rmtree(out / name, ignore_errors=True)
    state.wait_for_everyone()
    run = VariantRun(args.flush_every, args.strict, args.retry_failures, args.max_initial_failures)
    totals = make_variants(pool, videos_dir, work_dir, plan, settings, state, run)
    state.wait_for_everyone()
    if not state.is_main_process:
        return {}
    variants, summary = variant_pool(pool, work_dir)
    pairs = weak_pairs(variants, seed=args.seed, random_sides=args.random_sides)
    summary.update(
        pool_path=args.pool_path,
        distortions={f: getattr(args, LEVEL_FIELDS[f]) for f in args.families},
        pairs=len(pairs),
        pairs_per_family=dict(Counter(pairs["distortion"])),
        p_one=int(sum(p == 1.0 for p in pairs["p"])),
        random_sides=args.random_sides,
        seed=args.seed,
        computed_this_run=totals["computed"],
        skipped_already_done=totals["skipped_done"],
        seconds=totals["seconds"],
    )
    summary["card"] = {  # the rows of the dataset card's settings table
        "pool": args.pool_path,
        "sources": f"{summary['sources_done']} of {summary['sources']}",
        "distortions": describe_plan(plan),
        "variants": summary["variants"],
        "pairs": len(pairs),
        "random_sides": args.random_sides,
        "seed": args.seed,
    }
    variants.save_to_disk(str(out / "pool"))
    pairs.save_to_disk(str(out / "pairs"))
    arguments = [args, hub_args]
    write_provenance(
        out / "pool", recipe="make_weak_pairs", arguments=arguments, summary=summary, inputs=[args.pool_path]
    )
    write_provenance(
        out / "pairs", recipe="make_weak_pairs", arguments=arguments, summary=summary, inputs=[str(out / "pool")]
    )
    if not args.keep_work_dir and summary["not_done"] == 0:
        shutil.rmtree(work_dir)
    print(
        f"Degraded {summary['sources_done']}/{summary['sources']} videos into {summary['variants']} variants "
        f"-> {out / 'pool'}; {len(pairs)} pairs {summary['pairs_per_family']} -> {out / 'pairs'}"
        + (f"; {summary['unreadable']} unreadable (see provenance.json)" if summary["unreadable"] else "")
    )
    published = publish_dataset(out / "pairs", hub_args)
    print_published(published, "the pairs with their dataset card")
    return summary


def make_parser() -> TrlParser:
    """The recipe's parser: YAML via ``--config``, CLI flags override it."""
    return TrlParser((WeakPairsArguments, HubArguments))


if __name__ == "__main__":
    run_recipe(main, make_parser)
