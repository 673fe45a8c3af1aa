"""Run the whole MDS-VQA loop from one config; every stage is the recipe a user can also run alone.

Usage:
    python recipes/pipeline.py --config recipes/configs/youtube_sfv_sdr/pipeline.yaml
    python recipes/pipeline.py --config outputs/demo/pipeline.yaml --rounds 2     # CLI overrides

With ``annotator: human`` it stops after each round's selection, prints how to rate it (``recipes/rate.py``), and on
the next run imports the ratings (``recipes/import_ratings.py``) and goes on. Re-running resumes: a stage is skipped while its arguments and inputs are unchanged, and re-runs (with everything
downstream) when they change. Per-stage fields a recipe does not know are refused before anything runs. The report
(tables, pictures, stage timings) is written to ``<output_dir>/report``.
"""

from __future__ import annotations

import sys

from trl import TrlParser

from mds_vqa.log import setup_logging
from mds_vqa.pipeline import AwaitingRatings, Pipeline, PipelineConfig, StageError


def main(config: PipelineConfig) -> dict:
    """Run the pipeline; print the stage timings and the correlation table; return the summary."""
    summary = Pipeline(config).run()
    print(f"\n{'stage':<32}{'seconds':>10}")
    for t in summary["stages"]:
        print(f"{t['stage']:<32}{t['seconds']:>10.1f}{'  (done before)' if t['skipped'] else ''}")
    print(f"{'total':<32}{summary['total_seconds']:>10.1f}")
    table = f"{summary['report_dir']}/correlation_table.md"
    try:
        print("\n" + open(table).read())
    except FileNotFoundError:
        print(f"(no correlation table at {table})")
    print(f"Report: {summary['report_dir']}")
    return summary


def make_parser() -> TrlParser:
    """The recipe's parser: YAML via ``--config``, CLI flags override it."""
    return TrlParser(PipelineConfig)


if __name__ == "__main__":
    setup_logging()
    (config,) = make_parser().parse_args_and_config()
    try:
        main(config)
    except AwaitingRatings as paused:  # not an error: people have work to do first
        print(f"Paused: {paused}")
    except (StageError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
