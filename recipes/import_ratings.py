"""Raw ratings of a selected subset → a labelled pool for fine-tuning: rater screening, MOS, mos_std, ratings per video.

Usage:
    python recipes/import_ratings.py --config recipes/configs/youtube_sfv_sdr/import_ratings.yaml
    python recipes/import_ratings.py --subset_path outputs/youtube_sfv_sdr/selection/mds \
        --ratings outputs/youtube_sfv_sdr/ratings/ratings.csv --output_dir outputs/youtube_sfv_sdr/labelled/mds

The ratings file has one row per answer, ``video_id, rater, score`` (optional ``phase``: ``training`` rows are
dropped; optional ``scale``: ``acr`` or ``slider``); ``recipes/rate.py`` writes it. Raters whose scores correlate
poorly with the other raters' mean (leave-one-out PLCC < ``min_correlation``, iteratively) are rejected; see
:mod:`mds_vqa.ratings_import`. Writes into ``output_dir``: the labelled pool (``save_to_disk``; the pool columns plus
``num_ratings``), ``screening.json`` (the rule and every rater's record) and ``provenance.json``; with
``--stage_dir`` / ``--push_to_hub`` it is staged (and pushed) with its dataset card. The pool is a
``dataset_paths`` entry of ``recipes/finetune.py``.

The gMAD 2AFC answers of the same app (``gmad_answers.csv``) go to ``recipes/gmad.py --answers`` instead.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from trl import TrlParser

from mds_vqa.cli import run_recipe
from mds_vqa.hub import HubArguments, print_published, publish_dataset, write_provenance

logger = logging.getLogger("mds_vqa.import_ratings")


@dataclass
class ImportRatingsArguments:
    """Arguments of ``recipes/import_ratings.py``."""

    subset_path: str = field(metadata={"help": "The rated selection: a folder, a staged folder or a Hub id."})
    ratings: str = field(metadata={"help": "Ratings CSV: video_id, rater, score[, phase][, scale] (rate.py's)."})
    output_dir: str = field(metadata={"help": "Where the labelled pool is saved (save_to_disk)."})
    split: str = field(default="train", metadata={"help": "Split of a staged folder or a Hub id."})
    revision: str | None = field(default=None, metadata={"help": "Hub revision of a Hub id."})
    video_root: str | None = field(
        default=None, metadata={"help": "Folder that relative video paths are relative to (recorded resolved)."}
    )
    min_correlation: float = field(
        default=0.75, metadata={"help": "Reject a rater whose PLCC with the others' mean is below this."}
    )
    min_common: int = field(default=5, metadata={"help": "Screen a rater only on at least this many shared videos."})
    min_ratings: int = field(default=1, metadata={"help": "Leave out videos with fewer kept ratings than this."})
    dataset_name: str | None = field(
        default=None, metadata={"help": "Domain in the `dataset` column (default: the subset's own)."}
    )
    id_column: str = field(default="video_id", metadata={"help": "Video id column of the subset."})
    video_column: str = field(default="video", metadata={"help": "Video path column of the subset."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing output_dir."})


def main(args: ImportRatingsArguments, hub_args: HubArguments | None = None) -> Path:
    """Screen the raters, save the labelled pool with ``screening.json`` and its provenance, then stage (and push)
    it with its card when asked; returns the output folder."""
    from mds_vqa.loading import load_pool
    from mds_vqa.ratings_import import import_ratings

    hub_args = hub_args or HubArguments()
    hub_args.check("dataset")
    out = Path(args.output_dir)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass --overwrite true to replace it.")
    subset = load_pool(args.subset_path, split=args.split, revision=args.revision, video_root=args.video_root)
    result = import_ratings(
        subset,
        args.ratings,
        min_correlation=args.min_correlation,
        min_common=args.min_common,
        min_ratings=args.min_ratings,
        dataset_name=args.dataset_name,
        id_column=args.id_column,
        video_column=args.video_column,
    )
    if out.exists() and args.overwrite:
        shutil.rmtree(out)
    result.pool.save_to_disk(str(out))
    (out / "screening.json").write_text(json.dumps(result.report, indent=2) + "\n")
    r = result.report
    print(
        f"Labelled {r['labelled_videos']} of {r['subset_videos']} videos from {r['ratings_used']} ratings of "
        f"{len(r['raters_kept'])} rater(s); rejected: {r['raters_rejected'] or 'none'} -> {out}"
    )
    domains = sorted(set(result.pool["dataset"]))
    summary = {
        "dataset_name": ", ".join(domains),
        "mos_table": args.ratings,
        "video_dir": args.video_root,
        "higher_is_better": True,
        **{k: r[k] for k in ("ratings", "ratings_used", "raters_kept", "raters_rejected", "labelled_videos")},
        "rule": r["rule"],
    }
    write_provenance(
        out,
        recipe="import_ratings",
        arguments=[args, hub_args],
        summary=summary,
        inputs=[args.subset_path, args.ratings],
    )
    notes = (
        f"MOS from {r['ratings_used']} human ratings of {len(r['raters_kept'])} rater(s) after screening "
        f"(leave-one-out PLCC with the others' mean >= {args.min_correlation}); rejected raters: "
        f"{', '.join(r['raters_rejected']) or 'none'}. Per-rater records: screening.json."
    )
    published = publish_dataset(
        out, hub_args, kind="pool", settings=summary, pretty_name="mds-vqa human-rated subset", notes=notes
    )
    print_published(published, "the labelled pool with its dataset card")
    return out


def make_parser() -> TrlParser:
    """The recipe's parser: YAML via ``--config``, CLI flags override it."""
    parser = TrlParser((ImportRatingsArguments, HubArguments))
    return parser


if __name__ == "__main__":
    run_recipe(main, make_parser)
