"""Write an offline toy setup: generated videos with known quality in two domains, their MOS tables and build
configs, a tiny Qwen2.5-VL and the name of a tiny open_clip model. Everything later recipes need, with no download.

Usage:
    python recipes/make_toy_data.py --output_dir outputs/toy
    python recipes/build_pool.py --config outputs/toy/source/build_pool.yaml
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from trl import TrlParser

from mds_vqa.log import setup_logging
from mds_vqa.testing import Distortion, build_tiny_qwen2_5_vl, make_video_pool

# Two domains with different distortion mixes: the source is mostly blurred, the target mostly noisy and compressed.
DOMAINS = {
    "source": {"blur": (0.0, 2.5), "noise": (0.0, 8.0), "crf": (18, 30)},
    "target": {"blur": (0.0, 0.8), "noise": (0.0, 35.0), "crf": (20, 44)},
}


@dataclass
class ToyDataArguments:
    """Where to write the toy data and how much of it."""

    output_dir: str = field(default="outputs/toy", metadata={"help": "Folder for videos, tables, configs, model."})
    videos_per_domain: int = field(default=24, metadata={"help": "Videos generated per domain."})
    num_frames: int = field(default=16, metadata={"help": "Frames per video."})
    size: int = field(default=64, metadata={"help": "Frame height and width (even)."})
    rater_noise: float = field(default=0.1, metadata={"help": "Std of the simulated rater noise added to the MOS."})
    seed: int = field(default=0, metadata={"help": "Seed of distortions, content and noise."})
    build_model: bool = field(default=True, metadata={"help": "Also build and save the tiny Qwen2.5-VL."})


def main(args: ToyDataArguments) -> Path:
    """Write the toy data; return the output folder."""
    out = Path(args.output_dir)
    rng = np.random.default_rng(args.seed)
    for d, (name, ranges) in enumerate(DOMAINS.items()):
        distortions = [
            Distortion(
                blur=float(rng.uniform(*ranges["blur"])),
                noise=float(rng.uniform(*ranges["noise"])),
                crf=int(rng.integers(ranges["crf"][0], ranges["crf"][1] + 1)),
            )
            for _ in range(args.videos_per_domain)
        ]
        rows = make_video_pool(
            out / name / "videos",
            distortions,
            prefix=name,
            seed=args.seed + 1000 * d,
            num_frames=args.num_frames,
            height=args.size,
            width=args.size,
        )
        noise = rng.normal(0, args.rater_noise, size=len(rows))
        lines = ["video,mos,mos_std"] + [
            f"{r['video_id']}.mp4,{r['mos'] + e:.4f},{args.rater_noise:.4f}" for r, e in zip(rows, noise)
        ]
        (out / name / "mos.csv").write_text("\n".join(lines) + "\n")
        config = {
            "mos_table": str((out / name / "mos.csv").resolve()),
            "video_dir": str((out / name / "videos").resolve()),
            "dataset_name": f"toy_{name}",
            "output_dir": str((out / "pools" / name).resolve()),
            "mos_std_column": "mos_std",
            "test_size": 0.25,
            "seed": args.seed,
            "overwrite": True,
        }
        (out / name / "build_pool.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        print(f"{name}: {len(rows)} videos -> {out / name}")
    if args.build_model:
        path = build_tiny_qwen2_5_vl(out / "tiny_qwen2_5_vl", seed=args.seed)
        print(f"tiny Qwen2.5-VL -> {path}")
    return out


def make_parser() -> TrlParser:
    """The recipe's parser: YAML via ``--config``, CLI flags override it."""
    return TrlParser(ToyDataArguments)


if __name__ == "__main__":
    setup_logging()
    (script_args,) = make_parser().parse_args_and_config()
    main(script_args)
