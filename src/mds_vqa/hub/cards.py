"""What the model and dataset cards share: the Jinja templates they are rendered from, their fixed metadata and the
small formatting rules of their tables."""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import Any

from .command import redact

__all__ = [
    "BASE_TAGS",
    "CITATION",
    "DEFAULT_ADAPTER_LICENSE",
    "DEFAULT_DATASET_LICENSE",
    "TEMPLATES",
    "render_card",
]

TEMPLATES = Path(__file__).parent / "templates"

BASE_TAGS = ("video-quality-assessment", "mds-vqa")

CITATION = """@inproceedings{mdsvqa2026,
  title     = {Model-Informed Data Selection for Video Quality Assessment},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2026}
}"""

DEFAULT_ADAPTER_LICENSE = "apache-2.0"  # Qwen2.5-VL-7B and this project; override with --hub_license
DEFAULT_DATASET_LICENSE = "other"  # the videos and MOS stay under their source dataset's terms


def render_card(card_class: type, card_data: Any, template: str, **variables: Any):
    """``card_class.from_template(card_data, template_path=templates/<template>, **variables)`` (as TRL renders its
    model cards), with the citation and the recorded command available to the template and every token redacted
    from the result."""
    config = variables.pop("config", None)
    card = card_class.from_template(
        card_data,
        template_path=str(TEMPLATES / template),
        citation=CITATION,
        config_path=config[0] if config else None,
        config_text=config[1].rstrip("\n") if config else None,
        **variables,
    )
    return card_class(redact(card.content.rstrip("\n") + "\n"))


def is_local_path(name: str) -> bool:
    """True when ``name`` names a folder or file on this machine rather than a Hub id."""
    return os.path.isabs(name) or name.startswith((".", "~")) or Path(name).exists()


def hub_link(name: str | None, repo_type: str = "model") -> str:
    """A Markdown link to the Hub repo ``name``; a local path is shown as code, a missing one as "not recorded"."""
    if not name:
        return "not recorded"
    if is_local_path(name):
        return f"`{name}` (local)"
    prefix = "datasets/" if repo_type == "dataset" else ""
    return f"[`{name}`](https://huggingface.co/{prefix}{name})"


def fmt(value: Any) -> str:
    """A value as a table cell: 4 significant digits for floats, a list as code items, ``None`` as not recorded."""
    if value is None:
        return "not recorded"
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(f"`{v}`" for v in value) if value else "none"
    return str(value)


def finite(value: Any) -> float | None:
    """``value`` as a float, ``None`` for a missing or non-finite value; a clear error for a non-number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"Expected a number (or null), got {value!r}")
    v = float(value)
    return v if math.isfinite(v) else None
