import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from scipy.stats import spearmanr

from mds_vqa.losses import fidelity_loss
from mds_vqa.modeling import VideoSamplingConfig, load_model_and_processor, prepare_inputs
from mds_vqa.prompts import SCORING_PROMPT_DIRECT
from mds_vqa.quality_pretraining import (
    METRICS_FILE,
    QualityPretrainCollator,
    QualityPretrainConfig,
    QualityPretrainTrainer,
)
from mds_vqa.scoring import ScoringConfig, digit_token_ids, expectation_scores, score_videos
from mds_vqa.testing import Distortion, make_video_pool

REPO = Path(__file__).resolve().parents[1]
SAMPLING = VideoSamplingConfig(resized_height=56, resized_width=56, nframes=2)
YAML = REPO / "recipes" / "configs" / "demo" / "pretrain_quality.yaml"


def source_pool(folder: Path, *, contents: int, per_content: int, n_train: int, seed: int) -> Dataset:
    """A toy source pool: ``contents`` generated scenes, each with ``per_content`` random source-domain distortions
    (blur 0–2.5, noise 0–8, CRF 18–30), MOS = true quality on 1–5; ``n_train`` random rows are ``train``, the
    rest ``test`` (new distortions of the same scenes)."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(contents):
        distortions = [
            Distortion(
                blur=float(rng.uniform(0.0, 2.5)), noise=float(rng.uniform(0.0, 8.0)), crf=int(rng.integers(18, 31))
            )
            for _ in range(per_content)
        ]
        rows += make_video_pool(
            folder, distortions, prefix=f"src{c}", seed=seed * 1000 + c, same_content=True, num_frames=16
        )
    train = set(rng.permutation(len(rows))[:n_train].tolist())
    for i, row in enumerate(rows):
        row.update(dataset="toy_source", split="train" if i in train else "test")
    return Dataset.from_list(rows)


def _config(tmp_path, **kw) -> QualityPretrainConfig:
    base = dict(
        output_dir=str(tmp_path / "f"),
        per_device_train_batch_size=4,
        per_device_eval_batch_size=16,
        learning_rate=1e-3,
        lr_scheduler_type="linear",
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=False,
        seed=0,
        eval_strategy="no",
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    base.update(kw)
    return QualityPretrainConfig(**base)


@pytest.fixture(scope="module")
def small_pool(tmp_path_factory) -> Dataset:
    """12 videos: 3 scenes x 4 distortions."""
    return source_pool(tmp_path_factory.mktemp("small_pool"), contents=3, per_content=4, n_train=8, seed=3)


@pytest.fixture(scope="module")
def feasibility_pool(tmp_path_factory) -> Dataset:
    """160 videos: 8 scenes x 20 distortions; 96 train, 64 held out."""
    return source_pool(tmp_path_factory.mktemp("feasibility"), contents=8, per_content=20, n_train=96, seed=0)


# ---------------------------------------------------------------------------------------------------------------------
# collator
# ---------------------------------------------------------------------------------------------------------------------


def test_labels_cover_exactly_the_answers_and_the_score_is_read_before_the_first_digit(tiny_model_dir, small_pool):
    _, processor = load_model_and_processor(tiny_model_dir, dtype="float32")
    collator = QualityPretrainCollator(processor, sampling=SAMPLING, think_text="It looks fine.")
    rows = [small_pool[i] for i in range(3)]
    batch = collator(rows)
    tok = processor.tokenizer
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    assert ids.shape[0] == 6 and batch["score_positions"].shape == (6,)
    for i, row in enumerate(rows + rows):
        number = f"{row['mos']:.2f}"
        answer = f"<answer>{number}</answer>" if i < 3 else f"<think>It looks fine.</think><answer>{number}</answer>"
        labelled = labels[i] != -100
        assert tok.decode(labels[i][labelled]) == answer + "<|im_end|>"
        # one contiguous span ending at the row's last real token: prompt, video and padding carry no label
        span = labelled.nonzero().flatten()
        assert span.tolist() == list(range(int(span[0]), int(span[-1]) + 1))
        assert int(span[-1]) == int(mask[i].nonzero().max())
        assert torch.equal(labels[i][labelled], ids[i][labelled])
        position = int(batch["score_positions"][i])
        assert tok.decode(ids[i, position - 2 : position + 1]) == "<answer>"
        assert tok.decode(ids[i, position + 1]) == number[0]
    assert batch["mos"].tolist() == pytest.approx([r["mos"] for r in rows])


# ---------------------------------------------------------------------------------------------------------------------
# loss
# ---------------------------------------------------------------------------------------------------------------------


def _trainer(tmp_path, tiny_model_dir, pool, **kw) -> QualityPretrainTrainer:
    model, processor = load_model_and_processor(tiny_model_dir, dtype="float32")
    return QualityPretrainTrainer(
        model, _config(tmp_path, **kw), train_dataset=pool, processing_class=processor, sampling=SAMPLING
    )


def test_the_loss_is_the_weighted_sum_of_the_fidelity_and_the_answers_cross_entropy(
    tmp_path, tiny_model_dir, small_pool
):
    rows = [small_pool[i] for i in range(4)]
    losses = {}
    for sft, fid in ((1.0, 1.0), (0.0, 1.0), (1.0, 0.0), (3.0, 2.0)):
        trainer = _trainer(tmp_path, tiny_model_dir, small_pool, sft_weight=sft, fidelity_weight=fid)
        trainer.model.eval()
        inputs = trainer.data_collator(rows)
        with torch.no_grad():
            parts = trainer.loss_parts(trainer.model, inputs)
            losses[(sft, fid)] = float(trainer.compute_loss(trainer.model, inputs))
    fidelity, ce = float(parts["fidelity"]), float(parts["ce"])
    assert fidelity > 0 and ce > 0
    assert losses[(0.0, 1.0)] == pytest.approx(fidelity, rel=1e-5)
    assert losses[(1.0, 0.0)] == pytest.approx(ce, rel=1e-5)
    assert losses[(1.0, 1.0)] == pytest.approx(fidelity + ce, rel=1e-5)
    assert losses[(3.0, 2.0)] == pytest.approx(2 * fidelity + 3 * ce, rel=1e-5)

    # each part, computed independently: the scorer's expectation after "<answer>" under the direct prompt ...
    model, processor = trainer.model, trainer.processing_class
    direct = prepare_inputs(
        processor, [r["video"] for r in rows], SCORING_PROMPT_DIRECT, SAMPLING, assistant_prefix="<answer>"
    )
    with torch.no_grad():
        g = expectation_scores(model, dict(direct), digit_token_ids(processor.tokenizer))
        i, j = torch.triu_indices(4, 4, offset=1)
        mos = inputs["mos"]
        expected_fidelity = fidelity_loss(g[i], g[j], (mos[i] >= mos[j]).float())
        # ... and the model's own causal-LM loss on the labelled answers
        model_inputs = {k: v for k, v in inputs.items() if k not in ("score_positions", "mos", "group_ids")}
        expected_ce = model(**model_inputs, use_cache=False).loss
    assert parts["scores"].tolist() == pytest.approx(g.tolist(), abs=1e-4)
    assert fidelity == pytest.approx(float(expected_fidelity), abs=1e-5)
    assert ce == pytest.approx(float(expected_ce), rel=1e-4)


def test_the_vision_warmup_trains_only_the_vision_tower(tmp_path, tiny_model_dir, small_pool):
    trainer = _trainer(
        tmp_path, tiny_model_dir, small_pool, max_steps=2, vision_warmup_steps=2, vision_probe_weight=1.0
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(".visual." in f".{n}" for n in changed), sorted(changed)[:5]
    assert any("merger" in n for n in changed)  # the layer that feeds the language model learned too


def test_a_probe_on_a_frozen_vision_tower_is_refused(tmp_path):
    with pytest.raises(ValueError, match="freeze_vision_tower"):
        _config(tmp_path, freeze_vision_tower=True, vision_warmup_steps=10)
    with pytest.raises(ValueError, match="not both 0"):
        _config(tmp_path, sft_weight=0.0, fidelity_weight=0.0)


# ---------------------------------------------------------------------------------------------------------------------
# feasibility: pretraining makes the tiny random model a quality model
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("threads", [1, 2])
def test_pretraining_makes_the_expectation_score_rank_held_out_videos(
    tmp_path, tiny_model_dir, feasibility_pool, threads
):
    train = feasibility_pool.filter(lambda s: s == "train", input_columns="split")
    test = feasibility_pool.filter(lambda s: s == "test", input_columns="split")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model, processor = load_model_and_processor(tiny_model_dir, dtype="float32")
        trainer = QualityPretrainTrainer(
            model,
            _config(
                tmp_path,
                per_device_train_batch_size=8,
                max_steps=300,
                vision_warmup_steps=120,
                vision_probe_weight=1.0,
                fidelity_weight=5.0,
                fidelity_on_thinking=True,
            ),
            train_dataset=train,
            eval_dataset=test,
            processing_class=processor,
            sampling=SAMPLING,
        )
        before = trainer.evaluate()
        trainer.train()
        after = trainer.evaluate()
        # the reading recipes/score.py uses (first digit of the model's own answer, two decimals)
        rows = score_videos(trainer.model, processor, test["video"], ScoringConfig(num_workers=0), SAMPLING)
    finally:
        torch.set_num_threads(previous)
    assert abs(before["eval_srcc"]) < 0.4
    assert after["eval_srcc"] > 0.6, after
    assert after["eval_loss"] < before["eval_loss"]
    srcc = spearmanr([r["score"] for r in rows], test["mos"]).statistic
    assert srcc > 0.6


# ---------------------------------------------------------------------------------------------------------------------
# the recipe
# ---------------------------------------------------------------------------------------------------------------------


def test_the_demo_yaml_parses_with_the_recipes_parser():
    from conftest import load_recipe

    parser = load_recipe("pretrain_quality").make_parser()
    script_args, training_args, sampling = parser.parse_args_and_config(["--config", str(YAML)])
    assert isinstance(training_args, QualityPretrainConfig)
    assert training_args.fidelity_weight == 5.0 and training_args.fidelity_on_thinking
    assert training_args.vision_warmup_steps == 200 and not training_args.freeze_vision_tower
    assert (sampling.resized_height, sampling.resized_width, sampling.nframes) == (56, 56, 2)
    assert script_args.eval_split == "test" and script_args.dtype == "float32"


def test_the_recipe_saves_a_model_that_loads_and_scores_like_any_f(tmp_path, tiny_model_dir, small_pool):
    from conftest import load_recipe

    recipe = load_recipe("pretrain_quality")
    pool_dir = tmp_path / "pool"
    small_pool.save_to_disk(str(pool_dir))
    out = tmp_path / "f"
    args = ["--dataset_path", str(pool_dir), "--model_name_or_path", tiny_model_dir, "--dtype", "float32"]
    args += ["--output_dir", str(out), "--max_steps", "3", "--per_device_train_batch_size", "4"]
    args += ["--vision_warmup_steps", "1", "--vision_probe_weight", "1.0", "--generation_max_new_tokens", "8"]
    args += ["--resized_height", "56", "--resized_width", "56", "--nframes", "2", "--use_cpu", "true"]
    args += ["--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true"]
    metrics = recipe.main(*recipe.make_parser().parse_args_and_config(args))

    saved = json.loads((out / METRICS_FILE).read_text())
    for key in ("eval_srcc", "eval_plcc", "eval_expectation_srcc", "eval_generate_parse_rate"):
        assert key in saved and key in metrics
    assert saved["eval_generate_parse_rate"] == metrics["eval_generate_parse_rate"]
    model, processor = load_model_and_processor(str(out), dtype="float32")
    assert not any("probe" in name for name in model.state_dict())  # the trainer's probe is not part of f
    test = small_pool.filter(lambda s: s == "test", input_columns="split")
    rows = score_videos(model, processor, test["video"], ScoringConfig(num_workers=0), SAMPLING)
    assert len(rows) == len(test) and all(math.isfinite(r["score"]) and 1 <= r["score"] <= 6 for r in rows)
