"""The Hub arguments of a recipe: where and how an artifact is published."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["HubArguments", "TrainerHubArguments", "hub_arguments_for_trainer"]


@dataclass
class HubArguments:
    """Where and how an artifact is published (add to a recipe's ``TrlParser`` tuple).

    Recipes built on a ``transformers`` trainer already have ``push_to_hub``, ``hub_model_id``,
    ``hub_private_repo`` and ``hub_revision`` in their training arguments: they take
    :class:`TrainerHubArguments` instead and call :func:`hub_arguments_for_trainer`.
    """

    push_to_hub: bool = field(
        default=False, metadata={"help": "Upload the staged repository (one commit) after the artifact is saved."}
    )
    hub_model_id: str | None = field(default=None, metadata={"help": "Hub model repo id for an adapter (user/name)."})
    hub_dataset_id: str | None = field(
        default=None, metadata={"help": "Hub dataset repo id for a Dataset (user/name)."}
    )
    hub_private: bool = field(default=True, metadata={"help": "Create the Hub repo as private."})
    hub_revision: str | None = field(
        default=None, metadata={"help": "Branch to push to (created when missing; default: main)."}
    )
    stage_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder receiving the exact repository content (card + files) before any upload; also usable "
            "alone with push_to_hub false for offline review. Default when pushing: <artifact folder>.hub"
        },
    )
    hub_license: str | None = field(
        default=None,
        metadata={"help": "License in the card (default: apache-2.0 for adapters, 'other' for Datasets)."},
    )

    @property
    def wants_publishing(self) -> bool:
        """True when the artifact is to be staged (``stage_dir`` set) or pushed."""
        return self.push_to_hub or self.stage_dir is not None

    def repo_id(self, repo_type: str) -> str | None:
        """``hub_model_id`` for ``"model"``, ``hub_dataset_id`` for ``"dataset"``."""
        if repo_type not in ("model", "dataset"):
            raise ValueError(f"repo_type must be 'model' or 'dataset', got {repo_type!r}")
        return self.hub_model_id if repo_type == "model" else self.hub_dataset_id

    def check(self, repo_type: str) -> None:
        """Fail before any work when a push is asked without a valid repo id (run this at the start of a recipe)."""
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        repo_id = self.repo_id(repo_type)
        flag = "--hub_model_id" if repo_type == "model" else "--hub_dataset_id"
        if self.push_to_hub and not repo_id:
            raise ValueError(f"push_to_hub needs a repo id: pass {flag} user/name.")
        if repo_id:
            try:
                validate_repo_id(repo_id)
            except HFValidationError as err:
                raise ValueError(f"{flag} {repo_id!r} is not a valid Hub repo id: {err}") from err

    def stage_dir_for(self, artifact_dir: str | os.PathLike) -> Path:
        """``stage_dir``, or ``<artifact_dir>.hub`` when it is not set."""
        if self.stage_dir is not None:
            return Path(self.stage_dir)
        return Path(f"{str(artifact_dir).rstrip('/')}.hub")


@dataclass
class TrainerHubArguments:
    """Hub arguments for trainer recipes, next to ``TrainingArguments``' own ``push_to_hub``, ``hub_model_id``,
    ``hub_private_repo`` and ``hub_revision`` (see :func:`hub_arguments_for_trainer`)."""

    stage_dir: str | None = field(
        default=None,
        metadata={"help": "Folder receiving the adapter + model card before any upload (default: <output_dir>.hub)."},
    )
    hub_license: str | None = field(default=None, metadata={"help": "License in the model card (apache-2.0)."})
    card_datasets: list[str] | None = field(
        default=None,
        metadata={"help": "Hub ids of the training data, for the card's `datasets` metadata (local paths are not)."},
    )


def hub_arguments_for_trainer(training_args: Any, extra: TrainerHubArguments | None = None) -> HubArguments:
    """The :class:`HubArguments` of a trainer recipe, read from its ``TrainingArguments`` (``push_to_hub``,
    ``hub_model_id``, ``hub_private_repo`` — private unless set to false —, ``hub_revision``) and ``extra``.

    Validates them (a push without ``hub_model_id`` fails here, before training) and turns the Trainer's own push off
    (``training_args.push_to_hub = False``): the recipe pushes the staged adapter with its model card after training,
    instead of the Trainer pushing the raw output folder at every save. Call it before building the Trainer.
    """
    extra = extra or TrainerHubArguments()
    private = getattr(training_args, "hub_private_repo", None)
    hub = HubArguments(
        push_to_hub=bool(training_args.push_to_hub),
        hub_model_id=training_args.hub_model_id,
        hub_private=True if private is None else bool(private),
        hub_revision=getattr(training_args, "hub_revision", None),
        stage_dir=extra.stage_dir,
        hub_license=extra.hub_license,
    )
    hub.check("model")
    if training_args.push_to_hub:
        logger.info("The adapter is pushed with its model card once training ends (the Trainer's own push is off).")
        training_args.push_to_hub = False
    return hub
