"""Score every video of a pool Dataset with a Qwen2.5-VL model (f, or f + an adapter such as the failure predictor g).

Usage:
    accelerate launch recipes/score.py --config recipes/configs/demo/score.yaml
    python recipes/score.py --dataset_path pools/sdr --output_dir pools/sdr_g --model_name_or_path hollow404/VQR1-7B-YouTubeUGC \
        --adapter outputs/g --task difficulty --score_column difficulty

Batched, data-parallel under ``accelerate`` (each process scores every n-th video), resumable (results are written in
shards to ``work_dir`` as they come; a re-run after a kill skips what is done), with a progress bar. The settings the
scores depend on (model, adapter, prompt, mode, sampling, the pool) are saved in ``work_dir``: a resume with other
settings is refused instead of mixing two runs. An undecodable video is recorded with its reason and skipped
(``--strict true`` stops instead; so does a run whose first ``--max_initial_failures`` videos all fail). Parse failures
of generated answers are NaN and counted. On CPU, ``ACCELERATE_USE_CPU=1`` runs data-parallel processes with gloo.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from datasets import load_from_disk
from trl import TrlParser

from mds_vqa.hub import HubArguments, HubPushError, publish_dataset, write_provenance
from mds_vqa.log import setup_logging
from mds_vqa.modeling import VideoSamplingConfig, load_model_and_processor
from mds_vqa.pool_scoring import PoolScoringRun, score_pool, scoring_run_config
from mds_vqa.resumable import InitialFailuresError, data_parallel_state
from mds_vqa.scoring import ScoringConfig
from mds_vqa.video import VideoReadError

logger = logging.getLogger("mds_vqa.score")


@dataclass
class ScoreScriptArguments:
    """Inputs, outputs and model of a scoring run."""

    dataset_path: str = field(metadata={"help": "Pool Dataset folder (saved with save_to_disk)."})
    output_dir: str = field(metadata={"help": "Where the scored Dataset is saved."})
    model_name_or_path: str = field(metadata={"help": "Hub id or folder of the Qwen2.5-VL model."})
    adapter: str | None = field(default=None, metadata={"help": "PEFT adapter folder or Hub id (e.g. g)."})
    dtype: str = field(default="auto", metadata={"help": "'auto', 'bfloat16', 'float16' or 'float32'."})
    attn_implementation: str | None = field(default=None, metadata={"help": "e.g. 'flash_attention_2', 'sdpa'."})
    score_column: str = field(default="score", metadata={"help": "Name of the score column written."})
    split: str | None = field(default=None, metadata={"help": "Score only the rows of this split."})
    batch_size: int = field(default=4, metadata={"help": "Videos per forward pass."})
    flush_every: int = field(default=32, metadata={"help": "Results buffered before a shard is written."})
    work_dir: str | None = field(default=None, metadata={"help": "Shard folder (default: <output_dir>.work)."})
    strict: bool = field(default=False, metadata={"help": "Stop at the first unreadable video."})
    retry_failures: bool = field(default=False, metadata={"help": "Retry videos that failed in an earlier run."})
    max_initial_failures: int | None = field(
        default=8,
        metadata={"help": "Stop when this many videos fail to read before one is scored (0 or null: never)."},
    )
    keep_work_dir: bool = field(default=False, metadata={"help": "Keep the shards after the merge."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing output_dir."})


def _check(args: ScoreScriptArguments, hub_args: HubArguments) -> Path:
    """Every argument check, run by every process before the first collective (a bad one stops them all)."""
    hub_args.check("dataset")
    out = Path(args.output_dir)
    if out.resolve() == Path(args.dataset_path).resolve():
        raise ValueError("output_dir must differ from dataset_path (a Dataset cannot be saved over itself).")
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass --overwrite true to replace it.")
    if args.max_initial_failures is not None and args.max_initial_failures < 0:
        raise ValueError(f"max_initial_failures must be >= 0 or null, got {args.max_initial_failures}")
    return Path(args.work_dir or f"{args.output_dir.rstrip('/')}.work")


def _load_pool(args: ScoreScriptArguments):
    pool = load_from_disk(args.dataset_path)
    if args.split is not None:
        pool = pool.filter(lambda s: s == args.split, input_columns="split", desc=f"split={args.split}")
        if len(pool) == 0:
            raise ValueError(f"No row of {args.dataset_path} has split {args.split!r}.")
    return pool


def main(
    script_args: ScoreScriptArguments,
    scoring: ScoringConfig,
    sampling: VideoSamplingConfig,
    hub_args: HubArguments | None = None,
) -> dict:
    """Score the pool; return the run summary (also written to ``<output_dir>/scoring_summary.json``). The scored
    pool is then staged (and pushed) with its dataset card when ``hub_args`` asks for it."""
    hub_args = hub_args or HubArguments()
    work_dir = _check(script_args, hub_args)
    out, col = Path(script_args.output_dir), script_args.score_column
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
        result = {
            "dataset_path": script_args.dataset_path,
            "model": script_args.model_name_or_path,
            "adapter": script_args.adapter,
            **summary,
        }
        if out.exists():
            shutil.rmtree(out)
        scored.save_to_disk(str(out))
        (out / "scoring_summary.json").write_text(json.dumps(result, indent=2))
        write_provenance(
            out,
            recipe="score",
            arguments=[script_args, scoring, sampling, hub_args],
            summary=result,
            inputs=[script_args.dataset_path, script_args.adapter],
        )
        if not script_args.keep_work_dir and result["not_scored"] == 0:
            shutil.rmtree(work_dir)
        print(_message(result, out, scoring.mode))
    state.wait_for_everyone()
    if state.is_main_process:  # after the barrier: a slow or failed upload keeps no other process waiting
        published = publish_dataset(out, hub_args)
        if published is not None:
            print(f"Staged the scored pool with its dataset card -> {published.stage_dir}")
            if published.pushed is not None:
                print(f"Pushed to {published.pushed.repo_url} ({published.pushed.commit_url})")
    return result


def _message(result: dict, out: Path, mode: str) -> str:
    msg = f"Scored {result['scored']}/{result['videos']} videos -> {out} (column {result['score_column']!r})"
    if result["unreadable"]:
        msg += f"; {result['unreadable']} unreadable (see scoring_summary.json)"
    if mode == "generate":
        msg += (
            f"; {result['parse_failures']} of {result['samples']} answers unparseable, "
            f"{result['nan_scores']} videos NaN"
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
        main(script_args, scoring_config, sampling_config, hub_arguments)
    except (FileExistsError, FileNotFoundError, ValueError, VideoReadError, InitialFailuresError, HubPushError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    logger.info("done in %.1f s", time.perf_counter() - start)
