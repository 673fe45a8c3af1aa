from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset, load_from_disk

from mds_vqa.data import POOL_FEATURES, error_pairs
from mds_vqa.failure_predictor import (
    DatasetGroupedSampler,
    FailurePredictorConfig,
    FailurePredictorTrainer,
    failure_metrics,
    in_batch_pairs,
)
from mds_vqa.hub import read_provenance
from mds_vqa.modeling import VideoSamplingConfig, load_model_and_processor, lora_config, prepare_inputs
from mds_vqa.prompts import DIFFICULTY_PROMPT_DIRECT
from mds_vqa.scoring import digit_token_ids, expectation_scores
from mds_vqa.testing import Distortion, make_video_pool

REPO = Path(__file__).resolve().parents[1]
SAMPLING = VideoSamplingConfig(resized_height=56, resized_width=56, nframes=2)


def _config(tmp_path, **kw):
    base = dict(
        output_dir=str(tmp_path / "g"),
        per_device_train_batch_size=6,
        per_device_eval_batch_size=12,
        learning_rate=1e-3,
        lr_scheduler_type="constant",
        logging_steps=5,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=False,
        seed=0,
        eval_strategy="no",
        gradient_checkpointing=False,
        dataloader_num_workers=0,
    )
    base.update(kw)
    return FailurePredictorConfig(**base)


@pytest.fixture(scope="module")
def noisy_pool(tmp_path_factory):
    """12 videos whose 'error of f' is a fixed function of a visible property: the noise level."""
    folder = tmp_path_factory.mktemp("noisy")
    noise = np.linspace(0, 40, 12)
    rows = make_video_pool(folder, [Distortion(noise=float(n), crf=18) for n in noise], seed=0)
    for r, n in zip(rows, noise):
        r.update(error=float(n) / 10, dataset="src")
    return Dataset.from_list(rows)


def test_in_batch_pairs_stay_within_a_dataset_and_label_the_larger_error():
    errors = torch.tensor([0.5, 0.1, 0.9, 0.5])
    groups = torch.tensor([0, 0, 1, 0])
    i, j, p = in_batch_pairs(errors, groups)
    assert list(zip(i.tolist(), j.tolist())) == [(0, 1), (0, 3), (1, 3)]
    assert p.tolist() == [1.0, 1.0, 0.0]  # 0.5>=0.1, 0.5>=0.5 (tie counts as 1), 0.1<0.5


def test_failure_metrics_on_a_known_ranking():
    m = failure_metrics(np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.1, 0.2, 0.4, 0.3]), np.array([0, 0, 0, 0]))
    assert m["srcc"] == pytest.approx(0.8) and m["pairwise_accuracy"] == pytest.approx(5 / 6) and m["num_pairs"] == 6


def test_the_trainers_train_batches_are_each_one_dataset(tmp_path, tiny_model_dir):
    groups = ["a"] * 7 + ["b"] * 5 + ["c"] * 3  # unpadded chunks of 3 would make a third of the batches mixed
    pool = Dataset.from_dict({"video": [f"/v{i}.mp4" for i in range(15)], "error": [0.1] * 15, "dataset": groups})
    model, processor = load_model_and_processor(tiny_model_dir, dtype="float32")
    trainer = FailurePredictorTrainer(
        model, _config(tmp_path, per_device_train_batch_size=3), train_dataset=pool, processing_class=processor
    )
    loader = trainer.get_train_dataloader()
    assert isinstance(loader.batch_sampler.sampler, DatasetGroupedSampler)
    orders = []
    for epoch in range(3):
        loader.set_epoch(epoch)  # as Trainer does each epoch
        batches = list(loader.batch_sampler)  # the index batches the DataLoader collates
        assert len(batches) == len(loader) == 6
        assert all(len(b) == 3 and len({groups[i] for i in b}) == 1 for b in batches), batches
        assert {i for b in batches for i in b} == set(range(15))
        orders.append(batches)
    assert orders[0] != orders[1] != orders[2]  # reshuffled every epoch


def test_training_g_on_a_visible_property_lowers_the_loss_and_ranks_errors_better(
    tmp_path, tiny_model_dir, noisy_pool
):
    model, processor = load_model_and_processor(tiny_model_dir, dtype="float32")
    trainer = FailurePredictorTrainer(
        model,
        # a decaying learning rate: with a constant 1e-3 a late spike can undo the gain on some CPU thread counts
        _config(tmp_path, max_steps=30, lr_scheduler_type="linear"),
        train_dataset=noisy_pool,
        eval_dataset=noisy_pool,
        processing_class=processor,
        peft_config=lora_config(r=8, lora_alpha=16, lora_dropout=0.0),
        sampling=SAMPLING,
    )
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    assert after["eval_loss"] < before["eval_loss"] - 0.04
    assert after["eval_pairwise_accuracy"] > max(0.5, before["eval_pairwise_accuracy"])
    assert after["eval_srcc"] > before["eval_srcc"]
    # only LoRA weights moved; the vision tower stayed frozen
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_the_difficulty_score_the_trainer_optimises_is_the_expectation_under_the_difficulty_prompt(
    tmp_path, tiny_model_dir, noisy_pool
):
    model, processor = load_model_and_processor(tiny_model_dir, dtype="float32")
    trainer = FailurePredictorTrainer(
        model, _config(tmp_path), train_dataset=noisy_pool, processing_class=processor, sampling=SAMPLING
    )
    batch = trainer.data_collator([noisy_pool[i] for i in range(3)])
    assert batch["errors"].tolist() == pytest.approx([0.0, 40 / 110, 80 / 110], abs=1e-6)
    inputs = prepare_inputs(
        processor, noisy_pool["video"][:3], DIFFICULTY_PROMPT_DIRECT, SAMPLING, assistant_prefix="<answer>"
    )
    ids = digit_token_ids(processor.tokenizer)
    with torch.no_grad():
        expected = expectation_scores(model, inputs, ids)
        loss = trainer.compute_loss(model, batch)
    from mds_vqa.losses import fidelity_loss

    i, j, p = in_batch_pairs(batch["errors"], batch["group_ids"])
    assert float(loss) == pytest.approx(float(fidelity_loss(expected[i], expected[j], p)), abs=1e-6)


def test_pair_dataset_training_and_adapter_round_trip(tmp_path, tiny_model_dir, noisy_pool):
    from peft import PeftModel

    pool = noisy_pool.map(lambda r: {"mos": 3.0, "pred": 3.0 + r["error"]})
    pairs = error_pairs(pool, "pred", "mos")
    assert len(pairs) == 66
    model, processor = load_model_and_processor(tiny_model_dir, dtype="float32")
    trainer = FailurePredictorTrainer(
        model,
        _config(tmp_path, pairing="pairs", max_steps=3, per_device_train_batch_size=3),
        train_dataset=pairs,
        processing_class=processor,
        peft_config=lora_config(r=4, lora_alpha=8),
        sampling=SAMPLING,
    )
    trainer.train()
    trainer.save_model(str(tmp_path / "adapter"))
    assert (tmp_path / "adapter" / "adapter_config.json").exists()
    inputs = prepare_inputs(
        processor, noisy_pool["video"][:2], DIFFICULTY_PROMPT_DIRECT, SAMPLING, assistant_prefix="<answer>"
    )
    ids = digit_token_ids(processor.tokenizer)
    trainer.model.eval()
    with torch.no_grad():
        trained = expectation_scores(trainer.model, inputs, ids)
    base, _ = load_model_and_processor(tiny_model_dir, dtype="float32")
    reloaded = PeftModel.from_pretrained(base, str(tmp_path / "adapter")).eval()
    with torch.no_grad():
        torch.testing.assert_close(expectation_scores(reloaded, inputs, ids), trained)


def test_wrong_dataset_shape_for_the_pairing_is_a_clear_error(tmp_path, tiny_model_dir, noisy_pool):
    model, processor = load_model_and_processor(tiny_model_dir, dtype="float32")
    with pytest.raises(ValueError, match="pair Dataset"):
        FailurePredictorTrainer(
            model, _config(tmp_path, pairing="pairs"), train_dataset=noisy_pool, processing_class=processor
        )
    with pytest.raises(ValueError, match="'error' column"):
        FailurePredictorTrainer(
            model, _config(tmp_path), train_dataset=noisy_pool.remove_columns("error"), processing_class=processor
        )
    with pytest.raises(ValueError, match="pairing"):
        _config(tmp_path, pairing="triplets")


# ------------------------------------------------------------------ the recipe


def _scored_pool(tmp_path, noisy_pool):
    n = len(noisy_pool)
    ds = Dataset.from_dict(
        {
            "video_id": noisy_pool["video_id"],
            "video": noisy_pool["video"],
            "mos": [10.0 * i for i in range(n)],
            "mos_std": [None] * n,
            "dataset": ["src"] * n,
            "split": ["train"] * (n - 4) + ["test"] * 4,
        },
        features=POOL_FEATURES,
    ).add_column("score", [3.0] * (n - 1) + [float("nan")])
    ds.save_to_disk(str(tmp_path / "scored"))
    return tmp_path / "scored"


def test_recipe_trains_saves_an_adapter_and_resumes_from_its_checkpoint(tmp_path, tiny_model_dir, noisy_pool):
    from conftest import load_recipe

    from mds_vqa.configs import VQAModelConfig

    recipe = load_recipe("train_failure_predictor")

    _scored_pool(tmp_path, noisy_pool)
    script = recipe.FailurePredictorScriptArguments(dataset_path=str(tmp_path / "scored"), eval_split="test")
    model_args = VQAModelConfig(model_name_or_path=tiny_model_dir, dtype="float32", lora_r=4, lora_alpha=8)
    train, evaluation = recipe.prepare_datasets(script, _config(tmp_path))
    assert len(train) == 8 and len(evaluation) == 3  # the NaN-scored (last, test) video is dropped
    assert train["error"][0] == pytest.approx(2.0)  # |3 - 1|: MOS normalised to [1, 5] first

    args = _config(tmp_path, max_steps=4, save_strategy="steps", save_steps=2, per_device_train_batch_size=4)
    metrics = recipe.main(script, args, model_args, SAMPLING)
    out = Path(args.output_dir)
    assert (out / "adapter_config.json").exists() and (out / "checkpoint-4").is_dir()
    assert 0.0 <= metrics["eval_pairwise_accuracy"] <= 1.0 and "eval_srcc" in metrics
    record = read_provenance(out)
    assert record.recipe == "train_failure_predictor" and record.inputs[0]["path"] == str(tmp_path / "scored")
    assert record.summary["eval_metrics"]["eval_pairwise_accuracy"] == metrics["eval_pairwise_accuracy"]
    assert set(record.summary["tags"]) == {"mds-vqa", "failure-predictor"}  # the trainer tagged the model
    # resume: asking for more steps continues from checkpoint-4 instead of starting over
    args = _config(tmp_path, max_steps=6, save_strategy="steps", save_steps=2, per_device_train_batch_size=4)
    recipe.main(script, args, model_args, SAMPLING)
    import json

    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    steps_logged = [e["step"] for e in state["log_history"] if "loss" in e]
    assert steps_logged == sorted(set(steps_logged))
    assert load_from_disk(str(tmp_path / "scored")).num_rows == 12
