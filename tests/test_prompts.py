import math

import pytest

from mds_vqa.prompts import (
    DIFFICULTY_PROMPT,
    DIFFICULTY_PROMPT_DIRECT,
    SCORING_PROMPT,
    SCORING_PROMPT_DIRECT,
    get_prompt,
    parse_score,
)


def test_scoring_prompt_is_the_visualquality_r1_text():
    assert SCORING_PROMPT == (
        "You are doing the video quality assessment task. Here is the question: What is your overall rating on the "
        "quality of this video? The rating should be a float between 1 and 5, rounded to two decimal places, with 1 "
        "representing very poor quality and 5 representing excellent quality. First output the thinking process in "
        "<think> </think> tags and then output the final answer with only one score in <answer> </answer> tags."
    )
    assert SCORING_PROMPT_DIRECT.endswith(
        "excellent quality. Please only output the final answer with only one score in <answer> </answer> tags."
    )


def test_difficulty_prompt_asks_how_hard_the_video_is_to_assess():
    assert (
        "Assess how difficult it is to evaluate this video's quality for video quality assessment."
        in DIFFICULTY_PROMPT
    )
    assert "1 representing very easy to evaluate and 5 representing very difficult to evaluate." in DIFFICULTY_PROMPT
    assert DIFFICULTY_PROMPT.endswith("<answer> </answer> tags.") and "<think>" in DIFFICULTY_PROMPT
    assert "<think>" not in DIFFICULTY_PROMPT_DIRECT
    assert get_prompt("difficulty", "direct") == DIFFICULTY_PROMPT_DIRECT


def test_get_prompt_rejects_unknown_names():
    with pytest.raises(ValueError, match="task"):
        get_prompt("aesthetics")
    with pytest.raises(ValueError, match="variant"):
        get_prompt("scoring", "cot")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<think>looks sharp</think><answer>4.25</answer>", 4.25),
        ("<answer> 3 </answer>", 3.0),
        ("<answer>The score is 2.50 out of 5</answer>", 2.5),
        ("no tags but a number 3.7 and then 4", 3.7),  # whole text, first number
        ("<think>maybe 1.0</think><answer>4.1</answer>", 4.1),  # numbers in the thinking are ignored
    ],
)
def test_parse_score_reads_the_first_number_of_the_answer(text, expected):
    assert parse_score(text) == pytest.approx(expected)


def test_parse_score_takes_the_last_answer_when_there_are_several():
    assert parse_score("<answer>2.0</answer> wait <answer>3.75</answer>") == pytest.approx(3.75)


@pytest.mark.parametrize("text", ["", "<answer>excellent</answer>", "<think>hmm</think><answer></answer>", "no idea"])
def test_parse_score_is_nan_when_there_is_no_number(text):
    assert math.isnan(parse_score(text))


def test_parse_score_malformed_tags_fall_back_to_the_whole_text():
    assert parse_score("<answer>4.5") == pytest.approx(4.5)  # unclosed tag: whole text, first number
    assert parse_score("<answer>x</answer> 2") == pytest.approx(float("nan"), nan_ok=True)


def test_parse_score_rejects_non_strings():
    with pytest.raises(TypeError):
        parse_score(None)  # type: ignore[arg-type]
