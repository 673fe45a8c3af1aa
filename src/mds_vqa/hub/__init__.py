"""Publishing to the Hugging Face Hub: provenance records, cards, a staged copy of the repository, a one-commit upload.

Every recipe that saves an artifact writes ``<output_dir>/provenance.json`` (:func:`write_provenance`): the recipe,
versions, command, resolved arguments, its own summary, and the records of its inputs embedded. Cards take their
facts from that one file (:func:`read_provenance`), never from a parent folder.

Two kinds of artifact are published:

- an **adapter** (the failure predictor g, or the actively fine-tuned quality model): the PEFT folder, with a model
  card (``huggingface_hub.ModelCard``, rendered from ``templates/adapter_card.md``) holding the metadata the Hub reads
  (``base_model``, ``library_name: peft``, ``license``, tags, ``datasets``, a ``model-index`` with SRCC/PLCC per
  domain when evaluation results exist) and a body with the LoRA settings, the training data, the exact prompt and
  answer-parsing rule, intended use and limits, the command that reproduces it and the citation;
- a **Dataset** (a pool, a scored pool, a frame-feature Dataset or a selected subset): parquet data files under
  ``data/`` and a dataset card (``huggingface_hub.DatasetCard``, from ``templates/dataset_card.md``) whose
  ``configs`` entry makes ``datasets.load_dataset(repo)`` read them (a local staged folder loads with
  :func:`mds_vqa.loading.load_pool`). A selected subset's card says how it was chosen and how to send it to raters
  and bring the MOS back.

Publishing is two steps. **Staging** (:mod:`.staging`) writes the exact repository content into a local folder
(``stage_dir``; by default ``<artifact folder>.hub``): it can be reviewed offline, loaded as a consumer would, and is
kept whatever happens next. **Pushing** (:mod:`.pushing`) uploads that folder with ``HfApi.upload_folder`` in one
commit; a missing token, an unreachable Hub or a refused push raises :class:`HubPushError`, whose message says where
the staged copy is and how to push it again.

Recipes call one function after their artifact and its provenance record are saved::

    write_provenance(output_dir, recipe="score", arguments=[script_args, ...], summary=..., inputs=[dataset_path])
    publish_dataset(output_dir, hub_args)   # or publish_adapter(output_dir, hub_args)

Neither publishing call does anything unless ``hub_args.push_to_hub`` or ``hub_args.stage_dir`` is set.

Modules: :mod:`.arguments` (recipe arguments), :mod:`.command` (the redacted command line), :mod:`.provenance`
(the record), :mod:`.kinds` (what a folder is), :mod:`.facts` (what a card says, from the record),
:mod:`.adapter_card` / :mod:`.dataset_card` (rendering, with :mod:`.cards`), :mod:`.staging`, :mod:`.pushing`,
:mod:`.publish`.
"""

from .adapter_card import AdapterCardInfo, adapter_model_card, failure_predictor_eval_rows, read_adapter_config
from .arguments import HubArguments, TrainerHubArguments, hub_arguments_for_trainer
from .cards import BASE_TAGS, CITATION, DEFAULT_ADAPTER_LICENSE, DEFAULT_DATASET_LICENSE
from .command import REDACTED, redact, reproduce_command
from .dataset_card import DatasetCardInfo, dataset_card
from .facts import dataset_provenance
from .kinds import (
    ADAPTER_KINDS,
    DATASET_KINDS,
    RECIPE_KINDS,
    adapter_kind,
    dataset_kind,
    detect_artifact,
    is_staged_repository,
    read_card_metadata,
)
from .provenance import PROVENANCE_FILE, PROVENANCE_SCHEMA, Provenance, read_provenance, write_provenance
from .publish import Published, print_published, publish_adapter, publish_dataset
from .pushing import HubPushError, PushedRepo, push_to_hub
from .staging import stage_adapter, stage_dataset

__all__ = [
    "ADAPTER_KINDS",
    "BASE_TAGS",
    "CITATION",
    "DATASET_KINDS",
    "DEFAULT_ADAPTER_LICENSE",
    "DEFAULT_DATASET_LICENSE",
    "PROVENANCE_FILE",
    "PROVENANCE_SCHEMA",
    "RECIPE_KINDS",
    "REDACTED",
    "AdapterCardInfo",
    "DatasetCardInfo",
    "HubArguments",
    "HubPushError",
    "Provenance",
    "Published",
    "PushedRepo",
    "TrainerHubArguments",
    "adapter_kind",
    "adapter_model_card",
    "dataset_card",
    "dataset_kind",
    "dataset_provenance",
    "detect_artifact",
    "failure_predictor_eval_rows",
    "hub_arguments_for_trainer",
    "is_staged_repository",
    "publish_adapter",
    "publish_dataset",
    "print_published",
    "push_to_hub",
    "read_adapter_config",
    "read_card_metadata",
    "read_provenance",
    "redact",
    "reproduce_command",
    "stage_adapter",
    "stage_dataset",
    "write_provenance",
]
