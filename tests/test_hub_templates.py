"""Cards are rendered from the Jinja templates in ``mds_vqa/hub/templates`` with ``huggingface_hub``'s
``from_template``, as TRL renders its model cards; the templates ship with the package."""

from __future__ import annotations

import shutil
from pathlib import Path

from datasets import Dataset

import mds_vqa.hub.cards
from mds_vqa.hub import AdapterCardInfo, DatasetCardInfo, adapter_model_card, dataset_card

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "src" / "mds_vqa" / "hub" / "templates"
BASE = "hollow404/VQR1-7B-YouTubeUGC"
LORA = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.05, "target_modules": ["q_proj"], "peft_type": "LORA"}


def _failure_predictor_card():
    info = AdapterCardInfo(
        kind="failure-predictor",
        base_model=BASE,
        training={"pairing": "in_batch"},
        eval_results=[{"domain": "src", "srcc": 0.4}],
        notes="Trained on a toy pool.",
    )
    return adapter_model_card(LORA, info)


def _selection_card():
    subset = Dataset.from_dict({"video_id": ["a"], "dataset": ["live"], "rank": [1]})
    info = DatasetCardInfo(kind="selection", extra_files=["report.md"], notes="A note.", settings={"strategy": "mds"})
    return dataset_card({"train": subset}, info)


def _headings(template: str) -> list[str]:
    """The fixed section headings of a template, in order."""
    return [line for line in (TEMPLATES / template).read_text().splitlines() if line.startswith("## ")]


def test_the_cards_have_every_heading_of_their_template_in_order():
    for card, template in ((_failure_predictor_card(), "adapter_card.md"), (_selection_card(), "dataset_card.md")):
        lines = card.text.splitlines()
        headings = _headings(template)
        assert len(headings) >= 8
        assert [lines.index(h) for h in headings] == sorted(lines.index(h) for h in headings), template


def test_a_change_to_a_template_file_shows_up_in_the_card(tmp_path, monkeypatch):
    edited = tmp_path / "templates"
    shutil.copytree(TEMPLATES, edited)
    for name in ("adapter_card.md", "dataset_card.md"):
        text = (
            (edited / name)
            .read_text()
            .replace("## Citation", "## Acknowledgements\n\nThanks, {{ title }}.\n\n## Citation")
        )
        (edited / name).write_text(text)
    monkeypatch.setattr(mds_vqa.hub.cards, "TEMPLATES", edited)
    assert "## Acknowledgements\n\nThanks, mds-vqa failure predictor g." in _failure_predictor_card().text
    assert "## Acknowledgements\n\nThanks, mds-vqa selected subset." in _selection_card().text


def test_the_trainers_tags_join_the_cards_tags():
    from mds_vqa.grpo import VideoGRPOTrainer

    info = AdapterCardInfo(kind="grpo", base_model=BASE, tags=VideoGRPOTrainer._tag_names)
    tags = adapter_model_card(LORA, info).data.tags
    assert tags == ["video-quality-assessment", "mds-vqa", "lora", "grpo", "trl"]


def test_the_templates_ship_as_package_data():
    package_data = (ROOT / "pyproject.toml").read_text().split("[tool.setuptools.package-data]")[1].split("\n[")[0]
    assert '"hub/templates/*.md"' in package_data
    assert sorted(p.name for p in TEMPLATES.glob("*.md")) == ["adapter_card.md", "dataset_card.md"]
    assert mds_vqa.hub.cards.TEMPLATES.resolve() == TEMPLATES.resolve()
