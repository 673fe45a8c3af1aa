"""The embedded default's world: two domains of generated videos whose quality is known, and a domain gap.

The **source** domain (the labelled set f is trained on) holds blur, noise and mild compression. The **target**
domain (the unlabelled pool) mixes videos of the source's kinds with two kinds the source never shows: pixelation
(blocks of 2–8 pixels) and washed-out contrast. A model trained on the source has never seen those, so it is
expected to rank them badly: the domain gap the selection has to find. Every video's true quality is
:meth:`~mds_vqa.testing.Distortion.quality` (5 for pristine, falling with the distortion's severity); the MOS table
adds Gaussian rater noise.

The world is fixed here, before any comparison runs, and written into the experiment's report
(:func:`describe_world`); nothing in it is tuned to make one selection strategy win.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .testing import Distortion

__all__ = ["Profile", "ToyWorld", "DEFAULT_DOMAINS", "draw_distortions", "write_world", "describe_world"]


@dataclass(frozen=True)
class Profile:
    """One kind of video in a domain: the share of the domain's videos it makes up (``weight``) and, per
    :class:`~mds_vqa.testing.Distortion` field, the uniform range its strength is drawn from (fields not named stay
    pristine)."""

    name: str
    weight: float
    ranges: Mapping[str, tuple[float, float]]


FAMILIAR = Profile("blur/noise", 1.0, {"blur": (0.0, 2.5), "noise": (0.0, 12.0), "crf": (18, 30)})

DEFAULT_DOMAINS: dict[str, tuple[Profile, ...]] = {
    "source": (FAMILIAR,),
    "target": (
        Profile("blur/noise", 0.4, FAMILIAR.ranges),
        Profile("pixelated", 0.3, {"pixelate": (1, 8), "noise": (0.0, 4.0), "crf": (18, 30)}),
        Profile("washed out", 0.3, {"washout": (0.0, 0.7), "blur": (0.0, 1.0), "crf": (18, 30)}),
    ),
}

_INTEGER_FIELDS = ("crf", "pixelate")


@dataclass
class ToyWorld:
    """Sizes and kinds of the toy world (see the module docstring)."""

    source_videos: int = field(default=96, metadata={"help": "Generated source videos (labelled)."})
    target_videos: int = field(default=160, metadata={"help": "Generated target videos (the pool and its test)."})
    source_contents: int = field(default=12, metadata={"help": "Distinct source contents (8 distortions each)."})
    target_contents: int = field(default=20, metadata={"help": "Distinct target contents."})
    num_frames: int = field(default=16, metadata={"help": "Frames per video."})
    size: int = field(default=64, metadata={"help": "Frame height and width (even)."})
    fps: int = field(default=8, metadata={"help": "Frames per second."})
    rater_noise: float = field(default=0.1, metadata={"help": "Std of the rater noise in the MOS tables."})
    test_size: float = field(default=0.25, metadata={"help": "Share of each domain's contents held out as test."})
    domains: dict[str, tuple[Profile, ...]] = field(default_factory=lambda: dict(DEFAULT_DOMAINS))

    def videos(self, domain: str) -> int:
        """How many videos ``domain`` has."""
        return {"source": self.source_videos, "target": self.target_videos}[domain]

    def contents(self, domain: str) -> int:
        """How many distinct contents ``domain`` has (at most one per video)."""
        n = {"source": self.source_contents, "target": self.target_contents}[domain]
        return max(1, min(n, self.videos(domain)))


def draw_distortions(
    profiles: Sequence[Profile], n: int, rng: np.random.Generator
) -> tuple[list[Distortion], list[str]]:
    """``n`` distortions: each profile gets ``round(weight · n)`` videos (the last one the rest), strengths drawn
    uniformly from its ranges; returns the distortions (shuffled) and each one's profile name."""
    total = sum(p.weight for p in profiles)
    counts = [int(round(p.weight / total * n)) for p in profiles[:-1]]
    counts.append(n - sum(counts))
    drawn: list[tuple[Distortion, str]] = []
    for profile, count in zip(profiles, counts):
        for _ in range(count):
            values: dict[str, Any] = {}
            for name, (lo, hi) in profile.ranges.items():
                values[name] = int(rng.integers(lo, hi + 1)) if name in _INTEGER_FIELDS else float(rng.uniform(lo, hi))
            drawn.append((Distortion(**values), profile.name))
    order = rng.permutation(len(drawn))
    return [drawn[i][0] for i in order], [drawn[i][1] for i in order]


def write_world(output_dir: str | Path, world: ToyWorld, *, seed: int) -> dict[str, Path]:
    """Generate both domains into ``output_dir/<domain>/`` (``videos/``, ``mos.csv`` with the noisy MOS and the
    split, ``distortions.csv`` with each video's content, kind and strengths, ``build_pool.yaml`` for
    ``recipes/build_pool.py`` writing ``output_dir/pools/<domain>``). Each domain has ``<domain>_contents`` contents,
    each shown under several distortions (as in synthetic VQA databases); whole contents are held out as the test
    split, so a model is tested on content it has never seen. New contents, distortions and rater noise per ``seed``.
    Returns ``{domain: build_pool.yaml}``."""
    from .testing import make_video

    out = Path(output_dir)
    rng = np.random.default_rng(seed)
    configs = {}
    fields = list(asdict(Distortion()))
    for d, (name, profiles) in enumerate(world.domains.items()):
        n, contents = world.videos(name), world.contents(name)
        distortions, kinds = draw_distortions(profiles, n, rng)
        content_of = [i % contents for i in range(n)]
        n_test = max(1, int(round(world.test_size * contents)))
        test_contents = set(rng.permutation(contents)[:n_test].tolist())
        noise = rng.normal(0, world.rater_noise, size=n)
        mos_lines, table = ["video,mos,mos_std,split"], ["video_id,content,kind,true_quality," + ",".join(fields)]
        for i, (dist, kind, c) in enumerate(zip(distortions, kinds, content_of)):
            vid = f"{name}_{c:03d}_{i:04d}"
            make_video(
                out / name / "videos" / f"{vid}.mp4",
                dist,
                seed=seed * 100_003 + 1000 * d + 7919 * c,
                num_frames=world.num_frames,
                height=world.size,
                width=world.size,
                fps=world.fps,
            )
            split = "test" if c in test_contents else "train"
            mos_lines.append(f"{vid}.mp4,{dist.quality() + noise[i]:.4f},{world.rater_noise:.4f},{split}")
            values = asdict(dist)
            table.append(f"{vid},{c},{kind},{dist.quality():.4f}," + ",".join(str(values[f]) for f in fields))
        (out / name / "mos.csv").write_text("\n".join(mos_lines) + "\n")
        (out / name / "distortions.csv").write_text("\n".join(table) + "\n")
        config = {
            "mos_table": str((out / name / "mos.csv").resolve()),
            "video_dir": str((out / name / "videos").resolve()),
            "dataset_name": f"toy_{name}",
            "output_dir": str((out / "pools" / name).resolve()),
            "mos_std_column": "mos_std",
            "split_column": "split",
            "test_size": None,
            "overwrite": True,
        }
        configs[name] = out / name / "build_pool.yaml"
        configs[name].write_text(yaml.safe_dump(config, sort_keys=False))
    return configs


def describe_world(world: ToyWorld) -> str:
    """The world as Markdown: per domain, its kinds of video, their shares and strength ranges, and the sizes."""
    lines = [
        f"- Videos: {world.source_videos} source ({world.contents('source')} contents), {world.target_videos} target "
        f"({world.contents('target')} contents), each content under several distortions; {world.num_frames} frames "
        f"of {world.size}×{world.size} at {world.fps} fps; {world.test_size:.0%} of each domain's contents (all their "
        "videos) held out as its test split, never selected from.",
        f"- MOS = true quality 1 + 4·exp(−severity) + Gaussian rater noise (std {world.rater_noise}); severity = "
        "blur/2 + noise/25 + max(0, crf − 18)/16 + (pixelate − 1)/4 + 2.5·washout.",
    ]
    for name, profiles in world.domains.items():
        total = sum(p.weight for p in profiles)
        kinds = "; ".join(
            f"{p.name} ({p.weight / total:.0%}: "
            + ", ".join(f"{k} {_fmt(lo)}–{_fmt(hi)}" for k, (lo, hi) in p.ranges.items())
            + ")"
            for p in profiles
        )
        lines.append(f"- {name}: {kinds}")
    return "\n".join(lines)


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
