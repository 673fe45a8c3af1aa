"""The rating app: raters score the selected subset's videos (and/or answer the gMAD 2AFC study) in a local web page.

Usage:
    python recipes/rate.py --config recipes/configs/demo/rate.yaml
    python recipes/rate.py --subset_path outputs/youtube_sfv_sdr/selection/mds --output_dir ratings/sdr \
        --anchors v012 v340 --scale acr
    python recipes/rate.py --subset_path user/sdr-mds-subset --video_root /data/sfv_sdr/videos ...   # from the Hub
    python recipes/rate.py --pairs_path outputs/lsvq_1080p/gmad/pairs --output_dir ratings/gmad        # 2AFC only

Open the printed URL, enter a rater id, press Start / resume. Each rater sees the videos one at a time in their own
seeded random order, after a short training on the anchor videos (``anchors``, or ``num_anchors`` spread over
``anchor_column`` of ``anchor_pool``; not counted). Every answer is appended to ``<output_dir>/ratings.csv``
(``video_id, rater, score, phase, scale, position, time``) or, for the 2AFC study, ``<output_dir>/gmad_answers.csv``
(``pair_id, preferred, rater, position, time``) as it is given; a rater who comes back continues where they stopped.
Then: ``recipes/import_ratings.py --ratings <output_dir>/ratings.csv`` builds the labelled pool, and
``recipes/gmad.py --answers <output_dir>/gmad_answers.csv`` the gMAD summary.

The page listens on 127.0.0.1 (``--server_name 0.0.0.0`` opens it to the local network) and its functions are named
API endpoints (``/start``, ``/rate``, ``/start_pairs``, ``/choose``) for ``gradio_client``: see
:mod:`mds_vqa.rating_app`.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import TrlParser

from mds_vqa.hub import write_provenance
from mds_vqa.log import setup_logging

logger = logging.getLogger("mds_vqa.rate")


@dataclass
class RateArguments:
    """Arguments of ``recipes/rate.py``."""

    output_dir: str = field(metadata={"help": "Folder of the answer files (ratings.csv, gmad_answers.csv)."})
    subset_path: str | None = field(
        default=None, metadata={"help": "Selection to rate (video_id, video): a folder, a staged folder or a Hub id."}
    )
    pairs_path: str | None = field(default=None, metadata={"help": "gMAD pairs Dataset for the 2AFC study."})
    split: str = field(default="train", metadata={"help": "Split of a staged folder or a Hub id."})
    revision: str | None = field(default=None, metadata={"help": "Hub revision of a Hub id."})
    video_root: str | None = field(
        default=None, metadata={"help": "Folder that relative video paths are relative to (absolute paths are kept)."}
    )
    scale: str = field(default="acr", metadata={"help": "acr (1-5, ITU-T P.910) or slider (0-100)."})
    anchors: list[str] | None = field(default=None, metadata={"help": "Video ids of the training videos, in order."})
    anchor_pool: str | None = field(
        default=None, metadata={"help": "Dataset the anchors come from (default: the subset), e.g. a labelled pool."}
    )
    anchor_column: str | None = field(
        default=None, metadata={"help": "Without anchors: pick num_anchors videos spread over this column (e.g. mos)."}
    )
    num_anchors: int = field(default=2, metadata={"help": "Training videos picked by anchor_column (2: worst, best)."})
    id_column: str = field(default="video_id", metadata={"help": "Video id column."})
    video_column: str = field(default="video", metadata={"help": "Video path column."})
    seed: int = field(default=0, metadata={"help": "Study seed, combined with each rater id for their order."})
    title: str = field(default="Video quality rating", metadata={"help": "Title of the page."})
    server_name: str = field(default="127.0.0.1", metadata={"help": "Interface to listen on (0.0.0.0: the network)."})
    server_port: int | None = field(default=None, metadata={"help": "Port (default: the first free from 7860)."})


def main(args: RateArguments) -> tuple[Any, str]:
    """Load the subset and/or the pairs, check their videos, start the app without blocking; returns ``(app, url)``
    (``app.block_thread()`` serves until Ctrl-C, ``app.close()`` stops it)."""
    from mds_vqa.loading import load_pool
    from mds_vqa.rating import PAIR_ANSWERS_FILE, RATINGS_FILE, anchor_items, pair_study, rating_study
    from mds_vqa.rating_app import build_app, launch_app

    if args.subset_path is None and args.pairs_path is None:
        raise ValueError("Nothing to rate: pass --subset_path (a selection) and/or --pairs_path (gMAD pairs).")
    load = dict(split=args.split, revision=args.revision, video_root=args.video_root, check_videos=True)
    subset = load_pool(args.subset_path, **load) if args.subset_path is not None else None
    anchor_source = load_pool(args.anchor_pool, **load) if args.anchor_pool else subset
    pair_ds = load_pool(args.pairs_path, **load) if args.pairs_path is not None else None
    out = Path(args.output_dir)  # created once every input has loaded
    ratings = pairs = None
    if subset is not None:
        training = anchor_items(
            anchor_source,
            anchors=args.anchors,
            anchor_column=args.anchor_column,
            num_anchors=args.num_anchors,
            id_column=args.id_column,
            video_column=args.video_column,
        )
        ratings = rating_study(
            subset,
            out / RATINGS_FILE,
            scale=args.scale,
            training=training,
            id_column=args.id_column,
            video_column=args.video_column,
            seed=args.seed,
        )
        logger.info(
            "Rating study: %d videos, %d training videos, %s scale", len(ratings.items), len(training), args.scale
        )
    if pair_ds is not None:
        pairs = pair_study(pair_ds, out / PAIR_ANSWERS_FILE, seed=args.seed)
        logger.info("2AFC study: %d gMAD pairs", len(pairs.items))
    studies = [s for s in (ratings, pairs) if s is not None]
    summary = {
        "videos": len(ratings.items) if ratings else 0,
        "training_videos": [it.item_id for it in ratings.training] if ratings else [],
        "pairs": len(pairs.items) if pairs else 0,
        "scale": args.scale,
        "answer_files": [str(s.answers.path) for s in studies],
    }
    write_provenance(
        out,
        recipe="rate",
        arguments=[args],
        summary=summary,
        inputs=[args.subset_path, args.pairs_path, args.anchor_pool],
    )
    app = build_app(ratings, pairs, title=args.title)
    url = launch_app(app, studies, server_name=args.server_name, server_port=args.server_port)
    print(f"Rating app running at {url} (Ctrl-C stops it); answers go to {', '.join(summary['answer_files'])}")
    return app, url


def make_parser() -> TrlParser:
    """The recipe's parser: YAML via ``--config``, CLI flags override it."""
    parser = TrlParser(RateArguments)
    return parser


if __name__ == "__main__":
    setup_logging()
    parser = make_parser()
    (script_args,) = parser.parse_args_and_config()
    try:
        rating_app, _ = main(script_args)
    except (FileNotFoundError, KeyError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    rating_app.block_thread()
