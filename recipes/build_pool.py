"""Build a pool Dataset from the files a VQA dataset ships (a MOS table and a video folder).

Usage:
    python recipes/build_pool.py --config recipes/configs/konvid_1k/build_pool.yaml
    python recipes/build_pool.py --mos_table mos.csv --video_dir videos/ --dataset_name mine --output_dir pools/mine
    # a pool that travels (to another machine, to the Hub): paths relative to the video folder
    python recipes/build_pool.py ... --relative_paths true     # then load_pool(pool, video_root=<video folder>)

Everything is validated before anything is written: missing videos, duplicate ids, non-numeric MOS, an empty table
or a constant MOS column stop the run with the full list of offenders.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from pathlib import Path

from trl import TrlParser

from mds_vqa.cli import run_recipe
from mds_vqa.configs import BuildPoolArguments
from mds_vqa.data import build_pool
from mds_vqa.hub import HubArguments, print_published, publish_dataset, write_provenance

logger = logging.getLogger("mds_vqa.build_pool")


def main(args: BuildPoolArguments, hub_args: HubArguments | None = None) -> Path:
    """Build, validate and save the pool, then stage (and push) it with its dataset card when asked; return the
    output folder."""
    hub_args = hub_args or HubArguments()
    hub_args.check("dataset")
    out = Path(args.output_dir)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass --overwrite true to replace it.")
    ds = build_pool(
        args.mos_table,
        args.video_dir,
        args.dataset_name,
        split=args.split,
        split_column=args.split_column,
        test_size=args.test_size,
        seed=args.seed,
        video_column=args.video_column,
        mos_column=args.mos_column,
        mos_std_column=args.mos_std_column,
        video_extension=args.video_extension,
        delimiter=args.delimiter,
        has_header=args.has_header,
        higher_is_better=args.higher_is_better,
        relative_paths=args.relative_paths,
    )
    if out.exists() and args.overwrite:
        shutil.rmtree(out)
    ds.save_to_disk(str(out))
    splits = dict(Counter(ds["split"]))
    mos = ds["mos"]
    print(
        f"Saved pool {args.dataset_name!r}: {len(ds)} videos, splits {splits}, MOS range [{min(mos):.3f}, {max(mos):.3f}]"
        f" -> {out}"
    )
    keys = ("dataset_name", "mos_table", "video_dir", "higher_is_better", "seed", "relative_paths")
    summary = {k: getattr(args, k) for k in keys}
    summary.update(test_size=args.test_size if args.test_size is not None else "none", videos=len(ds), splits=splits)
    write_provenance(
        out, recipe="build_pool", arguments=[args, hub_args], summary=summary, inputs=[args.mos_table, args.video_dir]
    )
    published = publish_dataset(out, hub_args)
    print_published(published, "the pool with its dataset card")
    return out


def make_parser() -> TrlParser:
    """The recipe's parser: YAML via ``--config``, CLI flags override it."""
    parser = TrlParser((BuildPoolArguments, HubArguments))
    return parser


if __name__ == "__main__":
    run_recipe(main, make_parser)
