import json
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from trl import GRPOTrainer

from mds_vqa.data import POOL_FEATURES
from mds_vqa.grpo import (
    EMBED_FIELDS,
    PREPARED_KEY,
    VIDEO_FIELDS,
    DatasetRepeatSampler,
    VideoGRPOConfig,
    VideoGRPOTrainer,
    build_video_prompt,
)
from mds_vqa.modeling import VideoSamplingConfig, load_model_and_processor, lora_config
from mds_vqa.prompts import SCORING_PROMPT
from mds_vqa.rewards import format_reward, get_reward_funcs
from mds_vqa.testing import Distortion, make_video

SAMPLING = VideoSamplingConfig(resized_height=56, resized_width=56, nframes=2)


def _config(tmp_path, **kw):
    base = dict(
        output_dir=str(tmp_path / "grpo"),
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        report_to=[],
        num_generations=2,
        per_device_train_batch_size=4,
        max_completion_length=8,
        learning_rate=1e-3,
        max_steps=1,
        logging_steps=1,
        save_strategy="no",
        seed=0,
        beta=0.0,
    )
    base.update(kw)
    return VideoGRPOConfig(**base)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Two pairs of same-sized videos with very different pixels."""
    folder = tmp_path_factory.mktemp("grpo_videos")
    return {
        name: make_video(folder / f"{name}.mp4", d, seed=s)
        for name, d, s in [
            ("clean", Distortion(), 1),
            ("noisy", Distortion(noise=60, blur=2), 2),
            ("clean2", Distortion(), 3),
            ("noisy2", Distortion(noise=60, blur=2), 4),
        ]
    }


def _train_set(clips, datasets=("a", "a", "a", "a")):
    videos = [clips["clean"], clips["noisy"], clips["clean2"], clips["noisy2"]]
    return Dataset.from_dict(
        {
            "video": videos,
            "mos": [4.5, 1.5, 4.0, 2.0],
            "dataset": list(datasets),
            "prompt": [[{"role": "user", "content": SCORING_PROMPT}]] * 4,
        }
    )


def _trainer(tmp_path, tiny_model_dir, clips, peft=True, **config):
    model, processor = load_model_and_processor(tiny_model_dir, dtype="float32")
    args = _config(tmp_path, **config)
    return VideoGRPOTrainer(
        model=model,
        reward_funcs=get_reward_funcs(["thurstone", "format"], num_generations=args.num_generations),
        args=args,
        train_dataset=_train_set(clips),
        processing_class=processor,
        peft_config=lora_config(r=4, lora_alpha=8, lora_dropout=0.0) if peft else None,
        sampling=SAMPLING,
    )


@pytest.fixture
def trainer(tmp_path, tiny_model_dir, clips):
    return _trainer(tmp_path, tiny_model_dir, clips)


def test_build_video_prompt_puts_the_video_before_the_text():
    prompt = build_video_prompt([{"role": "user", "content": "rate it"}], "/v.mp4", SAMPLING)
    assert prompt[0]["content"][0]["type"] == "video" and prompt[0]["content"][0]["video"] == "/v.mp4"
    assert prompt[0]["content"][1] == {"type": "text", "text": "rate it"}


def test_dataset_repeat_sampler_keeps_each_generation_batch_within_one_dataset():
    groups = ["a"] * 5 + ["b"] * 3
    sampler = DatasetRepeatSampler(groups, mini_repeat_count=2, batch_size=2, repeat_count=1, seed=0)
    order = list(sampler)
    assert len(order) == len(sampler)
    batches = [order[k : k + 4] for k in range(0, len(order), 4)]  # 2 prompts x 2 generations
    for b in batches:
        assert b[0] == b[1] and b[2] == b[3]  # generations of a prompt are consecutive
        assert len({groups[i] for i in b}) == 1
    assert {i for i in order} == set(range(8))


def _batch(trainer, clips):
    rows = [trainer.train_dataset[i] for i in (0, 0, 1, 1)]
    trainer.model.eval()
    with torch.no_grad():
        batch = trainer._generate_and_score_completions(rows)
    trainer.model.train()
    return batch


def _with_pixels_of(batch, trainer, videos):
    """The same batch (same prompt and completion tokens) with the pixels of other, same-sized videos (their cached
    embeddings, or their pixels when the vision tower is not cached)."""
    rows = [{"prompt": build_video_prompt([{"role": "user", "content": SCORING_PROMPT}], v, SAMPLING)} for v in videos]
    _, _, fields = trainer._tokenize_prompts([r["prompt"] for r in rows])
    other = dict(batch)
    if "video_embeds" in batch:
        other["video_embeds"] = trainer._active_video["video_embeds"]
    else:
        other["pixel_values_videos"] = list(
            torch.split(fields["pixel_values_videos"], fields["video_grid_thw"].prod(-1).tolist())
        )
    trainer._active_video = None
    return other


def _active(batch):
    fields = EMBED_FIELDS if "video_embeds" in batch else VIDEO_FIELDS
    return {k: batch[k] for k in fields}


def _loss_grad(trainer, batch, stock=False):
    trainer.model.zero_grad()
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, which this test bypasses
    batch = dict(batch, advantages=torch.tensor([1.0, -1.0, 0.5, -0.5]))
    compute = GRPOTrainer.compute_loss if stock else VideoGRPOTrainer.compute_loss
    loss = compute(trainer, trainer.model, batch)
    loss.backward()
    grads = torch.cat(
        [p.grad.flatten() for n, p in trainer.model.named_parameters() if p.grad is not None and "lora" in n]
    )
    return loss.detach(), grads.clone()


def test_the_batch_carries_one_vision_output_per_distinct_video(trainer, clips):
    batch = _batch(trainer, clips)
    assert len(batch["video_embeds"]) == 4 and batch["video_grid_thw"].shape == (4, 3)
    assert batch["second_per_grid_ts"].shape == (4,)
    tokens = (batch["video_grid_thw"].prod(-1) // 4).tolist()  # 2x2 patches merge into one token
    assert [e.shape[0] for e in batch["video_embeds"]] == tokens
    assert batch["video_embeds"][0] is batch["video_embeds"][1]  # the G completions of a prompt share it
    assert not torch.equal(batch["video_embeds"][0], batch["video_embeds"][2])
    assert "pixel_values_videos" not in batch


def test_without_the_cache_the_batch_carries_per_sample_pixels(tmp_path, tiny_model_dir, clips):
    trainer = _trainer(tmp_path, tiny_model_dir, clips, cache_video_embeddings=False)
    batch = _batch(trainer, clips)
    assert len(batch["pixel_values_videos"]) == 4 and "video_embeds" not in batch
    rows = batch["video_grid_thw"].prod(-1).tolist()
    assert [p.shape[0] for p in batch["pixel_values_videos"]] == rows


def test_a_trainable_vision_tower_is_never_cached(tmp_path, tiny_model_dir, clips):
    """A full fine-tune with the tower unfrozen: its output depends on weights that change, so it runs every pass
    (with LoRA on the language model the tower is frozen whatever freeze_vision_tower says)."""
    trainer = _trainer(tmp_path, tiny_model_dir, clips, peft=False, freeze_vision_tower=False)
    assert not trainer._cache_vision
    assert "pixel_values_videos" in _batch(trainer, clips)


def test_a_generation_batch_reads_and_encodes_each_distinct_video_once(tmp_path, tiny_model_dir, clips, monkeypatch):
    """Old (num_iterations > 1) and reference (beta > 0) log-probs, G = 2 completions per prompt: two distinct videos
    are read twice in all and run through the vision tower in one call, whatever the number of passes."""
    import mds_vqa.qwen_frames

    trainer = _trainer(tmp_path, tiny_model_dir, clips, beta=0.1, num_iterations=2)
    reads = []
    original = mds_vqa.qwen_frames.fetch_video
    monkeypatch.setattr(
        mds_vqa.qwen_frames, "fetch_video", lambda ele, *a, **k: reads.append(ele["video"]) or original(ele, *a, **k)
    )
    tower = []
    visual = next(m for n, m in trainer.model.named_modules() if n.endswith(".visual"))
    visual.register_forward_pre_hook(lambda module, args: tower.append(1))
    batch = _batch(trainer, clips)
    assert sorted(reads) == sorted([clips["clean"], clips["noisy"]])
    assert len(tower) == 1 and trainer.vision_encoder_calls == 2
    _loss_grad(trainer, batch)  # the training forward and backward reuse the cached output
    assert len(tower) == 1


def test_cached_vision_outputs_give_the_log_probs_and_gradient_of_the_pixels(tmp_path, tiny_model_dir, clips):
    cached = _trainer(tmp_path, tiny_model_dir, clips)
    pixels = _trainer(tmp_path, tiny_model_dir, clips, cache_video_embeddings=False)
    pixels.model.load_state_dict(cached.model.state_dict())  # the same LoRA initialisation
    batch = _batch(cached, clips)
    rows = [pixels.train_dataset[i] for i in (0, 0, 1, 1)]
    rows = [{**r, "prompt": build_video_prompt(r["prompt"], r["video"], SAMPLING)} for r in rows]
    _, _, fields = pixels._tokenize_prompts([r["prompt"] for r in rows])
    pixel_batch = {k: v for k, v in batch.items() if k != "video_embeds"}
    pixel_batch["pixel_values_videos"] = pixels._active_video["pixel_values_videos"]
    pixels._active_video = None
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    keep = batch["completion_ids"].size(1)

    def logps(trainer, b):
        trainer._active_video = _active(b)
        try:
            with torch.no_grad():
                return trainer._get_per_token_logps_and_entropies(trainer.model, ids, mask, keep)[0]
        finally:
            trainer._active_video = None

    torch.testing.assert_close(logps(cached, batch), logps(pixels, pixel_batch), rtol=1e-5, atol=1e-5)
    loss_a, g_a = _loss_grad(cached, batch)
    loss_b, g_b = _loss_grad(pixels, pixel_batch)
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g_a, g_b, rtol=1e-4, atol=1e-6)


def test_generation_uses_the_kv_cache_with_gradient_checkpointing_on(tmp_path, tiny_model_dir, clips):
    """Every generated token after the first is one new position through the language model (no re-run of the
    2-video prompt), although the trainer checkpoints activations."""
    trainer = _trainer(tmp_path, tiny_model_dir, clips, gradient_checkpointing=True, max_completion_length=6)
    lengths = []
    language_model = next(m for n, m in trainer.model.named_modules() if n.endswith("language_model"))
    language_model.register_forward_pre_hook(
        lambda module, args, kwargs: lengths.append(kwargs["inputs_embeds"].shape[1]), with_kwargs=True
    )
    trainer.model.train()
    with torch.no_grad():
        batch = trainer._generate_and_score_completions([trainer.train_dataset[i] for i in (0, 0, 1, 1)])
    generated = batch["completion_ids"].size(1)
    prompt = batch["prompt_ids"].size(1)
    assert lengths[0] == prompt and generated > 1
    assert lengths[1:generated] == [1] * (generated - 1)


def test_the_pixels_reach_the_training_log_probs_and_the_gradient(trainer, clips):
    batch = _batch(trainer, clips)
    swapped = _with_pixels_of(batch, trainer, [clips["noisy2"], clips["noisy2"], clips["clean2"], clips["clean2"]])
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    keep = batch["completion_ids"].size(1)

    def logps(b):
        trainer._active_video = _active(b)
        try:
            with torch.no_grad():
                return trainer._get_per_token_logps_and_entropies(trainer.model, ids, mask, keep)[0]
        finally:
            trainer._active_video = None

    assert not torch.allclose(logps(batch), logps(swapped))
    _, g_a = _loss_grad(trainer, batch)
    _, g_b = _loss_grad(trainer, swapped)
    assert not torch.allclose(g_a, g_b)


def test_a_model_that_favours_the_video_token_never_samples_a_vision_placeholder(trainer, clips):
    """A sampled ``<|video_pad|>`` would make the log-prob pass count more video tokens than the video has features
    (the error an untrained model hit); generation suppresses every vision placeholder."""
    config = trainer.model.config
    placeholders = [
        config.video_token_id,
        config.image_token_id,
        config.vision_start_token_id,
        config.vision_end_token_id,
    ]
    with torch.no_grad():  # tied embeddings: the output row of <|video_pad|> dominates every logit
        trainer.model.get_output_embeddings().weight[config.video_token_id] *= 1000.0
    batch = _batch(trainer, clips)
    assert not torch.isin(batch["completion_ids"], torch.tensor(placeholders)).any()
    loss, _ = _loss_grad(trainer, batch)
    assert torch.isfinite(loss)


def test_stock_trl_grpo_never_shows_the_pixels_to_the_training_forward(trainer, clips):
    """Why the subclass exists: TRL's own compute_loss gives the same gradient whatever the pixels are."""
    batch = _batch(trainer, clips)
    swapped = _with_pixels_of(batch, trainer, [clips["noisy2"], clips["noisy2"], clips["clean2"], clips["clean2"]])
    _, g_a = _loss_grad(trainer, batch, stock=True)
    _, g_b = _loss_grad(trainer, swapped, stock=True)
    torch.testing.assert_close(g_a, g_b)


def test_old_and_reference_log_probs_are_computed_with_the_video(tmp_path, tiny_model_dir, clips):
    model, processor = load_model_and_processor(tiny_model_dir, dtype="float32")
    trainer = VideoGRPOTrainer(
        model=model,
        reward_funcs=[format_reward],
        args=_config(tmp_path, beta=0.1, num_iterations=2),
        train_dataset=_train_set(clips),
        processing_class=processor,
        peft_config=lora_config(r=4, lora_alpha=8),
        sampling=SAMPLING,
    )
    calls = []
    original = trainer._get_per_token_logps_and_entropies

    def spy(*args, **kwargs):
        calls.append(trainer._active_video is not None)
        return original(*args, **kwargs)

    trainer._get_per_token_logps_and_entropies = spy
    _batch(trainer, clips)
    assert len(calls) >= 2 and all(calls)  # old (num_iterations > 1) and reference (beta > 0) passes


def test_two_grpo_steps_save_an_adapter_that_peft_loads(tmp_path, tiny_model_dir, clips):
    from conftest import load_recipe
    from peft import PeftModel

    from mds_vqa.configs import VQAModelConfig

    recipe = load_recipe("finetune")
    pools = []
    for name, idx in (("src", [0, 1]), ("new", [2, 3])):
        vids = [list(clips.values())[i] for i in idx]
        ds = Dataset.from_dict(
            {
                "video_id": [Path(v).stem for v in vids],
                "video": vids,
                "mos": [10.0 * (i + 1) for i in range(2)],
                "mos_std": [None, None],
                "dataset": [name] * 2,
                "split": ["train"] * 2,
            },
            features=POOL_FEATURES,
        )
        ds.save_to_disk(str(tmp_path / name))
        pools.append(str(tmp_path / name))
    script = recipe.FinetuneScriptArguments(dataset_paths=pools)
    train = recipe.build_train_dataset(script)
    assert sorted(train["mos"]) == [1.0, 1.0, 5.0, 5.0]  # normalised within each dataset
    assert train[0]["prompt"] == [{"role": "user", "content": SCORING_PROMPT}]
    args = _config(tmp_path, max_steps=2, save_strategy="steps", save_steps=2)
    model_args = VQAModelConfig(model_name_or_path=tiny_model_dir, dtype="float32", lora_r=4, lora_alpha=8)
    metrics = recipe.main(script, args, model_args, SAMPLING)
    out = Path(args.output_dir)
    assert (out / "adapter_config.json").exists() and (out / "checkpoint-2").is_dir()
    assert metrics["train_runtime"] > 0
    state = json.loads((out / "trainer_state.json").read_text())
    logged = [e for e in state["log_history"] if "reward" in e]
    assert len(logged) == 2 and all("rewards/thurstone_reward/mean" in e for e in logged)
    from mds_vqa.hub import read_provenance

    record = read_provenance(out)
    assert record.recipe == "finetune" and "trl" in record.summary["tags"]
    assert [i["path"] for i in record.inputs] == pools
    base, _ = load_model_and_processor(tiny_model_dir, dtype="float32")
    loaded = PeftModel.from_pretrained(base, str(out))
    assert any("lora_A" in n for n, _ in loaded.named_parameters())


def test_dataloader_workers_prepare_the_videos_and_the_training_loop_reads_none(tmp_path, tiny_model_dir, clips):
    trainer = _trainer(tmp_path, tiny_model_dir, clips, dataloader_num_workers=1)
    loader = trainer.get_train_dataloader()
    assert loader.num_workers == 1
    rows = next(iter(loader))
    prepared = rows[0][PREPARED_KEY]
    assert {video for video, _ in prepared} == {r["video"] for r in rows}
    trainer.model.eval()
    with torch.no_grad():
        batch = trainer._generate_and_score_completions(rows)
    assert trainer.video_reads == 0 and PREPARED_KEY not in batch
    # what the logs show per generation batch
    assert trainer._metrics["eval"]["video/read_in_loop"] == [0.0]
    assert trainer._metrics["eval"]["video/encoded"] == [float(len({r["video"] for r in rows}))]
    # the same prompt ids and vision outputs as preparing in the training loop
    inline = _trainer(tmp_path, tiny_model_dir, clips, dataloader_num_workers=0)
    inline.model.load_state_dict(trainer.model.state_dict())
    ids, _, _ = inline._tokenize_prompts(
        [build_video_prompt(r["prompt"], r["video"], SAMPLING) for r in trainer.train_dataset.select(range(4))]
    )
    assert inline.video_reads == 4
    by_video = dict(zip(trainer.train_dataset["video"], ids))
    prompt_ids = [row[mask.bool()].tolist() for row, mask in zip(batch["prompt_ids"], batch["prompt_mask"])]
    assert prompt_ids == [by_video[r["video"]] for r in rows]


def test_the_collator_reads_a_repeated_generation_batch_once(trainer, clips, monkeypatch):
    import mds_vqa.qwen_frames

    reads = []
    original = mds_vqa.qwen_frames.fetch_video
    monkeypatch.setattr(
        mds_vqa.qwen_frames, "fetch_video", lambda ele, *a, **k: reads.append(ele["video"]) or original(ele, *a, **k)
    )
    rows = [trainer.train_dataset[i] for i in (0, 0, 1, 1)]
    first = trainer.data_collator(rows)
    again = trainer.data_collator(rows)  # the sampler hands a batch out steps_per_generation x num_iterations times
    assert len(reads) == 2 and again[0][PREPARED_KEY] is first[0][PREPARED_KEY]
    trainer.data_collator([trainer.train_dataset[i] for i in (2, 2, 3, 3)])
    assert len(reads) == 4
