"""Publishing: model and dataset cards, staged folders that round-trip as a consumer loads them, and the upload.

The Hub cannot be reached from the tests: the upload goes to ``RecordingHfApi``, a local stand-in for
``huggingface_hub.HfApi`` that records every call with its arguments (and what the uploaded folder held), the only
stand-in in these tests. The unreachable-Hub case uses the real ``HfApi``.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import httpx2
import numpy as np
import pytest
import torch
import yaml
from conftest import load_recipe
from datasets import Array2D, Dataset, Features, Value, load_dataset, load_from_disk
from huggingface_hub import CommitInfo, HfApi, ModelCard, RepoUrl
from huggingface_hub.errors import HfHubHTTPError
from transformers import AutoProcessor

from mds_vqa.data import POOL_FEATURES
from mds_vqa.hub import (
    CITATION,
    AdapterCardInfo,
    DatasetCardInfo,
    HubArguments,
    HubPushError,
    TrainerHubArguments,
    adapter_model_card,
    dataset_provenance,
    detect_artifact,
    hub_arguments_for_trainer,
    publish_adapter,
    publish_dataset,
    push_to_hub,
    read_adapter_config,
    read_card_metadata,
    read_provenance,
    redact,
    reproduce_command,
    stage_dataset,
    write_provenance,
)
from mds_vqa.modeling import VideoSamplingConfig, load_model_and_processor, lora_config
from mds_vqa.prompts import _ANSWER_RE, _NUMBER_RE, DIFFICULTY_PROMPT_DIRECT, SCORING_PROMPT, SCORING_PROMPT_DIRECT
from mds_vqa.scoring import ScoringConfig, score_videos

SAMPLING = VideoSamplingConfig(resized_height=56, resized_width=56, nframes=2)
SECRET = "hf_ThisIsASecretTokenValue0123456789"
BASE = "hollow404/VQR1-7B-YouTubeUGC"


class RecordingHfApi:
    """Local stand-in for ``huggingface_hub.HfApi``: records each call and its arguments, and the files the uploaded
    folder held when ``upload_folder`` was called. ``fail_on`` names a method that raises ``error`` instead."""

    token = None  # like HfApi(): the token then comes from HF_TOKEN / the login

    def __init__(self, fail_on: str | None = None, error: Exception | None = None):
        self.calls: list[tuple[str, dict]] = []
        self.fail_on, self.error = fail_on, error

    def _record(self, name: str, **kwargs) -> None:
        self.calls.append((name, kwargs))
        if name == self.fail_on:
            raise self.error

    def create_repo(self, repo_id, *, repo_type=None, private=None, exist_ok=False):
        self._record("create_repo", repo_id=repo_id, repo_type=repo_type, private=private, exist_ok=exist_ok)
        return RepoUrl(f"https://huggingface.co/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}")

    def create_branch(self, repo_id, *, branch, repo_type=None, exist_ok=False):
        self._record("create_branch", repo_id=repo_id, branch=branch, repo_type=repo_type, exist_ok=exist_ok)

    def upload_folder(self, *, repo_id, folder_path, repo_type=None, commit_message=None, revision=None):
        files = sorted(str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*") if p.is_file())
        self._record(
            "upload_folder",
            repo_id=repo_id,
            folder_path=folder_path,
            repo_type=repo_type,
            commit_message=commit_message,
            revision=revision,
            files=files,
        )
        prefix = "datasets/" if repo_type == "dataset" else ""
        return CommitInfo(f"https://huggingface.co/{prefix}{repo_id}/commit/0123abc", commit_message, "", "0123abc")


def _yaml_metadata(readme: Path) -> dict:
    text = readme.read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def _difficulty_scores(model, processor, videos) -> list[float]:
    config = ScoringConfig(task="difficulty")
    return [r["score"] for r in score_videos(model, processor, videos, config, SAMPLING)]


def _assert_same_table(a: Dataset, b: Dataset) -> None:
    assert a.features == b.features and a.column_names == b.column_names and len(a) == len(b)
    ta, tb = a.with_format("arrow")[:], b.with_format("arrow")[:]
    for name in a.column_names:
        ca, cb = ta[name].combine_chunks(), tb[name].combine_chunks()
        if ca.type in ("double", "float"):  # NaN == NaN here
            np.testing.assert_array_equal(ca.to_numpy(zero_copy_only=False), cb.to_numpy(zero_copy_only=False))
        else:
            assert ca.equals(cb), name


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, tiny_model_dir, video_dir):
    """A LoRA adapter with non-zero weights saved the way trainers save it (plus a checkpoint folder, the pickled
    training arguments and the trainer's eval metrics), the difficulty scores it gives before saving, and the base
    model's."""
    from peft import get_peft_model

    videos = [r["video"] for r in video_dir[1][:3]]
    model, processor = load_model_and_processor(tiny_model_dir, dtype="float32")
    base_scores = _difficulty_scores(model, processor, videos)
    peft_model = get_peft_model(model, lora_config(r=4, lora_alpha=8))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.add_(0.5 * torch.randn_like(param))
    peft_model.eval()
    scores = _difficulty_scores(peft_model, processor, videos)
    folder = tmp_path_factory.mktemp("adapter") / "g"
    peft_model.save_pretrained(str(folder))
    (folder / "training_args.bin").write_bytes(b"pickled TrainingArguments with hub_token")
    (folder / "checkpoint-2").mkdir()
    (folder / "checkpoint-2" / "optimizer.pt").write_bytes(b"optimizer state")
    (folder / "eval_results.json").write_text(json.dumps({"eval_srcc": 0.41, "eval_pairwise_accuracy": 0.66}))
    return folder, videos, base_scores, scores


def _selection(tmp_path: Path, *, upstream_pool_path: bool = True) -> Path:
    """A selected subset saved by recipes/select_subset.py's layout, with the provenance chain of its pool: the feature
    Dataset (recipe extract_features) made from the pool scored by g (recipe score), each record embedded in the
    next."""
    scored = tmp_path / "scored_g"
    scored.mkdir()
    summary = {"dataset_path": "pools/target", "model": BASE, "adapter": "me/mds-vqa-g", "score_column": "difficulty"}
    write_provenance(scored, recipe="score", summary=summary, inputs=["pools/target"])
    features = tmp_path / "features"
    features.mkdir()
    meta = {"model_name": "ViT-B-32", "pretrained": "openai", "num_frames": 8, "dim": 4, "missing": []}
    if upstream_pool_path:
        meta["pool_path"] = str(scored)
    write_provenance(features, recipe="extract_features", summary=meta, inputs=[meta.get("pool_path")])
    feats = Features(
        {
            **POOL_FEATURES,
            "features": Array2D(shape=(None, 4), dtype="float32"),
            "rank": Value("int64"),
            "g": Value("float64"),
            "diversity": Value("float64"),
            "pool_index": Value("int64"),
        }
    )
    rng = np.random.default_rng(0)
    ds = Dataset.from_dict(
        {
            "video_id": ["v07", "v02", "v31"],
            "video": ["/data/target/v07.mp4", "/data/target/v02.mp4", "/data/target/v31.mp4"],
            "mos": [None, None, None],
            "mos_std": [None, None, None],
            "dataset": ["live_vqc"] * 3,
            "split": ["train", "train", "test"],
            "features": [rng.normal(size=(n, 4)).astype(np.float32) for n in (2, 3, 2)],
            "rank": [1, 2, 3],
            "g": [4.1, 3.7, float("nan")],
            "diversity": [None, 0.83, 0.61],
            "pool_index": [7, 2, 31],
        },
        features=feats,
    )
    out = tmp_path / "selection"
    ds.save_to_disk(str(out))
    record = {
        "pool_path": str(features),
        "strategy": "mds",
        "budget": "5%",
        "lam": 0.25,
        "seed": 3,
        "difficulty_column": "difficulty",
        "pool_size": 60,
        "selected": 3,
    }
    (out / "selection.json").write_text(json.dumps(record))
    write_provenance(out, recipe="select_subset", summary=record, inputs=[str(features)])
    (out / "report.md").write_text("# Selection report\n")
    return out


# ------------------------------------------------------------------ model cards


def test_model_card_metadata_parses_back_with_the_hub_keys_and_a_model_index_per_domain(adapter, tmp_path):
    folder = adapter[0]
    info = AdapterCardInfo(
        kind="grpo",
        base_model=BASE,
        repo_id="me/vqr1-mds-livevqc",
        datasets=["me/sdr-source", "me/livevqc-mds-5pct"],
        selected_subsets=["me/livevqc-mds-5pct"],
        eval_results=[
            {"domain": "live_vqc", "split": "test", "srcc": 0.8123, "plcc": 0.8345, "model": "base+mds"},
            {"domain": "konvid_1k", "split": "test", "srcc": 0.7, "plcc": float("nan")},
        ],
    )
    card = adapter_model_card(read_adapter_config(folder), info)
    card.save(tmp_path / "README.md")
    meta = _yaml_metadata(tmp_path / "README.md")
    assert meta["base_model"] == BASE and meta["library_name"] == "peft" and meta["license"] == "apache-2.0"
    assert meta["tags"] == ["video-quality-assessment", "mds-vqa", "lora", "grpo"]
    assert meta["datasets"] == ["me/sdr-source", "me/livevqc-mds-5pct"]
    results = meta["model-index"][0]["results"]
    got = {(r["dataset"]["name"], m["type"]): m["value"] for r in results for m in r["metrics"]}
    assert got == {("live_vqc", "srcc"): 0.8123, ("live_vqc", "plcc"): 0.8345, ("konvid_1k", "srcc"): 0.7}
    # huggingface_hub reads the model-index back into the same results
    parsed = ModelCard.load(tmp_path / "README.md").data.eval_results
    assert {(e.dataset_name, e.metric_type, e.metric_value) for e in parsed} == {
        ("live_vqc", "srcc", 0.8123),
        ("live_vqc", "plcc", 0.8345),
        ("konvid_1k", "srcc", 0.7),
    }
    body = card.text
    assert SCORING_PROMPT in body and SCORING_PROMPT_DIRECT in body  # generation and expectation prompts
    assert "me/livevqc-mds-5pct" in body and CITATION in body


def test_failure_predictor_card_says_what_g_means_with_its_prompt_parsing_rule_and_lora(adapter, tmp_path):
    folder = adapter[0]
    config = read_adapter_config(folder)
    info = AdapterCardInfo(
        kind="failure-predictor",
        base_model=BASE,
        source_data="pools/sdr_scored_by_f",
        command="python recipes/train_failure_predictor.py --config recipes/configs/youtube_sfv_sdr/failure_predictor.yaml",
    )
    card = adapter_model_card(config, info)
    body = card.text
    assert "Higher g means f is expected to err more" in body
    assert DIFFICULTY_PROMPT_DIRECT in body  # the exact prompt g was trained with
    assert _ANSWER_RE.pattern in body and _NUMBER_RE.pattern in body
    assert f"| rank r | {config['r']} |" in body and f"| α (lora_alpha) | {config['lora_alpha']} |" in body
    assert "pools/sdr_scored_by_f" in body and "recipes/configs/youtube_sfv_sdr/failure_predictor.yaml" in body
    assert "Intended use and limits" in body and "@inproceedings{mdsvqa2026" in body
    assert "No evaluation results were recorded" in body
    meta = card.data.to_dict()
    assert "failure-predictor" in meta["tags"] and "model-index" not in meta and "eval_results" not in meta


def test_a_local_base_model_path_stays_out_of_the_base_model_metadata(adapter):
    folder = adapter[0]
    config = read_adapter_config(folder)  # base_model_name_or_path: the tiny model's local folder
    card = adapter_model_card(config, AdapterCardInfo(kind="failure-predictor"))
    assert "base_model" not in card.data.to_dict()
    assert config["base_model_name_or_path"] in card.text


def test_an_unknown_kind_or_a_folder_without_an_adapter_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="Unknown adapter kind 'dpo'"):
        AdapterCardInfo(kind="dpo")
    with pytest.raises(ValueError, match=r"eval_results\[0\] needs a 'domain'"):
        AdapterCardInfo(kind="grpo", eval_results=[{"srcc": 0.8}])
    with pytest.raises(ValueError, match="Expected a number"):
        adapter_model_card(
            {"r": 4}, AdapterCardInfo(kind="grpo", base_model=BASE, eval_results=[{"domain": "a", "srcc": "high"}])
        )
    with pytest.raises(FileNotFoundError, match="no adapter_config.json"):
        read_adapter_config(tmp_path)
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="no adapter weights"):
        read_adapter_config(tmp_path)


# ------------------------------------------------------------------ staged folders round-trip


def test_staged_adapter_loads_with_peft_and_gives_the_same_scores_as_before_saving(adapter, tiny_model_dir, tmp_path):
    from peft import PeftModel

    folder, videos, base_scores, scores = adapter
    published = publish_adapter(
        folder, HubArguments(stage_dir=str(tmp_path / "stage")), kind="failure-predictor", base_model=BASE
    )
    stage = published.stage_dir
    assert published.pushed is None
    files = sorted(p.name for p in stage.iterdir())
    assert "README.md" in files and "adapter_model.safetensors" in files and "eval_results.json" in files
    assert "training_args.bin" not in files and "checkpoint-2" not in files
    base, processor = load_model_and_processor(tiny_model_dir, dtype="float32")
    model = PeftModel.from_pretrained(base, str(stage)).eval()
    reloaded = _difficulty_scores(model, processor, videos)
    assert reloaded == pytest.approx(scores, abs=1e-6)
    assert max(abs(a - b) for a, b in zip(scores, base_scores)) > 1e-3  # the adapter does change the scores


def test_staged_dataset_loads_with_load_dataset_with_the_same_rows_and_columns(tmp_path):
    source = _selection(tmp_path)
    published = publish_dataset(source, HubArguments(stage_dir=str(tmp_path / "stage")))
    stage = published.stage_dir
    assert sorted(p.name for p in (stage / "data").iterdir()) == ["train-00000-of-00001.parquet"]
    assert (stage / "selection.json").is_file() and (stage / "report.md").is_file()
    assert read_provenance(stage) == read_provenance(source)  # the record travels with the data
    assert not (stage / "state.json").exists() and not list(stage.glob("*.arrow"))
    back = load_dataset(str(stage), split="train", cache_dir=str(tmp_path / "cache"))
    _assert_same_table(load_from_disk(str(source)), back)


def test_a_dataset_dict_is_written_in_ordered_shards_per_split_that_load_back_in_order(tmp_path):
    from datasets import DatasetDict

    train = Dataset.from_dict({"video_id": [f"v{i:03d}" for i in range(40)], "difficulty": np.linspace(1, 5, 40)})
    test = Dataset.from_dict({"video_id": ["t0", "t1"], "difficulty": [2.0, float("nan")]})
    info = DatasetCardInfo(kind="scored", settings={"score_column": "difficulty"})
    stage = stage_dataset(DatasetDict(train=train, test=test), tmp_path / "stage", info, max_shard_bytes=200)
    shards = sorted(p.name for p in (stage / "data").iterdir())
    assert len([n for n in shards if n.startswith("train-")]) > 1 and "test-00000-of-00001.parquet" in shards
    meta = _yaml_metadata(stage / "README.md")
    assert meta["configs"][0]["data_files"] == [
        {"split": "train", "path": "data/train-*"},
        {"split": "test", "path": "data/test-*"},
    ]
    back = load_dataset(str(stage), cache_dir=str(tmp_path / "cache"))
    _assert_same_table(train, back["train"])
    _assert_same_table(test, back["test"])


def test_dataset_card_metadata_parses_back_with_its_data_files_and_tags(tmp_path):
    source = _selection(tmp_path)
    hub = HubArguments(stage_dir=str(tmp_path / "stage"), hub_dataset_id="me/livevqc-mds-5pct")
    stage = publish_dataset(source, hub).stage_dir
    meta = _yaml_metadata(stage / "README.md")
    assert meta["license"] == "other" and meta["size_categories"] == ["n<1K"]
    assert meta["tags"] == ["video-quality-assessment", "mds-vqa", "selected-subset"]
    assert meta["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]
    assert read_card_metadata(stage)["pretty_name"] == "me/livevqc-mds-5pct"


def test_selection_card_records_how_the_subset_was_chosen_and_how_to_bring_the_mos_back(tmp_path):
    source = _selection(tmp_path)
    body = (
        publish_dataset(source, HubArguments(stage_dir=str(tmp_path / "stage"))).stage_dir / "README.md"
    ).read_text()
    assert f"| Pool | `{tmp_path / 'features'}` |" in body
    assert "| Pool size (videos) | 60 |" in body
    assert "| Budget | 3 videos, 5.00 % of the pool; asked: `5%` |" in body
    assert "| Strategy | `mds`: greedy difficulty × diversity" in body
    assert "| λ (weight of the diversity term) | 0.25 |" in body
    assert "| Failure predictor g (adapter) | [`me/mds-vqa-g`](https://huggingface.co/me/mds-vqa-g) |" in body
    assert "| CLIP model (frame features) | ViT-B-32 (openai) |" in body
    assert "| Frames per video | 8 |" in body and "| Seed | 3 |" in body
    for column in ("video_id", "rank", "g", "diversity", "pool_index", "features"):
        assert f"| `{column}` |" in body
    assert "float32 array (n × 4)" in body
    assert "to_csv(" in body and "recipes/build_pool.py --mos_table ratings.csv" in body
    assert "--dataset_name live_vqc" in body


def test_selection_card_says_not_recorded_when_the_pool_does_not_record_g_and_takes_overrides(tmp_path):
    source = _selection(tmp_path, upstream_pool_path=False)  # the feature Dataset does not name the pool it came from
    kind, settings = dataset_provenance(source)
    assert kind == "selection" and settings["clip_model"] == "ViT-B-32 (openai)" and "g_adapter" not in settings
    body = (publish_dataset(source, HubArguments(stage_dir=str(tmp_path / "a"))).stage_dir / "README.md").read_text()
    assert "| Failure predictor g (adapter) | not recorded |" in body
    staged = publish_dataset(source, HubArguments(stage_dir=str(tmp_path / "b")), settings={"g_adapter": "me/g2"})
    assert "[`me/g2`](https://huggingface.co/me/g2)" in (staged.stage_dir / "README.md").read_text()


def test_staging_replaces_its_own_earlier_stage_but_never_an_unrelated_folder(adapter, tmp_path):
    folder = adapter[0]
    stage = tmp_path / "stage"
    hub = HubArguments(stage_dir=str(stage))
    publish_adapter(folder, hub, kind="failure-predictor")
    (stage / "stale.txt").write_text("from an earlier run")
    publish_adapter(folder, hub, kind="failure-predictor")
    assert not (stage / "stale.txt").exists() and (stage / "adapter_config.json").is_file()
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a staged mds-vqa repository"):
        publish_adapter(folder, HubArguments(stage_dir=str(other)), kind="failure-predictor")
    assert (other / "mine.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="outside the artifact folder"):
        publish_adapter(folder, HubArguments(stage_dir=str(folder / "hub")), kind="failure-predictor")


# ------------------------------------------------------------------ the upload


def test_push_uploads_the_staged_adapter_in_one_commit_with_the_right_arguments(adapter, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    api = RecordingHfApi()
    hub = HubArguments(
        push_to_hub=True,
        hub_model_id="me/mds-vqa-g",
        hub_private=False,
        hub_revision="v1",
        stage_dir=str(tmp_path / "s"),
    )
    published = publish_adapter(adapter[0], hub, kind="failure-predictor", base_model=BASE, api=api)
    assert [name for name, _ in api.calls] == ["create_repo", "create_branch", "upload_folder"]
    assert api.calls[0][1] == {"repo_id": "me/mds-vqa-g", "repo_type": "model", "private": False, "exist_ok": True}
    assert api.calls[1][1] == {"repo_id": "me/mds-vqa-g", "branch": "v1", "repo_type": "model", "exist_ok": True}
    upload = api.calls[2][1]
    assert upload["repo_id"] == "me/mds-vqa-g" and upload["folder_path"] == str(tmp_path / "s")
    assert upload["repo_type"] == "model" and upload["revision"] == "v1"
    assert upload["commit_message"] == "Upload mds-vqa failure-predictor adapter with its model card"
    assert "README.md" in upload["files"] and "adapter_model.safetensors" in upload["files"]
    assert "training_args.bin" not in upload["files"]
    assert published.pushed.commit_url == "https://huggingface.co/me/mds-vqa-g/commit/0123abc"
    assert published.pushed.repo_url == "https://huggingface.co/me/mds-vqa-g"


def test_push_of_a_dataset_goes_to_a_dataset_repo_on_main(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    api = RecordingHfApi()
    hub = HubArguments(push_to_hub=True, hub_dataset_id="me/livevqc-mds-5pct")
    published = publish_dataset(_selection(tmp_path), hub, api=api)
    assert published.stage_dir == tmp_path / "selection.hub"  # default stage next to the artifact
    assert [name for name, _ in api.calls] == ["create_repo", "upload_folder"]  # no branch for main
    assert api.calls[0][1] == {
        "repo_id": "me/livevqc-mds-5pct",
        "repo_type": "dataset",
        "private": True,
        "exist_ok": True,
    }
    upload = api.calls[1][1]
    assert upload["repo_type"] == "dataset" and upload["revision"] is None
    assert upload["commit_message"] == "Upload mds-vqa selected-subset (3 rows) with its dataset card"
    assert upload["files"] == [
        "README.md",
        "data/train-00000-of-00001.parquet",
        "provenance.json",
        "report.md",
        "selection.json",
    ]


def test_a_refused_push_keeps_the_staged_folder_and_says_where_it_is(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    url = "https://huggingface.co/api/datasets/other/repo/commit/main"
    forbidden = HfHubHTTPError(
        "403 Forbidden: you don't have the rights to push to other/repo",
        response=httpx2.Response(403, request=httpx2.Request("POST", url)),
    )
    api = RecordingHfApi(fail_on="upload_folder", error=forbidden)
    source = _selection(tmp_path)
    hub = HubArguments(push_to_hub=True, hub_dataset_id="other/repo", stage_dir=str(tmp_path / "stage"))
    with pytest.raises(HubPushError, match="refused the push") as err:
        publish_dataset(source, hub, api=api)
    message = str(err.value)
    assert "HTTP 403" in message and str(tmp_path / "stage") in message
    assert f"python recipes/push.py --artifact_dir {tmp_path / 'stage'} --hub_dataset_id other/repo" in message
    assert err.value.stage_dir == tmp_path / "stage"
    back = load_dataset(str(tmp_path / "stage"), split="train", cache_dir=str(tmp_path / "cache"))
    _assert_same_table(load_from_disk(str(source)), back)  # nothing lost


def test_an_unreachable_hub_is_a_clear_error_naming_the_staged_copy(adapter, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    stage = publish_adapter(adapter[0], HubArguments(stage_dir=str(tmp_path / "stage")), kind="grpo").stage_dir
    api = HfApi(endpoint="http://127.0.0.1:9")  # the real client; nothing listens there (or offline mode is on)
    with (
        caplog.at_level(logging.DEBUG),
        pytest.raises(HubPushError, match="Could not reach the Hugging Face Hub") as err,
    ):
        push_to_hub(stage, "me/g", api=api)
    assert str(stage) in str(err.value) and (stage / "adapter_model.safetensors").is_file()
    assert SECRET not in str(err.value) and SECRET not in caplog.text


def test_a_missing_token_uploads_nothing_and_names_the_staged_copy(adapter, tmp_path, monkeypatch):
    import huggingface_hub.constants

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-login" / "token"))
    api = RecordingHfApi()
    hub = HubArguments(push_to_hub=True, hub_model_id="me/g", stage_dir=str(tmp_path / "stage"))
    with pytest.raises(HubPushError, match="No Hugging Face token found") as err:
        publish_adapter(adapter[0], hub, kind="failure-predictor", api=api)
    assert api.calls == []
    assert "hf auth login" in str(err.value) and str(tmp_path / "stage") in str(err.value)
    assert (tmp_path / "stage" / "README.md").is_file()


def test_no_token_appears_in_cards_logs_or_errors(adapter, tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    assert reproduce_command(["recipes/x.py", "--hub_token", SECRET, "--hub_token=" + SECRET, "--lr", "1"]) == (
        "python recipes/x.py --hub_token '<redacted>' '--hub_token=<redacted>' --lr 1"
    )
    other = "hf_" + "AnotherTokenThatLooksReal" + "0123456789"
    assert redact(f"token {SECRET} and {other}, not hf_transfer") == "token <redacted> and <redacted>, not hf_transfer"
    config = tmp_path / "run.yaml"
    config.write_text(f"output_dir: out\nhub_token: {SECRET}\n")
    echoing = HfHubHTTPError(
        f"401 Unauthorized: invalid token {SECRET}",
        response=httpx2.Response(401, request=httpx2.Request("POST", "https://huggingface.co/api/repos/create")),
    )
    api = RecordingHfApi(fail_on="create_repo", error=echoing)
    monkeypatch.setattr(
        "sys.argv", ["recipes/train_failure_predictor.py", "--config", str(config), "--hub_token", SECRET]
    )
    hub = HubArguments(push_to_hub=True, hub_model_id="me/g", stage_dir=str(tmp_path / "stage"))
    with caplog.at_level(logging.DEBUG), pytest.raises(HubPushError, match="HTTP 401") as err:
        publish_adapter(adapter[0], hub, kind="failure-predictor", api=api)
    card = (tmp_path / "stage" / "README.md").read_text()
    assert "hub_token: <redacted>" in card and "--hub_token '<redacted>'" in card  # the config and command are shown
    out = capsys.readouterr()
    for text in (card, str(err.value), caplog.text, out.out, out.err):
        assert SECRET not in text
    staged_text = "".join(p.read_text(errors="ignore") for p in (tmp_path / "stage").iterdir() if p.is_file())
    assert SECRET not in staged_text


def test_a_push_without_a_repo_id_fails_before_any_work(tmp_path, video_dir):
    with pytest.raises(ValueError, match="--hub_dataset_id user/name"):
        HubArguments(push_to_hub=True).check("dataset")
    with pytest.raises(ValueError, match="not a valid Hub repo id"):
        HubArguments(hub_model_id="me/bad//id").check("model")
    build_pool = load_recipe("build_pool")
    from mds_vqa.configs import BuildPoolArguments

    args = BuildPoolArguments(
        mos_table=str(tmp_path / "never_read.csv"), video_dir=str(video_dir[0]), output_dir=str(tmp_path / "pool"),
        dataset_name="toy",
    )  # fmt: skip
    with pytest.raises(ValueError, match="push_to_hub needs a repo id"):
        build_pool.main(args, HubArguments(push_to_hub=True))
    assert not (tmp_path / "pool").exists()


def test_trainer_recipes_take_the_push_over_from_the_trainer(tmp_path):
    from mds_vqa.failure_predictor import FailurePredictorConfig

    args = FailurePredictorConfig(
        output_dir=str(tmp_path / "g"), push_to_hub=True, hub_model_id="me/g", report_to=[], use_cpu=True
    )
    hub = hub_arguments_for_trainer(args, TrainerHubArguments(stage_dir=str(tmp_path / "stage")))
    assert (
        hub.push_to_hub and hub.hub_model_id == "me/g" and hub.hub_private and hub.stage_dir == str(tmp_path / "stage")
    )
    assert args.push_to_hub is False  # the Trainer no longer pushes the raw output folder itself
    with pytest.raises(ValueError, match="--hub_model_id"):
        hub_arguments_for_trainer(
            FailurePredictorConfig(output_dir=str(tmp_path / "h"), push_to_hub=True, report_to=[], use_cpu=True)
        )


# ------------------------------------------------------------------ recipes


def test_build_pool_recipe_stages_the_pool_with_its_card(tmp_path, video_dir):
    from mds_vqa.configs import BuildPoolArguments

    build_pool = load_recipe("build_pool")
    folder, rows = video_dir
    table = tmp_path / "mos.csv"
    table.write_text("name,mos\n" + "".join(f"{r['video_id']},{r['mos']}\n" for r in rows))
    args = BuildPoolArguments(
        mos_table=str(table), video_dir=str(folder), output_dir=str(tmp_path / "pool"), dataset_name="toy",
        test_size=0.34,
    )  # fmt: skip
    out = build_pool.main(args, HubArguments(stage_dir=str(tmp_path / "stage")))
    record = read_provenance(out)
    assert record.recipe == "build_pool" and record.arguments["BuildPoolArguments"]["dataset_name"] == "toy"
    assert record.summary["videos"] == len(rows) and [i["path"] for i in record.inputs] == [str(table), str(folder)]
    back = load_dataset(str(tmp_path / "stage"), split="train", cache_dir=str(tmp_path / "cache"))
    _assert_same_table(load_from_disk(str(out)), back)
    body = (tmp_path / "stage" / "README.md").read_text()
    assert "vqa-pool" in read_card_metadata(tmp_path / "stage")["tags"]
    assert (
        "| Domain | toy |" in body
        and f"| MOS table | `{table}` |" in body
        and "| Random test fraction | 0.34 |" in body
    )


def test_score_recipe_stages_the_scored_pool_with_its_card(tmp_path, tiny_model_dir, video_dir):
    score = load_recipe("score")
    rows = video_dir[1][:3]
    pool = Dataset.from_dict(
        {
            "video_id": [r["video_id"] for r in rows],
            "video": [r["video"] for r in rows],
            "mos": [r["mos"] for r in rows],
            "mos_std": [None] * 3,
            "dataset": ["toy"] * 3,
            "split": ["test"] * 3,
        },
        features=POOL_FEATURES,
    )
    pool.save_to_disk(str(tmp_path / "pool"))
    args = score.ScoreScriptArguments(
        dataset_path=str(tmp_path / "pool"), output_dir=str(tmp_path / "scored"), model_name_or_path=tiny_model_dir,
        adapter=None, dtype="float32", batch_size=3, score_column="difficulty",
    )  # fmt: skip
    score.main(args, ScoringConfig(task="difficulty"), SAMPLING, HubArguments(stage_dir=str(tmp_path / "stage")))
    stage = tmp_path / "stage"
    back = load_dataset(str(stage), split="train", cache_dir=str(tmp_path / "cache"))
    _assert_same_table(load_from_disk(str(tmp_path / "scored")), back)
    assert (stage / "scoring_summary.json").is_file()
    record = read_provenance(tmp_path / "scored")
    assert record.recipe == "score" and record.summary["scored"] == 3
    assert record.inputs == [{"path": str(tmp_path / "pool"), "provenance": None}]
    body = (stage / "README.md").read_text()
    assert "scored-pool" in read_card_metadata(stage)["tags"]
    assert "| Prompt task | difficulty |" in body and "| Score column | difficulty |" in body
    assert "| Adapter | none (the base model) |" in body and "| Scored | 3 |" in body
    assert "| `difficulty_digit_probs` |" in body


def test_failure_predictor_recipe_stages_an_adapter_that_scores_like_its_output_dir(
    tmp_path, tiny_model_dir, video_dir
):
    from peft import PeftModel

    from mds_vqa.configs import VQAModelConfig
    from mds_vqa.failure_predictor import FailurePredictorConfig

    recipe = load_recipe("train_failure_predictor")
    rows = video_dir[1]
    n = len(rows)
    pool = Dataset.from_dict(
        {
            "video_id": [r["video_id"] for r in rows],
            "video": [r["video"] for r in rows],
            "mos": [r["mos"] for r in rows],
            "mos_std": [None] * n,
            "dataset": ["src"] * n,
            "split": ["train"] * (n - 3) + ["test"] * 3,
        },
        features=POOL_FEATURES,
    ).add_column("score", [1.0, 2.0, 3.0, 4.0, 5.0, 2.5])
    pool.save_to_disk(str(tmp_path / "scored"))
    script = recipe.FailurePredictorScriptArguments(dataset_path=str(tmp_path / "scored"), eval_split="test")
    training = FailurePredictorConfig(
        output_dir=str(tmp_path / "g"), per_device_train_batch_size=3, per_device_eval_batch_size=3, max_steps=1,
        save_strategy="no", report_to=[], use_cpu=True, bf16=False, seed=0, eval_strategy="no",
        dataloader_num_workers=0,
    )  # fmt: skip
    model_args = VQAModelConfig(model_name_or_path=tiny_model_dir, dtype="float32", lora_r=4, lora_alpha=8)
    hub_card = TrainerHubArguments(stage_dir=str(tmp_path / "stage"), card_datasets=["me/sdr-source"])
    metrics = recipe.main(script, training, model_args, SAMPLING, hub_card)
    stage = tmp_path / "stage"
    meta = _yaml_metadata(stage / "README.md")
    assert meta["library_name"] == "peft" and meta["datasets"] == ["me/sdr-source"]
    assert "failure-predictor" in meta["tags"]
    record = read_provenance(tmp_path / "g")
    assert record.recipe == "train_failure_predictor" and record.inputs[0]["path"] == str(tmp_path / "scored")
    # the trainer tags the model as TRL's trainers do: PEFT's README in the output folder and the record carry them
    assert {"mds-vqa", "failure-predictor"} <= set(read_card_metadata(tmp_path / "g")["tags"])
    assert set(record.summary["tags"]) == {"mds-vqa", "failure-predictor"}
    assert detect_artifact(tmp_path / "g") == "adapter"  # a trainer's output folder never passes for a staged one
    assert math.isfinite(metrics["eval_srcc"])  # seeded run: g does not tie on the 3 held-out videos
    index = {m["type"]: m["value"] for r in meta["model-index"][0]["results"] for m in r["metrics"]}
    assert index == pytest.approx(
        {"srcc": metrics["eval_srcc"], "pairwise_accuracy": metrics["eval_pairwise_accuracy"]}
    )
    assert meta["model-index"][0]["results"][0]["dataset"] == {"name": "src", "type": "src", "split": "test"}
    body = (stage / "README.md").read_text()
    assert "| pairing | in_batch |" in body and "| max steps | 1 |" in body and "- training examples: 3" in body
    assert "| epochs |" not in body  # max_steps ruled, so epochs are not claimed
    assert "Frames: exactly 2 frames, resized to 56×56" in body  # the sampling the adapter was trained with
    videos = [r["video"] for r in rows[:2]]
    base, processor = load_model_and_processor(tiny_model_dir, dtype="float32")
    from_output = _difficulty_scores(PeftModel.from_pretrained(base, str(tmp_path / "g")).eval(), processor, videos)
    # the consumer's path: base model by id, adapter and processor from the published folder
    staged_processor = AutoProcessor.from_pretrained(str(stage))
    staged_processor.tokenizer.padding_side = "left"
    base, _ = load_model_and_processor(tiny_model_dir, dtype="float32")
    from_stage = _difficulty_scores(PeftModel.from_pretrained(base, str(stage)).eval(), staged_processor, videos)
    assert from_stage == pytest.approx(from_output, abs=1e-6)


def test_push_recipe_detects_what_a_folder_is_and_pushes_a_staged_one_as_it_is(adapter, tmp_path, monkeypatch):
    push = load_recipe("push")
    folder = adapter[0]
    with pytest.raises(ValueError, match="Cannot tell whether"):  # no trainer logs in this adapter folder
        push.main(push.PushArguments(artifact_dir=str(folder)), HubArguments())
    published = push.main(
        push.PushArguments(artifact_dir=str(folder), kind="failure-predictor", base_model=BASE),
        HubArguments(stage_dir=str(tmp_path / "g.hub")),
    )
    meta = read_card_metadata(published.stage_dir)
    assert meta["base_model"] == BASE and "failure-predictor" in meta["tags"]
    # the trainer's eval_results.json becomes the model-index
    values = {m["type"]: m["value"] for r in meta["model-index"][0]["results"] for m in r["metrics"]}
    assert values == {"srcc": 0.41, "pairwise_accuracy": 0.66}
    body = (published.stage_dir / "README.md").read_text()
    assert "was not recorded with it" in body and f"Published from `{folder}`" in body  # not the push command
    assert push.detect_artifact(published.stage_dir) == "staged"
    assert push.detect_artifact(_selection(tmp_path)) == "dataset"
    with pytest.raises(ValueError, match="neither a PEFT adapter folder"):
        push.detect_artifact(tmp_path / "features")
    # retrying the push of a staged folder uploads it unchanged; here the Hub is unreachable, so it says so
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", "http://127.0.0.1:9")
    before = sorted(p.name for p in published.stage_dir.iterdir())
    with pytest.raises(HubPushError, match="Could not reach") as err:
        push.main(
            push.PushArguments(artifact_dir=str(published.stage_dir)),
            HubArguments(push_to_hub=True, hub_model_id="me/g"),
        )
    assert str(published.stage_dir) in str(err.value)
    assert sorted(p.name for p in published.stage_dir.iterdir()) == before


def test_push_recipe_publishes_an_adapter_with_the_facts_its_recipe_recorded(adapter, tmp_path):
    push = load_recipe("push")
    folder = tmp_path / "ft"
    shutil.copytree(adapter[0], folder)  # no trainer logs: the kind comes from the record
    summary = {
        "base_model": BASE,
        "source_data": "pools/src, pools/rated",
        "training": {"num_generations": 4, "beta": 0.04},
        "tags": ["trl", "grpo", "mds-vqa", "video-quality-assessment"],
        "train_metrics": {"train_runtime": 1.0},
    }
    write_provenance(folder, recipe="finetune", summary=summary, argv=["recipes/finetune.py", "--beta", "0.04"])
    published = push.main(push.PushArguments(artifact_dir=str(folder)), HubArguments(stage_dir=str(tmp_path / "s")))
    meta = read_card_metadata(published.stage_dir)
    assert meta["base_model"] == BASE
    assert meta["tags"] == ["video-quality-assessment", "mds-vqa", "lora", "grpo", "trl"]  # the trainer's tags too
    body = (published.stage_dir / "README.md").read_text()
    assert "| beta | 0.04 |" in body and "- source data: `pools/src, pools/rated`" in body
    assert "python recipes/finetune.py --beta 0.04" in body and f"Published from `{folder}`" in body
