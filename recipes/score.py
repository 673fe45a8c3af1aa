"""Score every video of a pool Dataset with a Qwen2.5-VL model (f, or f + an adapter such as the failure predictor g).

Usage:
    accelerate launch recipes/score.py --config recipes/configs/demo/score_source.yaml
    python recipes/score.py --dataset_path pools/sdr --output_dir pools/sdr_g --model_name_or_path hollow404/VQR1-7B-YouTubeUGC \
        --adapter outputs/g --task difficulty --score_column difficulty
    python recipes/score.py --videos a.mp4 clips/ --model_name_or_path hollow404/VQR1-7B-YouTubeUGC --output_csv s.csv
    python recipes/score.py --dataset_path user/sdr-pool --video_root /data/sfv_sdr/videos --output_dir pools/sdr_f ...

``dataset_path`` is a ``save_to_disk`` folder, a staged (Hub-layout) folder or a Hub id (``--revision``); relative
video paths are joined with ``--video_root``, and a relative path that is not a file stops the run before the model
loads, naming the column and the first missing files (a missing absolute path is recorded as an unreadable video).

Batched, data-parallel under ``accelerate`` (each process scores every n-th video), resumable (results are written in
shards to ``work_dir`` as they come; a re-run after a kill skips what is done), with a progress bar. The settings the
scores depend on (model, adapter, prompt, mode, sampling, the pool) are saved in ``work_dir``: a resume with other
settings is refused instead of mixing two runs. An undecodable video is recorded with its reason and skipped
(``--strict true`` stops instead; so does a run whose first ``--max_initial_failures`` videos all fail). Parse failures
of generated answers are NaN and counted. On CPU, ``ACCELERATE_USE_CPU=1`` runs data-parallel processes with gloo.

``--videos`` scores loose files and folders (scanned for video extensions) without a pool: a table of video, score and
error is printed (and written to ``--output_csv``); the exit code is 0 when some files are unreadable (each is listed
with its cause), 1 when none could be scored, 2 on an error (``--strict true``: the first unreadable file).
``--mode both`` computes the expectation and the generated reading of every video and reports their agreement.

The uncertainty selection baselines (``recipes/select_subset.py``) read two optional columns: ``--mode generate
--num_samples 5`` (sampled) writes ``<score_column>_std``, the spread of each video's sampled answers (``uncertainty``);
``--noise_draws 4`` (mode expectation or both; ``--noise_std``, ``--noise_seed``) writes ``<score_column>_instability``,
the mean change of the expectation under fixed Gaussian weight noise (``noise_stability``).
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from trl import TrlParser

from mds_vqa.file_scoring import (
    files_pool,
    files_work_dir,
    find_videos,
    format_score_table,
    score_rows,
    write_score_csv,
)
from mds_vqa.hub import HubArguments, HubPushError, print_published, publish_dataset, write_provenance
from mds_vqa.loading import load_pool, resolve_videos
from mds_vqa.log import setup_logging
from mds_vqa.modeling import VideoSamplingConfig, load_model_and_processor
from mds_vqa.pool_scoring import PoolScoringRun, score_pool, scoring_run_config
from mds_vqa.reporting import format_number
from mds_vqa.resumable import InitialFailuresError, data_parallel_state
from mds_vqa.scoring import ScoringConfig
from mds_vqa.video import VideoReadError

logger = logging.getLogger("mds_vqa.score")


@dataclass
class ScoreScriptArguments:
    """Inputs, outputs and model of a scoring run."""

    model_name_or_path: str = field(metadata={"help": "Hub id or folder of the Qwen2.5-VL model."})
    dataset_path: str | None = field(
        default=None, metadata={"help": "Pool Dataset: a save_to_disk folder, a staged folder or a Hub id."}
    )
    revision: str | None = field(default=None, metadata={"help": "Hub revision of a Hub id dataset_path."})
    video_root: str | None = field(
        default=None, metadata={"help": "Folder that relative video paths are relative to (absolute paths are kept)."}
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "Where the scored Dataset is saved (required with dataset_path)."}
    )
    videos: list[str] | None = field(
        default=None, metadata={"help": "Video files and folders to score instead of a pool (folders are scanned)."}
    )
    output_csv: str | None = field(default=None, metadata={"help": "--videos: write the score table here too."})
    adapter: str | None = field(default=None, metadata={"help": "PEFT adapter folder or Hub id (e.g. g)."})
    dtype: str = field(default="auto", metadata={"help": "'auto', 'bfloat16', 'float16' or 'float32'."})
    attn_implementation: str | None = field(default=None, metadata={"help": "e.g. 'flash_attention_2', 'sdpa'."})
    score_column: str = field(default="score", metadata={"help": "Name of the score column written."})
    split: str | None = field(default=None, metadata={"help": "Score only the rows of this split."})
    batch_size: int = field(default=4, metadata={"help": "Videos per forward pass."})
    flush_every: int = field(default=32, metadata={"help": "Results buffered before a shard is written."})
    work_dir: str | None = field(
        default=None,
        metadata={"help": "Shard folder (default: <output_dir>.work; --videos: <output_csv>.work or a temp folder)."},
    )
    strict: bool = field(default=False, metadata={"help": "Stop at the first unreadable video."})
    retry_failures: bool = field(default=False, metadata={"help": "Retry videos that failed in an earlier run."})
    max_initial_failures: int | None = field(
        default=8,
        metadata={"help": "Stop when this many videos fail to read before one is scored (0 or null: never)."},
    )
    keep_work_dir: bool = field(default=False, metadata={"help": "Keep the shards after the merge."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing output_dir."})


def _check(args: ScoreScriptArguments, hub_args: HubArguments) -> None:
    """Every argument check, run by every process before the first collective (a bad one stops them all)."""
    if args.videos and args.dataset_path:
        raise ValueError("Pass either --videos (loose files) or --dataset_path (a pool), not both.")
    if not args.videos and not (args.dataset_path and args.output_dir):
        raise ValueError("--dataset_path and --output_dir are required unless --videos names files to score.")
    if args.videos and args.split is not None:
        raise ValueError("--split selects rows of a pool; loose --videos have no split.")
    if args.videos and (args.revision or args.video_root):
        raise ValueError("--revision and --video_root go with --dataset_path; loose --videos are paths already.")
    if args.output_csv and not args.videos:
        raise ValueError("--output_csv goes with --videos; a pool is saved to --output_dir.")
    if args.output_dir is None and hub_args.wants_publishing:
        raise ValueError("Staging or pushing the scored Dataset needs --output_dir.")
    hub_args.check("dataset")
    if args.output_dir is not None:
        out = Path(args.output_dir)
        if args.dataset_path and out.resolve() == Path(args.dataset_path).resolve():
            raise ValueError("output_dir must differ from dataset_path (a Dataset cannot be saved over itself).")
        if out.exists() and any(out.iterdir()) and not args.overwrite:
            raise FileExistsError(f"{out} exists and is not empty; pass --overwrite true to replace it.")
    if args.max_initial_failures is not None and args.max_initial_failures < 0:
        raise ValueError(f"max_initial_failures must be >= 0 or null, got {args.max_initial_failures}")


def _work_dir(args: ScoreScriptArguments, run_config: dict) -> Path:
    if args.work_dir:
        return Path(args.work_dir)
    if args.output_dir:
        return Path(f"{args.output_dir.rstrip('/')}.work")
    return files_work_dir(run_config, args.output_csv)


def _load_pool(args: ScoreScriptArguments):
    """The videos to score: the loose files, or the pool's rows (of ``split``) with their relative paths resolved
    and checked."""
    if args.videos:
        return files_pool(find_videos(args.videos))
    pool = load_pool(args.dataset_path, revision=args.revision)
    if args.split is not None:
        pool = pool.filter(lambda s: s == args.split, input_columns="split", desc=f"split={args.split}")
        if len(pool) == 0:
            raise ValueError(f"No row of {args.dataset_path} has split {args.split!r}.")
    # only the rows to score are checked; a missing absolute path is recorded as an unreadable video
    return resolve_videos(pool, args.video_root, check="relative", source=args.dataset_path)


def main(
    script_args: ScoreScriptArguments,
    scoring: ScoringConfig,
    sampling: VideoSamplingConfig,
    hub_args: HubArguments | None = None,
) -> dict:
    """Score the pool (or the ``videos``); return the run summary (also written to
    ``<output_dir>/scoring_summary.json``; with ``videos`` it holds the score table under ``rows``). The scored pool is
    then staged (and pushed) with its dataset card when ``hub_args`` asks for it."""
    hub_args = hub_args or HubArguments()
    _check(script_args, hub_args)
    col = script_args.score_column
    pool = _load_pool(script_args)
    run_config = scoring_run_config(
        pool,
        model=script_args.model_name_or_path,
        adapter=script_args.adapter,
        dtype=script_args.dtype,
        column=col,
        split=script_args.split,
        scoring=scoring,
        sampling=sampling,
    )
    work_dir = _work_dir(script_args, run_config)
    state = data_parallel_state()
    model, processor = load_model_and_processor(
        script_args.model_name_or_path,
        adapter=script_args.adapter,
        dtype=script_args.dtype,
        attn_implementation=script_args.attn_implementation,
    )
    model.to(state.device)
    run = PoolScoringRun(
        column=col,
        batch_size=script_args.batch_size,
        flush_every=script_args.flush_every,
        strict=script_args.strict,
        retry_failures=script_args.retry_failures,
        max_initial_failures=script_args.max_initial_failures,
    )
    merged = score_pool(pool, work_dir, model, processor, scoring, sampling, state, run, run_config)
    result: dict = {}
    if merged is not None:  # the main process
        scored, summary = merged
        source = {"videos": script_args.videos} if script_args.videos else {"dataset_path": script_args.dataset_path}
        result = {**source, "model": script_args.model_name_or_path, "adapter": script_args.adapter, **summary}
        if script_args.videos:
            result["rows"] = _report_files(scored, script_args, scoring)
        if script_args.output_dir is not None:
            _save(scored, result, script_args, [script_args, scoring, sampling, hub_args])
        if not script_args.keep_work_dir and result["not_scored"] == 0:
            shutil.rmtree(work_dir)
        print(_message(result, script_args.output_dir))
    state.wait_for_everyone()
    if state.is_main_process and script_args.output_dir is not None:  # after the barrier: no process waits on it
        published = publish_dataset(Path(script_args.output_dir), hub_args)
        print_published(published, "the scored pool with its dataset card")
    return result


def _save(scored, result: dict, script_args: ScoreScriptArguments, arguments: list) -> None:
    """Save the scored pool with its summary and provenance to ``output_dir``."""
    out = Path(script_args.output_dir)
    if out.exists():
        shutil.rmtree(out)
    scored.save_to_disk(str(out))
    (out / "scoring_summary.json").write_text(json.dumps(result, indent=2))
    write_provenance(
        out,
        recipe="score",
        arguments=arguments,
        summary=result,
        inputs=[script_args.dataset_path, script_args.adapter],
    )


def _report_files(scored, script_args: ScoreScriptArguments, scoring: ScoringConfig) -> list[dict]:
    """Print the score table of loose videos (and write it as CSV); returns its rows."""
    rows = score_rows(scored, script_args.score_column, scoring.mode)
    print(format_score_table(rows))
    if script_args.output_csv:
        print(f"Wrote {write_score_csv(rows, script_args.output_csv)}")
    return rows


def _message(result: dict, out: str | None) -> str:
    msg = f"Scored {result['scored']}/{result['videos']} videos"
    if out is not None:
        msg += f" -> {out} (column {result['score_column']!r})"
    if result["unreadable"]:
        msg += f"; {result['unreadable']} unreadable"
        msg += " (see scoring_summary.json)" if out is not None else " (listed above with the cause)"
    if "parse_failures" in result:
        msg += (
            f"; {result['parse_failures']} of {result['samples']} answers unparseable, "
            f"{result['nan_scores']} videos NaN"
        )
    if result.get("mean_instability") is not None:
        draws, mean = result["noise_draws"], format_number(result["mean_instability"])
        msg += f"; mean instability over {draws} weight-noise draws {mean}"
    if result.get("no_digit_answers"):
        msg += f"; {result['no_digit_answers']} answers reached no digit (read at the prefix)"
    if "agreement" in result:
        a = result["agreement"]
        msg += (
            f"; expectation vs generate over {a['n']} videos: SRCC {format_number(a['srcc'])}, "
            f"mean |diff| {format_number(a['mean_abs_diff'])}"
        )
    return msg


def make_parser() -> TrlParser:
    """The recipe's parser: YAML via ``--config``, CLI flags override it."""
    return TrlParser((ScoreScriptArguments, ScoringConfig, VideoSamplingConfig, HubArguments))


if __name__ == "__main__":
    setup_logging()
    parser = make_parser()
    script_args, scoring_config, sampling_config, hub_arguments = parser.parse_args_and_config()
    start = time.perf_counter()
    try:
        summary = main(script_args, scoring_config, sampling_config, hub_arguments)
    except (
        FileExistsError,
        FileNotFoundError,
        KeyError,
        ValueError,
        VideoReadError,
        InitialFailuresError,
        HubPushError,
    ) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    logger.info("done in %.1f s", time.perf_counter() - start)
    if script_args.videos and summary and summary["scored"] == 0:
        sys.exit(1)  # not one of the files could be scored
