import json
from pathlib import Path

import pytest
import torch
from broken_videos import BROKEN_CAUSES, make_broken_video

from mds_vqa.modeling import (
    VideoSamplingConfig,
    build_messages,
    fetch_videos,
    freeze_vision_tower,
    load_model_and_processor,
    lora_config,
    prepare_inputs,
)
from mds_vqa.prompts import SCORING_PROMPT, SCORING_PROMPT_DIRECT
from mds_vqa.testing import QWEN_SPECIAL_TOKENS, Distortion, make_video, register_tiny_open_clip
from mds_vqa.video import VideoReadError, read_frames

SMALL = VideoSamplingConfig(resized_height=56, resized_width=56)


@pytest.fixture(scope="module")
def model_and_processor(tiny_model_dir):
    return load_model_and_processor(tiny_model_dir, dtype="float32")


def test_tiny_model_folder_looks_like_a_hub_checkpoint(tiny_model_dir):
    files = {p.name for p in Path(tiny_model_dir).iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "processor_config.json"} <= files
    config = json.loads((Path(tiny_model_dir) / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_vl"


def test_loader_returns_qwen2_5_vl_with_a_left_padding_processor(model_and_processor):
    model, processor = model_and_processor
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration" and not model.training
    assert processor.tokenizer.padding_side == "left"
    tok = processor.tokenizer
    for token in QWEN_SPECIAL_TOKENS:
        ids = tok(token, add_special_tokens=False).input_ids
        assert len(ids) == 1, token  # every special token is one id
    assert model.config.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert [len(tok(str(d), add_special_tokens=False).input_ids) for d in range(1, 6)] == [1] * 5


def test_chat_template_places_the_video_before_the_prompt(model_and_processor):
    _, processor = model_and_processor
    text = processor.apply_chat_template(
        build_messages("v.mp4", SCORING_PROMPT), tokenize=False, add_generation_prompt=True
    )
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert f"<|vision_start|><|video_pad|><|vision_end|>{SCORING_PROMPT}<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")


def test_video_element_carries_the_released_sampling_defaults():
    ele = VideoSamplingConfig().video_element("/x.mp4")
    assert ele == {
        "type": "video",
        "video": "/x.mp4",
        "fps": 2.0,
        "max_frames": 14,
        "min_frames": 4,
        "resized_height": 512,
        "resized_width": 512,
    }
    assert VideoSamplingConfig(nframes=8).video_element("/x.mp4")["nframes"] == 8


def test_processor_forward_and_generate_on_generated_videos(model_and_processor, tmp_path):
    model, processor = model_and_processor
    short = make_video(tmp_path / "short.mp4", Distortion(blur=1), num_frames=16, fps=8)
    long = make_video(tmp_path / "long.mp4", Distortion(noise=20), num_frames=48, fps=8)
    inputs = prepare_inputs(processor, [short, long], [SCORING_PROMPT, SCORING_PROMPT_DIRECT], SMALL)
    # 2 s at 2 fps = 4 frames -> 2 temporal patches; 6 s -> 12 frames -> 6; 56x56 -> 4x4 patches
    assert inputs["video_grid_thw"].tolist() == [[2, 4, 4], [6, 4, 4]]
    assert inputs["second_per_grid_ts"].tolist() == pytest.approx([1.0, 1.0])  # 2 frames per grid at 2 fps
    video_tokens = (inputs["input_ids"] == model.config.video_token_id).sum(1).tolist()
    assert video_tokens == [2 * 4 * 4 // 4, 6 * 4 * 4 // 4]
    assert (inputs["attention_mask"][0, 0] == 0).item()  # left padding on the shorter prompt
    with torch.no_grad():
        out = model(**inputs)
    assert out.logits.shape[:2] == inputs["input_ids"].shape and torch.isfinite(out.logits).all()
    generated = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert generated.shape[0] == 2 and generated.shape[1] <= inputs["input_ids"].shape[1] + 5
    texts = processor.batch_decode(generated[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert all(isinstance(t, str) for t in texts)


def test_the_pixels_change_the_output(model_and_processor, tmp_path):
    model, processor = model_and_processor
    a = make_video(tmp_path / "a.mp4", Distortion(), seed=1)
    b = make_video(tmp_path / "b.mp4", Distortion(blur=3, noise=40), seed=2)
    with torch.no_grad():
        la = model(**prepare_inputs(processor, [a], SCORING_PROMPT, SMALL)).logits[0, -1]
        lb = model(**prepare_inputs(processor, [b], SCORING_PROMPT, SMALL)).logits[0, -1]
    assert not torch.allclose(la, lb)


def test_assistant_prefix_is_appended_after_the_generation_prompt(model_and_processor, video_file):
    _, processor = model_and_processor
    inputs = prepare_inputs(processor, [video_file], SCORING_PROMPT, SMALL, assistant_prefix="<answer>")
    text = processor.tokenizer.decode(inputs["input_ids"][0])
    assert text.endswith("<|im_start|>assistant\n<answer>")


def test_unreadable_video_raises_video_read_error_naming_the_file(model_and_processor, tmp_path):
    _, processor = model_and_processor
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 2048)
    with pytest.raises(VideoReadError, match="broken.mp4"):
        prepare_inputs(processor, [str(bad)], SCORING_PROMPT, SMALL)


@pytest.mark.parametrize("kind", sorted(BROKEN_CAUSES))
def test_each_kind_of_broken_file_gives_the_same_cause_as_the_reader(model_and_processor, tmp_path, kind):
    _, processor = model_and_processor
    path = make_broken_video(tmp_path, kind)
    with pytest.raises(VideoReadError, match=BROKEN_CAUSES[kind]) as info:
        prepare_inputs(processor, [path], SCORING_PROMPT, SMALL)
    with pytest.raises(VideoReadError) as direct:
        read_frames(path, "all")
    assert info.value.path == path and str(info.value) == str(direct.value)


def test_a_bad_argument_propagates_as_itself(model_and_processor, video_file):
    _, processor = model_and_processor
    with pytest.raises(ValueError, match="nframes should in interval") as info:
        prepare_inputs(processor, [video_file], SCORING_PROMPT, VideoSamplingConfig(nframes=1))
    assert type(info.value) is ValueError  # a readable file with a wrong setting is not recorded as unreadable
    with pytest.raises(ValueError, match="No video in conversation"):
        fetch_videos([[{"role": "user", "content": [{"type": "text", "text": SCORING_PROMPT}]}]])


def test_lora_targets_every_language_model_linear_layer_and_no_vision_layer(model_and_processor):
    from peft import get_peft_model

    model, _ = model_and_processor
    config = lora_config()
    assert (config.r, config.lora_alpha, config.lora_dropout) == (64, 128, 0.05)
    peft_model = get_peft_model(model, config)
    try:
        wrapped = {n.rsplit(".lora_A", 1)[0] for n, _ in peft_model.named_modules() if n.endswith("lora_A")}
        assert wrapped and not any("visual" in n for n in wrapped) and not any("lm_head" in n for n in wrapped)
        kinds = {n.rsplit(".", 1)[1] for n in wrapped}
        assert kinds == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
        assert len(wrapped) == 7 * model.config.text_config.num_hidden_layers
    finally:
        peft_model.unload()


def test_freeze_vision_tower_toggles_only_visual_parameters(tiny_model_dir):
    model, _ = load_model_and_processor(tiny_model_dir, dtype="float32")
    n = freeze_vision_tower(model)
    assert n > 0
    for name, p in model.named_parameters():
        assert p.requires_grad == ("visual" not in name)
    freeze_vision_tower(model, freeze=False)
    assert all(p.requires_grad for p in model.parameters())


def test_adapter_round_trip_reproduces_logits(tiny_model_dir, tmp_path, video_file):
    from peft import get_peft_model

    model, processor = load_model_and_processor(tiny_model_dir, dtype="float32")
    peft_model = get_peft_model(model, lora_config(r=4, lora_alpha=8, lora_dropout=0.0))
    with torch.no_grad():  # make the adapter non-trivial (B is zero-initialised)
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    inputs = prepare_inputs(processor, [video_file], SCORING_PROMPT, SMALL)
    with torch.no_grad():
        before = peft_model(**inputs).logits
    peft_model.save_pretrained(tmp_path / "adapter")
    reloaded, _ = load_model_and_processor(tiny_model_dir, adapter=str(tmp_path / "adapter"), dtype="float32")
    base, _ = load_model_and_processor(tiny_model_dir, dtype="float32")
    with torch.no_grad():
        after = reloaded(**inputs).logits
        plain = base(**inputs).logits
    torch.testing.assert_close(after, before)
    assert not torch.allclose(plain, before)


def test_tiny_open_clip_builds_offline_and_embeds_frames():
    import open_clip

    name = register_tiny_open_clip()
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None)
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    with torch.no_grad():
        feats = model.encode_image(torch.randn(3, 3, 32, 32))
    assert feats.shape == (3, 32) and torch.isfinite(feats).all()


def test_a_trainer_loads_a_model_given_by_path_with_its_processor_and_names_itself_without_one(tiny_model_dir):
    from mds_vqa.modeling import model_and_processor_for

    model, processor = model_and_processor_for("SomeTrainer", tiny_model_dir, model_init_kwargs={"dtype": "float32"})
    assert model.config.model_type == "qwen2_5_vl" and processor.tokenizer is not None
    same, given = model_and_processor_for("SomeTrainer", model, processor)
    assert same is model and given is processor
    with pytest.raises(ValueError, match="SomeTrainer needs the model's processor"):
        model_and_processor_for("SomeTrainer", model)
