"""Build a pool Dataset from the files a VQA dataset ships (a MOS table and a video folder).

Usage:
    python recipes/build_pool.py --config recipes/configs/konvid_1k/build_pool.yaml
    python recipes/build_pool.py --mos_table mos.csv --video_dir videos/ --dataset_name mine --output_dir pools/mine

Everything is validated before anything is written: missing videos, duplicate ids, non-numeric MOS, an empty table
or a constant MOS column stop the run with the full list of offenders.
"""

from __future__ import annotations

import logging
import shutil
import sys
from collections import Counter
from pathlib import Path

from trl import TrlParser

from mds_vqa.configs import BuildPoolArguments
from mds_vqa.data import PoolValidationError, build_pool

logger = logging.getLogger("mds_vqa.build_pool")


def main(args: BuildPoolArguments) -> Path:
    """Build, validate and save the pool; return the output folder."""
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
    if args.push_to_hub:
        if not args.hub_dataset_id:
            raise ValueError("push_to_hub needs hub_dataset_id.")
        ds.push_to_hub(args.hub_dataset_id, private=args.hub_private)
        print(f"Pushed to https://huggingface.co/datasets/{args.hub_dataset_id}")
    return out


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = TrlParser(BuildPoolArguments)
    (script_args,) = parser.parse_args_and_config()
    try:
        main(script_args)
    except (PoolValidationError, FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
