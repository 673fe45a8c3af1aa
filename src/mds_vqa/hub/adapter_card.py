"""The model card of an adapter (the failure predictor g, or the actively fine-tuned quality model), rendered from
``templates/adapter_card.md``."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..prompts import _ANSWER_RE, _NUMBER_RE, get_prompt
from .cards import BASE_TAGS, DEFAULT_ADAPTER_LICENSE, finite, fmt, hub_link, is_local_path, render_card
from .kinds import ADAPTER_KINDS

logger = logging.getLogger(__name__)

__all__ = [
    "AdapterCardInfo",
    "ADAPTER_WEIGHTS",
    "adapter_model_card",
    "failure_predictor_eval_rows",
    "read_adapter_config",
]

ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")

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
    predictor, SRCC is between g and f's error ``|f − MOS|``, not the MOS. ``tags`` are added to the card's own (the
    tags the trainer put on the model, e.g. ``trl``, ``grpo``).
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
    tags: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.kind not in ADAPTER_KINDS:
            raise ValueError(f"Unknown adapter kind {self.kind!r}; expected one of {sorted(ADAPTER_KINDS)}")
        self.datasets = list(self.datasets or [])
        self.selected_subsets = list(self.selected_subsets or [])
        self.tags = list(self.tags or [])
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
    if not any((folder / w).is_file() for w in ADAPTER_WEIGHTS):
        raise FileNotFoundError(
            f"{folder} has adapter_config.json but no adapter weights ({' or '.join(ADAPTER_WEIGHTS)})"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} should hold a JSON object, got {type(data).__name__}")
    return data


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
        if finite(value) is not None:
            row[key] = float(value)
    return [row] if len(row) > (2 if split is not None else 1) else []


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
    hub_base = None if is_local_path(base) else base
    if hub_base is None:
        logger.warning("Base model %s is a local path: the card's base_model metadata is left out.", base)
    evals = _eval_results(info)
    title = info.repo_id or ("mds-vqa failure predictor g" if fp else "mds-vqa actively fine-tuned quality model")
    data = ModelCardData(
        base_model=hub_base,
        library_name="peft",
        license=info.license or DEFAULT_ADAPTER_LICENSE,
        tags=list(dict.fromkeys([*BASE_TAGS, "lora", info.kind, *info.tags])),
        datasets=info.datasets or None,
        model_name=title if evals else None,
        eval_results=evals or None,
    )
    return render_card(
        ModelCard,
        data,
        "adapter_card.md",
        title=title,
        failure_predictor=fp,
        base=base,
        base_link=hub_link(base),
        repo=info.repo_id or "path/to/this/folder",
        **_reading_rules(info),
        lora_rows=_lora_rows(adapter_config),
        source_data=info.source_data,
        dataset_links=[hub_link(d, "dataset") for d in info.datasets],
        subset_links=[hub_link(d, "dataset") for d in info.selected_subsets],
        num_train_examples=info.num_train_examples,
        training_rows=[(k, fmt(v)) for k, v in info.training.items() if v is not None],
        **(_evaluation(info) if evals else {}),
        notes=info.notes,
        command=info.command,
        config=info.config,
    )


def _eval_results(info: AdapterCardInfo):
    from huggingface_hub import EvalResult

    fp = info.kind == "failure-predictor"
    task_name = "Failure prediction for video quality assessment" if fp else "Video quality assessment"
    results = []
    for row in info.eval_results:
        for key, (label, _) in _METRICS.items():
            value = finite(row.get(key))
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


def _evaluation(info: AdapterCardInfo) -> dict[str, Any]:
    """The template's evaluation table: columns, formatted rows, the metric legend."""
    keys = [k for k in _METRICS if any(finite(r.get(k)) is not None for r in info.eval_results)]
    rows = []
    for row in info.eval_results:
        cells = ["—" if v is None else f"{v:.4f}" for v in (finite(row.get(k)) for k in keys)]
        rows.append([str(row["domain"]), str(row.get("split") or "—"), *cells])
    return {
        "eval_description": info.eval_description,
        "eval_columns": [_METRICS[k][0] for k in keys],
        "eval_rows": rows,
        "eval_legend": "; ".join(f"{_METRICS[k][0]}: {_METRICS[k][1]}" for k in keys),
    }


def _lora_rows(cfg: Mapping[str, Any]) -> list[tuple[str, str]]:
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
    return [(name, f"`{v}`" if isinstance(v, str) else "none" if v is None else fmt(v)) for name, v in rows]


def _reading_rules(info: AdapterCardInfo) -> dict[str, Any]:
    """The template's prompt, frame sampling and answer-parsing facts."""
    from ..modeling import VideoSamplingConfig
    from ..scoring import SCORE_DIGITS  # imports torch: only when a model card is written

    recorded = info.sampling is not None
    s = dict(info.sampling) if recorded else asdict(VideoSamplingConfig())
    if s.get("nframes"):
        frames = f"exactly {s['nframes']} frames"
    else:
        frames = f"{s.get('fps') or 2.0} fps, {s.get('min_frames')}–{s.get('max_frames')} frames"
    if s.get("resized_height") and s.get("resized_width"):
        size = f"resized to {s['resized_height']}×{s['resized_width']} (snapped to multiples of 28)"
    else:
        size = f"resized by pixel count ({s.get('min_pixels') or 'default'}–{s.get('max_pixels') or 'default'} pixels)"
    return {
        "task": info.task,
        "prompt_variant": info.prompt_variant,
        "answer_prefix": info.answer_prefix,
        "prompt": get_prompt(info.task, info.prompt_variant),
        "direct_prompt": get_prompt(info.task, "direct") if info.prompt_variant != "direct" else None,
        "sampling_recorded": recorded,
        "frames": frames,
        "frame_size": size,
        "digits": ", ".join(str(d) for d in SCORE_DIGITS),
        "answer_pattern": _ANSWER_RE.pattern,
        "number_pattern": _NUMBER_RE.pattern,
    }
