"""gMAD competition between quality models on one pool: pairs for a 2AFC study, pictures, and the study's summary.

Usage:
    python recipes/gmad.py --config recipes/configs/lsvq_1080p/gmad.yaml
    # after the 2AFC study (a CSV: pair_id, preferred[, count]):
    python recipes/gmad.py --config recipes/configs/lsvq_1080p/gmad.yaml --answers answers.csv

Every model scores the same pool first with ``recipes/score.py`` (``models``: ``{name, dataset_path, column}``; a
``dataset_path`` is a ``save_to_disk`` folder, a staged (Hub-layout) folder or a Hub id, with an optional ``revision``
key; ``video_root`` resolves the first model's relative video paths, which the pairs record resolved).
Writes into ``output_dir``:

- ``pairs/``: the pairs as a Dataset (``save_to_disk``) ready for the study (video paths, random left/right order),
  also as ``pairs.csv``; ``levels.csv`` lists every level of every game, with why a level gave no pair;
- ``pictures/<pair_id>.png``: a strip of frames of both videos with both models' scores (resumable: a re-run draws
  only the missing ones; an unreadable video is recorded in ``pictures/progress/failures-*.jsonl`` and skipped);
- with ``answers``: ``gmad_summary.{md,json}``, the aggressiveness / resistance / ranking CSVs and a heat map.

A re-run reuses the saved pairs (so answers always refer to the pairs that were shown); ``overwrite: true`` redraws
them from the scores.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from datasets import load_from_disk
from trl import TrlParser

from mds_vqa.cli import run_recipe
from mds_vqa.gmad import (
    draw_pair_pictures,
    gmad_competition,
    read_2afc_answers,
    study_dataset,
    summarize_2afc,
    write_summary,
)
from mds_vqa.hub import write_provenance
from mds_vqa.scored import aligned_scores

logger = logging.getLogger("mds_vqa.gmad")


@dataclass
class GmadArguments:
    """Arguments of ``recipes/gmad.py``."""

    output_dir: str = field(metadata={"help": "Folder for the pairs, pictures and summary."})
    models: list[dict[str, Any]] | None = field(
        default=None,
        metadata={"help": "Each model's scored pool: a list of {name, dataset_path, column[, revision]}."},
    )
    video_root: str | None = field(
        default=None, metadata={"help": "Folder that relative video paths are relative to (absolute paths are kept)."}
    )
    n_levels: int = field(default=6, metadata={"help": "Levels splitting each defender's score range."})
    band_width: float | None = field(
        default=None,
        metadata={"help": "Band around each level, as a fraction of the defender's range (null: half a level)."},
    )
    id_column: str = field(default="video_id", metadata={"help": "Video id column of the pools."})
    video_column: str = field(default="video", metadata={"help": "Video path column of the pools."})
    seed: int = field(default=0, metadata={"help": "Seed of the left/right presentation order."})
    pictures: bool = field(default=True, metadata={"help": "Draw one picture per pair."})
    num_frames: int = field(default=4, metadata={"help": "Frames per video in a picture."})
    video_backend: str = field(default="auto", metadata={"help": "Decoder: auto, decord or pyav."})
    answers: str | None = field(
        default=None, metadata={"help": "2AFC answer CSV (pair_id, preferred[, count]): writes the summary."}
    )
    overwrite: bool = field(default=False, metadata={"help": "Recompute the pairs even if output_dir has them."})


def make_pairs(args: GmadArguments, pairs_dir: Path):
    """Run the competition, save the study Dataset and the level report; return the Dataset."""
    scores, ids, videos = aligned_scores(
        args.models, id_column=args.id_column, video_column=args.video_column, video_root=args.video_root
    )
    for name, s in scores.items():
        n_nan = int(np.isnan(s).sum())
        if n_nan:
            print(f"note: {name}: {n_nan} video(s) without a score (parse or decode failures) are left out")
    levels = gmad_competition(scores, args.n_levels, band_width=args.band_width, ids=ids)
    out = Path(args.output_dir)
    pd.DataFrame(levels).to_csv(out / "levels.csv", index=False)
    ds = study_dataset(levels, videos, seed=args.seed, pictures_dir=out / "pictures")
    if pairs_dir.exists():
        shutil.rmtree(pairs_dir)
    ds.save_to_disk(str(pairs_dir))
    ds.to_pandas().to_csv(out / "pairs.csv", index=False)
    skipped = sum(1 for r in levels if r["skipped"])
    print(
        f"gMAD: {len(ds)} pairs from {len(scores)} models ({skipped} of {len(levels)} levels skipped) -> {pairs_dir}"
    )
    return ds


def draw_pictures(ds, args: GmadArguments) -> list[dict[str, Any]]:
    """Draw the missing pictures (resumable); return the failures recorded so far."""
    work_dir = Path(args.output_dir) / "pictures" / "progress"
    summary, failures = draw_pair_pictures(ds, work_dir, num_frames=args.num_frames, backend=args.video_backend)
    print(f"pictures: {summary.computed} drawn, {summary.skipped_done} already there, {summary.failed} failed")
    return failures


def main(args: GmadArguments) -> dict[str, Any]:
    """Pairs (computed or reused), pictures, and the summary when answers are given."""
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    pairs_dir = out / "pairs"
    if pairs_dir.exists() and not args.overwrite:
        ds = load_from_disk(str(pairs_dir))
        print(f"gMAD: reusing {len(ds)} saved pairs from {pairs_dir} (overwrite: true recomputes them)")
    else:
        if (out / "pictures").exists():  # pictures of earlier pairs would not match the new ones
            shutil.rmtree(out / "pictures")
        ds = make_pairs(args, pairs_dir)
    result: dict[str, Any] = {"pairs": ds}
    if args.pictures:
        failures = draw_pictures(ds, args)
        result["picture_failures"] = failures
        for f in failures:
            print(f"warning: no picture for pair {f['id']}: {f['reason']}")
    if args.answers:
        summary = summarize_2afc(ds, read_2afc_answers(args.answers))
        paths = write_summary(summary, out)
        print(paths["md"].read_text())
        result["summary"] = summary
        result["summary_paths"] = paths
    write_provenance(
        out,
        recipe="gmad",
        arguments=[args],
        summary={
            "pairs": len(ds),
            "pictures_missing": len(result.get("picture_failures", [])),
            "summarized": "summary" in result,
        },
        inputs=[*(e.get("dataset_path") for e in args.models or []), args.answers],
    )
    return result


def make_parser() -> TrlParser:
    """The recipe's parser: YAML via ``--config``, CLI flags override it."""
    parser = TrlParser(GmadArguments)
    return parser


if __name__ == "__main__":
    run_recipe(main, make_parser)
