"""Evaluate scored pools: the per-domain × per-model correlation table and the failure-identification table.

Usage:
    python recipes/evaluate_models.py --config recipes/configs/demo/evaluate.yaml
    python recipes/evaluate_models.py --config recipes/configs/youtube_sfv_sdr/evaluate.yaml --n_bootstrap 1000

Models are scored first with ``recipes/score.py`` (base model, base + adapter, …), which writes a score column
(NaN for unparseable answers) into each pool Dataset. This recipe reads those columns:

- ``models``: ``{name, dataset_path, column}`` entries; several entries with the same name are concatenated (one
  Dataset per domain is fine). Rows are restricted to ``split``. Output: ``correlation_table.{md,csv,json,png}``,
  one row per domain (+ the average), SRCC/PLCC per model (the paper's Table 2).
- ``failure_scores`` + ``failure_subsets``: the labelled pool(s) the selection strategies picked from, scored by the
  base model, and each strategy's selected subset (``{name, dataset_path}``). Output:
  ``failure_identification.{md,csv,json,png}``: the base model's SRCC/PLCC on each subset per domain; lower means
  the strategy found more of the model's failures (the paper's Table 1).

Every ``dataset_path`` is a ``save_to_disk`` folder, a staged (Hub-layout) folder or a Hub id; an entry's optional
``revision`` picks the Hub revision (``{name, dataset_path, column, revision: v1}``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import TrlParser

from mds_vqa.cli import run_recipe
from mds_vqa.evaluation import write_tables
from mds_vqa.evaluation_runs import correlation_rows, failure_rows, fit_notes
from mds_vqa.hub import write_provenance

logger = logging.getLogger("mds_vqa.evaluate")


@dataclass
class EvaluateArguments:
    """Arguments of ``recipes/evaluate_models.py``."""

    output_dir: str = field(metadata={"help": "Folder for the tables (Markdown, CSV, JSON) and bar charts."})
    models: list[dict[str, Any]] | None = field(
        default=None,
        metadata={"help": "Scored test Datasets: a list of {name, dataset_path, column[, revision]} (in the YAML)."},
    )
    split: str | None = field(
        default="test", metadata={"help": "Keep only rows of this split for the correlation table (null: all rows)."}
    )
    domains: list[str] | None = field(
        default=None, metadata={"help": "Domains (values of group_column) to report, in order (null: all found)."}
    )
    metrics: list[str] = field(
        default_factory=lambda: ["srcc", "plcc"], metadata={"help": "Columns of the tables: srcc, plcc, krcc, rmse."}
    )
    mos_column: str = field(default="mos", metadata={"help": "MOS column of the Datasets."})
    group_column: str = field(default="dataset", metadata={"help": "Domain column of the Datasets."})
    id_column: str = field(default="video_id", metadata={"help": "Video id column (to match subsets to scores)."})
    n_bootstrap: int = field(default=0, metadata={"help": "Bootstrap resamples for 95%% intervals (0: none)."})
    confidence: float = field(default=0.95, metadata={"help": "Confidence level of the bootstrap intervals."})
    seed: int = field(default=0, metadata={"help": "Seed of the bootstrap."})
    failure_model_name: str = field(default="base", metadata={"help": "Name of the model in the failure table."})
    failure_scores: list[dict[str, Any]] | None = field(
        default=None,
        metadata={"help": "Pools the strategies selected from, scored by the base model: [{dataset_path, column}]."},
    )
    failure_subsets: list[dict[str, Any]] | None = field(
        default=None, metadata={"help": "Selected subsets: [{name, dataset_path}] (Datasets with the id column)."}
    )
    include_full_pool: bool = field(
        default=True, metadata={"help": "Add the whole pool as a reference column 'all' to the failure table."}
    )
    digits: int = field(default=4, metadata={"help": "Decimals in the Markdown tables."})


def _correlation_kwargs(args: EvaluateArguments) -> dict[str, Any]:
    return {
        "domains": args.domains,
        "id_column": args.id_column,
        "group_column": args.group_column,
        "mos_column": args.mos_column,
        "n_bootstrap": args.n_bootstrap,
        "confidence": args.confidence,
        "seed": args.seed,
        "progress": args.n_bootstrap > 0,
    }


def main(args: EvaluateArguments) -> dict[str, dict[str, Path]]:
    """Compute and write the tables; return their paths by table name and format."""
    if not args.models and not args.failure_scores:
        raise ValueError("Nothing to evaluate: set `models` and/or `failure_scores` in the config.")
    written = {}
    if args.models:
        rows = correlation_rows(args.models, split=args.split, **_correlation_kwargs(args))
        written["correlation_table"] = write_tables(
            rows,
            args.output_dir,
            "correlation_table",
            column_key="model",
            metrics=args.metrics,
            best="max",
            title="Correlation with MOS per domain",
            digits=args.digits,
        )
        print(written["correlation_table"]["md"].read_text())
        for note in fit_notes(rows, "model"):
            print(note)
    if args.failure_scores:
        rows = failure_rows(
            args.failure_scores,
            args.failure_subsets,
            model=args.failure_model_name,
            include_full=args.include_full_pool,
            **_correlation_kwargs(args),
        )
        written["failure_identification"] = write_tables(
            rows,
            args.output_dir,
            "failure_identification",
            column_key="strategy",
            metrics=args.metrics,
            best="min",
            exclude_from_best=("all",) if args.include_full_pool else (),
            title=f"Failure identification: {args.failure_model_name} on each strategy's subset (lower = more failures)",
            digits=args.digits,
        )
        print(written["failure_identification"]["md"].read_text())
        for note in fit_notes(rows, "strategy"):
            print(note)
    for name, paths in written.items():
        print(f"{name}: " + ", ".join(str(p) for p in paths.values()))
    entries = [*(args.models or []), *(args.failure_scores or []), *(args.failure_subsets or [])]
    write_provenance(
        args.output_dir,
        recipe="evaluate_models",
        arguments=[args],
        summary={"tables": {name: sorted(p.name for p in paths.values()) for name, paths in written.items()}},
        inputs=list(dict.fromkeys(e.get("dataset_path") for e in entries)),
    )
    return written


def make_parser() -> TrlParser:
    """The recipe's parser: YAML via ``--config``, CLI flags override it."""
    parser = TrlParser(EvaluateArguments)
    return parser


if __name__ == "__main__":
    run_recipe(main, make_parser)
