"""Weak pairs from synthetic distortions: a pool of degraded variants and the pairs among them, with a known order.

Self-supervised VQA needs no rater: two copies of one clip that differ only in how much one kind of degradation was
applied are ordered by that amount. From any pool (labels not needed), :func:`make_variants` writes every planned
variant (:mod:`mds_vqa.distortions`) of every video, resumably and data-parallel; :func:`variant_pool` turns the
results into a pool Dataset of the sources and their variants, and :func:`weak_pairs` into a pair Dataset in the
scale-free format of :func:`mds_vqa.data.mos_to_pairs`, so the pairs plug into the same fine-tuning.

The variant pool has the pool columns (:data:`~mds_vqa.data.POOL_FEATURES`) plus ``source_id`` (the pool video it
comes from), ``distortion`` (the family; ``"none"`` for the source), ``level`` (0 = the source itself, higher = worse)
and ``strength`` (the family's parameter). The source row keeps its MOS; a variant's ``mos`` and ``mos_std`` are null.
Variants keep the source's ``dataset`` and ``split``.

Pairs (:data:`WEAK_PAIR_FEATURES`) are formed only within one source and one family, between every two of its levels
(the source, level 0, included): ``p = 1`` when ``video_a`` is the less degraded. With ``random_sides`` (default) a
seeded coin puts the better video on either side, so ``p`` is 1 or 0 about equally often.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, Features, Value

from .data import PAIR_FEATURES, POOL_FEATURES
from .distortions import EncodeSettings, Variant, write_variants
from .resumable import ResumableRun, check_run_config, gather_summaries, load_failures, load_results
from .video import VideoReadError

logger = logging.getLogger(__name__)

__all__ = [
    "SOURCE_DISTORTION",
    "VARIANT_POOL_FEATURES",
    "WEAK_PAIR_FEATURES",
    "VariantRun",
    "variant_file",
    "variants_run_config",
    "make_variants",
    "variant_pool",
    "weak_pairs",
]

SOURCE_DISTORTION = "none"
VARIANT_POOL_FEATURES = Features(
    {
        **POOL_FEATURES,
        "source_id": Value("string"),
        "distortion": Value("string"),
        "level": Value("int32"),
        "strength": Value("float64"),
    }
)
WEAK_PAIR_FEATURES = Features(
    {
        **PAIR_FEATURES,
        "source_id": Value("string"),
        "distortion": Value("string"),
        "level_a": Value("int32"),
        "level_b": Value("int32"),
        "split": Value("string"),
    }
)


@dataclass
class VariantRun:
    """How the variants are made: shard size and what to do with an unreadable source."""

    flush_every: int = 4
    strict: bool = False
    retry_failures: bool = False
    max_initial_failures: int | None = 8


def variant_file(videos_dir: str | os.PathLike, row: int, video_id: str, variant: Variant) -> Path:
    """Where the variant of pool row ``row`` goes: ``<videos_dir>/<row>-<id>/<family>-<level>.mp4`` (the id made
    safe for a file name; the row keeps two videos whose ids differ only in unsafe characters apart)."""
    safe = re.sub(r"[^\w.-]+", "_", str(video_id))[:80]
    return Path(videos_dir) / f"{row:06d}-{safe}" / f"{variant.name}.mp4"


def variants_run_config(pool: Dataset, plan: Sequence[Variant], settings: EncodeSettings) -> dict[str, Any]:
    """What the variant files depend on, saved in the work dir: a resume with another plan, encoding or pool (its
    ``video_id``/``video`` rows, in order: results are merged by row) is refused."""
    digest = hashlib.sha256()
    for video_id, video in zip(pool["video_id"], pool["video"]):
        digest.update(f"{video_id}\0{video}\n".encode())
    return {
        "variants": [asdict(v) for v in plan],
        **{f"encode.{k}": v for k, v in asdict(settings).items()},
        "pool_size": len(pool),
        "pool_rows_sha256": digest.hexdigest(),
    }


def make_variants(
    pool: Dataset,
    videos_dir: str | os.PathLike,
    work_dir: str | os.PathLike,
    plan: Sequence[Variant],
    settings: EncodeSettings,
    state,
    run: VariantRun | None = None,
) -> dict[str, Any]:
    """Write every variant of ``plan`` for this process's share of ``pool`` (``video_id``, ``video``) under
    ``videos_dir``, recording each source's variants in ``work_dir`` as it is done (a killed run resumes there; a
    source that cannot be decoded is recorded with its cause and skipped, or stops the run when ``run.strict``).

    A collective: every process of ``state`` (``accelerate.PartialState``) calls it. Returns the totals over every
    process (:func:`~mds_vqa.resumable.gather_summaries`)."""
    run = run or VariantRun()
    work_dir = Path(work_dir)
    config = variants_run_config(pool, plan, settings)
    check_run_config(work_dir, config, write=False, what="variants")
    if state.is_main_process:
        check_run_config(work_dir, config, write=True, what="variants")

    def fn(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for r in rows:
            paths = [variant_file(videos_dir, r["row"], r["video_id"], v) for v in plan]
            out.append({"variants": write_variants(r["video"], plan, paths, settings, seed_key=r["row"])})
        return out

    job = ResumableRun(
        work_dir,
        fn,
        batch_size=1,
        flush_every=run.flush_every,
        process_index=state.process_index,
        num_processes=state.num_processes,
        strict=run.strict,
        skip_exceptions=(VideoReadError,),
        retry_failures=run.retry_failures,
        max_initial_failures=run.max_initial_failures,
        desc=f"degrading ({len(plan)} variants per video)",
    )
    items = pool.select_columns(["video_id", "video"]).add_column("row", list(range(len(pool))))
    return gather_summaries(job.run(items))


def _source_row(src: dict[str, Any]) -> dict[str, Any]:
    return {
        **{k: src.get(k) for k in POOL_FEATURES},
        "source_id": src["video_id"],
        "distortion": SOURCE_DISTORTION,
        "level": 0,
        "strength": 0.0,
    }


def variant_pool(pool: Dataset, work_dir: str | os.PathLike) -> tuple[Dataset, dict[str, Any]]:
    """The variant pool (module docstring) of the sources done in ``work_dir``, each source row followed by its
    variants, in pool order; and a summary (``sources``, ``sources_done``, ``unreadable`` with each cause,
    ``not_done``, ``variants``). Raises ``ValueError`` when no source is done or a variant file is missing."""
    table = load_results(work_dir)
    done: dict[int, list[dict[str, Any]]] = {}
    if table is not None:
        done = dict(zip(table.column("_index").to_pylist(), table.column("variants").to_pylist()))
    failures = load_failures(work_dir)
    if not done:
        raise ValueError(f"No source video was degraded in {work_dir} ({len(failures)} unreadable): nothing to save.")
    rows = []
    for i in sorted(done):
        src = pool[i]
        rows.append(_source_row(src))
        for rec in done[i]:
            if not Path(rec["video"]).is_file():
                raise ValueError(
                    f"Variant {rec['distortion']}-{rec['level']} of {src['video_id']!r} (row {i}) is recorded in "
                    f"{work_dir} but its file {rec['video']} is gone; delete {work_dir} to make the variants again."
                )
            rows.append(
                {
                    **_source_row(src),
                    "video_id": f"{src['video_id']}@{rec['distortion']}-{rec['level']}",
                    "video": rec["video"],
                    "mos": None,
                    "mos_std": None,
                    "distortion": rec["distortion"],
                    "level": rec["level"],
                    "strength": rec["strength"],
                }
            )
    ds = Dataset.from_list(rows, features=VARIANT_POOL_FEATURES)
    ids = ds["video_id"]
    if len(set(ids)) != len(ids):
        raise ValueError(
            f"Duplicate video ids in the variant pool of {work_dir}: a pool id already ends in '@<name>'."
        )
    summary = {
        "sources": len(pool),
        "sources_done": len(done),
        "unreadable": len(failures),
        "unreadable_videos": [{"video_id": f["id"], "reason": f["reason"]} for f in failures],
        "not_done": len(pool) - len(done) - len(failures),
        "variants": len(ds) - len(done),
    }
    return ds, summary


def weak_pairs(variants: Dataset, *, seed: int = 0, random_sides: bool = True) -> Dataset:
    """Every pair of levels of one source and one family (module docstring); ``p = 1`` when ``video_a`` is the less
    degraded. ``variants`` is a :func:`variant_pool`. Raises ``ValueError`` when a source has two rows of one level of
    one family (the order would not be known)."""
    rng = np.random.default_rng(seed)
    by_source: dict[str, dict[str, Any]] = {}
    for row in variants:
        entry = by_source.setdefault(row["source_id"], {"source": None, "families": {}})
        if row["level"] == 0:
            entry["source"] = row
            continue
        levels = entry["families"].setdefault(row["distortion"], {})
        if row["level"] in levels:
            raise ValueError(f"Source {row['source_id']!r} has two {row['distortion']} rows of level {row['level']}")
        levels[row["level"]] = row
    out: dict[str, list[Any]] = {k: [] for k in WEAK_PAIR_FEATURES}
    for source_id, entry in by_source.items():
        for family, levels in entry["families"].items():
            chain = ([entry["source"]] if entry["source"] is not None else []) + [levels[k] for k in sorted(levels)]
            for i in range(len(chain)):
                for j in range(i + 1, len(chain)):
                    better, worse = chain[i], chain[j]
                    swap = random_sides and rng.random() < 0.5
                    a, b = (worse, better) if swap else (better, worse)
                    for key, value in (
                        ("video_a", a["video"]),
                        ("video_b", b["video"]),
                        ("id_a", a["video_id"]),
                        ("id_b", b["video_id"]),
                        ("p", 0.0 if swap else 1.0),
                        ("dataset", better["dataset"]),
                        ("source_id", source_id),
                        ("distortion", family),
                        ("level_a", a["level"]),
                        ("level_b", b["level"]),
                        ("split", better["split"]),
                    ):
                        out[key].append(value)
    return Dataset.from_dict(out, features=WEAK_PAIR_FEATURES)
