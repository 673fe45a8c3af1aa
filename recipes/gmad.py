"""gMAD competition between quality models on one pool: pairs for a 2AFC study, pictures, and the study's summary.

Usage:
    python recipes/gmad.py --config recipes/configs/lsvq_1080p/gmad.yaml
    # after the 2AFC study (a CSV: pair_id, preferred[, count]):
    python recipes/gmad.py --config recipes/configs/lsvq_1080p/gmad.yaml --answers answers.csv

Every model scores the same pool first with ``recipes/score.py`` (``models``: ``{name, dataset_path, column}``).
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
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from datasets import load_from_disk
from trl import TrlParser

from mds_vqa.gmad import (
    gmad_competition,
    pair_figure,
    read_2afc_answers,
    safe_name,
    study_dataset,
    summarize_2afc,
    write_summary,
)
from mds_vqa.log import setup_logging
from mds_vqa.resumable import ResumableRun, load_failures
from mds_vqa.video import read_frames

logger = logging.getLogger("mds_vqa.gmad")


@dataclass
class GmadArguments:
    """Arguments of ``recipes/gmad.py``."""

    output_dir: str = field(metadata={"help": "Folder for the pairs, pictures and summary."})
    models: list[dict[str, Any]] | None = field(
        default=None, metadata={"help": "Each model's scored pool: a list of {name, dataset_path, column}."}
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


def load_scores(args: GmadArguments) -> tuple[dict[str, list[float]], list[str], list[str]]:
    """Each model's scores aligned on the first model's pool order, the video ids and the video paths."""
    if not args.models or len(args.models) < 2:
        raise ValueError("gMAD needs at least two models: set `models` to [{name, dataset_path, column}, ...]")
    scores: dict[str, list[float]] = {}
    ids: list[str] = []
    videos: list[str] = []
    for i, e in enumerate(args.models):
        missing = [k for k in ("name", "dataset_path", "column") if not e.get(k)]
        if missing:
            raise ValueError(f"models entry {i} ({e}) lacks {missing}")
        name = str(e["name"])
        if name in scores:
            raise ValueError(f"models: the name {name!r} is used twice")
        path = Path(e["dataset_path"])
        if not path.exists():
            raise FileNotFoundError(f"Dataset not found: {path} (score the pool with recipes/score.py first)")
        ds = load_from_disk(str(path))
        for col in (e["column"], args.id_column, args.video_column):
            if col not in ds.column_names:
                raise KeyError(f"model {name!r}: column {col!r} not in {path} (columns: {ds.column_names})")
        these = [str(v) for v in ds[args.id_column]]
        if len(set(these)) != len(these):
            raise ValueError(f"model {name!r}: duplicate ids in {path}")
        values = ds[e["column"]]
        if not ids:
            ids, videos = these, [str(v) for v in ds[args.video_column]]
            scores[name] = [np.nan if v is None else float(v) for v in values]
            continue
        position = dict(zip(these, range(len(these))))
        absent = [v for v in ids if v not in position]
        extra = set(these) - set(ids)
        if absent or extra:
            raise ValueError(
                f"model {name!r} scored a different pool ({path}): {len(absent)} video(s) missing, e.g. {absent[:5]},"
                f" {len(extra)} extra, e.g. {sorted(extra)[:5]}"
            )
        scores[name] = [np.nan if values[position[v]] is None else float(values[position[v]]) for v in ids]
    return scores, ids, videos


def make_pairs(args: GmadArguments, pairs_dir: Path):
    """Run the competition, save the study Dataset and the level report; return the Dataset."""
    scores, ids, videos = load_scores(args)
    for name, s in scores.items():
        n_nan = int(np.isnan(s).sum())
        if n_nan:
            print(f"note: {name}: {n_nan} video(s) without a score (parse or decode failures) are left out")
    levels = gmad_competition(scores, args.n_levels, band_width=args.band_width, ids=ids)
    out = Path(args.output_dir)
    pd.DataFrame(levels).to_csv(out / "levels.csv", index=False)
    ds = study_dataset(levels, videos, seed=args.seed)
    pictures = out / "pictures"
    ds = ds.add_column("picture", [str(pictures / f"{safe_name(p)}.png") for p in ds["pair_id"]])
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

    def draw(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for row in rows:
            high, _ = read_frames(row["video_high"], args.num_frames, backend=args.video_backend)
            low, _ = read_frames(row["video_low"], args.num_frames, backend=args.video_backend)
            out.append({"picture": str(pair_figure(high, low, row, row["picture"]))})
        return out

    items = [dict(r) for r in ds]
    run = ResumableRun(work_dir, draw, batch_size=1, flush_every=1, id_column="pair_id", desc="gMAD pictures")
    summary = run.run(items)
    print(f"pictures: {summary.computed} drawn, {summary.skipped_done} already there, {summary.failed} failed")
    return load_failures(work_dir)


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
    return result


def make_parser() -> TrlParser:
    """The recipe's parser: YAML via ``--config``, CLI flags override it."""
    parser = TrlParser(GmadArguments)
    return parser


if __name__ == "__main__":
    setup_logging()
    parser = make_parser()
    (script_args,) = parser.parse_args_and_config()
    try:
        main(script_args)
    except (FileNotFoundError, KeyError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
