"""The expectation score read where the model writes its number: tiny models trained here to answer 3.45 in the three
formats a VisualQuality-R1-style model uses, read through the library's own code paths."""

import dataclasses

import pytest
import torch

from mds_vqa.answer_reading import CachedPrompt, answer_tokens, read_answers
from mds_vqa.modeling import VideoSamplingConfig, load_model_and_processor, prepare_inputs
from mds_vqa.scoring import ScoringConfig, score_videos

SMALL = VideoSamplingConfig(resized_height=56, resized_width=56)
ANSWER = 3.45
# each format is the trained answer to one prompt, so that one batch mixes rows that skip 0 and 1 tokens
FORMATS = {
    "plain": ("<answer>3.45</answer>", ScoringConfig(prompt_variant="direct")),
    "space": ("<answer> 3.45 </answer>", ScoringConfig(prompt_variant="thinking")),
    "newline": ("<answer>\n3.45\n</answer>", ScoringConfig(task="difficulty", answer_reading="first_digit")),
}


def test_the_tiny_tokenizer_writes_numbers_as_qwen2_does(tiny_model_dir):
    _, processor = load_model_and_processor(tiny_model_dir, dtype="float32")
    tok = processor.tokenizer

    def pieces(text):
        return tok.convert_ids_to_tokens(tok(text, add_special_tokens=False).input_ids)

    assert pieces("3.45") == ["3", ".", "4", "5"]  # one token per digit, "." a token of its own
    assert pieces("<answer> 3.45 </answer>")[3:8] == ["Ġ", "3", ".", "4", "5"]  # the space is a token before 3
    assert pieces("<answer>\n3.45\n</answer>")[3:5] == ["Ċ", "3"]
    assert pieces("10 42") == ["1", "0", "Ġ", "4", "2"]
    tokens = answer_tokens(tok)
    assert tok.convert_ids_to_tokens(list(tokens.digits)) == [str(k) for k in range(10)]


def test_cached_continuation_equals_a_full_forward_with_left_padding_and_masked_tokens(tiny_model_dir, video_file):
    model, processor = load_model_and_processor(tiny_model_dir, dtype="float32")
    prompts = [FORMATS["space"][1].prompt, "Short."]  # different lengths: the second row is left-padded
    inputs = prepare_inputs(processor, [video_file] * 2, prompts, SMALL, assistant_prefix="<answer>")
    assert inputs["attention_mask"][1, 0] == 0
    tok = processor.tokenizer
    space, three, point = (tok(t, add_special_tokens=False).input_ids[0] for t in (" ", "3", "."))
    with torch.no_grad():
        cached = CachedPrompt(model, inputs)
        # row 0 takes the space; row 1 is fed a masked pad: it must read as if the space had never been there
        cached.step(torch.tensor([[space], [tok.pad_token_id]]), keep=torch.tensor([[True], [False]]))
        got = cached.step(torch.tensor([[three, point]] * 2))
        want = [
            model(**prepare_inputs(processor, [video_file], [p], SMALL, assistant_prefix=a)).logits[0, -1]
            for p, a in zip(prompts, ["<answer> 3.", "<answer>3."])
        ]
    assert torch.allclose(got, torch.stack(want), atol=1e-4)


def test_a_model_that_writes_no_digit_is_read_at_the_prefix_and_says_so(tiny_model_dir, video_file):
    model, processor = load_model_and_processor(tiny_model_dir, dtype="float32")  # random: it writes no number
    inputs = prepare_inputs(processor, [video_file], FORMATS["plain"][1].prompt, SMALL, assistant_prefix="<answer>")
    tokens = answer_tokens(processor.tokenizer)
    first = read_answers(model, inputs, tokens, reading="first_digit", decimals=2)[0]
    prefix = read_answers(model, inputs, tokens, reading="prefix", decimals=2)[0]
    assert first["answer_offset"] is None and prefix["answer_offset"] == 0
    assert first["score"] == pytest.approx(prefix["score"], abs=1e-5)


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    """The tiny Qwen2.5-VL trained (plain causal-LM loss on the answer tokens) to answer each prompt of FORMATS on one
    short video with its format; saved and loaded back by path."""
    from mds_vqa.testing import Distortion, make_video

    video = make_video(tmp_path_factory.mktemp("answer_video") / "clip.mp4", Distortion(blur=1.0))
    model, processor = load_model_and_processor(tiny_model_dir, dtype="float32")
    answers = [a + "<|im_end|>" for a, _ in FORMATS.values()]
    prompts = [c.prompt for _, c in FORMATS.values()]
    batch = prepare_inputs(processor, [video] * 3, prompts, SMALL, assistant_prefix=answers)
    labels = batch["input_ids"].clone()
    for row, answer in enumerate(answers):  # left padding: the answer is the end of every row
        labels[row, : labels.shape[1] - len(processor.tokenizer(answer, add_special_tokens=False).input_ids)] = -100
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(120):
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    folder = tmp_path_factory.mktemp("answer_model")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    model, processor = load_model_and_processor(str(folder), dtype="float32")
    return model, processor, video


@pytest.mark.parametrize("name", list(FORMATS))
def test_the_expectation_agrees_with_the_generated_number_in_every_answer_format(trained, name):
    model, processor, video = trained
    answer, config = FORMATS[name]
    both = dataclasses.replace(config, mode="both", prompt_variant=config.variant, max_new_tokens=12)
    row = score_videos(model, processor, [video], both, SMALL)[0]
    assert row["texts"] == [answer] and row["score_generate"] == ANSWER  # the model answers in its format
    assert row["score_expectation"] == pytest.approx(ANSWER, abs=0.05)
    assert row["answer_offset"] == (0 if name == "plain" else 1) and row["digit_mass"] > 0.9

    # the old reading (right after <answer>, the first digit only) does not: no decimals, and for the space and
    # newline formats a position where the model writes whitespace (almost no probability on any digit)
    old = score_videos(model, processor, [video], dataclasses.replace(config, answer_reading="prefix"), SMALL)[0]
    assert abs(old["score"] - ANSWER) > 0.05
    at_prefix = dataclasses.replace(config, answer_reading="prefix", answer_decimals=2)
    prefix = score_videos(model, processor, [video], at_prefix, SMALL)[0]
    if name == "plain":
        assert prefix["score"] == pytest.approx(row["score_expectation"], abs=1e-5)
    else:
        assert prefix["digit_mass"] < 0.05


def test_one_batch_mixes_rows_that_skip_different_numbers_of_tokens(trained):
    model, processor, video = trained
    prompts = [c.prompt for _, c in FORMATS.values()]
    tokens = answer_tokens(processor.tokenizer)
    batch = read_answers(
        model, prepare_inputs(processor, [video] * 3, prompts, SMALL, assistant_prefix="<answer>"), tokens
    )
    alone = [
        read_answers(model, prepare_inputs(processor, [video], [p], SMALL, assistant_prefix="<answer>"), tokens)[0]
        for p in prompts
    ]
    assert [r["answer_offset"] for r in batch] == [0, 1, 1]
    assert [r["score"] for r in batch] == pytest.approx([r["score"] for r in alone], abs=1e-4)
    one_decimal = read_answers(
        model, prepare_inputs(processor, [video], prompts[:1], SMALL, assistant_prefix="<answer>"), tokens, decimals=1
    )[0]
    assert one_decimal["score"] == pytest.approx(3.4, abs=0.02)  # d + E[first decimal]/10
