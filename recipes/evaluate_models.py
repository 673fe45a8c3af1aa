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
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, Features, Value, concatenate_datasets, load_from_disk
from trl import TrlParser

from mds_vqa.evaluation import CorrelationInputError, evaluate_scored, failure_identification, write_tables
from mds_vqa.log import setup_logging

logger = logging.getLogger("mds_vqa.evaluate")


@dataclass
class EvaluateArguments:
    """Arguments of ``recipes/evaluate_models.py``."""

    output_dir: str = field(metadata={"help": "Folder for the tables (Markdown, CSV, JSON) and bar charts."})
    models: list[dict[str, Any]] | None = field(
        default=None,
        metadata={"help": "Scored test Datasets: a list of {name, dataset_path, column} (set in the YAML)."},
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
    n_bootstrap: int = field(default=0, metadata={"help": "Bootstrap resamples for 95% intervals (0: none)."})
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


def _load(path: str, split: str | None = None) -> Dataset:
    """A Dataset saved with ``save_to_disk`` (a DatasetDict gives its ``split``)."""
    if not Path(path).exists():
        raise FileNotFoundError(f"Dataset not found: {path} (score the pool with recipes/score.py first)")
    ds = load_from_disk(path)
    if isinstance(ds, DatasetDict):
        if split is None or split not in ds:
            raise ValueError(f"{path} is a DatasetDict with splits {list(ds)}; set `split` to one of them")
        ds = ds[split]
    return ds


def _entry(entry: dict[str, Any], keys: tuple[str, ...], what: str, i: int) -> dict[str, Any]:
    missing = [k for k in keys if not entry.get(k)]
    if missing:
        raise ValueError(f"{what} entry {i} ({entry}) lacks {missing}; each entry needs {list(keys)}")
    return entry


def _scored(entries: list[dict[str, Any]], args: EvaluateArguments, split: str | None, what: str) -> Dataset:
    """Concatenate the scored Datasets of ``entries`` into columns (id, domain, mos, score), filtered to ``split``."""
    parts = []
    for e in entries:
        ds = _load(e["dataset_path"], split)
        for col in (e["column"], args.mos_column, args.group_column, args.id_column):
            if col not in ds.column_names:
                raise KeyError(f"{what}: column {col!r} not in {e['dataset_path']} (columns: {ds.column_names})")
        if split is not None and "split" in ds.column_names:
            ds = ds.filter(lambda s: s == split, input_columns="split")
        elif split is not None:
            raise KeyError(f"{e['dataset_path']} has no 'split' column; set split: null to use every row")
        ds = ds.select_columns([args.id_column, args.group_column, args.mos_column, e["column"]])
        ds = ds.rename_column(e["column"], "score") if e["column"] != "score" else ds
        features = Features(
            {
                args.id_column: Value("string"),
                args.group_column: Value("string"),
                args.mos_column: Value("float64"),
                "score": Value("float64"),
            }
        )
        parts.append(ds.cast(features))
    ds = concatenate_datasets(parts)
    keys = list(zip(ds[args.group_column], ds[args.id_column]))
    if len(set(keys)) != len(keys):
        seen, dups = set(), []
        for k in keys:
            if k in seen:
                dups.append(k)
            seen.add(k)
        raise ValueError(f"{what}: the same video appears twice, e.g. {dups[:5]} (two entries list the same pool?)")
    if len(ds) == 0:
        raise ValueError(f"{what}: no rows left (split={split!r})")
    return ds


def correlation_table(args: EvaluateArguments) -> list[dict[str, Any]]:
    """Rows of the per-domain × per-model table."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for i, e in enumerate(args.models or []):
        e = _entry(e, ("name", "dataset_path", "column"), "models", i)
        grouped.setdefault(str(e["name"]), []).append(e)
    rows = []
    for name, entries in grouped.items():
        ds = _scored(entries, args, args.split, f"model {name!r}")
        rows += evaluate_scored(
            ds,
            "score",
            model=name,
            mos_column=args.mos_column,
            group_column=args.group_column,
            domains=args.domains,
            n_bootstrap=args.n_bootstrap,
            confidence=args.confidence,
            seed=args.seed,
            progress=args.n_bootstrap > 0,
        )
    return rows


def failure_table(args: EvaluateArguments) -> list[dict[str, Any]]:
    """Rows of the failure-identification table."""
    entries = [_entry(e, ("dataset_path", "column"), "failure_scores", i) for i, e in enumerate(args.failure_scores)]
    scored = _scored(entries, args, None, "failure_scores")
    subsets = {}
    for i, e in enumerate(args.failure_subsets or []):
        e = _entry(e, ("name", "dataset_path"), "failure_subsets", i)
        if e["name"] in subsets:
            raise ValueError(f"failure_subsets: the name {e['name']!r} is used twice")
        subsets[str(e["name"])] = _load(e["dataset_path"])
    if not subsets:
        raise ValueError("failure_scores is set but failure_subsets is empty: list the strategies' selected subsets")
    return failure_identification(
        scored,
        subsets,
        "score",
        model=args.failure_model_name,
        id_column=args.id_column,
        mos_column=args.mos_column,
        group_column=args.group_column,
        domains=args.domains,
        include_full=args.include_full_pool,
        n_bootstrap=args.n_bootstrap,
        confidence=args.confidence,
        seed=args.seed,
        progress=args.n_bootstrap > 0,
    )


def _print_notes(rows: list[dict[str, Any]], key: str) -> None:
    for r in rows:
        if r["n_nan"]:
            print(f"note: {r[key]} on {r['domain']}: {r['n_nan']} NaN score(s) (parse failures) dropped")
        if r["plcc_fit"] != "logistic":
            print(
                f"note: {r[key]} on {r['domain']}: logistic fit failed, PLCC on raw scores ({r['plcc_fit_message']})"
            )


def main(args: EvaluateArguments) -> dict[str, dict[str, Path]]:
    """Compute and write the tables; return their paths by table name and format."""
    if not args.models and not args.failure_scores:
        raise ValueError("Nothing to evaluate: set `models` and/or `failure_scores` in the config.")
    written = {}
    if args.models:
        rows = correlation_table(args)
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
        _print_notes(rows, "model")
    if args.failure_scores:
        rows = failure_table(args)
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
        _print_notes(rows, "strategy")
    for name, paths in written.items():
        print(f"{name}: " + ", ".join(str(p) for p in paths.values()))
    return written


def make_parser() -> TrlParser:
    """The recipe's parser: YAML via ``--config``, CLI flags override it."""
    parser = TrlParser(EvaluateArguments)
    return parser


if __name__ == "__main__":
    setup_logging()
    parser = make_parser()
    (script_args,) = parser.parse_args_and_config()
    try:
        main(script_args)
    except (CorrelationInputError, FileNotFoundError, KeyError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
