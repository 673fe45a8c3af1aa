"""Resumable, data-parallel batch processing of a pool (scoring, feature extraction).

Results are written to ``work_dir`` in small Parquet shards as they are produced (atomically: write then rename),
so a run killed by Ctrl-C, an OOM or a lost node restarts where it stopped: items found in existing shards are not
recomputed. Under ``accelerate`` each process takes every ``num_processes``-th item and writes its own shards; the
main process merges them into the pool once every process is done.

Batches come one of two ways, with the same bookkeeping: :meth:`ResumableRun.run` cuts the to-do items into batches
of ``batch_size`` rows for ``fn(rows)``; :meth:`ResumableRun.run_batches` takes them from a producer (a ``DataLoader``
preparing model inputs in workers, see :mod:`mds_vqa.scoring_inputs`) as :class:`Batch` objects whose ``payload``
``fn`` computes and whose ``failures`` are the items the producer could not prepare.

A batch of rows that raises one of ``skip_exceptions`` (by default :class:`~mds_vqa.video.VideoReadError`) is retried
item by item; an item that still fails (or that a producer reports as failed) is recorded (index, id, reason) in
``failures-<rank>.jsonl`` and skipped, or re-raised when ``strict``. When the first ``max_initial_failures`` items of a
run all fail, the run stops with :class:`InitialFailuresError` (a wrong mount or a missing decoder, not a few corrupt
files).

Shards are merged by row index, so a work dir must only ever hold results of one configuration:
:func:`check_run_config` saves the settings a run's results depend on in the work dir and refuses to resume with
different ones.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from .reporting import MAX_LISTED
from .video import VideoReadError

logger = logging.getLogger(__name__)

__all__ = [
    "data_parallel_state",
    "Batch",
    "ResumableRun",
    "RunSummary",
    "InitialFailuresError",
    "RunConfigError",
    "check_run_config",
    "gather_summaries",
    "load_results",
    "load_failures",
    "merge_results",
    "INDEX_COLUMN",
    "RUN_CONFIG_FILE",
]

INDEX_COLUMN = "_index"
RUN_CONFIG_FILE = "run_config.json"


class InitialFailuresError(RuntimeError):
    """The first items of a run all failed and none succeeded: the cause is likely shared (a wrong path, a missing
    decoder), so the run stops instead of recording every item as failed. ``failures`` holds the records."""

    def __init__(self, failures: list[dict[str, Any]], work_dir: Path, process_index: int):
        self.failures = failures
        reasons = "\n  ".join(f"{f['id']} (row {f[INDEX_COLUMN]}): {f['reason']}" for f in failures[:MAX_LISTED])
        super().__init__(
            f"The first {len(failures)} items of this run (process {process_index}) all failed and none succeeded; "
            f"stopping. Their failures are recorded in {work_dir}/failures-{process_index:05d}.jsonl and are skipped "
            "by a plain re-run: fix the cause, then re-run with retry_failures=True (or raise or disable "
            f"max_initial_failures to go on anyway). Reasons:\n  {reasons}"
        )


class RunConfigError(ValueError):
    """A work dir holds results computed with another configuration than the one of this run."""


@dataclass
class RunSummary:
    """What one process did: items computed now, found done from an earlier run, failed, and the seconds spent."""

    computed: int = 0
    skipped_done: int = 0
    failed: int = 0
    seconds: float = 0.0
    failures: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Batch:
    """One step of a run: the items ``fn`` computes (``indices`` into the pool and their ``rows``) from ``payload``
    (``None``: from the rows), and the items of the step that failed before ``fn`` (``(index, row, error)``, e.g. a
    video a loader could not read), recorded as failures in index order with the computed ones."""

    indices: list[int]
    rows: list[dict[str, Any]]
    payload: Any = None
    failures: list[tuple[int, dict[str, Any], BaseException]] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Items in the step, computed or failed."""
        return len(self.indices) + len(self.failures)


def _normalized(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` as it reads back from JSON (tuples become lists, unknown objects their ``str``)."""
    return json.loads(json.dumps(config, sort_keys=True, default=str))


def check_run_config(
    work_dir: str | os.PathLike,
    config: dict[str, Any],
    *,
    write: bool,
    filename: str = RUN_CONFIG_FILE,
    what: str = "results",
) -> None:
    """Refuse to resume ``work_dir`` with another configuration than the one its results were computed with.

    ``config`` holds everything the results depend on (model, prompt, sampling, the pool's identity, ...). When
    ``work_dir/filename`` exists it must equal ``config``, else :class:`RunConfigError` names each differing field
    (saved → now) and how to proceed. When it does not exist and ``write`` is true (the main process), ``config`` is
    saved there (atomically). Call it on every process before any collective, so that all of them stop together.
    """
    work_dir = Path(work_dir)
    path = work_dir / filename
    config = _normalized(config)
    if path.exists():
        try:
            found = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise RunConfigError(
                f"{path} is not valid JSON ({err}); delete {work_dir} to start over, or pass another work_dir."
            ) from err
        if found != config:
            changed = "; ".join(
                f"{k}: {found.get(k)!r} -> {config.get(k)!r}"
                for k in sorted(set(found) | set(config))
                if found.get(k) != config.get(k)
            )
            raise RunConfigError(
                f"{work_dir} holds {what} computed with another configuration, which a resume would mix with this "
                f"run's (saved -> now): {changed}. Delete {work_dir} to start over, or pass another work_dir."
            )
    elif write:
        if _shard_files(work_dir):
            logger.warning(
                "%s has results but no %s (an older run?): their configuration cannot be checked.", work_dir, filename
            )
        work_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(config, indent=2, sort_keys=True))
        os.replace(tmp, path)


def data_parallel_state():
    """The ``accelerate.PartialState`` of a data-parallel recipe run. It runs on CPU (gloo) when
    ``ACCELERATE_USE_CPU`` is set or when the machine has no accelerator: a bare ``PartialState()`` there would make
    every launched process believe it is the only one (rank 0 of 1), and each would process the whole pool."""
    import torch
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.accelerator.is_available())


def gather_summaries(summary: RunSummary) -> dict[str, Any]:
    """Totals over every process of an ``accelerate`` run (``computed``, ``skipped_done``, ``failed``; ``seconds``
    of the slowest) and the per-process detail under ``processes``. A collective: every process must call it."""
    from accelerate import PartialState
    from accelerate.utils import gather_object

    mine = {
        "process_index": PartialState().process_index,
        "computed": summary.computed,
        "skipped_done": summary.skipped_done,
        "failed": summary.failed,
        "seconds": round(summary.seconds, 3),
    }
    per_process = sorted(gather_object([mine]), key=lambda d: d["process_index"])
    totals = {k: sum(p[k] for p in per_process) for k in ("computed", "skipped_done", "failed")}
    return {**totals, "seconds": max(p["seconds"] for p in per_process), "processes": per_process}


def _shard_files(work_dir: Path) -> list[Path]:
    return sorted(work_dir.glob("shard-*.parquet"))


def load_results(work_dir: str | os.PathLike) -> pa.Table | None:
    """Every shard of ``work_dir`` concatenated (column ``_index`` + result columns), or ``None`` when there is none."""
    files = _shard_files(Path(work_dir))
    if not files:
        return None
    return pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")


def load_failures(work_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every recorded failure (``_index``, ``id``, ``reason``) of ``work_dir``, in index order."""
    out = []
    for f in sorted(Path(work_dir).glob("failures-*.jsonl")):
        for line in f.read_text().splitlines():
            if line.strip():
                out.append(json.loads(line))
    return sorted(out, key=lambda r: r[INDEX_COLUMN])


class ResumableRun:
    """Process ``items`` in batches with ``fn``, saving results to ``work_dir`` as they come.

    Args:
        work_dir: folder of shards and failure logs (created).
        fn: ``fn(rows: list[dict]) -> list[dict]``, one result dict per row, same keys for every row; with
            :meth:`run_batches`, ``fn(batch.payload)`` for a batch that carries a payload.
        batch_size: rows per call of ``fn`` (:meth:`run`).
        flush_every: rows buffered before a shard is written (a hard kill loses at most this many).
        process_index / num_processes: this process's share (``accelerator.process_index`` / ``num_processes``).
        id_column: the column naming an item in failure records.
        strict: re-raise the first item failure instead of recording it.
        skip_exceptions: exception types that mark a single item as failed.
        retry_failures: recompute items recorded as failed by an earlier run.
        max_initial_failures: stop with :class:`InitialFailuresError` when this many items fail before any succeeds
            in this run (``None`` or 0: never). Failures are recorded as they happen, so they are kept.
        desc: progress-bar label.
    """

    def __init__(
        self,
        work_dir: str | os.PathLike,
        fn: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
        *,
        batch_size: int = 8,
        flush_every: int = 64,
        process_index: int = 0,
        num_processes: int = 1,
        id_column: str = "video_id",
        strict: bool = False,
        skip_exceptions: tuple[type[BaseException], ...] = (VideoReadError,),
        retry_failures: bool = False,
        max_initial_failures: int | None = 8,
        desc: str = "processing",
        disable_progress: bool | None = None,
    ):
        if batch_size <= 0 or flush_every <= 0:
            raise ValueError(f"batch_size and flush_every must be positive, got {batch_size}, {flush_every}")
        if max_initial_failures is not None and max_initial_failures < 0:
            raise ValueError(f"max_initial_failures must be >= 0 or None, got {max_initial_failures}")
        self.work_dir = Path(work_dir)
        self.fn = fn
        self.batch_size = batch_size
        self.flush_every = max(flush_every, batch_size)
        self.rank = process_index
        self.world = num_processes
        self.id_column = id_column
        self.strict = strict
        self.skip_exceptions = skip_exceptions
        self.retry_failures = retry_failures
        self.max_initial_failures = max_initial_failures or None
        self.desc = desc
        self.disable_progress = disable_progress
        self._buffer: list[dict[str, Any]] = []
        self._shard_counter = 0

    # -- bookkeeping ---------------------------------------------------------------------------------------------
    def done_indices(self) -> set[int]:
        """Indices already computed (any process, any earlier run) plus recorded failures unless retried."""
        done: set[int] = set()
        for f in _shard_files(self.work_dir):
            done.update(pq.read_table(f, columns=[INDEX_COLUMN]).column(INDEX_COLUMN).to_pylist())
        if not self.retry_failures:
            done.update(r[INDEX_COLUMN] for r in load_failures(self.work_dir))
        return done

    def _next_shard_path(self) -> Path:
        while True:
            path = (
                self.work_dir
                / f"shard-{self.rank:05d}-{int(time.time() * 1e3):015d}-{self._shard_counter:06d}.parquet"
            )
            self._shard_counter += 1
            if not path.exists():
                return path

    def flush(self) -> None:
        """Write the buffered results as one shard (atomic rename)."""
        if not self._buffer:
            return
        table = pa.Table.from_pylist(self._buffer)
        path = self._next_shard_path()
        tmp = path.with_suffix(".parquet.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, path)
        self._buffer = []

    def _record_failure(self, index: int, row: dict[str, Any], err: BaseException, summary: RunSummary) -> None:
        rec = {
            INDEX_COLUMN: index,
            "id": str(row.get(self.id_column, index)),
            "reason": f"{type(err).__name__}: {err}",
        }
        with open(self.work_dir / f"failures-{self.rank:05d}.jsonl", "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        summary.failed += 1
        summary.failures.append(rec)
        logger.warning("Skipping item %s (%s): %s", rec["id"], index, rec["reason"])
        if self.max_initial_failures and summary.computed == 0 and summary.failed >= self.max_initial_failures:
            raise InitialFailuresError(summary.failures, self.work_dir, self.rank) from err

    def _fail(self, index: int, row: dict[str, Any], err: BaseException, summary: RunSummary) -> None:
        if self.strict:
            raise err
        self._record_failure(index, row, err, summary)

    def _compute(self, indices: list[int], rows: list[dict[str, Any]], payload: Any, summary: RunSummary) -> None:
        """``fn`` on one batch. A batch of rows (no payload) that raises one of ``skip_exceptions`` is retried item by
        item; a prepared payload cannot be split, so the error propagates (its producer reports item failures)."""
        try:
            results = self.fn(rows if payload is None else payload)
        except self.skip_exceptions as err:
            if self.strict or payload is not None:
                raise
            if len(rows) == 1:
                self._record_failure(indices[0], rows[0], err, summary)
            else:  # isolate the bad item(s): retry one by one
                for i, r in zip(indices, rows):
                    self._compute([i], [r], None, summary)
            return
        if len(results) != len(rows):
            raise RuntimeError(f"{self.desc}: the batch function returned {len(results)} results for {len(rows)} rows")
        for i, res in zip(indices, results):
            self._buffer.append({INDEX_COLUMN: i, **res})
            summary.computed += 1
        if len(self._buffer) >= self.flush_every:
            self.flush()

    def _run_batch(self, batch: Batch, summary: RunSummary) -> None:
        """Record the batch's failures and compute the rest, in index order (as one-by-one retries would), so
        ``max_initial_failures`` counts the same; ``strict`` stops at the first failure before computing any item."""
        failures = sorted(batch.failures, key=lambda f: f[0])
        if failures and self.strict:
            raise failures[0][2]
        first = min(batch.indices, default=None)
        for index, row, err in failures:
            if first is None or index < first:
                self._fail(index, row, err, summary)
        if batch.indices:
            self._compute(batch.indices, batch.rows, batch.payload, summary)
        for index, row, err in failures:
            if first is not None and index > first:
                self._fail(index, row, err, summary)

    # -- main loop -----------------------------------------------------------------------------------------------
    def run(self, items: Sequence[dict[str, Any]]) -> RunSummary:
        """Process this process's share of ``items`` (rows of a Dataset or dicts), skipping what is done: batches of
        ``batch_size`` rows, read from ``items`` as they are reached (in increasing index order)."""

        def batches(todo: list[int]):
            for pos in range(0, len(todo), self.batch_size):
                indices = todo[pos : pos + self.batch_size]
                yield Batch(indices, [items[i] for i in indices])

        return self.run_batches(len(items), batches)

    def run_batches(self, num_items: int, make_batches: Callable[[list[int]], Iterable[Batch]]) -> RunSummary:
        """Process this process's share of ``num_items`` items, skipping what is done. ``make_batches(todo)`` gets
        the indices still to do (increasing) and yields :class:`Batch` objects that cover each of them once."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        summary = RunSummary()
        done = self.done_indices()
        mine = list(range(self.rank, num_items, self.world))
        todo = [i for i in mine if i not in done]
        summary.skipped_done = len(mine) - len(todo)
        if summary.skipped_done:
            logger.info(
                "%s: %d of %d items already done in %s, resuming.",
                self.desc,
                summary.skipped_done,
                len(mine),
                self.work_dir,
            )
        disable = self.disable_progress if self.disable_progress is not None else self.rank != 0
        bar = tqdm(total=len(mine), initial=summary.skipped_done, desc=self.desc, unit="video", disable=disable)
        covered = 0
        try:
            for batch in make_batches(todo):
                self._run_batch(batch, summary)
                covered += batch.size
                bar.update(batch.size)
        finally:
            self.flush()  # Ctrl-C or an exception: keep everything computed so far
            bar.close()
            summary.seconds = time.perf_counter() - start
        if covered != len(todo):
            raise RuntimeError(f"{self.desc}: the batches covered {covered} of the {len(todo)} items to do")
        return summary


def merge_results(ds, work_dir: str | os.PathLike, columns: Sequence[str] | None = None):
    """Add the result columns found in ``work_dir`` to the Dataset ``ds`` (row ``i`` gets the result of index ``i``;
    ``None`` where an item failed or was not computed). Returns ``(new_ds, missing_indices)``."""
    table = load_results(work_dir)
    if table is None:
        raise FileNotFoundError(f"No result shards in {work_dir}")
    index = table.column(INDEX_COLUMN).to_pylist()
    if len(set(index)) != len(index):
        raise RuntimeError(f"Duplicate results in {work_dir}: the shards overlap (was the pool changed between runs?)")
    if index and max(index) >= len(ds):
        raise RuntimeError(f"{work_dir} holds results for index {max(index)} but the pool has {len(ds)} rows")
    position = {i: k for k, i in enumerate(index)}
    names = [c for c in table.column_names if c != INDEX_COLUMN] if columns is None else list(columns)
    missing = [i for i in range(len(ds)) if i not in position]
    out = ds
    for name in names:
        values = table.column(name).to_pylist()
        full = [values[position[i]] if i in position else None for i in range(len(ds))]
        if name in out.column_names:
            out = out.remove_columns(name)
        out = out.add_column(name, full)
    return out, missing
