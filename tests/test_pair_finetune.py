"""Fine-tuning on pair Datasets next to MOS pools: both prompts of a pair share a generation batch (on every process),
pair rows carry their ground truth to the reward, a pair's loss weight scales its advantages, and a 2-step GRPO run on a
toy pool plus its weak pairs saves an adapter that PEFT loads."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate.data_loader import BatchSamplerShard
from conftest import load_recipe
from datasets import Dataset, load_from_disk
from torch.utils.data import BatchSampler

from mds_vqa.data import POOL_FEATURES, mos_to_pairs
from mds_vqa.grpo import VideoGRPOConfig, VideoGRPOTrainer
from mds_vqa.modeling import VideoSamplingConfig, load_model_and_processor, lora_config
from mds_vqa.pair_prompts import pair_prompt_rows
from mds_vqa.prompts import SCORING_PROMPT
from mds_vqa.samplers import DatasetRepeatSampler, dataset_chunks, grouped_chunks, num_grouped_chunks
from mds_vqa.testing import Distortion, make_video

SAMPLING = VideoSamplingConfig(resized_height=56, resized_width=56, nframes=2)

# 7 MOS rows of "a", 3 of "b", then 5 pairs (rows 10-19) of "w" and 2 pairs (rows 20-23) of "b"
GROUPS = ["a"] * 7 + ["b"] * 3 + ["w"] * 10 + ["b"] * 4
PAIR_IDS = [None] * 10 + [f"w{i // 2}" for i in range(10)] + [f"b{i // 2}" for i in range(4)]


def _generation_batches(order: list[int], size: int) -> list[list[int]]:
    return [order[k : k + size] for k in range(0, len(order), size)]


@pytest.mark.parametrize("num_processes", [1, 2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_both_prompts_of_a_pair_share_a_generation_batch_on_every_process(num_processes, seed):
    prompts, gens = 4, 2  # generation_batch_size // num_generations = 4 prompts: 2 pairs, or 4 MOS videos
    per_device = prompts * gens // num_processes
    steps = []
    for rank in range(num_processes):  # each process builds its own sampler; accelerate deals whole batches
        sampler = DatasetRepeatSampler(
            GROUPS, mini_repeat_count=gens, batch_size=prompts, seed=seed, pair_ids=PAIR_IDS
        )
        batches = BatchSampler(sampler, per_device, drop_last=False)
        if num_processes > 1:
            batches = BatchSamplerShard(batches, num_processes=num_processes, process_index=rank)
        steps.append(list(batches))
    assert len({len(s) for s in steps}) == 1
    seen_pairs = set()
    for step in zip(*steps):  # one generation batch, gathered from every process as the reward sees it
        rows = [i for part in step for i in part]
        assert len(rows) == prompts * gens and all(rows[k] == rows[k + 1] for k in range(0, len(rows), gens))
        prompts_of = rows[::gens]
        assert len({GROUPS[i] for i in prompts_of}) == 1  # one dataset
        kinds = {PAIR_IDS[i] is None for i in prompts_of}
        assert len(kinds) == 1  # MOS prompts or pairs, never both
        if PAIR_IDS[prompts_of[0]] is not None:
            counts = Counter(PAIR_IDS[i] for i in prompts_of)
            assert all(n % 2 == 0 for n in counts.values())  # whole pairs only
            for k in range(0, len(prompts_of), 2):  # side a then side b of one pair
                assert (
                    PAIR_IDS[prompts_of[k]] == PAIR_IDS[prompts_of[k + 1]] and prompts_of[k + 1] == prompts_of[k] + 1
                )
            seen_pairs.update(counts)
    assert seen_pairs == {k for k in PAIR_IDS if k is not None}  # every pair is drawn in an epoch
    assert len(sampler) == num_grouped_chunks(GROUPS, prompts, PAIR_IDS) * prompts * gens


def test_without_pairs_the_chunks_are_exactly_the_mos_chunks():
    groups = GROUPS[:10]
    assert grouped_chunks(groups, 3, np.random.default_rng(5), [None] * 10) == dataset_chunks(
        groups, 3, np.random.default_rng(5)
    )
    assert list(DatasetRepeatSampler(groups, 2, 3, seed=4)) == list(
        DatasetRepeatSampler(groups, 2, 3, seed=4, pair_ids=None)
    )


def test_pairs_that_cannot_be_kept_whole_are_refused():
    with pytest.raises(ValueError, match="make generation_batch_size // num_generations even"):
        DatasetRepeatSampler(GROUPS, 2, batch_size=3, pair_ids=PAIR_IDS)
    with pytest.raises(ValueError, match="exactly two rows.*'w4'"):
        DatasetRepeatSampler(GROUPS[:-5], 2, batch_size=4, pair_ids=PAIR_IDS[:-5])


def test_a_pair_dataset_becomes_two_prompt_rows_per_pair(tmp_path):
    pool = Dataset.from_dict({"video": ["x.mp4", "y.mp4", "z.mp4"], "video_id": ["x", "y", "z"], "mos": [3.0, 1.0, 2.0],
                              "dataset": ["d"] * 3})  # fmt: skip
    pairs = mos_to_pairs(pool)
    rows = pair_prompt_rows(pairs, tag="7", weight=0.25)
    assert len(rows) == 2 * len(pairs) == 6
    assert rows["pair_id"] == ["7:0", "7:0", "7:1", "7:1", "7:2", "7:2"] and rows["pair_side"] == ["a", "b"] * 3
    assert rows["video_id"][:2] == [pairs[0]["id_a"], pairs[0]["id_b"]] and rows["mos"] == [None] * 6
    assert rows["pair_p"] == [p for p in pairs["p"] for _ in "ab"] and set(rows["sample_weight"]) == {0.25}
    bad = pairs.map(lambda r: {"p": 1.5 if r["id_a"] == "x" else r["p"]})
    with pytest.raises(ValueError, match=r"pairs/bad: p must be in \[0, 1\]; rows \[0, 1\]"):
        pair_prompt_rows(bad, tag="0", where="pairs/bad")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A labelled toy pool of two videos and the weak pairs of two unlabelled videos (blur at two levels)."""
    folder = tmp_path_factory.mktemp("pair_toy")
    videos = [make_video(folder / f"v{i}.mp4", Distortion(noise=10 * i), seed=i) for i in range(4)]

    def pool(name, idx, mos):
        ds = Dataset.from_dict(
            {
                "video_id": [f"v{i}" for i in idx],
                "video": [videos[i] for i in idx],
                "mos": mos,
                "mos_std": [None] * len(idx),
                "dataset": [name] * len(idx),
                "split": ["train"] * len(idx),
            },
            features=POOL_FEATURES,
        )
        ds.save_to_disk(str(folder / name))
        return str(folder / name)

    labelled = pool("labelled", [0, 1], [70.0, 30.0])
    unlabelled = pool("unlabelled", [2, 3], [None, None])
    weak = load_recipe("make_weak_pairs")
    args = weak.WeakPairsArguments(pool_path=unlabelled, output_dir=str(folder / "weak"), families=["blur"],
                                   blur_sigmas=[1.0, 3.0])  # fmt: skip
    weak.main(args)
    return folder, labelled, str(folder / "weak" / "pairs")


def test_the_training_set_holds_the_pool_rows_then_two_rows_per_pair(toy):
    folder, labelled, pairs = toy
    recipe = load_recipe("finetune")
    script = recipe.FinetuneScriptArguments(dataset_paths=[labelled], pair_dataset_paths=[pairs], pair_weight=0.5)
    train = recipe.build_train_dataset(script)
    n_pairs = len(load_from_disk(pairs))
    assert n_pairs == 2 * 3 and len(train) == 2 + 2 * n_pairs
    assert train["mos"][:2] == [5.0, 1.0] and train["mos"][2:] == [None] * (2 * n_pairs)  # MOS normalised as before
    assert train["sample_weight"] == [1.0, 1.0] + [0.5] * (2 * n_pairs) and train["pair_id"][:2] == [None, None]
    assert all(p == [{"role": "user", "content": SCORING_PROMPT}] for p in train["prompt"])
    plain = recipe.build_train_dataset(recipe.FinetuneScriptArguments(dataset_paths=[labelled]))
    assert "pair_id" not in plain.column_names  # without pairs the training set is unchanged
    with pytest.raises(ValueError, match="Nothing to train on"):
        recipe.build_train_dataset(recipe.FinetuneScriptArguments())


def _config(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "grpo"), use_cpu=True, bf16=False, gradient_checkpointing=False,
                report_to=[], num_generations=2, per_device_train_batch_size=4, max_completion_length=8,
                learning_rate=1e-3, max_steps=2, logging_steps=1, save_strategy="no", seed=0, beta=0.0)  # fmt: skip
    base.update(kw)
    return VideoGRPOConfig(**base)


def _ordinal_reward(completions, **kwargs):
    """0 then 1 within each prompt (its two responses are consecutive): the same rewards in every group."""
    return [float(i % 2) for i in range(len(completions))]


def test_a_prompts_sample_weight_scales_its_advantages(tmp_path, tiny_model_dir, toy):
    folder, labelled, _ = toy
    videos = load_from_disk(labelled)["video"]
    train = Dataset.from_dict({"video": videos, "mos": [4.0, 2.0], "dataset": ["d", "d"], "sample_weight": [0.5, 1.0],
                               "prompt": [[{"role": "user", "content": SCORING_PROMPT}]] * 2})  # fmt: skip
    model, processor = load_model_and_processor(tiny_model_dir, dtype="float32")
    trainer = VideoGRPOTrainer(model=model, reward_funcs=[_ordinal_reward], args=_config(tmp_path),
                               train_dataset=train, processing_class=processor,
                               peft_config=lora_config(r=4, lora_alpha=8), sampling=SAMPLING)  # fmt: skip
    with torch.no_grad():
        batch = trainer._generate_and_score_completions([train[i] for i in (0, 0, 1, 1)])
    advantages = batch["advantages"].tolist()
    assert advantages[2] < 0 < advantages[3]  # rewards 0, 1 within each prompt
    assert advantages[:2] == pytest.approx([0.5 * a for a in advantages[2:]])  # prompt 0 weighs half


def test_two_grpo_steps_on_a_pool_and_its_weak_pairs_save_an_adapter_that_peft_loads(tmp_path, tiny_model_dir, toy):
    from peft import PeftModel

    from mds_vqa.configs import VQAModelConfig
    from mds_vqa.hub import read_provenance

    folder, labelled, pairs = toy
    recipe = load_recipe("finetune")
    script = recipe.FinetuneScriptArguments(dataset_paths=[labelled], pair_dataset_paths=[pairs], pair_weight=0.5)
    args = _config(tmp_path, save_strategy="steps", save_steps=2, seed=1)
    model_args = VQAModelConfig(model_name_or_path=tiny_model_dir, dtype="float32", lora_r=4, lora_alpha=8)
    metrics = recipe.main(script, args, model_args, SAMPLING)
    out = Path(args.output_dir)
    assert (out / "adapter_config.json").exists() and metrics["train_runtime"] > 0
    logged = [e for e in json.loads((out / "trainer_state.json").read_text())["log_history"] if "reward" in e]
    assert len(logged) == 2 and all("rewards/thurstone_reward/mean" in e for e in logged)
    assert any(e.get("thurstone/pair_prompts", 0) > 0 for e in logged)  # a generation batch of pairs was trained on
    assert all(e["thurstone/lonely_prompts"] == 0 for e in logged)  # each pair prompt met its partner
    record = read_provenance(out)
    assert [i["path"] for i in record.inputs] == [labelled, pairs] and record.summary["training"]["pair weight"] == 0.5
    base, _ = load_model_and_processor(tiny_model_dir, dtype="float32")
    loaded = PeftModel.from_pretrained(base, str(out))
    assert any("lora_A" in n for n, _ in loaded.named_parameters())
