"""Teacher pseudo-labels: one or more models' scores turn an unlabelled pool into a weakly labelled pool.

Usage:
    python recipes/pseudo_label.py --config recipes/configs/demo/pseudo_label.yaml
    python recipes/pseudo_label.py --pool_path pools/target --output_dir pools/target_pseudo \
        --teachers '[{"name": "f", "dataset_path": "scored/target_f", "column": "score"}]'

The pool and each teacher's ``dataset_path`` are ``save_to_disk`` folders, staged (Hub-layout) folders or Hub ids
(``--revision``: the pool's; a teacher's own ``revision`` key); ``--video_root`` records the pool's relative video
paths resolved. Each teacher is a scored pool (``recipes/score.py``) named ``{name, dataset_path, column}`` (and
``higher_is_better: false`` for a score where lower is better), joined to the pool by ``video_id``. Within each dataset every teacher's scores are rank-normalised to [``low``, ``high``] and averaged into
the pseudo-MOS (``mos``; the pool's own MOS is kept as ``mos_original``, each teacher's normalised score as
``pseudo_<name>``); videos no teacher scored are dropped and counted. With several teachers their agreement (pairwise
SRCC per dataset and overall) is printed and written to ``agreement.md`` / ``agreement.json``. The output is a pool:
``recipes/finetune.py`` trains on it like a labelled pool, ``mos_to_pairs`` makes its pairs. ``--stage_dir`` /
``--push_to_hub`` (with ``--hub_dataset_id``) publish it with its dataset card (kind ``pseudo-labels``).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import TrlParser

from mds_vqa.cli import run_recipe
from mds_vqa.hub import HubArguments, print_published, publish_dataset, write_provenance
from mds_vqa.loading import load_pool
from mds_vqa.pseudo_labels import agreement_table, pseudo_label_pool, teacher_scores
from mds_vqa.reporting import format_number
from mds_vqa.scored import check_entry, load_scored

logger = logging.getLogger("mds_vqa.pseudo_label")


@dataclass
class PseudoLabelArguments:
    """The pool, its teachers and the output of ``recipes/pseudo_label.py``."""

    pool_path: str = field(
        metadata={"help": "Pool Dataset to label: a save_to_disk folder, a staged folder or a Hub id."}
    )
    output_dir: str = field(metadata={"help": "Where the weakly labelled pool is saved."})
    teachers: list[dict[str, Any]] | None = field(
        default=None,
        metadata={
            "help": "Teachers' scored pools: a list of {name, dataset_path, column[, higher_is_better][, revision]}."
        },
    )
    revision: str | None = field(default=None, metadata={"help": "Hub revision of a Hub id pool_path."})
    video_root: str | None = field(
        default=None,
        metadata={"help": "Folder that relative video paths are relative to (the output records them resolved)."},
    )
    id_column: str = field(default="video_id", metadata={"help": "Column joining the pool and the teachers."})
    group_column: str = field(default="dataset", metadata={"help": "Ranks are normalised within this column."})
    low: float = field(default=1.0, metadata={"help": "Pseudo-MOS of the lowest-ranked video of a dataset."})
    high: float = field(default=5.0, metadata={"help": "Pseudo-MOS of the highest-ranked video of a dataset."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing output_dir."})


def _check(args: PseudoLabelArguments, hub_args: HubArguments) -> Path:
    hub_args.check("dataset")
    if not args.teachers:
        raise ValueError("Name at least one teacher: --teachers '[{name, dataset_path, column}]'.")
    if not args.low < args.high:
        raise ValueError(f"low must be below high, got {args.low} and {args.high}")
    out = Path(args.output_dir)
    if out.resolve() == Path(args.pool_path).resolve():
        raise ValueError("output_dir must differ from pool_path (a Dataset cannot be saved over itself).")
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass --overwrite true to replace it.")
    return out


def load_teachers(args: PseudoLabelArguments, pool_ids: list[str]) -> dict[str, Any]:
    """Each teacher's scores aligned on ``pool_ids``, by name (errors name the teacher, its file and the ids); an entry
    with ``higher_is_better: false`` (a distortion or DMOS-style score) is negated, so higher always means better."""
    scores: dict[str, Any] = {}
    for i, entry in enumerate(args.teachers or []):
        entry = check_entry(entry, ("name", "dataset_path", "column"), "teachers", i)
        name = str(entry["name"])
        if name in scores:
            raise ValueError(f"teachers: the name {name!r} is used twice")
        ds = load_scored(entry["dataset_path"], revision=entry.get("revision"))
        where = str(entry["dataset_path"])
        values = teacher_scores(pool_ids, ds, name, entry["column"], id_column=args.id_column, where=where)
        scores[name] = values if entry.get("higher_is_better", True) else -values
    return scores


def main(args: PseudoLabelArguments, hub_args: HubArguments | None = None) -> dict:
    """Label the pool, save it with ``agreement.{md,json}`` and its provenance, publish it when asked; return the
    summary."""
    hub_args = hub_args or HubArguments()
    out = _check(args, hub_args)
    pool = load_pool(args.pool_path, revision=args.revision, video_root=args.video_root)
    for col in (args.id_column, args.group_column):
        if col not in pool.column_names:
            raise ValueError(f"{args.pool_path} lacks the column {col!r} (columns: {pool.column_names})")
    ids = [str(v) for v in pool[args.id_column]]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{args.pool_path}: video ids are not unique, the teachers cannot be joined by them")
    scores = load_teachers(args, ids)
    labelled, summary = pseudo_label_pool(pool, scores, group_column=args.group_column, low=args.low, high=args.high)
    if out.exists():
        shutil.rmtree(out)
    labelled.save_to_disk(str(out))
    table = agreement_table(summary["agreement"])
    if summary["agreement"]:
        (out / "agreement.md").write_text(table + "\n")
        (out / "agreement.json").write_text(json.dumps(summary["agreement"], indent=2))
        print(f"Teacher agreement (SRCC):\n{table}")
    rows = summary["agreement"]
    overall = [r for r in rows if r["dataset"] == "all"] or rows  # one dataset: its rows are the overall ones
    summary.update(pool_path=args.pool_path, teacher_entries=list(args.teachers))
    summary["card"] = {  # the rows of the dataset card's settings table
        "pool": args.pool_path,
        "teachers": "; ".join(f"{e['name']} ({e['dataset_path']}: {e['column']})" for e in args.teachers),
        "agreement": "; ".join(f"{r['teacher_a']}–{r['teacher_b']}: {format_number(r['srcc'], 3)}" for r in overall)
        or "one teacher",
        "videos": summary["videos"],
        "dropped": summary["dropped"],
    }
    write_provenance(
        out,
        recipe="pseudo_label",
        arguments=[args, hub_args],
        summary=summary,
        inputs=[args.pool_path, *(e["dataset_path"] for e in args.teachers)],
    )
    print(
        f"Pseudo-labelled {summary['videos']} videos from {len(scores)} teacher(s) -> {out}"
        + (f"; dropped {summary['dropped']} no teacher scored" if summary["dropped"] else "")
    )
    published = publish_dataset(out, hub_args)
    print_published(published, "the pseudo-labelled pool with its dataset card")
    return summary


def make_parser() -> TrlParser:
    """The recipe's parser: YAML via ``--config``, CLI flags override it."""
    return TrlParser((PseudoLabelArguments, HubArguments))


if __name__ == "__main__":
    run_recipe(main, make_parser)
