"""What an artifact folder is (an adapter, a Dataset, a staged repository) and its kind: the one detection that
publishing and ``recipes/push.py`` share. The kind is read from the folder's ``provenance.json`` (the recipe that
wrote it); an adapter without one falls back to its trainer's logs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .provenance import read_provenance

__all__ = [
    "ADAPTER_KINDS",
    "DATASET_KINDS",
    "RECIPE_KINDS",
    "adapter_kind",
    "dataset_kind",
    "detect_artifact",
    "is_staged_repository",
    "read_card_metadata",
]

ADAPTER_KINDS: dict[str, str] = {
    "failure-predictor": "the failure predictor g (LoRA on f, fidelity loss on error-ranking pairs)",
    "grpo": "the quality model f actively fine-tuned with GRPO + LoRA (Thurstone ranking reward)",
}

DATASET_KINDS: dict[str, str] = {
    "selection": "selected-subset",
    "scored": "scored-pool",
    "features": "frame-features",
    "pool": "vqa-pool",
    "weak-pairs": "weak-pairs",
    "pseudo-labels": "pseudo-labelled-pool",
}

# The kind of artifact each recipe saves (the ``recipe`` of its provenance record).
RECIPE_KINDS: dict[str, str] = {
    "train_failure_predictor": "failure-predictor",
    "finetune": "grpo",
    "select_subset": "selection",
    "score": "scored",
    "extract_features": "features",
    "build_pool": "pool",
    "make_weak_pairs": "weak-pairs",
    "pseudo_label": "pseudo-labels",
}

# Files that staging never copies: a folder holding one is an artifact, never a staged repository (a trainer's
# output folder carries a README.md written by PEFT with the model's tags, "mds-vqa" among them).
_UNSTAGED_FILES = ("training_args.bin", "state.json", "dataset_dict.json")


def read_card_metadata(folder: str | os.PathLike) -> dict[str, Any]:
    """The YAML metadata of ``<folder>/README.md`` as a dict (empty when there is no card or no metadata)."""
    from huggingface_hub import RepoCard

    path = Path(folder) / "README.md"
    if not path.is_file():
        return {}
    return RepoCard.load(path).data.to_dict()


def is_staged_repository(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds a repository staged by this package: its card is tagged ``mds-vqa`` and it holds
    none of the files staging leaves out (``training_args.bin``, ``save_to_disk``'s ``state.json``)."""
    if any((Path(folder) / name).exists() for name in _UNSTAGED_FILES):
        return False
    return "mds-vqa" in (read_card_metadata(folder).get("tags") or [])


def detect_artifact(folder: str | os.PathLike) -> str:
    """``"staged"``, ``"adapter"`` or ``"dataset"``; a clear error for anything else."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Artifact folder not found: {folder}")
    if is_staged_repository(folder):
        return "staged"
    if (folder / "adapter_config.json").is_file():
        return "adapter"
    if (folder / "state.json").is_file() or (folder / "dataset_dict.json").is_file():
        return "dataset"
    raise ValueError(
        f"{folder} is neither a PEFT adapter folder (adapter_config.json), a Dataset saved with save_to_disk "
        "(state.json / dataset_dict.json), nor a folder staged by mds-vqa (README.md tagged mds-vqa)."
    )


def adapter_kind(folder: str | os.PathLike) -> str:
    """The kind of an adapter folder: from its provenance record, else from its trainer's logs
    (``trainer_state.json``: GRPO logs rewards, the failure-predictor trainer ``eval_pairwise_accuracy``)."""
    folder = Path(folder)
    record = read_provenance(folder)
    if record is not None and RECIPE_KINDS.get(record.recipe) in ADAPTER_KINDS:
        return RECIPE_KINDS[record.recipe]
    state = folder / "trainer_state.json"
    keys: set[str] = set()
    if state.is_file():
        for entry in json.loads(state.read_text()).get("log_history", []):
            keys.update(entry)
    if any("reward" in k for k in keys):
        return "grpo"
    if "eval_pairwise_accuracy" in keys:
        return "failure-predictor"
    raise ValueError(
        f"Cannot tell whether {folder} holds a failure predictor or an actively fine-tuned adapter: pass --kind "
        "failure-predictor or --kind grpo."
    )


def dataset_kind(folder: str | os.PathLike) -> str:
    """The kind of a Dataset folder: the recipe of its provenance record, ``"pool"`` when there is none (or it was
    not written by a recipe that saves another kind)."""
    record = read_provenance(folder)
    kind = RECIPE_KINDS.get(record.recipe) if record is not None else None
    return kind if kind in DATASET_KINDS else "pool"
