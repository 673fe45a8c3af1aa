import math

import pytest
from scipy.stats import norm

from mds_vqa.rewards import (
    REWARD_FUNCS,
    format_reward,
    get_reward_funcs,
    thurstone_reward,
    thurstone_rewards,
    thurstone_rewards_detailed,
)

EPS = 1e-8


def _r(p, gt):
    return math.sqrt(p * gt + EPS) + math.sqrt((1 - p) * (1 - gt) + EPS)


def test_two_prompts_match_the_formula_by_hand():
    # prompt 0: scores 3.0, 3.5 (mu 3.25, var 0.125), MOS 4; prompt 1: 2.0, 2.5 (mu 2.25, var 0.125), MOS 2
    got = thurstone_rewards([3.0, 3.5, 2.0, 2.5], [4, 4, 2, 2], num_generations=2)
    sd = math.sqrt(0.125 + 0.125 + EPS)
    expected = [
        _r(norm.cdf((3.0 - 2.25) / sd), 1.0),
        _r(norm.cdf((3.5 - 2.25) / sd), 1.0),
        _r(norm.cdf((2.0 - 3.25) / sd), 0.0),
        _r(norm.cdf((2.5 - 3.25) / sd), 0.0),
    ]
    assert got == pytest.approx(expected, abs=1e-9)


def test_reward_is_the_mean_over_every_other_prompt_and_ties_use_one_half():
    scores = [3.0, 3.2, 2.0, 2.4, 4.0, 4.6]  # three prompts
    mos = [3.0, 2.0, 3.0]  # prompt 0 ties with prompt 2
    got = thurstone_rewards(scores, mos, num_generations=2)
    mu = [3.1, 2.2, 4.3]
    var = [0.02, 0.08, 0.18]
    s = 3.0  # response 0 of prompt 0
    p1 = norm.cdf((s - mu[1]) / math.sqrt(var[0] + var[1] + EPS))
    p2 = norm.cdf((s - mu[2]) / math.sqrt(var[0] + var[2] + EPS))
    assert got[0] == pytest.approx((_r(p1, 1.0) + _r(p2, 0.5)) / 2, abs=1e-9)


def test_groups_that_never_meet_are_not_compared():
    scores = [3.0, 3.5, 2.0, 2.5, 1.0, 1.5, 4.0, 4.5]
    mos = [4, 2, 4, 2]
    grouped = thurstone_rewards(scores, mos, 2, groups=["a", "a", "b", "b"])
    alone_a = thurstone_rewards(scores[:4], mos[:2], 2)
    alone_b = thurstone_rewards(scores[4:], mos[2:], 2)
    assert grouped == pytest.approx(alone_a + alone_b)
    assert grouped != pytest.approx(thurstone_rewards(scores, mos, 2))  # one group: cross-dataset comparisons


def test_a_prompt_without_a_same_dataset_partner_gets_the_neutral_reward_and_is_counted():
    res = thurstone_rewards_detailed([3.0, 3.5, 2.0, float("nan")], [4, 4, 2, 2], 2, groups=["a", "a", "b", "b"])
    assert list(res) == [0.5, 0.5, 0.5, 0.0]  # constant within each group; unparseable still lowest
    assert res.lonely_prompts == 2 and res.unparseable == 1


def test_unparseable_responses_get_the_lowest_reward_and_leave_the_statistics():
    with_nan = thurstone_rewards([3.0, float("nan"), 2.0, 2.5], [4, 4, 2, 2], 2)
    assert with_nan[1] == 0.0 and min(with_nan) == 0.0
    # prompt 0's statistics come from its one parsed score (mu 3.0, var 0)
    sd = math.sqrt(0.0 + 0.125 + EPS)
    assert with_nan[2] == pytest.approx(_r(norm.cdf((2.0 - 3.0) / sd), 0.0), abs=1e-9)


def test_single_generation_groups_use_zero_variance():
    got = thurstone_rewards([3.0, 2.0], [4, 2], num_generations=1)
    p = norm.cdf((3.0 - 2.0) / math.sqrt(EPS))  # σ² = 0 for both: a step function
    assert got[0] == pytest.approx(_r(p, 1.0), abs=1e-9) and got[0] == pytest.approx(1.0, abs=1e-3)


def test_mos_may_be_given_per_prompt_and_must_agree_within_a_prompt():
    assert thurstone_rewards([3.0, 3.5, 2.0, 2.5], [4, 2], 2) == thurstone_rewards(
        [3.0, 3.5, 2.0, 2.5], [4, 4, 2, 2], 2
    )
    with pytest.raises(ValueError, match="different MOS"):
        thurstone_rewards([3.0, 3.5, 2.0, 2.5], [4, 3, 2, 2], 2)
    with pytest.raises(ValueError, match="multiple"):
        thurstone_rewards([3.0, 3.5, 2.0], [4, 4, 2], 2)


@pytest.mark.parametrize(
    "text, reward",
    [
        ("<think>sharp, little noise</think><answer>4.20</answer>", 1.0),
        ("<think>a\nb</think>\n\n<answer>3</answer>", 1.0),
        ("<answer>4.2</answer>", 0.0),
        ("<think>x</think><answer>4</answer> trailing", 0.0),
        ("prefix <think>x</think><answer>4</answer>", 0.0),
        ("<think>x</think>", 0.0),
    ],
)
def test_format_reward_requires_a_full_think_then_answer_match(text, reward):
    assert format_reward([text]) == [reward]
    assert format_reward([[{"role": "assistant", "content": text}]]) == [reward]


def test_trl_wrapper_parses_completions_and_groups_by_video():
    def conv(t):
        return [{"role": "assistant", "content": t}]

    completions = [
        conv("<answer>3.0</answer>"),
        conv("<answer>3.5</answer>"),
        conv("<answer>2.0</answer>"),
        conv("none"),
    ]
    logged = {}
    got = thurstone_reward(
        completions, mos=[4, 4, 2, 2], dataset=["a"] * 4, video=["v1", "v1", "v2", "v2"], log_metric=logged.__setitem__
    )
    assert got == pytest.approx(thurstone_rewards([3.0, 3.5, 2.0, float("nan")], [4, 4, 2, 2], 2))
    assert logged == {"thurstone/unparseable_frac": 0.25, "thurstone/lonely_prompts": 0.0}


def test_trl_wrapper_handles_prompts_split_unevenly_at_a_process_boundary():
    completions = [
        "<answer>3</answer>",
        "<answer>2</answer>",
        "<answer>4</answer>",
        "<answer>1</answer>",
        "<answer>2</answer>",
    ]
    got = thurstone_reward(completions, mos=[3, 2, 2, 2, 2], dataset=["a"] * 5, video=["x", "y", "y", "z", "z"])
    assert len(got) == 5 and all(0.0 <= g <= 1.0 + 1e-6 for g in got)
    # x has one response (3, var 0); y: 2, 4 (mu 3, var 2); z: 1, 2 (mu 1.5, var 0.5); x's MOS beats both
    p_y = norm.cdf((3 - 3) / math.sqrt(0 + 2 + EPS))
    p_z = norm.cdf((3 - 1.5) / math.sqrt(0 + 0.5 + EPS))
    assert got[0] == pytest.approx((_r(p_y, 1.0) + _r(p_z, 1.0)) / 2, abs=1e-9)


def test_registry_selects_rewards_by_name():
    assert get_reward_funcs(["thurstone", "format"]) == [REWARD_FUNCS["thurstone"], REWARD_FUNCS["format"]]
    with pytest.raises(ValueError, match="accuracy"):
        get_reward_funcs(["accuracy"])
