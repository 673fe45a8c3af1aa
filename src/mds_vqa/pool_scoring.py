"""Scoring a whole pool: batched, data-parallel, resumable, with a run summary (``recipes/score.py`` calls it).

Each process scores every n-th video: ``scoring.num_workers`` ``DataLoader`` workers read, resize and process its
batches ahead of the model (:func:`mds_vqa.scoring_inputs.scoring_batches`, pinned when the model is on CUDA) and
the model reads them (:func:`mds_vqa.scoring.score_inputs`). Results go to ``work_dir`` in shards as they come
(:class:`~mds_vqa.resumable.ResumableRun`), an undecodable video is recorded with its cause and skipped, and the main
process merges every shard into the pool with the score columns, a ``<column>_error`` column and a summary (mode
``both``: also the two readings' agreement). The uncertainty baselines' inputs are among the score columns:
``<column>_std`` (generate, both: the spread of a video's sampled answers, with ``num_samples`` > 1) and
``<column>_instability`` (expectation, both, with ``noise_draws`` > 0: how far weight noise moves the expectation). The settings the scores depend on are saved in ``work_dir``: a resume
with other settings is refused (the loader's settings, which do not change a score, may differ).
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from .modeling import VideoSamplingConfig
from .resumable import (
    ResumableRun,
    check_run_config,
    gather_summaries,
    load_failures,
    load_results,
    merge_results,
)
from .scoring import LOADER_FIELDS, ScoringConfig, score_inputs
from .scoring_inputs import ScoringInputs, scoring_batches
from .video import VideoReadError

__all__ = ["PoolScoringRun", "reading_agreement", "result_column", "scoring_run_config", "score_pool"]


@dataclass
class PoolScoringRun:
    """How a pool is scored: the output column, the batch and shard sizes, and what to do with unreadable videos."""

    column: str = "score"
    batch_size: int = 4
    flush_every: int = 32
    strict: bool = False
    retry_failures: bool = False
    max_initial_failures: int | None = 8


def scoring_run_config(
    pool, *, model: str, adapter: str | None, dtype: str, column: str, split: str | None, scoring, sampling
) -> dict[str, Any]:
    """What the scores of a run depend on, saved in its work dir: a resume with other values is refused. The pool is
    identified by its rows (``video_id`` and ``video`` in order), since shards are merged by row index."""
    digest = hashlib.sha256()
    for video_id, video in zip(pool["video_id"], pool["video"]):
        digest.update(f"{video_id}\0{video}\n".encode())
    return {
        "model_name_or_path": model,
        "adapter": adapter,
        "dtype": dtype,
        "score_column": column,
        "split": split,
        "prompt": scoring.prompt,
        "prompts": {m: scoring.for_mode(m).prompt for m in scoring.reading_modes},
        "answer_reading": scoring.reading,  # resolved (the default depends on the task)
        "answer_decimals": scoring.decimals,
        **{f"scoring.{k}": v for k, v in asdict(scoring).items() if k not in LOADER_FIELDS},
        **{f"sampling.{k}": v for k, v in asdict(sampling).items()},
        "pool_size": len(pool),
        "pool_rows_sha256": digest.hexdigest(),
    }


_EXPECTATION_FIELDS = ("digit_probs", "digit_mass", "answer_offset")
_NOISE_FIELDS = ("instability",)  # expectation with noise_draws > 0
_GENERATE_FIELDS = ("std", "texts", "parse_failures")


def _result_fields(scoring: ScoringConfig) -> tuple[str, ...]:
    """The extra fields of a scoring result that get a ``<column>_<field>`` column, for ``scoring``'s mode."""
    fields: tuple[str, ...] = ("expectation", "generate") if scoring.mode == "both" else ()
    if "expectation" in scoring.reading_modes:
        fields += _EXPECTATION_FIELDS + (_NOISE_FIELDS if scoring.noise_draws > 0 else ())
    if "generate" in scoring.reading_modes:
        fields += _GENERATE_FIELDS
    return fields


def _result_columns(column: str, scoring: ScoringConfig, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The columns a scoring result is stored in: ``<column>`` and ``<column>_<field>`` for each extra field of the
    mode (both: ``<column>_expectation`` and ``<column>_generate`` too)."""
    if scoring.mode == "both":
        results = [{**r, "expectation": r["score_expectation"], "generate": r["score_generate"]} for r in results]
    fields = _result_fields(scoring)
    return [{column: r["score"], **{f"{column}_{f}": r[f] for f in fields}} for r in results]


def _finite(value) -> bool:
    return value is not None and not math.isnan(value)


def _mean_finite(values: list[float | None]) -> float | None:
    """The mean of the finite values (``None`` when there is none)."""
    kept = [v for v in values if _finite(v)]
    return sum(kept) / len(kept) if kept else None


def result_column(scored, name: str) -> list[Any]:
    """Column ``name`` of a scored pool; all ``None`` when no video was scored (the column was never written)."""
    return scored[name] if name in scored.column_names else [None] * len(scored)


def reading_agreement(expectation: list[float | None], generated: list[float | None]) -> dict[str, Any]:
    """How two readings of the same videos agree: SRCC and mean |Δ| over the videos both read to a number (``n``)."""
    from scipy.stats import spearmanr

    pairs = [(e, g) for e, g in zip(expectation, generated) if _finite(e) and _finite(g)]
    out: dict[str, Any] = {"n": len(pairs), "srcc": None, "mean_abs_diff": None}
    if pairs:
        out["mean_abs_diff"] = sum(abs(e - g) for e, g in pairs) / len(pairs)
    if len(pairs) >= 2:
        srcc = spearmanr([e for e, _ in pairs], [g for _, g in pairs]).statistic
        out["srcc"] = None if math.isnan(srcc) else float(srcc)
    return out


def _mode_summary(scored, column: str, scoring: ScoringConfig, scored_count: int) -> dict[str, Any]:
    """The reading-specific counts of a run (answers without a digit, the mean weight-noise instability, parse
    failures, the readings' agreement)."""
    summary: dict[str, Any] = {"primary_reading": scoring.primary_mode}
    if "expectation" in scoring.reading_modes:
        summary["answer_reading"] = scoring.reading
        summary["answer_decimals"] = scoring.decimals
        if scoring.reading == "first_digit":  # read at the prefix: no digit within max_skip_tokens
            offsets, scores = result_column(scored, f"{column}_answer_offset"), scored[column]
            summary["no_digit_answers"] = sum(1 for o, s in zip(offsets, scores) if o is None and s is not None)
        if scoring.noise_draws > 0:
            summary["noise_draws"] = scoring.noise_draws
            summary["mean_instability"] = _mean_finite(result_column(scored, f"{column}_instability"))
    if "generate" in scoring.reading_modes:
        summary["parse_failures"] = int(sum(n or 0 for n in result_column(scored, f"{column}_parse_failures")))
        summary["samples"] = scoring.num_samples * scored_count
    if scoring.mode == "both":
        summary["agreement"] = reading_agreement(
            result_column(scored, f"{column}_expectation"), result_column(scored, f"{column}_generate")
        )
    return summary


def score_pool(
    pool,
    work_dir: str | os.PathLike,
    model,
    processor,
    scoring: ScoringConfig,
    sampling: VideoSamplingConfig,
    state,
    run: PoolScoringRun,
    run_config: dict[str, Any],
) -> tuple[Any, dict[str, Any]] | None:
    """Score this process's share of ``pool`` (a Dataset with ``video_id`` and ``video``) into ``work_dir``.

    A collective: every process of ``state`` (an ``accelerate.PartialState``) must call it. ``run_config`` (see
    :func:`scoring_run_config`) is checked by every process before any work and written by the main process.

    Returns:
        On the main process, ``(scored pool, summary)``: the pool with ``<column>`` (None where a video was not
        scored), the mode's extra columns (``<column>_digit_probs``, ``_digit_mass``, ``_answer_offset`` and, with
        ``noise_draws`` > 0, ``_instability`` for the expectation; ``_std``, ``_texts``, ``_parse_failures`` for
        generation; ``_expectation`` and ``_generate`` in mode both) and ``<column>_error`` (why a video could not be read), and the counts of
        this run summed over every process. ``None`` on the other processes.
    """
    work_dir = Path(work_dir)
    check_run_config(work_dir, run_config, write=False, what="scores")
    if state.is_main_process:  # what it writes equals what every other process checks against
        check_run_config(work_dir, run_config, write=True, what="scores")
    column = run.column
    torch.manual_seed(scoring.seed + state.process_index)  # sampled answers: reproducible per process

    def fn(prepared: ScoringInputs) -> list[dict[str, Any]]:
        return _result_columns(column, scoring, score_inputs(model, processor, prepared, scoring))

    videos, ids = pool["video"], pool["video_id"]

    def batches(todo: list[int]):
        return scoring_batches(
            [{"index": i, "video_id": ids[i], "video": videos[i]} for i in todo],
            processor,
            scoring,
            sampling,
            batch_size=run.batch_size,
            num_workers=scoring.num_workers,
            prefetch_factor=scoring.prefetch_factor,
            pin_memory=model.device.type == "cuda",
        )

    job = ResumableRun(
        work_dir,
        fn,
        batch_size=run.batch_size,
        flush_every=run.flush_every,
        process_index=state.process_index,
        num_processes=state.num_processes,
        strict=run.strict,
        skip_exceptions=(VideoReadError,),
        retry_failures=run.retry_failures,
        max_initial_failures=run.max_initial_failures,
        desc=f"scoring ({scoring.mode}, {scoring.task})",
    )
    totals = gather_summaries(job.run_batches(len(pool), batches))  # a collective
    if not state.is_main_process:
        return None
    if load_results(work_dir) is None:  # not one video could be read: no shard to merge
        scored, missing = pool.add_column(column, [None] * len(pool)), list(range(len(pool)))
    else:
        scored, missing = merge_results(pool, work_dir)
    failures = {f["_index"]: f["reason"] for f in load_failures(work_dir)}
    scored = scored.add_column(f"{column}_error", [failures.get(i) for i in range(len(scored))])
    summary = {
        "score_column": column,
        "videos": len(scored),
        "scored": len(scored) - len(missing),
        "unreadable": len(failures),
        "unreadable_videos": [{"video_id": scored[i]["video_id"], "reason": r} for i, r in sorted(failures.items())],
        "not_scored": len(missing) - len(failures),
        "nan_scores": sum(1 for s in scored[column] if s is not None and math.isnan(s)),
        "computed_this_run": totals["computed"],
        "skipped_already_done": totals["skipped_done"],
        "unreadable_this_run": totals["failed"],
        "seconds": totals["seconds"],
        "processes": totals["processes"],
        "scoring": asdict(scoring),
        "sampling": asdict(sampling),
    }
    summary.update(_mode_summary(scored, column, scoring, summary["scored"]))
    return scored, summary
