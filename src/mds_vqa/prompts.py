"""Prompts of the quality model f and the failure predictor g, and answer parsing.

The texts are those of VisualQuality-R1 and the released MDS-VQA code, word for word.
"""

from __future__ import annotations

import math
import re

__all__ = [
    "TASK_PREFIX",
    "SCORING_QUESTION",
    "DIFFICULTY_QUESTION",
    "THINKING_SUFFIX",
    "DIRECT_SUFFIX",
    "SCORING_PROMPT",
    "SCORING_PROMPT_DIRECT",
    "DIFFICULTY_PROMPT",
    "DIFFICULTY_PROMPT_DIRECT",
    "PROMPTS",
    "get_prompt",
    "parse_score",
    "extract_answer",
]

TASK_PREFIX = "You are doing the video quality assessment task. Here is the question: "

SCORING_QUESTION = (
    "What is your overall rating on the quality of this video? The rating should be a float between 1 and 5, "
    "rounded to two decimal places, with 1 representing very poor quality and 5 representing excellent quality."
)

DIFFICULTY_QUESTION = (
    "Assess how difficult it is to evaluate this video's quality for video quality assessment. The difficulty "
    "rating should be a float between 1 and 5, rounded to two decimal places, with 1 representing very easy to "
    "evaluate and 5 representing very difficult to evaluate."
)

THINKING_SUFFIX = (
    "First output the thinking process in <think> </think> tags and then output the final answer with only one "
    "score in <answer> </answer> tags."
)

DIRECT_SUFFIX = "Please only output the final answer with only one score in <answer> </answer> tags."

SCORING_PROMPT = f"{TASK_PREFIX}{SCORING_QUESTION} {THINKING_SUFFIX}"
"""Scoring prompt of f, thinking variant (the default of VisualQuality-R1)."""

SCORING_PROMPT_DIRECT = f"{TASK_PREFIX}{SCORING_QUESTION} {DIRECT_SUFFIX}"
"""Scoring prompt of f, direct-answer variant."""

DIFFICULTY_PROMPT = f"{TASK_PREFIX}{DIFFICULTY_QUESTION} {THINKING_SUFFIX}"
"""Difficulty prompt of the failure predictor g, thinking variant."""

DIFFICULTY_PROMPT_DIRECT = f"{TASK_PREFIX}{DIFFICULTY_QUESTION} {DIRECT_SUFFIX}"
"""Difficulty prompt of g, direct-answer variant."""

PROMPTS: dict[str, dict[str, str]] = {
    "scoring": {"thinking": SCORING_PROMPT, "direct": SCORING_PROMPT_DIRECT},
    "difficulty": {"thinking": DIFFICULTY_PROMPT, "direct": DIFFICULTY_PROMPT_DIRECT},
}

_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?")  # as VisualQuality-R1: unsigned, optional decimals


def get_prompt(task: str = "scoring", variant: str = "thinking") -> str:
    """Return the prompt for ``task`` ("scoring" or "difficulty") and ``variant`` ("thinking" or "direct")."""
    if task not in PROMPTS:
        raise ValueError(f"Unknown prompt task {task!r}; expected one of {sorted(PROMPTS)}.")
    if variant not in PROMPTS[task]:
        raise ValueError(f"Unknown prompt variant {variant!r}; expected one of {sorted(PROMPTS[task])}.")
    return PROMPTS[task][variant]


def extract_answer(text: str) -> str:
    """Return the content of the last ``<answer>…</answer>`` match, or the whole text when there is none."""
    matches = _ANSWER_RE.findall(text)
    return matches[-1] if matches else text


def parse_score(text: str) -> float:
    """Parse a model answer into a score.

    Takes the last ``<answer>…</answer>`` match (else the whole text), then the first number in it.
    Returns ``nan`` when no number is found: a parse failure is recorded, never replaced by a random score.
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_score expects a str, got {type(text).__name__}: {text!r}")
    match = _NUMBER_RE.search(extract_answer(text))
    if match is None:
        return math.nan
    return float(match.group(0))
