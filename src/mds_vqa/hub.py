"""Publishing to the Hugging Face Hub: cards, a staged copy of the repository, and a one-commit upload.

Two kinds of artifact are published:

- an **adapter** (the failure predictor g, or the actively fine-tuned quality model): the PEFT folder, with a model
  card (``huggingface_hub.ModelCard``) holding the metadata the Hub reads (``base_model``, ``library_name: peft``,
  ``license``, tags, ``datasets``, a ``model-index`` with SRCC/PLCC per domain when evaluation results exist) and a
  body with the LoRA settings, the training data, the exact prompt and answer-parsing rule, intended use and limits,
  the command that reproduces it and the citation;
- a **Dataset** (a pool, a scored pool, a frame-feature Dataset or a selected subset): parquet data files under
  ``data/`` and a dataset card (``huggingface_hub.DatasetCard``) whose ``configs`` entry makes
  ``datasets.load_dataset(repo)`` read them (a local staged folder loads with :func:`mds_vqa.loading.load_pool`). A selected subset's card says how it was chosen and how to send
  it to raters and bring the MOS back.

Publishing is two steps. **Staging** writes the exact repository content into a local folder (``stage_dir``; by
default ``<artifact folder>.hub``): it can be reviewed offline, loaded as a consumer would
(``PeftModel.from_pretrained(base, stage_dir)``, ``mds_vqa.loading.load_pool(stage_dir)``), and is kept whatever
happens next.
**Pushing** uploads that folder with ``HfApi.upload_folder`` in one commit. A missing token, an unreachable Hub or a
refused push raises :class:`HubPushError`, whose message says where the staged copy is and how to push it again.

Recipes call one function after their artifact is saved::

    publish_adapter(output_dir, hub_args, kind="failure-predictor", base_model=..., eval_results=...)
    publish_dataset(output_dir, hub_args)   # kind and provenance read from the recipe's side files

Neither does anything unless ``hub_args.push_to_hub`` or ``hub_args.stage_dir`` is set.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import re
import shlex
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .prompts import _ANSWER_RE, _NUMBER_RE, get_prompt

logger = logging.getLogger(__name__)

__all__ = [
    "ADAPTER_KINDS",
    "DATASET_KINDS",
    "CITATION",
    "HubArguments",
    "TrainerHubArguments",
    "HubPushError",
    "PushedRepo",
    "Published",
    "AdapterCardInfo",
    "DatasetCardInfo",
    "hub_arguments_for_trainer",
    "redact",
    "reproduce_command",
    "read_adapter_config",
    "adapter_model_card",
    "dataset_card",
    "dataset_provenance",
    "failure_predictor_eval_rows",
    "stage_adapter",
    "stage_dataset",
    "push_to_hub",
    "publish_adapter",
    "publish_dataset",
    "read_card_metadata",
    "is_staged_repository",
]

BASE_TAGS = ("video-quality-assessment", "mds-vqa")

ADAPTER_KINDS: dict[str, str] = {
    "failure-predictor": "the failure predictor g (LoRA on f, fidelity loss on error-ranking pairs)",
    "grpo": "the quality model f actively fine-tuned with GRPO + LoRA (Thurstone ranking reward)",
}

DATASET_KINDS: dict[str, str] = {
    "selection": "selected-subset",
    "scored": "scored-pool",
    "features": "frame-features",
    "pool": "vqa-pool",
}

CITATION = """@inproceedings{mdsvqa2026,
  title     = {Model-Informed Data Selection for Video Quality Assessment},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2026}
}"""

DEFAULT_ADAPTER_LICENSE = "apache-2.0"  # Qwen2.5-VL-7B and this project; override with --hub_license
DEFAULT_DATASET_LICENSE = "other"  # the videos and MOS stay under their source dataset's terms

# Files of a save_to_disk folder that the parquet data files replace; everything else at its top level (reports,
# provenance JSON, figures) is copied into the staged repository.
_SAVE_TO_DISK_FILES = {"dataset_info.json", "state.json", "dataset_dict.json"}
# Files of a trainer output folder that are not published: the card is rewritten, and training_args.bin is a pickle
# that holds the training arguments, hub token included.
_ADAPTER_SKIPPED_FILES = {"README.md", "training_args.bin"}
_ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


# --------------------------------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------------------
# Secrets and the reproduction command
# --------------------------------------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")  # user access tokens: hf_ + 34 letters/digits
_SECRET_FLAGS = {"--hub_token", "--hub-token", "--token"}
REDACTED = "<redacted>"


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with ``secrets``, the token of ``HF_TOKEN``/``HUGGING_FACE_HUB_TOKEN`` and anything shaped like a
    Hugging Face token (``hf_…``) replaced by ``<redacted>``."""
    known = [s for s in (*secrets, os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN")) if s]
    for secret in sorted(set(known), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return _TOKEN_RE.sub(REDACTED, text)


def reproduce_command(argv: Sequence[str] | None = None) -> str:
    """The command line of this run (``python <script> <args>``, default ``sys.argv``) with token values removed."""
    argv = list(sys.argv if argv is None else argv)
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        flag, eq, _ = arg.partition("=")
        if flag in _SECRET_FLAGS:
            out.append(f"{flag}={REDACTED}" if eq else arg)
            hide_next = not eq
            continue
        out.append(arg)
    if out and Path(out[0]).parent.name == "recipes":
        out[0] = f"recipes/{Path(out[0]).name}"  # as run from the repository root
    return redact("python " + shlex.join(out)) if out else ""


def _config_from_argv(argv: Sequence[str] | None = None) -> tuple[str, str] | None:
    """``(path, text)`` of the ``--config`` YAML of this run, when there is one and it can be read."""
    argv = list(sys.argv if argv is None else argv)
    for i, arg in enumerate(argv):
        path = None
        if arg == "--config" and i + 1 < len(argv):
            path = argv[i + 1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        if path and Path(path).is_file():
            return path, redact(Path(path).read_text())
    return None


# --------------------------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} should hold a JSON object, got {type(data).__name__}")
    return data


def _is_local_path(name: str) -> bool:
    return os.path.isabs(name) or name.startswith((".", "~")) or Path(name).exists()


def _hub_link(name: str | None, repo_type: str = "model") -> str:
    if not name:
        return "not recorded"
    if _is_local_path(name):
        return f"`{name}` (local)"
    prefix = "datasets/" if repo_type == "dataset" else ""
    return f"[`{name}`](https://huggingface.co/{prefix}{name})"


def _fmt(value: Any) -> str:
    if value is None:
        return "not recorded"
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(f"`{v}`" for v in value) if value else "none"
    return str(value)


def _finite(value: Any) -> float | None:
    """``value`` as a float, ``None`` for a missing or non-finite value; a clear error for a non-number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"Expected a number (or null), got {value!r}")
    v = float(value)
    return v if math.isfinite(v) else None


def _size_category(n: int) -> str:
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
    for bound, name in bounds:
        if n < bound:
            return name
    return "1M<n<10M" if n < 10_000_000 else "n>10M"


def _yaml_block(lines: list[str], text: str, lang: str = "") -> None:
    lines += [f"```{lang}", text.rstrip("\n"), "```"]


def _reproduce_section(lines: list[str], command: str | None, config: tuple[str, str] | None) -> None:
    lines += ["## Reproduce", ""]
    if command:
        lines.append("The command that produced this artifact:")
        lines.append("")
        _yaml_block(lines, command, "bash")
    else:
        lines.append("The command that produced this artifact was not recorded with it.")
    if config is not None:
        lines += ["", f"with `{config[0]}`:", ""]
        _yaml_block(lines, config[1], "yaml")
    lines += [
        "",
        "The recipes are in the [mds-vqa](https://github.com/mds-vqa/mds-vqa) repository (`recipes/`, configs in "
        "`recipes/configs/`).",
        "",
    ]


def _citation_section(lines: list[str]) -> None:
    lines += ["## Citation", ""]
    _yaml_block(lines, CITATION, "bibtex")
    lines.append("")


def _card_content(metadata_yaml: str, body: str, *secrets: str | None) -> str:
    return redact(f"---\n{metadata_yaml.rstrip()}\n---\n\n{body.rstrip()}\n", *secrets)


# --------------------------------------------------------------------------------------------------------------------
# Model card
# --------------------------------------------------------------------------------------------------------------------

_METRICS = {
    "srcc": ("SRCC", "Spearman rank correlation"),
    "plcc": ("PLCC", "Pearson correlation after the 4-parameter logistic"),
    "krcc": ("KRCC", "Kendall rank correlation"),
    "rmse": ("RMSE", "root mean squared error after the logistic"),
    "pairwise_accuracy": ("Pairwise accuracy", "share of same-dataset pairs ordered like f's errors"),
}


@dataclass
class AdapterCardInfo:
    """What the model card of an adapter says beyond what its folder holds.

    ``eval_results`` rows are ``{"domain", "split"?, "dataset_id"?, "srcc"?, "plcc"?, "krcc"?, "rmse"?,
    "pairwise_accuracy"?}`` (the rows of ``recipes/evaluate_models.py``'s ``correlation_table.json`` fit). For the failure
    predictor, SRCC is between g and f's error ``|f − MOS|``, not the MOS.
    """

    kind: str
    base_model: str | None = None
    repo_id: str | None = None
    license: str | None = None
    datasets: list[str] = field(default_factory=list)
    source_data: str | None = None
    selected_subsets: list[str] = field(default_factory=list)
    num_train_examples: int | None = None
    training: dict[str, Any] = field(default_factory=dict)
    eval_results: list[dict[str, Any]] = field(default_factory=list)
    eval_description: str | None = None
    prompt_variant: str | None = None
    answer_prefix: str = "<answer>"
    sampling: dict[str, Any] | None = None
    command: str | None = None
    config: tuple[str, str] | None = None
    notes: str | None = None

    def __post_init__(self):
        if self.kind not in ADAPTER_KINDS:
            raise ValueError(f"Unknown adapter kind {self.kind!r}; expected one of {sorted(ADAPTER_KINDS)}")
        self.datasets = list(self.datasets or [])
        self.selected_subsets = list(self.selected_subsets or [])
        if self.prompt_variant is None:
            self.prompt_variant = "direct" if self.kind == "failure-predictor" else "thinking"
        get_prompt(self.task, self.prompt_variant)  # validates the variant
        for i, row in enumerate(self.eval_results):
            if not isinstance(row, Mapping) or not row.get("domain"):
                raise ValueError(f"eval_results[{i}] needs a 'domain' (got {row!r})")

    @property
    def task(self) -> str:
        """The prompt task of the adapter: ``"difficulty"`` for g, ``"scoring"`` for f."""
        return "difficulty" if self.kind == "failure-predictor" else "scoring"


def read_adapter_config(adapter_dir: str | os.PathLike) -> dict[str, Any]:
    """``adapter_config.json`` of a PEFT adapter folder; a clear error when the folder is not one."""
    folder = Path(adapter_dir)
    path = folder / "adapter_config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a PEFT adapter folder: it has no adapter_config.json")
    if not any((folder / w).is_file() for w in _ADAPTER_WEIGHTS):
        raise FileNotFoundError(
            f"{folder} has adapter_config.json but no adapter weights ({' or '.join(_ADAPTER_WEIGHTS)})"
        )
    return _read_json(path)


def failure_predictor_eval_rows(
    metrics: Mapping[str, Any], domain: str = "held-out source videos", split: str | None = None
) -> list[dict[str, Any]]:
    """Model-card evaluation rows from the failure-predictor trainer's metrics (``eval_srcc``,
    ``eval_pairwise_accuracy``; the ``eval_`` prefix is optional). Empty when there is none."""
    row: dict[str, Any] = {"domain": domain}
    if split is not None:
        row["split"] = split
    for key in ("srcc", "pairwise_accuracy"):
        value = metrics.get(f"eval_{key}", metrics.get(key))
        if _finite(value) is not None:
            row[key] = float(value)
    return [row] if len(row) > (2 if split is not None else 1) else []


def _eval_results(info: AdapterCardInfo):
    from huggingface_hub import EvalResult

    fp = info.kind == "failure-predictor"
    task_name = "Failure prediction for video quality assessment" if fp else "Video quality assessment"
    results = []
    for row in info.eval_results:
        for key, (label, _) in _METRICS.items():
            value = _finite(row.get(key))
            if value is None:
                continue
            name = f"{label} (g vs |f − MOS|)" if fp and key == "srcc" else label
            results.append(
                EvalResult(
                    task_type="video-quality-assessment",
                    task_name=task_name,
                    dataset_type=str(row.get("dataset_id") or row["domain"]),
                    dataset_name=str(row["domain"]),
                    dataset_split=row.get("split"),
                    metric_type=key,
                    metric_name=name,
                    metric_value=value,
                )
            )
    return results


def _lora_table(cfg: Mapping[str, Any]) -> list[str]:
    rows = [
        ("rank r", cfg.get("r")),
        ("α (lora_alpha)", cfg.get("lora_alpha")),
        ("dropout", cfg.get("lora_dropout")),
        ("target modules", cfg.get("target_modules")),
        ("rsLoRA", cfg.get("use_rslora")),
        ("DoRA", cfg.get("use_dora")),
        ("bias", cfg.get("bias")),
        ("modules saved in full", cfg.get("modules_to_save")),
        ("task type", cfg.get("task_type")),
        ("PEFT type", cfg.get("peft_type")),
    ]
    lines = ["| setting | value |", "|---|---|"]
    for name, value in rows:
        shown = f"`{value}`" if isinstance(value, str) else "none" if value is None else _fmt(value)
        lines.append(f"| {name} | {shown} |")
    return lines


def _sampling_text(sampling: Mapping[str, Any] | None) -> str:
    from dataclasses import asdict

    from .modeling import VideoSamplingConfig

    recorded = sampling is not None
    s = dict(sampling) if recorded else asdict(VideoSamplingConfig())
    if s.get("nframes"):
        frames = f"exactly {s['nframes']} frames"
    else:
        frames = f"{s.get('fps') or 2.0} fps, {s.get('min_frames')}–{s.get('max_frames')} frames"
    if s.get("resized_height") and s.get("resized_width"):
        size = f"resized to {s['resized_height']}×{s['resized_width']} (snapped to multiples of 28)"
    else:
        size = f"resized by pixel count ({s.get('min_pixels') or 'default'}–{s.get('max_pixels') or 'default'} pixels)"
    text = f"{frames}, {size}, read by qwen-vl-utils (`mds_vqa.modeling.VideoSamplingConfig`)"
    return f"Frames: {text}." if recorded else f"Frames: not recorded; mds-vqa's defaults are {text}."


def _reading_rules(info: AdapterCardInfo) -> list[str]:
    from .scoring import SCORE_DIGITS  # imports torch: only when a model card is written

    prompt = get_prompt(info.task, info.prompt_variant)
    direct = get_prompt(info.task, "direct")
    digits = ", ".join(str(d) for d in SCORE_DIGITS)
    lines = [
        "## Prompt and answer parsing",
        "",
        f"One user turn holds the video, then this text (`mds_vqa.prompts`, task `{info.task}`, variant "
        f"`{info.prompt_variant}`), word for word:",
        "",
    ]
    _yaml_block(lines, prompt, "text")
    lines += [
        "",
        _sampling_text(info.sampling),
        "",
        "A score is read in one of two ways:",
        "",
        f"- **expectation** (one forward pass, deterministic, continuous): with the direct prompt below and the "
        f"assistant turn started with `{info.answer_prefix}`, the score is Σ d · softmax(logits[d]) over the single-"
        f"digit tokens d ∈ {{{digits}}} at the next position.",
        f"- **generation**: the answer is parsed by `mds_vqa.prompts.parse_score`: the last match of "
        f"`{_ANSWER_RE.pattern}` (DOTALL), or the whole text when there is none, then the first match of "
        f"`{_NUMBER_RE.pattern}` in it. An answer without a number is NaN and counted, never replaced by a random "
        "score.",
        "",
    ]
    if info.prompt_variant != "direct":
        lines += ["Direct prompt (expectation reading):", ""]
        _yaml_block(lines, direct, "text")
        lines.append("")
    return lines


def _usage(info: AdapterCardInfo, base: str) -> list[str]:
    repo = info.repo_id or "path/to/this/folder"
    fp = info.kind == "failure-predictor"
    variant = info.prompt_variant
    lines = ["## Usage", "", "With mds-vqa (`pip install mds-vqa`):", ""]
    code = (
        "from mds_vqa.modeling import load_model_and_processor\n"
        "from mds_vqa.scoring import ScoringConfig, score_videos\n\n"
        f'model, processor = load_model_and_processor("{base}", adapter="{repo}", dtype="bfloat16")\n'
    )
    if fp:
        code += (
            f'config = ScoringConfig(task="difficulty", prompt_variant="{variant}", answer_prefix="{info.answer_prefix}")\n'
            'g = [r["score"] for r in score_videos(model, processor, ["a.mp4", "b.mp4"], config)]  # higher = harder'
        )
    else:
        code += (
            'quality = score_videos(model, processor, ["a.mp4"], ScoringConfig())[0]["score"]  # expectation, 1-5\n'
            'thinking = score_videos(model, processor, ["a.mp4"], ScoringConfig(mode="generate"))[0]  # think + answer'
        )
    _yaml_block(lines, code, "python")
    lines += ["", "With PEFT alone:", ""]
    _yaml_block(
        lines,
        "from peft import PeftModel\n"
        "from transformers import AutoModelForImageTextToText, AutoProcessor\n\n"
        f'base = AutoModelForImageTextToText.from_pretrained("{base}", dtype="auto")\n'
        f'model = PeftModel.from_pretrained(base, "{repo}")\n'
        f'processor = AutoProcessor.from_pretrained("{base}")',
        "python",
    )
    lines.append("")
    return lines


def adapter_model_card(adapter_config: Mapping[str, Any], info: AdapterCardInfo):
    """The ``huggingface_hub.ModelCard`` of an adapter: metadata (``base_model``, ``library_name: peft``,
    ``license``, tags, ``datasets``, ``model-index`` when ``info.eval_results`` has values) and body."""
    from huggingface_hub import ModelCard, ModelCardData

    fp = info.kind == "failure-predictor"
    base = info.base_model or adapter_config.get("base_model_name_or_path")
    if not base:
        raise ValueError(
            "The base model is unknown: adapter_config.json has no base_model_name_or_path; pass base_model"
        )
    hub_base = None if _is_local_path(base) else base
    if hub_base is None:
        logger.warning("Base model %s is a local path: the card's base_model metadata is left out.", base)
    evals = _eval_results(info)
    title = info.repo_id or ("mds-vqa failure predictor g" if fp else "mds-vqa actively fine-tuned quality model")
    data = ModelCardData(
        base_model=hub_base,
        library_name="peft",
        license=info.license or DEFAULT_ADAPTER_LICENSE,
        tags=[*BASE_TAGS, "lora", info.kind],
        datasets=info.datasets or None,
        model_name=title if evals else None,
        eval_results=evals or None,
    )

    lines = [f"# {title}", ""]
    if fp:
        lines += [
            f"A LoRA adapter on {_hub_link(base)} that turns the video-quality model f into the **failure predictor "
            "g** of MDS-VQA (Model-Informed Data Selection for Video Quality Assessment, CVPR 2026).",
            "",
            "## What g means",
            "",
            "g(x) is a continuous difficulty score in [1, 5], read under the difficulty prompt below. **Higher g means "
            "f is expected to err more on x** (a larger |f(x) − MOS(x)|). g was trained with the fidelity loss on "
            "error-ranking pairs within one dataset: p(x, y) = 1 if |f(x) − MOS(x)| ≥ |f(y) − MOS(y)|, "
            "p̂ = Φ((g(x) − g(y))/√2). It ranks videos; it is not an error in MOS units and not a quality score.",
            "",
        ]
    else:
        lines += [
            f"A LoRA adapter on {_hub_link(base)}: the quality model f actively fine-tuned with GRPO (Thurstone ranking "
            "reward within each dataset, VisualQuality-R1 style) on the source data plus the human-rated subset that "
            "MDS-VQA selected (Model-Informed Data Selection for Video Quality Assessment, CVPR 2026). It outputs a "
            "quality score in [1, 5] (higher is better).",
            "",
        ]
    lines += _usage(info, base)
    lines += _reading_rules(info)
    lines += ["## LoRA settings", "", "From this repository's `adapter_config.json`:", ""]
    lines += _lora_table(adapter_config)
    lines += [
        "",
        "mds-vqa's default LoRA targets every linear layer of the language model (r 64, α 128, dropout 0.05) and "
        "leaves the vision tower out; the table is what this adapter used.",
        "",
        "## Training data",
        "",
    ]
    if info.source_data:
        what = "f's scores and the MOS of the labelled source pool" if fp else "source data"
        lines.append(f"- {what}: `{info.source_data}`")
    if info.datasets:
        lines.append("- Hub datasets: " + ", ".join(_hub_link(d, "dataset") for d in info.datasets))
    if info.selected_subsets:
        lines.append(
            "- selected subsets rated by humans: " + ", ".join(_hub_link(d, "dataset") for d in info.selected_subsets)
        )
    if info.num_train_examples is not None:
        lines.append(f"- training examples: {info.num_train_examples}")
    if not (info.source_data or info.datasets or info.selected_subsets):
        lines.append("- not recorded")
    lines.append("")
    if info.training:
        lines += ["## Training", "", "| setting | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in info.training.items() if v is not None]
        lines.append("")
    lines += ["## Evaluation", ""]
    if evals:
        if info.eval_description:
            lines += [info.eval_description, ""]
        keys = [k for k in _METRICS if any(_finite(r.get(k)) is not None for r in info.eval_results)]
        lines.append("| domain | split | " + " | ".join(_METRICS[k][0] for k in keys) + " |")
        lines.append("|---|---|" + "---|" * len(keys))
        for row in info.eval_results:
            values = [_finite(row.get(k)) for k in keys]
            cells = ["—" if v is None else f"{v:.4f}" for v in values]
            lines.append(f"| {row['domain']} | {row.get('split') or '—'} | " + " | ".join(cells) + " |")
        lines += ["", "; ".join(f"{_METRICS[k][0]}: {_METRICS[k][1]}" for k in keys) + "."]
        if fp:
            lines.append("For g, SRCC is between g and f's error |f − MOS| on held-out videos, not the MOS.")
        lines.append("")
    else:
        lines += ["No evaluation results were recorded with this adapter.", ""]
    lines += ["## Intended use and limits", ""]
    if fp:
        lines += [
            "- Use: rank an unlabelled pool by how likely f is to get each video wrong, to choose which videos human "
            "raters should score (with a diversity term, `recipes/select_subset.py`).",
            "- g is tied to the quality model f it was trained with and to f's errors on the source data; it says "
            "nothing about another model, and its ranking weakens as the target domain moves away from the source.",
            "- g is a ranking signal, not a calibrated error estimate and not a quality score.",
        ]
    else:
        lines += [
            "- Use: predict the perceptual quality of a video (a score in [1, 5], higher is better), in the domains "
            "listed under Evaluation.",
            "- Scores are trained on ranks within each dataset: map them to a MOS scale with the 4-parameter logistic "
            "per domain before reading them as MOS.",
            "- Not validated outside the evaluated domains; the thinking text is generated, not an explanation of the "
            "score.",
        ]
    lines.append("")
    if info.notes:
        lines += ["## Notes", "", info.notes, ""]
    _reproduce_section(lines, info.command, info.config)
    _citation_section(lines)
    return ModelCard(_card_content(data.to_yaml(), "\n".join(lines)))


# --------------------------------------------------------------------------------------------------------------------
# Dataset card
# --------------------------------------------------------------------------------------------------------------------

_STRATEGY_TEXT = {
    "mds": "greedy difficulty × diversity: first the highest g, then argmax g(x) + λ·mean Chamfer distance to the picks",
    "difficulty": "the highest g",
    "diversity": "the same greedy with g ≡ 0 (diversity alone)",
    "coreset": "k-center greedy on the minimum Chamfer distance",
    "random": "uniformly at random (seeded)",
}
_STRATEGY_USES = {
    "mds": ("g", "features"),
    "difficulty": ("g",),
    "diversity": ("features",),
    "coreset": ("features",),
    "random": (),
}

_SETTINGS = {
    "selection": [
        ("pool", "Pool"),
        ("domains", "Domains"),
        ("pool_size", "Pool size (videos)"),
        ("budget", "Budget"),
        ("strategy", "Strategy"),
        ("lam", "λ (weight of the diversity term)"),
        ("g_adapter", "Failure predictor g (adapter)"),
        ("g_base_model", "g's base model"),
        ("clip_model", "CLIP model (frame features)"),
        ("num_frames", "Frames per video"),
        ("seed", "Seed"),
    ],
    "scored": [
        ("pool", "Pool scored"),
        ("model", "Model"),
        ("adapter", "Adapter"),
        ("task", "Prompt task"),
        ("mode", "Reading"),
        ("prompt_variant", "Prompt variant"),
        ("score_column", "Score column"),
        ("videos", "Videos"),
        ("scored", "Scored"),
        ("unreadable", "Unreadable videos"),
        ("nan_scores", "NaN scores"),
        ("parse_failures", "Unparseable answers"),
    ],
    "features": [
        ("pool", "Pool"),
        ("clip_model", "CLIP model"),
        ("num_frames", "Frames per video"),
        ("dim", "Feature dimension"),
        ("precision", "Precision"),
        ("column", "Feature column"),
        ("missing", "Videos without features"),
    ],
    "pool": [
        ("dataset_name", "Domain"),
        ("mos_table", "MOS table"),
        ("video_dir", "Video folder"),
        ("higher_is_better", "Higher MOS is better"),
        ("test_size", "Random test fraction"),
        ("seed", "Seed of the split"),
    ],
}

_COLUMN_TEXT = {
    "video_id": "Video identifier: the key that matches ratings, scores and source files.",
    "video": "Path of the video file on the machine that built this Dataset (the videos are not in this repository).",
    "mos": "Mean opinion score (higher is better; DMOS tables are flipped when the pool is built).",
    "mos_std": "Standard deviation of the ratings (null when the dataset does not ship it).",
    "mos_raw": "MOS before the per-dataset min-max normalisation to [1, 5].",
    "dataset": "Domain (source dataset) of the video.",
    "split": "The pool's own split (e.g. train/test).",
    "rank": "Pick order, 1 = first pick.",
    "g": "Difficulty from the failure predictor g at selection time (higher = f expected to err more).",
    "diversity": "Mean Chamfer distance between this pick's frame features and the earlier picks' (the term λ "
    "multiplies).",
    "pool_index": "Row of the video in the pool the selection was made from.",
    "features": "open_clip frame features (frames × dim, L2-normalised).",
    "difficulty": "Difficulty score of the failure predictor g (higher = f expected to err more).",
    "error": "f's error |f − MOS|.",
}


def _column_text(name: str, score_column: str | None) -> str:
    if name in _COLUMN_TEXT:
        return _COLUMN_TEXT[name]
    if score_column:
        suffixes = {
            "": "Score read from the model (NaN when an answer had no number).",
            "_digit_probs": "Probabilities of the digits 1–5 at the answer position (expectation reading).",
            "_texts": "Generated answers.",
            "_parse_failures": "Generated answers without a number.",
            "_error": "Why the video could not be scored (null when it was).",
        }
        for suffix, text in suffixes.items():
            if name == f"{score_column}{suffix}":
                return text
    return ""


def _type_name(feature: Any) -> str:
    shape = getattr(feature, "shape", None)
    if shape is not None:
        dims = " × ".join("n" if s is None else str(s) for s in shape)
        return f"{getattr(feature, 'dtype', '?')} array ({dims})"
    inner = getattr(feature, "feature", None)
    if inner is not None:
        return f"list of {_type_name(inner)}"
    dtype = getattr(feature, "dtype", None)
    return str(dtype) if dtype else type(feature).__name__


@dataclass
class DatasetCardInfo:
    """What the dataset card says beyond the Dataset itself. ``settings`` holds the provenance shown in the card's
    settings table (see :func:`dataset_provenance`); a missing entry reads "not recorded"."""

    kind: str
    repo_id: str | None = None
    license: str | None = None
    pretty_name: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    command: str | None = None
    config: tuple[str, str] | None = None
    notes: str | None = None
    extra_files: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.kind not in DATASET_KINDS:
            raise ValueError(f"Unknown Dataset kind {self.kind!r}; expected one of {sorted(DATASET_KINDS)}")


def _settings_rows(info: DatasetCardInfo) -> list[str]:
    s = info.settings
    strategy = s.get("strategy")
    uses = _STRATEGY_USES.get(strategy, ("g", "features"))
    rows = ["| setting | value |", "|---|---|"]
    for key, label in _SETTINGS[info.kind]:
        value = s.get(key)
        if info.kind == "selection":
            if key == "budget" and s.get("selected") is not None:
                n, b = s.get("pool_size"), s["selected"]
                share = f", {100 * b / n:.2f} % of the pool" if n else ""
                asked = f"; asked: `{value}`" if value is not None else ""
                value = f"{b} videos{share}{asked}"
            elif key == "strategy" and strategy in _STRATEGY_TEXT:
                value = f"`{strategy}`: {_STRATEGY_TEXT[strategy]}"
            elif key == "lam" and strategy not in (None, "mds"):
                value = f"not used by `{strategy}`"
            elif key in ("g_adapter", "g_base_model") and "g" not in uses:
                value = f"not used by `{strategy}`"
            elif key in ("clip_model", "num_frames") and "features" not in uses:
                value = f"not used by `{strategy}`"
            elif key in ("g_adapter", "g_base_model") and isinstance(value, str):
                value = _hub_link(value)
        if info.kind == "scored" and key in ("model", "adapter") and isinstance(value, str):
            value = _hub_link(value)
        if key in ("pool", "mos_table", "video_dir") and isinstance(value, str):
            value = f"`{value}`"
        if key == "adapter" and value is None and info.kind == "scored":
            value = "none (the base model)"
        rows.append(f"| {label} | {_fmt(value)} |")
    return rows


def _annotation_section(info: DatasetCardInfo, repo: str, domains: list[str]) -> list[str]:
    pool = info.settings.get("pool")
    where = f"your copy of the pool (`{pool}`)" if pool else "your copy of the pool"
    lines = [
        "## Sending it to annotators and bringing the MOS back",
        "",
        "1. Export the list to rate (the `video` column holds paths on the machine that made the selection; the "
        "video files are not in this repository and stay under their source dataset's terms):",
        "",
    ]
    _yaml_block(
        lines,
        "from datasets import load_dataset\n\n"
        f'subset = load_dataset("{repo}", split="train")\n'
        'subset.select_columns(["rank", "video_id", "dataset"]).to_csv("to_rate.csv", index=False)',
        "python",
    )
    lines += [
        "",
        f"2. Give raters the video files named in `video_id`, from {where}. Rate in `rank` order: for the greedy strategies (mds, difficulty, diversity, coreset) the first k ranks "
        "are exactly what the same strategy picks with budget k, so a campaign stopped early still has a valid "
        "selection.",
        "3. Collect one row per video with its mean opinion score (and the standard deviation of its ratings when "
        "there are several raters): `video_id,mos,mos_std`. Any scale works: MOS is normalised per dataset, and "
        "active fine-tuning uses scale-free pairs within a dataset.",
        "4. Build a labelled pool from the ratings, one per domain (rating campaigns do not share a scale):",
        "",
    ]
    domain = domains[0] if len(domains) == 1 else "<domain>"
    _yaml_block(
        lines,
        "python recipes/build_pool.py --mos_table ratings.csv --video_dir <folder with the videos> \\\n"
        f"    --dataset_name {domain} --output_dir pools/{domain}_rated",
        "bash",
    )
    lines += [
        "",
        "That pool is the target data of active fine-tuning (GRPO + LoRA), merged with the source data as "
        "scale-invariant pairs.",
        "",
    ]
    return lines


def dataset_card(splits: Mapping[str, Any], info: DatasetCardInfo):
    """The ``huggingface_hub.DatasetCard`` of a Dataset staged as ``data/<split>-*.parquet``: metadata (license,
    tags, size category, ``configs`` pointing at the data files) and body (settings, columns, and for a selected
    subset how to send it to raters and bring the MOS back)."""
    from huggingface_hub import DatasetCard, DatasetCardData

    total = sum(len(ds) for ds in splits.values())
    first = next(iter(splits.values()))
    kind_tag = DATASET_KINDS[info.kind]
    data = DatasetCardData(
        license=info.license or DEFAULT_DATASET_LICENSE,
        pretty_name=info.pretty_name or info.repo_id,
        tags=[*BASE_TAGS, kind_tag],
        size_categories=[_size_category(total)],
        configs=[
            {
                "config_name": "default",
                "data_files": [{"split": name, "path": f"data/{name}-*"} for name in splits],
            }
        ],
    )
    columns = first.column_names
    domains: list[str] = []
    if "dataset" in columns:
        for ds in splits.values():
            domains += [d for d in ds.unique("dataset") if d not in domains]
    if info.kind == "selection":
        info.settings.setdefault("domains", domains or None)
    title = (
        info.pretty_name
        or info.repo_id
        or {
            "selection": "mds-vqa selected subset",
            "scored": "mds-vqa scored pool",
            "features": "mds-vqa frame features",
            "pool": "mds-vqa video pool",
        }[info.kind]
    )
    repo = info.repo_id or "path/to/this/folder"
    intro = {
        "selection": "The videos of a pool that MDS-VQA (Model-Informed Data Selection for Video Quality Assessment, "
        "CVPR 2026) chose to send to human raters: hard for the quality model and diverse.",
        "scored": "A video pool scored by a Qwen2.5-VL quality model (f) or by the failure predictor g.",
        "features": "A video pool with open_clip frame features, for the diversity term of MDS-VQA selection.",
        "pool": "A video-quality pool: one row per video with its MOS, in the mds-vqa pool schema.",
    }[info.kind]
    lines = [f"# {title}", "", intro, "", f"{total} rows" + (f" from {', '.join(domains)}" if domains else "") + "."]
    lines += [
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        f'ds = load_dataset("{repo}", split="train")',
        "```",
        "",
    ]
    lines += ["## Settings", ""]
    lines += _settings_rows(info)
    lines.append("")
    if "split" in columns:
        counts: dict[str, int] = {}
        for ds in splits.values():
            for s in ds["split"]:
                counts[str(s)] = counts.get(str(s), 0) + 1
        lines += ["Pool splits (`split` column): " + ", ".join(f"{k}: {v}" for k, v in counts.items()) + ".", ""]
    if "mos" in columns:
        mos = [m for ds in splits.values() for m in ds["mos"] if _finite(m) is not None]
        if mos:
            lines += [f"MOS range: [{min(mos):.4g}, {max(mos):.4g}] over {len(mos)} rated videos.", ""]
    score_column = info.settings.get("score_column")
    lines += ["## Columns", "", "| column | type | meaning |", "|---|---|---|"]
    for name in columns:
        lines.append(f"| `{name}` | {_type_name(first.features[name])} | {_column_text(name, score_column)} |")
    lines.append("")
    if info.kind == "selection":
        lines += _annotation_section(info, repo, domains)
    lines += [
        "## License",
        "",
        "The videos and MOS belong to their source datasets and keep those datasets' terms (see `data_cards/` in the "
        "mds-vqa repository); this repository holds no video file.",
        "",
    ]
    if info.extra_files:
        lines += ["## Files", "", "Besides `data/`: " + ", ".join(f"`{f}`" for f in info.extra_files) + ".", ""]
    if info.notes:
        lines += ["## Notes", "", info.notes, ""]
    _reproduce_section(lines, info.command, info.config)
    _citation_section(lines)
    return DatasetCard(_card_content(data.to_yaml(), "\n".join(lines)))


# --------------------------------------------------------------------------------------------------------------------
# Provenance of a Dataset folder written by a recipe
# --------------------------------------------------------------------------------------------------------------------


def _clip_name(meta: Mapping[str, Any]) -> str | None:
    name, pretrained = meta.get("model_name"), meta.get("pretrained")
    if not name:
        return None
    return f"{name} ({pretrained})" if pretrained and ":" not in str(name) else str(name)


def _upstream(path: str | None, max_depth: int = 6) -> list[tuple[str, dict[str, Any]]]:
    """Side files of the folders a Dataset was made from, nearest first, following their ``pool_path`` /
    ``dataset_path`` entries."""
    found: list[tuple[str, dict[str, Any]]] = []
    seen: set[Path] = set()
    for _ in range(max_depth):
        if not path or not Path(path).is_dir() or Path(path).resolve() in seen:
            break
        folder = Path(path)
        seen.add(folder.resolve())
        nxt = None
        for name in ("feature_extraction.json", "scoring_summary.json", "selection.json"):
            if (folder / name).is_file():
                meta = _read_json(folder / name)
                found.append((name, meta))
                nxt = nxt or meta.get("pool_path") or meta.get("dataset_path")
        path = nxt
    return found


def dataset_provenance(folder: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """``(kind, settings)`` of a Dataset folder written by a recipe, from its side files: ``selection.json``
    (``recipes/select_subset.py``) → ``"selection"``, ``scoring_summary.json`` (``recipes/score.py``) → ``"scored"``,
    ``feature_extraction.json`` (``recipes/extract_features.py``) → ``"features"``, else ``"pool"``.

    For a selection, the CLIP model and frame count come from the pool's ``feature_extraction.json`` and the g
    adapter from the ``scoring_summary.json`` that wrote the difficulty column, following ``pool_path`` /
    ``dataset_path`` upstream; what cannot be found stays "not recorded" in the card.
    """
    folder = Path(folder)
    if (folder / "selection.json").is_file():
        sel = _read_json(folder / "selection.json")
        settings: dict[str, Any] = {
            "pool": sel.get("pool_path"),
            "pool_size": sel.get("pool_size"),
            "selected": sel.get("selected"),
            "budget": sel.get("budget"),
            "strategy": sel.get("strategy"),
            "lam": sel.get("lam"),
            "seed": sel.get("seed"),
        }
        g_column = sel.get("difficulty_column", "difficulty")
        for name, meta in _upstream(sel.get("pool_path")):
            if name == "feature_extraction.json" and "clip_model" not in settings:
                settings["clip_model"] = _clip_name(meta)
                settings["num_frames"] = meta.get("num_frames")
            if name == "scoring_summary.json" and meta.get("score_column") == g_column and "g_adapter" not in settings:
                settings["g_adapter"] = meta.get("adapter")
                settings["g_base_model"] = meta.get("model")
        return "selection", settings
    if (folder / "scoring_summary.json").is_file():
        summary = _read_json(folder / "scoring_summary.json")
        scoring = summary.get("scoring") or {}
        settings = {
            "pool": summary.get("dataset_path"),
            "model": summary.get("model"),
            "adapter": summary.get("adapter"),
            "task": scoring.get("task"),
            "mode": scoring.get("mode"),
            "prompt_variant": scoring.get("prompt_variant")
            or ("direct" if scoring.get("mode") == "expectation" else "thinking"),
            **{k: summary.get(k) for k in ("score_column", "videos", "scored", "unreadable", "nan_scores")},
            "parse_failures": summary.get("parse_failures"),
        }
        return "scored", settings
    if (folder / "feature_extraction.json").is_file():
        meta = _read_json(folder / "feature_extraction.json")
        missing = meta.get("missing")
        return "features", {
            "pool": meta.get("pool_path"),
            "clip_model": _clip_name(meta),
            "num_frames": meta.get("num_frames"),
            "dim": meta.get("dim"),
            "precision": meta.get("precision"),
            "column": meta.get("column"),
            "missing": len(missing) if isinstance(missing, list) else missing,
        }
    return "pool", {}


# --------------------------------------------------------------------------------------------------------------------
# Staging
# --------------------------------------------------------------------------------------------------------------------


def read_card_metadata(folder: str | os.PathLike) -> dict[str, Any]:
    """The YAML metadata of ``<folder>/README.md`` as a dict (empty when there is no card or no metadata)."""
    from huggingface_hub import RepoCard

    path = Path(folder) / "README.md"
    if not path.is_file():
        return {}
    return RepoCard.load(path).data.to_dict()


def is_staged_repository(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds a repository staged by this module (its card is tagged ``mds-vqa``)."""
    return "mds-vqa" in (read_card_metadata(folder).get("tags") or [])


def _new_stage(stage_dir: Path, sources: Sequence[Path]) -> Path:
    stage = stage_dir.resolve()
    for src in sources:
        src = src.resolve()
        if stage == src or src in stage.parents or stage in src.parents:
            raise ValueError(f"stage_dir {stage_dir} must lie outside the artifact folder {src} (and not contain it).")
    if stage.exists() and not stage.is_dir():
        raise FileExistsError(f"stage_dir {stage_dir} exists and is not a folder.")
    if stage.is_dir() and any(stage.iterdir()) and not is_staged_repository(stage):
        raise FileExistsError(
            f"stage_dir {stage_dir} is not empty and is not a staged mds-vqa repository: refusing to replace it."
        )
    partial = stage.with_name(stage.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    return partial


def _finish_stage(partial: Path, stage_dir: Path) -> Path:
    stage = stage_dir.resolve()
    if stage.exists():
        shutil.rmtree(stage)
    partial.rename(stage)
    return stage_dir


def stage_adapter(adapter_dir: str | os.PathLike, stage_dir: str | os.PathLike, info: AdapterCardInfo) -> Path:
    """Write the repository of an adapter into ``stage_dir``: the top-level files of ``adapter_dir`` (adapter weights
    and config, processor files, metrics JSON; no checkpoints, no ``training_args.bin``) and the model card as
    ``README.md``. A previous staging in ``stage_dir`` is replaced; returns ``stage_dir``."""
    src = Path(adapter_dir)
    config = read_adapter_config(src)
    card = adapter_model_card(config, info)
    partial = _new_stage(Path(stage_dir), [src])
    for path in sorted(src.iterdir()):
        if path.is_file() and not path.name.startswith(".") and path.name not in _ADAPTER_SKIPPED_FILES:
            shutil.copy2(path, partial / path.name)
    card.save(partial / "README.md")
    return _finish_stage(partial, Path(stage_dir))


def _write_parquet(ds, data_dir: Path, split: str, max_shard_bytes: int) -> list[str]:
    estimate = ds.data.nbytes * len(ds) / max(1, ds.data.num_rows)
    n = min(max(1, math.ceil(estimate / max_shard_bytes)), len(ds))
    names = []
    for i in range(n):
        name = f"{split}-{i:05d}-of-{n:05d}.parquet"
        ds.shard(n, i, contiguous=True).to_parquet(str(data_dir / name))
        names.append(name)
    return names


def _as_splits(dataset: Any) -> dict[str, Any]:
    from datasets import Dataset, DatasetDict

    if isinstance(dataset, DatasetDict):
        splits = dict(dataset)
    elif isinstance(dataset, Dataset):
        splits = {"train": dataset}
    else:
        raise TypeError(f"Expected a datasets.Dataset or DatasetDict, got {type(dataset).__name__}")
    for name, ds in splits.items():
        if not re.fullmatch(r"\w+(\.\w+)*", name):
            raise ValueError(f"Split name {name!r} cannot name a data file; use letters, digits and underscores.")
        if len(ds) == 0:
            raise ValueError(f"Split {name!r} is empty: there is nothing to publish.")
    return splits


def stage_dataset(
    dataset: Any,
    stage_dir: str | os.PathLike,
    info: DatasetCardInfo,
    *,
    source_dir: str | os.PathLike | None = None,
    max_shard_bytes: int = 500 * 1024**2,
) -> Path:
    """Write the repository of a Dataset (or DatasetDict) into ``stage_dir``: ``data/<split>-XXXXX-of-YYYYY.parquet``
    (shards of at most ``max_shard_bytes`` of Arrow data), the dataset card as ``README.md``, and the top-level side
    files of ``source_dir`` (reports, provenance JSON, figures). :func:`mds_vqa.loading.load_pool` loads it back
    with the same rows and columns. A previous staging in ``stage_dir`` is replaced; returns ``stage_dir``."""
    splits = _as_splits(dataset)
    src = Path(source_dir) if source_dir is not None else None
    extra = []
    if src is not None:
        extra = [
            p
            for p in sorted(src.iterdir())
            if p.is_file()
            and not p.name.startswith(".")
            and p.name not in _SAVE_TO_DISK_FILES
            and p.name != "README.md"
            and p.suffix != ".arrow"
        ]
        info.extra_files = [p.name for p in extra]
    card = dataset_card(splits, info)
    partial = _new_stage(Path(stage_dir), [src] if src is not None else [])
    data_dir = partial / "data"
    data_dir.mkdir()
    for name, ds in splits.items():
        _write_parquet(ds, data_dir, name, max_shard_bytes)
    for path in extra:
        shutil.copy2(path, partial / path.name)
    card.save(partial / "README.md")
    return _finish_stage(partial, Path(stage_dir))


# --------------------------------------------------------------------------------------------------------------------
# Upload
# --------------------------------------------------------------------------------------------------------------------


class HubPushError(RuntimeError):
    """A push failed (no token, Hub unreachable, push refused). The staged repository is kept at ``stage_dir``."""

    def __init__(self, message: str, stage_dir: str | os.PathLike, repo_id: str):
        super().__init__(message)
        self.stage_dir = Path(stage_dir)
        self.repo_id = repo_id


@dataclass
class PushedRepo:
    """Where a push went."""

    repo_id: str
    repo_type: str
    repo_url: str
    commit_url: str | None
    revision: str | None


def push_to_hub(
    stage_dir: str | os.PathLike,
    repo_id: str,
    *,
    repo_type: str = "model",
    private: bool = True,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    api: Any = None,
) -> PushedRepo:
    """Upload a staged repository in one commit: ``create_repo(exist_ok=True)``, ``create_branch`` when
    ``revision`` is a branch other than main, then ``upload_folder``.

    ``api`` is an ``huggingface_hub.HfApi`` (default: ``HfApi(token=token)``). The token is ``token``, else the
    api's, else :func:`huggingface_hub.get_token` (``HF_TOKEN`` or ``hf auth login``). Nothing is deleted: on a
    missing token, an unreachable Hub or a refused push, :class:`HubPushError` says where the staged copy is and how
    to push it again. No token is ever written to the logs or the message.
    """
    from huggingface_hub import HfApi, get_token

    # HTTPError: the HTTP backend's base error (connection refused, DNS failure, timeout); HfHubHTTPError derives
    # from it, so it is caught first.
    from huggingface_hub.errors import HfHubHTTPError, HTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled

    stage = Path(stage_dir)
    if not (stage / "README.md").is_file():
        raise FileNotFoundError(f"{stage} is not a staged repository (no README.md card): stage the artifact first.")
    if repo_type not in ("model", "dataset"):
        raise ValueError(f"repo_type must be 'model' or 'dataset', got {repo_type!r}")
    flag = "--hub_model_id" if repo_type == "model" else "--hub_dataset_id"
    again = (
        f"Nothing in {stage} was lost; push it again with: python recipes/push.py --artifact_dir {stage} "
        f"{flag} {repo_id}"
        + (f" --hub_revision {revision}" if revision else "")
        + ("" if private else " --hub_private false")
    )
    token = token or getattr(api, "token", None) or get_token()
    if not token:
        raise HubPushError(
            f"No Hugging Face token found, so nothing was uploaded to {repo_id}. Log in with `hf auth login` or set "
            f"HF_TOKEN. {again}",
            stage,
            repo_id,
        )
    api = api if api is not None else HfApi(token=token)
    message = commit_message or f"Upload {stage.name} with mds-vqa"
    logger.info(
        "Pushing %s to the %s repo %s%s", stage, repo_type, repo_id, f" (branch {revision})" if revision else ""
    )
    try:
        url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        repo_id = url.repo_id
        if revision not in (None, "main"):
            api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(stage),
            repo_type=repo_type,
            commit_message=message,
            revision=revision,
        )
    except LocalTokenNotFoundError as err:
        raise HubPushError(
            f"No Hugging Face token found, so nothing was uploaded to {repo_id}. Log in with `hf auth login` or set "
            f"HF_TOKEN. {again}",
            stage,
            repo_id,
        ) from err
    except HfHubHTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", "?")
        raise HubPushError(
            f"The Hub refused the push to the {repo_type} repo {repo_id} (HTTP {status}: "
            f"{redact(str(err), token)}). Check the repo id and that your token may write to it. {again}",
            stage,
            repo_id,
        ) from err
    except (OfflineModeIsEnabled, ConnectionError, TimeoutError, HTTPError) as err:
        raise HubPushError(
            f"Could not reach the Hugging Face Hub to push {repo_id} ({type(err).__name__}: "
            f"{redact(str(err), token)}). {again}",
            stage,
            repo_id,
        ) from err
    return PushedRepo(
        repo_id=repo_id,
        repo_type=repo_type,
        repo_url=str(url),
        commit_url=commit.commit_url,
        revision=revision,
    )


# --------------------------------------------------------------------------------------------------------------------
# One call for recipes
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class Published:
    """A staged repository, and where it was pushed (``None`` when it was only staged)."""

    stage_dir: Path
    pushed: PushedRepo | None


def publish_adapter(
    adapter_dir: str | os.PathLike,
    hub_args: HubArguments,
    *,
    kind: str,
    api: Any = None,
    **card: Any,
) -> Published | None:
    """Stage an adapter folder with its model card into ``hub_args.stage_dir`` (default ``<adapter_dir>.hub``) and
    push it when ``hub_args.push_to_hub``. ``kind`` is ``"failure-predictor"`` or ``"grpo"``; ``card`` holds the
    other :class:`AdapterCardInfo` fields (``base_model``, ``datasets``, ``source_data``, ``selected_subsets``,
    ``training``, ``eval_results``, ``prompt_variant``…; ``command`` defaults to this run's command line). Returns
    ``None`` (and does nothing) unless staging or pushing was asked. Run it on the main process only."""
    if not hub_args.wants_publishing:
        return None
    hub_args.check("model")
    card.setdefault("command", reproduce_command())
    card.setdefault("config", _config_from_argv())
    info = AdapterCardInfo(
        kind=kind,
        repo_id=card.pop("repo_id", None) or hub_args.hub_model_id,
        license=card.pop("license", None) or hub_args.hub_license,
        **card,
    )
    stage = stage_adapter(adapter_dir, hub_args.stage_dir_for(adapter_dir), info)
    logger.info("Staged the %s adapter with its model card in %s", kind, stage)
    pushed = None
    if hub_args.push_to_hub:
        pushed = push_to_hub(
            stage,
            hub_args.hub_model_id,
            repo_type="model",
            private=hub_args.hub_private,
            revision=hub_args.hub_revision,
            commit_message=f"Upload mds-vqa {kind} adapter with its model card",
            api=api,
        )
        logger.info("Pushed %s to %s (%s)", stage, pushed.repo_url, pushed.commit_url)
    return Published(stage_dir=Path(stage), pushed=pushed)


def publish_dataset(
    dataset: Any,
    hub_args: HubArguments,
    *,
    kind: str | None = None,
    settings: Mapping[str, Any] | None = None,
    api: Any = None,
    **card: Any,
) -> Published | None:
    """Stage a Dataset with its dataset card into ``hub_args.stage_dir`` and push it when ``hub_args.push_to_hub``.

    ``dataset`` is a folder written with ``save_to_disk`` by a recipe (its kind and settings are then read from the
    side files, :func:`dataset_provenance`, and the side files are published too; the default stage is
    ``<folder>.hub``), or a ``Dataset``/``DatasetDict`` (then ``kind`` and ``hub_args.stage_dir`` are needed).
    ``settings`` adds to or overrides the recorded settings (e.g. ``{"g_adapter": "user/g"}``); ``card`` holds the
    other :class:`DatasetCardInfo` fields. Returns ``None`` (and does nothing) unless staging or pushing was asked.
    """
    if not hub_args.wants_publishing:
        return None
    hub_args.check("dataset")
    source_dir = None
    recorded: dict[str, Any] = {}
    if isinstance(dataset, (str, os.PathLike)):
        from datasets import load_from_disk

        source_dir = Path(dataset)
        if not source_dir.is_dir():
            raise FileNotFoundError(f"Dataset folder not found: {source_dir}")
        detected, recorded = dataset_provenance(source_dir)
        kind = kind or detected
        dataset = load_from_disk(str(source_dir))
        stage_dir = hub_args.stage_dir_for(source_dir)
    elif hub_args.stage_dir is None:
        raise ValueError("publish_dataset of an in-memory Dataset needs hub_args.stage_dir.")
    else:
        stage_dir = Path(hub_args.stage_dir)
    if kind is None:
        raise ValueError(f"Say which Dataset this is: kind must be one of {sorted(DATASET_KINDS)}.")
    card.setdefault("command", reproduce_command())
    card.setdefault("config", _config_from_argv())
    info = DatasetCardInfo(
        kind=kind,
        repo_id=card.pop("repo_id", None) or hub_args.hub_dataset_id,
        license=card.pop("license", None) or hub_args.hub_license,
        settings={**recorded, **dict(settings or {})},
        **card,
    )
    stage = stage_dataset(dataset, stage_dir, info, source_dir=source_dir)
    logger.info("Staged the %s Dataset with its card in %s", kind, stage)
    pushed = None
    if hub_args.push_to_hub:
        rows = sum(len(ds) for ds in _as_splits(dataset).values())
        pushed = push_to_hub(
            stage,
            hub_args.hub_dataset_id,
            repo_type="dataset",
            private=hub_args.hub_private,
            revision=hub_args.hub_revision,
            commit_message=f"Upload mds-vqa {DATASET_KINDS[kind]} ({rows} rows) with its dataset card",
            api=api,
        )
        logger.info("Pushed %s to %s (%s)", stage, pushed.repo_url, pushed.commit_url)
    return Published(stage_dir=Path(stage), pushed=pushed)
