"""Per-video open_clip frame features for the diversity term, written into the pool Dataset.

Usage:
    accelerate launch recipes/extract_features.py --config recipes/configs/youtube_sfv_sdr/extract_features.yaml
    python recipes/extract_features.py --pool_path pools/sdr --output_dir pools/sdr_features --num_frames 8
    python recipes/extract_features.py --pool_path user/sdr-pool --video_root /data/sfv_sdr/videos --output_dir ...

``pool_path`` is a ``save_to_disk`` folder, a staged (Hub-layout) folder or a Hub id (``--revision``); relative video
paths are joined with ``--video_root`` (recorded resolved in the output), and a relative path that is not a file stops
the run before the model loads, naming the column and the first missing files.

Decoding runs in DataLoader workers, frames of several videos share a forward pass, every process of
``accelerate launch`` takes its share of the pool, and results are saved as they come in ``work_dir``: run the same
command again after a kill and only the missing videos are computed (a resume with another model, tag, precision,
backend or frame count is refused). Unreadable videos are listed and left null; a run whose first
``--max_initial_failures`` videos all fail stops. On CPU, ``ACCELERATE_USE_CPU=1`` runs data-parallel processes with
gloo.
The released MDS-VQA code used every frame with CLIP RN101: ``--model_name RN101 --pretrained openai
--num_frames all`` (add ``--precision fp16`` on GPU to match its fp16 CLIP).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from trl import TrlParser

from mds_vqa.cli import run_recipe
from mds_vqa.features import (
    DEFAULT_MODEL,
    DEFAULT_PRETRAINED,
    FEATURES_COLUMN,
    column_values,
    extract_features,
    feature_dim,
    load_open_clip,
    merge_features,
    parse_num_frames,
)
from mds_vqa.hub import HubArguments, publish_dataset, write_provenance
from mds_vqa.loading import load_pool, resolve_videos
from mds_vqa.resumable import data_parallel_state, gather_summaries, load_failures

logger = logging.getLogger("mds_vqa.extract_features")


@dataclass
class ExtractFeaturesArguments:
    """Frame features of a pool (``recipes/extract_features.py``)."""

    pool_path: str = field(
        metadata={"help": "Pool Dataset (`video`, `video_id`): a save_to_disk folder, a staged folder or a Hub id."}
    )
    output_dir: str = field(metadata={"help": "Where the pool with the features column is saved."})
    revision: str | None = field(default=None, metadata={"help": "Hub revision of a Hub id pool_path."})
    video_root: str | None = field(
        default=None, metadata={"help": "Folder that relative video paths are relative to (absolute paths are kept)."}
    )
    work_dir: str | None = field(
        default=None, metadata={"help": "Shards of finished videos (resume point). Default: <output_dir>.work"}
    )
    model_name: str = field(
        default=DEFAULT_MODEL,
        metadata={
            "help": "open_clip architecture (ViT-B-32, ViT-L-14, RN101, ...), hf-hub:org/repo or local-dir:path"
        },
    )
    pretrained: str | None = field(
        default=DEFAULT_PRETRAINED, metadata={"help": "open_clip pretrained tag or checkpoint file (null: random)."}
    )
    num_frames: str = field(default="8", metadata={"help": "Uniformly spaced frames per video, or 'all'."})
    precision: str = field(default="fp32", metadata={"help": "fp32, fp16, bf16, amp or amp_bf16."})
    batch_size: int = field(default=16, metadata={"help": "Videos per encoding step."})
    frame_batch_size: int = field(default=256, metadata={"help": "At most this many frames per forward pass."})
    num_workers: int = field(default=4, metadata={"help": "DataLoader workers decoding videos (per process)."})
    video_backend: str = field(default="auto", metadata={"help": "decord, pyav or auto."})
    flush_every: int = field(default=64, metadata={"help": "Videos per shard (a hard kill loses at most this many)."})
    features_column: str = field(default=FEATURES_COLUMN, metadata={"help": "Name of the new column."})
    video_column: str = field(default="video", metadata={"help": "Column with video file paths."})
    id_column: str = field(default="video_id", metadata={"help": "Column naming each video."})
    strict: bool = field(default=False, metadata={"help": "Stop at the first unreadable video instead of skipping."})
    retry_failures: bool = field(default=False, metadata={"help": "Retry videos recorded as unreadable before."})
    max_initial_failures: int | None = field(
        default=8,
        metadata={"help": "Stop when this many videos fail to read before one succeeds (0 or null: never)."},
    )
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing output_dir."})


def _check(args: ExtractFeaturesArguments, hub_args: HubArguments | None) -> tuple[Path, Path]:
    """Every argument check, run by every process before the first collective (a bad one stops them all; the work
    dir's configuration is checked by every process in extract_features, before the next collective)."""
    if hub_args is not None:
        hub_args.check("dataset")  # a push without a repo id fails now, not after the extraction
    out = Path(args.output_dir)
    if out.resolve() == Path(args.pool_path).resolve():
        raise ValueError("output_dir must differ from pool_path (a Dataset cannot be overwritten while it is read).")
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass --overwrite true to replace it.")
    if args.max_initial_failures is not None and args.max_initial_failures < 0:
        raise ValueError(f"max_initial_failures must be >= 0 or null, got {args.max_initial_failures}")
    return out, Path(args.work_dir or f"{args.output_dir.rstrip('/')}.work")


def _extract(args: ExtractFeaturesArguments, pool, work_dir: Path, num_frames, state, run_config: dict):
    """This process's share of the pool, into ``work_dir``; returns its run summary."""
    model, preprocess = load_open_clip(args.model_name, args.pretrained, device=state.device, precision=args.precision)
    summary = extract_features(
        pool,
        work_dir,
        model=model,
        preprocess=preprocess,
        num_frames=num_frames,
        batch_size=args.batch_size,
        frame_batch_size=args.frame_batch_size,
        num_workers=args.num_workers,
        device=state.device,
        precision=args.precision,
        process_index=state.process_index,
        num_processes=state.num_processes,
        flush_every=args.flush_every,
        backend=args.video_backend,
        video_column=args.video_column,
        id_column=args.id_column,
        strict=args.strict,
        retry_failures=args.retry_failures,
        max_initial_failures=args.max_initial_failures,
        run_config=run_config,
    )
    logger.info(
        "process %d/%d: %d computed, %d already done, %d unreadable in %.1f s",
        state.process_index,
        state.num_processes,
        summary.computed,
        summary.skipped_done,
        summary.failed,
        summary.seconds,
    )
    return summary


def _save(args: ExtractFeaturesArguments, pool, work_dir: Path, out: Path, meta: dict, totals: dict):
    """Merge every shard into the pool, save it with its summary JSON and provenance; returns (Dataset, summary)."""
    ds, missing = merge_features(pool, work_dir, column=args.features_column)
    if out.exists() and args.overwrite:
        shutil.rmtree(out)
    ds.save_to_disk(str(out))
    error_column = f"{args.features_column}_error"
    ids, errors = column_values(ds, args.id_column), column_values(ds, error_column)
    unreadable = [{args.id_column: ids[i], "row": i, "reason": e} for i, e in enumerate(errors) if e is not None]
    meta = {
        **meta,
        "pool_path": args.pool_path,
        "dim": feature_dim(ds, args.features_column),
        "column": args.features_column,
        "error_column": error_column,
        "videos": len(ds),
        "with_features": len(ds) - len(missing),
        "missing": missing,
        "unreadable": len(unreadable),
        "unreadable_videos": unreadable,
        "computed_this_run": totals["computed"],
        "skipped_already_done": totals["skipped_done"],
        "unreadable_this_run": totals["failed"],
        "processes": totals["processes"],
    }
    (out / "feature_extraction.json").write_text(json.dumps(meta, indent=2))
    return ds, meta


def main(args: ExtractFeaturesArguments, hub_args: HubArguments | None = None) -> Path | None:
    """Extract this process's share; the main process then merges every shard, saves the pool and (when ``hub_args``
    asks) stages/pushes it with a dataset card. Returns the output folder on the main process (``None`` on the
    others)."""
    out, work_dir = _check(args, hub_args)
    num_frames = parse_num_frames(args.num_frames)
    pool = resolve_videos(
        load_pool(args.pool_path, revision=args.revision),
        args.video_root,
        columns=(args.video_column,),
        check="relative",  # a missing absolute path is recorded as an unreadable video
        source=args.pool_path,
    )
    state = data_parallel_state()
    run_config = {
        "model_name": args.model_name,
        "pretrained": args.pretrained,
        "precision": args.precision,
        "video_backend": args.video_backend,
    }
    start = time.perf_counter()
    summary = _extract(args, pool, work_dir, num_frames, state, run_config)
    totals = gather_summaries(summary)  # a collective: every process reports, the main one sums
    if not state.is_main_process:
        return None
    ds, meta = _save(args, pool, work_dir, out, {**run_config, "num_frames": num_frames}, totals)
    write_provenance(out, recipe="extract_features", arguments=[args, hub_args], summary=meta, inputs=[args.pool_path])
    print(
        f"Saved {len(ds)} videos with {args.features_column!r} ({num_frames} frames x {meta['dim']}, "
        f"{args.model_name}{'/' + args.pretrained if args.pretrained and ':' not in args.model_name else ''}) -> "
        f"{out} in {time.perf_counter() - start:.1f} s; {len(meta['missing'])} without features; this run: "
        f"{totals['computed']} computed, {totals['skipped_done']} already done, {totals['failed']} unreadable over "
        f"{state.num_processes} process(es)."
    )
    failures = load_failures(work_dir)
    for rec in failures[:20]:
        print(f"  unreadable: {rec['id']} (row {rec['_index']}): {rec['reason']}")
    if len(failures) > 20:
        print(f"  ... and {len(failures) - 20} more (see {work_dir}/failures-*.jsonl)")
    if hub_args is not None:
        publish_dataset(str(out), hub_args)
    return out


def make_parser() -> TrlParser:
    """The recipe's parser: YAML via ``--config``, CLI flags override it."""
    return TrlParser((ExtractFeaturesArguments, HubArguments))


if __name__ == "__main__":
    run_recipe(main, make_parser)
