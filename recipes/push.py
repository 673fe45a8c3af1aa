"""Publish an artifact that is already on disk: stage it with its card, then push it to the Hub in one commit.

Usage:
    python recipes/push.py --artifact_dir outputs/g --hub_model_id me/mds-vqa-g-sdr --kind failure-predictor \
        --base_model hollow404/VQR1-7B-YouTubeUGC
    python recipes/push.py --artifact_dir selections/sdr_mds --hub_dataset_id me/sdr-mds-5pct --g_adapter me/mds-vqa-g-sdr
    python recipes/push.py --artifact_dir selections/sdr_mds --push_to_hub false      # stage only, for review
    python recipes/push.py --artifact_dir selections/sdr_mds.hub --hub_dataset_id me/sdr-mds-5pct   # retry a push

What the folder is, is detected:

- a PEFT adapter folder (``adapter_config.json``): model card for the failure predictor (``--kind
  failure-predictor``) or the actively fine-tuned model (``--kind grpo``); the kind is read from the folder's
  ``provenance.json`` when not given, else from the trainer's logs (GRPO logs rewards, the failure-predictor trainer
  logs ``eval_pairwise_accuracy``);
- a Dataset saved with ``save_to_disk``: dataset card of a selected subset, scored pool, feature Dataset or pool,
  told apart by the recipe named in its ``provenance.json``;
- a folder staged earlier (its README.md card is tagged ``mds-vqa``): pushed as it is.

Either card takes its facts (settings, training, command) from the folder's ``provenance.json``, as when the recipe
published it. The staged copy goes to ``--stage_dir`` (default ``<artifact_dir>.hub``) and stays there whatever happens to the
upload. This script pushes by default; ``--push_to_hub false`` only stages.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import TrlParser

from mds_vqa.cli import run_recipe
from mds_vqa.hub import (
    ADAPTER_KINDS,
    DATASET_KINDS,
    HubArguments,
    Published,
    adapter_kind,
    detect_artifact,
    failure_predictor_eval_rows,
    publish_adapter,
    publish_dataset,
    push_to_hub,
    read_card_metadata,
    read_provenance,
    reproduce_command,
)

logger = logging.getLogger("mds_vqa.push")


@dataclass
class PushArguments:
    """The artifact to publish and what its card should say beyond what its folder records."""

    artifact_dir: str = field(metadata={"help": "Adapter folder, save_to_disk Dataset folder, or a staged folder."})
    kind: str | None = field(
        default=None,
        metadata={
            "help": f"Adapter: {' or '.join(ADAPTER_KINDS)}; Dataset: {', '.join(DATASET_KINDS)} (default: detected)."
        },
    )
    base_model: str | None = field(
        default=None, metadata={"help": "Hub id of the adapter's base model (default: from adapter_config.json)."}
    )
    card_datasets: list[str] | None = field(
        default=None, metadata={"help": "Hub ids of the adapter's training data (card metadata)."}
    )
    source_data: str | None = field(default=None, metadata={"help": "The adapter's source training data."})
    selected_subsets: list[str] | None = field(
        default=None, metadata={"help": "Selected subsets (Hub ids) an actively fine-tuned adapter was trained on."}
    )
    eval_results: str | None = field(
        default=None,
        metadata={
            "help": "JSON of evaluation rows ({domain, srcc, plcc, ...}), e.g. recipes/evaluate_models.py's "
            "correlation_table.json (rows filtered by --eval_model)."
        },
    )
    eval_model: str | None = field(
        default=None, metadata={"help": "Model name of the rows to take from eval_results."}
    )
    g_adapter: str | None = field(default=None, metadata={"help": "Selected subset: the g adapter id (overrides)."})
    clip_model: str | None = field(default=None, metadata={"help": "Selected subset: the CLIP model (overrides)."})
    num_frames: str | None = field(default=None, metadata={"help": "Selected subset: frames per video (overrides)."})
    pretty_name: str | None = field(default=None, metadata={"help": "Title of a Dataset card."})


def _eval_rows(args: PushArguments) -> list[dict[str, Any]]:
    path = Path(args.eval_results)
    if not path.is_file():
        raise FileNotFoundError(f"eval_results file not found: {path}")
    payload = json.loads(path.read_text())
    rows = payload.get("rows", payload) if isinstance(payload, dict) else payload
    if not isinstance(rows, list):
        raise ValueError(f"{path} should hold a list of rows or an object with 'rows'")
    if args.eval_model is not None:
        rows = [r for r in rows if r.get("model") == args.eval_model]
        if not rows:
            raise ValueError(f"{path} has no row for model {args.eval_model!r}")
    return rows


def _recorded_evals(folder: Path) -> bool:
    """True when the folder's provenance record already holds its recipe's evaluation rows (named after the held-out
    domains, which eval_results.json does not record)."""
    record = read_provenance(folder)
    return record is not None and bool(record.summary.get("eval_results"))


def main(args: PushArguments, hub_args: HubArguments) -> Published:
    """Stage (unless already staged) and push; returns the staged folder and where it went."""
    folder = Path(args.artifact_dir)
    what = detect_artifact(folder)
    if what == "staged":
        meta = read_card_metadata(folder)
        repo_type = "model" if meta.get("library_name") == "peft" else "dataset"
        hub_args.check(repo_type)
        if not hub_args.push_to_hub:
            print(f"{folder} is already staged; nothing to do without --push_to_hub true.")
            return Published(stage_dir=folder, pushed=None)
        pushed = push_to_hub(
            folder,
            hub_args.repo_id(repo_type),
            repo_type=repo_type,
            private=hub_args.hub_private,
            revision=hub_args.hub_revision,
            commit_message=f"Upload {folder.name} with mds-vqa",
        )
        print(f"Pushed {folder} to {pushed.repo_url} ({pushed.commit_url})")
        return Published(stage_dir=folder, pushed=pushed)
    hub_args.stage_dir = str(hub_args.stage_dir_for(folder))
    # This run publishes the artifact, it did not produce it: the card shows the recorded command, else none.
    provenance = {
        "command": None,
        "config": None,
        "notes": f"Published from `{folder}` with `{reproduce_command()}`.",
    }
    if what == "adapter":
        kind = args.kind or adapter_kind(folder)
        if kind not in ADAPTER_KINDS:
            raise ValueError(f"{folder} is an adapter: --kind must be one of {sorted(ADAPTER_KINDS)}, got {kind!r}")
        eval_rows: list[dict[str, Any]] = []
        if args.eval_results:
            eval_rows = _eval_rows(args)
        elif kind == "failure-predictor" and (folder / "eval_results.json").is_file() and not _recorded_evals(folder):
            eval_rows = failure_predictor_eval_rows(json.loads((folder / "eval_results.json").read_text()))
        published = publish_adapter(
            folder,
            hub_args,
            kind=kind,
            base_model=args.base_model,
            datasets=args.card_datasets or [],
            source_data=args.source_data,
            selected_subsets=args.selected_subsets or [],
            eval_results=eval_rows,
            **provenance,
        )
    else:
        if args.kind is not None and args.kind not in DATASET_KINDS:
            raise ValueError(
                f"{folder} is a Dataset: --kind must be one of {sorted(DATASET_KINDS)}, got {args.kind!r}"
            )
        overrides = {
            k: v
            for k, v in (
                ("g_adapter", args.g_adapter),
                ("clip_model", args.clip_model),
                ("num_frames", args.num_frames),
            )
            if v is not None
        }
        published = publish_dataset(
            folder, hub_args, kind=args.kind, settings=overrides, pretty_name=args.pretty_name, **provenance
        )
    print(f"Staged {folder} with its card -> {published.stage_dir}")
    if published.pushed is not None:
        print(f"Pushed to {published.pushed.repo_url} ({published.pushed.commit_url})")
    return published


def make_parser() -> TrlParser:
    """The recipe's parser: YAML via ``--config``, CLI flags override it."""
    parser = TrlParser((PushArguments, HubArguments))
    parser.set_defaults(push_to_hub=True)  # this script exists to push; --push_to_hub false only stages
    return parser


if __name__ == "__main__":
    run_recipe(main, make_parser)
