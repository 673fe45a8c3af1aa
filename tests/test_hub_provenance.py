"""Provenance records: one schema, one per artifact, each input's record embedded when the record is written, so a
card never follows a path to a parent folder."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from datasets import Dataset

from mds_vqa.hub import (
    PROVENANCE_SCHEMA,
    HubArguments,
    dataset_kind,
    dataset_provenance,
    is_staged_repository,
    publish_dataset,
    read_provenance,
    write_provenance,
)

SECRET = "hf_ThisIsASecretTokenValue0123456789"


@dataclass
class _RecipeArguments:
    """A recipe's arguments, with a token among them."""

    pool_path: str
    hub_token: str | None = None


def _chain(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A pool scored by g (recipe score) → its frame features (extract_features) → a selected subset (select_subset),
    each folder a saved Dataset with its record."""
    scored, features, selection = (tmp_path / name for name in ("scored", "features", "selection"))
    for folder in (scored, features, selection):
        Dataset.from_dict({"video_id": ["a", "b"], "dataset": ["live", "live"]}).save_to_disk(str(folder))
    g = {"model": "org/f", "adapter": "me/g", "score_column": "difficulty"}
    write_provenance(scored, recipe="score", summary=g, inputs=["pools/target"])
    clip = {"model_name": "ViT-B-32", "pretrained": "openai", "num_frames": 8}
    write_provenance(features, recipe="extract_features", summary=clip, inputs=[scored])
    picks = {"pool_path": str(features), "strategy": "mds", "budget": "2", "selected": 2, "pool_size": 2, "lam": 0.25}
    write_provenance(selection, recipe="select_subset", summary=picks, inputs=[features])
    return scored, features, selection


def test_a_record_holds_the_run_in_one_schema_without_any_token(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    config = tmp_path / "run.yaml"
    config.write_text(f"pool_path: p\nhub_token: {SECRET}\n")
    argv = ["recipes/score.py", "--config", str(config), "--hub_token", SECRET]
    out = tmp_path / "out"
    out.mkdir()
    path = write_provenance(
        out,
        recipe="score",
        arguments=[_RecipeArguments("p", hub_token=SECRET), None],
        summary={"scored": 3, "folder": out},
        inputs=["org/pool", None],
        argv=argv,
    )
    data = json.loads(path.read_text())
    assert path == out / "provenance.json" and SECRET not in path.read_text()
    assert list(data) == [
        "schema", "recipe", "created", "mds_vqa_version", "versions", "command", "config", "arguments", "summary",
        "inputs",
    ]  # fmt: skip
    assert data["schema"] == PROVENANCE_SCHEMA == 1 and data["recipe"] == "score" and data["mds_vqa_version"]
    assert set(data["versions"]) == {"torch", "transformers", "trl", "datasets", "peft"} and all(
        data["versions"].values()
    )
    assert data["command"] == f"python recipes/score.py --config {config} --hub_token '<redacted>'"
    assert data["config"] == {"path": str(config), "text": "pool_path: p\nhub_token: <redacted>\n"}
    assert data["arguments"] == {"_RecipeArguments": {"pool_path": "p", "hub_token": "<redacted>"}}
    assert data["summary"] == {"scored": 3, "folder": str(out)}
    assert data["inputs"] == [{"path": "org/pool", "provenance": None}]  # a Hub id has no record to embed
    assert read_provenance(out).to_dict() == data


def test_a_record_embeds_the_records_of_its_inputs_recursively(tmp_path):
    scored, features, selection = _chain(tmp_path)
    record = read_provenance(selection)
    assert record.inputs == [{"path": str(features), "provenance": read_provenance(features).to_dict()}]
    assert [r.recipe for r in record.ancestors()] == ["extract_features", "score"]
    assert record.nearest("score").summary["adapter"] == "me/g"
    assert record.nearest("score", lambda r: r.summary["score_column"] == "quality") is None


def test_a_card_keeps_its_parents_facts_after_the_parent_folders_are_deleted(tmp_path):
    scored, features, selection = _chain(tmp_path)
    before = publish_dataset(selection, HubArguments(stage_dir=str(tmp_path / "a"))).stage_dir / "README.md"
    shutil.rmtree(scored)
    shutil.rmtree(features)
    after = publish_dataset(selection, HubArguments(stage_dir=str(tmp_path / "b"))).stage_dir / "README.md"
    card = after.read_text()
    assert "| CLIP model (frame features) | ViT-B-32 (openai) |" in card and "| Frames per video | 8 |" in card
    assert "| Failure predictor g (adapter) | [`me/g`](https://huggingface.co/me/g) |" in card
    assert card == before.read_text()


def test_the_kind_of_a_dataset_folder_is_read_from_its_record(tmp_path):
    folders = _chain(tmp_path)
    assert [dataset_kind(f) for f in folders] == ["scored", "features", "selection"]
    plain = tmp_path / "plain"
    Dataset.from_dict({"video_id": ["a"]}).save_to_disk(str(plain))
    assert dataset_kind(plain) == "pool" and dataset_provenance(plain) == ("pool", {})


def test_another_schema_or_a_missing_key_is_a_clear_error(tmp_path):
    path = write_provenance(tmp_path, recipe="score")
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "schema": 2}))
    with pytest.raises(ValueError, match="schema 2; this mds-vqa reads schema 1"):
        read_provenance(tmp_path)
    del data["summary"]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"lacks \['summary'\]"):
        read_provenance(tmp_path)
    assert read_provenance(tmp_path / "elsewhere") is None


def test_a_folder_with_a_file_staging_leaves_out_is_never_taken_for_a_staged_one(tmp_path):
    (tmp_path / "README.md").write_text("---\ntags:\n- mds-vqa\n---\n\n# g\n")  # as PEFT writes a tagged model's
    assert is_staged_repository(tmp_path)
    (tmp_path / "training_args.bin").write_bytes(b"pickled TrainingArguments")
    assert not is_staged_repository(tmp_path)
