"""Synthetic distortions with a known order: degraded variants of a video, decoded and re-encoded with real codecs.

Self-supervised VQA ranks copies of one clip by how much they were degraded: the less degraded copy is better, so
the order is known without a rater. A *family* is one kind of degradation and its *levels* are increasing strengths
(level 0 is the source itself, never written). The families and what a level's ``strength`` means:

==========  ==========================================================================================================
``x264``    H.264 (libx264) re-encode of the decoded frames at CRF = strength (0 … 51; higher is worse)
``x265``    HEVC (libx265) re-encode at CRF = strength (0 … 51)
``rescale`` downscale by the factor ``strength`` (> 1, area interpolation) and back up to the source size (bilinear)
``blur``    Gaussian blur of sigma = strength pixels (> 0), per frame
``noise``   additive Gaussian noise of std = strength (0–255 scale, > 0), seeded per video and level
``stutter`` frame dropping: keep every ``strength``-th frame (an integer ≥ 2) and hold it in place of the dropped ones
==========  ==========================================================================================================

Every variant keeps the source's frame count, frame size and frame rate (stutter holds frames instead of removing
them; timestamps are rewritten at the source's average frame rate, so a variable-frame-rate source comes out
constant-rate). The pixel families (rescale, blur, noise, stutter) are written with libx264 at ``reencode_crf``
(near-lossless by default) so their own degradation dominates. Frames are yuv420p, or yuv444p when the source has an
odd width or height (4:2:0 needs even sizes). The source is decoded once and each frame goes to every variant's
encoder, so memory stays at a few frames whatever the video's length. A variant is written to a temporary file and
renamed when complete: a killed run never leaves a truncated variant under its final name.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .video import VideoReadError

logger = logging.getLogger(__name__)

__all__ = [
    "FAMILIES",
    "CODEC_FAMILIES",
    "DEFAULT_LEVELS",
    "Variant",
    "EncodeSettings",
    "variant_plan",
    "describe_plan",
    "write_variants",
]

CODEC_FAMILIES = {"x264": "libx264", "x265": "libx265"}
FAMILIES = ("x264", "x265", "rescale", "blur", "noise", "stutter")
DEFAULT_LEVELS: dict[str, list[float]] = {
    "x264": [30, 38, 46],
    "x265": [32, 40, 48],
    "rescale": [2, 3, 4],
    "blur": [1.0, 2.0, 3.5],
    "noise": [6.0, 14.0, 28.0],
    "stutter": [2, 3, 5],
}
FAMILY_PARAMETER = {
    "x264": "CRF",
    "x265": "CRF",
    "rescale": "factor",
    "blur": "sigma",
    "noise": "std",
    "stutter": "step",
}


@dataclass(frozen=True)
class Variant:
    """One family at one level (1 = mildest); ``strength`` is the family's parameter (module docstring)."""

    family: str
    level: int
    strength: float

    @property
    def name(self) -> str:
        """``<family>-<level>``, e.g. ``x264-2`` (the variant's file name and id suffix)."""
        return f"{self.family}-{self.level}"


@dataclass(frozen=True)
class EncodeSettings:
    """How variants are encoded: the x264/x265 ``preset``, the CRF of the pixel families, and the noise seed."""

    preset: str = "veryfast"
    reencode_crf: int = 10
    seed: int = 0
    threads: int = 0  # 0: the codec's default


def _check_strengths(family: str, values: Sequence[float]) -> None:
    values = [float(v) for v in values]
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"Distortion family {family!r}: levels {values} must be strictly increasing (worse).")
    if family in CODEC_FAMILIES and not all(0 <= v <= 51 and v == int(v) for v in values):
        raise ValueError(f"Distortion family {family!r}: CRF levels {values} must be integers in [0, 51].")
    if family == "rescale" and not all(v > 1 for v in values):
        raise ValueError(f"Distortion family 'rescale': downscale factors {values} must be > 1.")
    if family in ("blur", "noise") and not all(v > 0 for v in values):
        raise ValueError(f"Distortion family {family!r}: strengths {values} must be > 0.")
    if family == "stutter" and not all(v >= 2 and v == int(v) for v in values):
        raise ValueError(f"Distortion family 'stutter': steps {values} must be integers >= 2.")


def variant_plan(levels: Mapping[str, Sequence[float]]) -> list[Variant]:
    """The variants of ``{family: [strength of level 1, level 2, ...]}`` (families in :data:`FAMILIES` order).

    Raises ``ValueError`` naming the family for an unknown family, an empty level list, levels that are not strictly
    increasing, or a strength outside the family's range."""
    unknown = sorted(set(levels) - set(FAMILIES))
    if unknown:
        raise ValueError(f"Unknown distortion families {unknown}; known: {list(FAMILIES)}")
    plan = []
    for family in FAMILIES:
        if family not in levels:
            continue
        values = list(levels[family])
        if not values:
            raise ValueError(f"Distortion family {family!r} has no levels; drop it or give at least one strength.")
        _check_strengths(family, values)
        plan += [Variant(family, k, float(v)) for k, v in enumerate(values, start=1)]
    if not plan:
        raise ValueError("No distortion family chosen: nothing to make.")
    return plan


def describe_plan(plan: Sequence[Variant]) -> str:
    """One line naming each family and its levels, e.g. ``x264 CRF 30/38/46; blur sigma 1/2/3.5``."""
    families: dict[str, list[str]] = {}
    for v in plan:
        families.setdefault(v.family, []).append(f"{v.strength:g}")
    return "; ".join(f"{f} {FAMILY_PARAMETER[f]} {'/'.join(s)}" for f, s in families.items())


# --------------------------------------------------------------------------------------------------------------------
# Frame filters: one per variant, called once per decoded frame in order
# --------------------------------------------------------------------------------------------------------------------

FrameFilter = Callable[[Any, int], Any]  # (av.VideoFrame, frame index) -> av.VideoFrame


def _rgb_filter(fn: Callable[[np.ndarray], np.ndarray]) -> FrameFilter:
    import av

    def apply(frame, _index: int):
        out = fn(frame.to_ndarray(format="rgb24").astype(np.float32))
        return av.VideoFrame.from_ndarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), format="rgb24")

    return apply


def _frame_filter(variant: Variant, width: int, height: int, rng: np.random.Generator) -> FrameFilter:
    family, s = variant.family, variant.strength
    if family in CODEC_FAMILIES:
        return lambda frame, _index: frame
    if family == "rescale":
        small_w, small_h = max(2, round(width / s)), max(2, round(height / s))
        return lambda frame, _index: frame.reformat(width=small_w, height=small_h, interpolation="AREA").reformat(
            width=width, height=height, interpolation="BILINEAR"
        )
    if family == "blur":
        from scipy.ndimage import gaussian_filter

        return _rgb_filter(lambda rgb: gaussian_filter(rgb, sigma=(s, s, 0)))
    if family == "noise":
        return _rgb_filter(lambda rgb: rgb + rng.normal(0.0, s, size=rgb.shape))
    if family == "stutter":
        step, held = int(s), {}

        def hold(frame, index: int):
            if index % step == 0:
                held["frame"] = frame
            return held["frame"]

        return hold
    raise ValueError(f"Unknown distortion family {family!r}")


class _Writer:
    """One variant's encoder and container, written to a temporary file renamed into place by :meth:`finish`."""

    def __init__(
        self, path: Path, variant: Variant, settings: EncodeSettings, rate: Fraction, width: int, height: int
    ):
        import av

        self.path = path
        self.tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        codec = CODEC_FAMILIES.get(variant.family, "libx264")
        crf = int(variant.strength) if variant.family in CODEC_FAMILIES else settings.reencode_crf
        self.container = av.open(str(self.tmp), mode="w", format="mp4")
        self.stream = self.container.add_stream(codec, rate=rate)
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        options = {"crf": str(crf), "preset": settings.preset}
        if codec == "libx265":
            options["x265-params"] = "log-level=error"
        self.stream.options = options
        if settings.threads:
            self.stream.codec_context.thread_count = settings.threads
        self.time_base = 1 / rate
        self.frames = 0

    def write(self, frame) -> None:
        """Encode ``frame`` as the next frame (constant rate: its timestamp is its position)."""
        frame.pts, frame.time_base = self.frames, self.time_base
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def finish(self) -> None:
        """Flush the encoder, close the file and rename it into place."""
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        """Close and delete the temporary file (after an error)."""
        try:
            self.container.close()
        except Exception as err:  # noqa: BLE001 - a broken encoder must not hide the error that stopped the run
            logger.debug("Closing %s after an error failed too: %s", self.tmp, err)
        self.tmp.unlink(missing_ok=True)


@dataclass
class _Source:
    """The decoded source's stream facts."""

    rate: Fraction
    width: int
    height: int
    frames: int = 0


def _open_source(path: Path):
    import av

    if not path.is_file():
        raise VideoReadError(path, "file not found")
    try:
        container = av.open(str(path))
    except Exception as err:  # av.error.* (InvalidDataError, ...)
        raise VideoReadError(path, f"PyAV could not open the file ({type(err).__name__}: {err})") from err
    if not container.streams.video:
        container.close()
        raise VideoReadError(path, "the file has no video stream")
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate:
        container.close()
        raise VideoReadError(path, "the video stream has no frame rate")
    stream.thread_type = "AUTO"
    source = _Source(Fraction(rate), int(stream.codec_context.width), int(stream.codec_context.height))
    return container, stream, source


def write_variants(
    source_path: str | os.PathLike,
    variants: Sequence[Variant],
    paths: Sequence[str | os.PathLike],
    settings: EncodeSettings = EncodeSettings(),
    *,
    seed_key: int = 0,
) -> list[dict[str, Any]]:
    """Decode ``source_path`` once and write each of ``variants`` to the matching path of ``paths`` (mp4).

    ``seed_key`` (e.g. the source's row) makes the noise of each source different and reproducible with
    ``settings.seed``. Returns one record per variant: ``distortion``, ``level``, ``strength``, ``video`` (path),
    ``frames``, ``width``, ``height``, ``fps``. Raises :class:`~mds_vqa.video.VideoReadError` naming the file when the
    source cannot be opened or decoded (no variant file is left behind then)."""
    if len(variants) != len(paths):
        raise ValueError(f"{len(variants)} variants but {len(paths)} paths")
    path = Path(source_path)
    container, stream, src = _open_source(path)
    writers: list[_Writer] = []
    try:
        filters = []
        for v in variants:
            rng = np.random.default_rng([settings.seed, seed_key, FAMILIES.index(v.family), v.level])
            filters.append(_frame_filter(v, src.width, src.height, rng))
            writers.append(_Writer(Path(paths[len(writers)]), v, settings, src.rate, src.width, src.height))
        decoded = container.decode(stream)
        while True:
            try:
                frame = next(decoded)
            except StopIteration:
                break
            except Exception as err:  # av.error.* while decoding: a corrupt or truncated source
                raise VideoReadError(
                    path, f"decoding failed after {src.frames} frames ({type(err).__name__}: {err})"
                ) from err
            for fn, writer in zip(filters, writers):
                writer.write(fn(frame, src.frames))
            src.frames += 1
        if src.frames == 0:
            raise VideoReadError(path, "the video stream has zero frames")
        for writer in writers:
            writer.finish()
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    finally:
        container.close()
    return [
        {
            "distortion": v.family,
            "level": v.level,
            "strength": v.strength,
            "video": str(w.path),
            "frames": w.frames,
            "width": src.width,
            "height": src.height,
            "fps": float(src.rate),
        }
        for v, w in zip(variants, writers)
    ]
