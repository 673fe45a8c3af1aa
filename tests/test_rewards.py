import json
import math
import os
import subprocess
import sys
import textwrap
from functools import partial
from pathlib import Path

import pytest
from scipy.stats import norm
from trl.trainer.utils import get_callable_name

from mds_vqa.rewards import (
    REWARD_FUNCS,
    THURSTONE_EPS,
    format_reward,
    get_reward_funcs,
    thurstone_reward,
    thurstone_rewards,
    thurstone_rewards_detailed,
)

REPO = Path(__file__).resolve().parents[1]
EPS = 1e-6  # VisualQuality-R1's ε


def test_epsilon_is_visualquality_r1s():
    assert THURSTONE_EPS == EPS


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
    p = norm.cdf((3.0 - 2.0) / math.sqrt(EPS))  # σ² = 0 for both: a step function, p = 1
    assert got[0] == pytest.approx(_r(p, 1.0), abs=1e-9)
    assert got[0] == pytest.approx(math.sqrt(1 + EPS) + math.sqrt(EPS), abs=1e-9)  # the top reward, ~1


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


def _thurstone(num_generations):
    (reward,) = get_reward_funcs(["thurstone"], num_generations=num_generations)
    return reward


def test_trl_wrapper_parses_completions_and_logs_the_counts():
    def conv(t):
        return [{"role": "assistant", "content": t}]

    completions = [
        conv("<answer>3.0</answer>"),
        conv("<answer>3.5</answer>"),
        conv("<answer>2.0</answer>"),
        conv("none"),
    ]
    logged = {}
    got = _thurstone(2)(
        completions, mos=[4, 4, 2, 2], dataset=["a"] * 4, video=["v1", "v1", "v2", "v2"], log_metric=logged.__setitem__
    )
    assert got == pytest.approx(thurstone_rewards([3.0, 3.5, 2.0, float("nan")], [4, 4, 2, 2], 2))
    assert logged == {"thurstone/unparseable_frac": 0.25, "thurstone/lonely_prompts": 0.0}


def test_adjacent_prompts_of_one_video_are_two_prompts():
    # the dataset-grouped sampler may place the same video twice in a generation batch: two prompts, not one of 2G
    reward = _thurstone(2)
    got = reward(["<answer>3.0</answer>", "<answer>3.4</answer>", "<answer>2.0</answer>", "<answer>2.6</answer>"],
                 mos=[4] * 4, dataset=["a"] * 4, video=["v1"] * 4)  # fmt: skip
    assert got == pytest.approx(thurstone_rewards([3.0, 3.4, 2.0, 2.6], [4, 4], 2, groups=["a", "a"]), abs=1e-12)
    # the two prompts are each other's partner (tie: gt = 0.5, r > 0.7); merged by video, they were one lonely prompt
    assert all(r > 0.7 for r in got) and got != pytest.approx([0.5] * 4)


def test_adjacent_prompts_of_one_video_with_different_mos_are_two_prompts():
    scores = [3.0, 3.4, 2.0, 2.6, 3.0, 3.2]
    mos = [4, 4, 2, 2, 3, 3]
    got = _thurstone(2)(
        [f"<answer>{s}</answer>" for s in scores], mos=mos, dataset=["a"] * 6, video=["v1"] * 4 + ["v2"] * 2
    )
    assert got == pytest.approx(thurstone_rewards(scores, mos, 2, groups=["a"] * 3), abs=1e-12)
    # the old grouping by runs of one video: prompt v1 with 4 responses (MOS of its first row, 4) against v2
    merged_var = sum((s - 2.75) ** 2 for s in scores[:4]) / 3
    old_first = _r(norm.cdf((3.0 - 3.1) / math.sqrt(merged_var + 0.02 + EPS)), 1.0)
    assert got[0] != pytest.approx(old_first, abs=1e-3)


def test_trl_wrapper_rejects_batches_that_are_not_whole_prompts():
    reward = _thurstone(2)
    with pytest.raises(ValueError, match="num_generations=2.*`mos`, `dataset` and `video`"):
        reward(["<answer>3</answer>"] * 3, mos=[3, 3, 2], dataset=["a"] * 3, video=["x", "x", "y"])
    with pytest.raises(ValueError, match="several videos"):
        reward(["<answer>3</answer>"] * 4, mos=[3, 3, 3, 3], dataset=["a"] * 4, video=["x", "y", "y", "z"])
    with pytest.raises(ValueError, match="different groups"):
        reward(["<answer>3</answer>"] * 4, mos=[3, 3, 3, 3], dataset=["a", "b", "a", "a"], video=["x", "x", "y", "y"])


_RANK_SCRIPT = """
import json
import sys

from accelerate import PartialState
from accelerate.utils import gather_object

from mds_vqa.rewards import get_reward_funcs

batch = json.loads(open(sys.argv[1]).read())
state = PartialState(cpu=True)  # as TrainingArguments(use_cpu=True) sets the state up before the trainer runs
n = len(batch["completions"]) // state.num_processes
rows = slice(state.process_index * n, (state.process_index + 1) * n)
(reward,) = get_reward_funcs(["thurstone"], num_generations=batch["num_generations"])
logged = {}
local = reward(
    prompts=[[{"role": "user", "content": "rate"}]] * n,
    completions=batch["completions"][rows],
    completion_ids=[[0]] * n,
    mos=batch["mos"][rows],
    dataset=batch["dataset"][rows],
    video=batch["video"][rows],
    trainer_state=None,
    log_extra=lambda column, values: None,
    log_metric=logged.__setitem__,
)
gathered = gather_object(local)  # as TRL gathers the rewards: process 0's rows, then process 1's
ranks = gather_object([state.process_index])
if state.is_main_process:
    json.dump({"rewards": gathered, "logged": logged, "ranks": ranks}, open(sys.argv[2], "w"))
state.wait_for_everyone()
state.destroy_process_group()
"""


def test_a_prompt_split_across_two_processes_gets_the_single_process_rewards(tmp_path):
    # 5 prompts x 4 generations, 10 rows per process: prompt 2 straddles the ranks (rows 8-9 | 10-11); prompts of
    # dataset "a" sit on both ranks; prompt 3 repeats prompt 2's video (the sampler's padding); one answer unparseable
    g = 4
    scores = [3.1, 3.5, 2.9, 3.3, 2.0, 2.4, 1.8, 2.2, 4.0, 3.6, 4.4, None, 4.1, 3.9, 4.3, 4.5, 1.2, 1.6, 1.0, 1.4]
    batch = {
        "num_generations": g,
        "completions": [[{"role": "assistant", "content": f"<answer>{s}</answer>" if s else "no"}] for s in scores],
        "mos": [v for v in (3.5, 2.0, 4.5, 4.5, 1.0) for _ in range(g)],
        "dataset": [v for v in "abaab" for _ in range(g)],
        "video": [v for v in ("p", "q", "r", "r", "s") for _ in range(g)],
    }
    (tmp_path / "batch.json").write_text(json.dumps(batch))
    (tmp_path / "rank.py").write_text(textwrap.dedent(_RANK_SCRIPT))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCELERATE_")}
    env.update(ACCELERATE_USE_CPU="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    accelerate = str(Path(sys.executable).parent / "accelerate")
    config = ["--config_file", "accelerate_configs/cpu.yaml", "--main_process_port", "0"]
    cmd = [accelerate, "launch", *config, str(tmp_path / "rank.py")]
    run = subprocess.run(
        [*cmd, str(tmp_path / "batch.json"), str(tmp_path / "out.json")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["ranks"] == [0, 1]  # really two processes
    parsed = [float("nan") if s is None else s for s in scores]
    expected = thurstone_rewards_detailed(parsed, batch["mos"], g, groups=batch["dataset"])
    assert out["rewards"] == pytest.approx(list(expected), abs=1e-12)
    assert out["logged"] == {"thurstone/unparseable_frac": 1 / 20, "thurstone/lonely_prompts": 0.0}
    # computed on each rank alone (the old behaviour), the straddling prompt's two halves would be separate prompts
    half = thurstone_rewards(parsed[:8], batch["mos"][:8], g, groups=batch["dataset"][:8])
    assert half != pytest.approx(list(expected)[:8], abs=1e-6)


def test_registry_binds_num_generations_and_keeps_the_logged_name():
    thurstone, fmt = get_reward_funcs(["thurstone", "format"], num_generations=4)
    assert fmt is REWARD_FUNCS["format"] is format_reward
    assert isinstance(thurstone, partial) and thurstone.func is thurstone_reward
    assert thurstone.keywords == {"num_generations": 4}
    assert get_callable_name(thurstone) == "thurstone_reward"  # TRL logs rewards/thurstone_reward/mean
    assert get_reward_funcs(["format"]) == [format_reward]  # no group size needed
    with pytest.raises(ValueError, match="needs num_generations"):
        get_reward_funcs(["thurstone"])
    with pytest.raises(ValueError, match="accuracy"):
        get_reward_funcs(["accuracy"], num_generations=2)


# --------------------------------------------------------------------------------------------------------------------
# Pair ground truth (weak pairs, pair Datasets): a pair prompt is compared with the other prompt of its pair, by p
# --------------------------------------------------------------------------------------------------------------------

NAN = float("nan")


@pytest.mark.parametrize("scores", [[3.0, 3.5, 2.0, 2.5], [1.2, 4.8, 3.3, 3.1], [2.0, NAN, 4.0, 4.4]])
def test_pair_ground_truth_equals_the_mos_reward_when_the_pair_order_matches_mos(scores):
    by_mos = thurstone_rewards_detailed(scores, [4, 2], 2)
    by_pair = thurstone_rewards_detailed(scores, [NAN, NAN], 2, pairs=[("k", "a", 1.0), ("k", "b", 1.0)])
    assert list(by_pair) == pytest.approx(list(by_mos), abs=1e-12)
    # the better video on side b (p = 0): the same rewards
    flipped = thurstone_rewards(scores, [None, None], 2, pairs=[("k", "b", 0.0), ("k", "a", 0.0)])
    assert flipped == pytest.approx(list(by_mos), abs=1e-12)
    # a tie (p = 0.5) is the MOS tie
    tie = thurstone_rewards(scores, [None, None], 2, pairs=[("k", "a", 0.5), ("k", "b", 0.5)])
    assert tie == pytest.approx(thurstone_rewards(scores, [3, 3], 2), abs=1e-12)


def test_a_soft_pair_label_is_the_ground_truth_of_the_formula():
    got = thurstone_rewards([3.0, 3.5, 2.0, 2.5], [None, None], 2, pairs=[("k", "a", 0.8), ("k", "b", 0.8)])
    sd = math.sqrt(0.125 + 0.125 + EPS)
    assert got[0] == pytest.approx(_r(norm.cdf((3.0 - 2.25) / sd), 0.8), abs=1e-12)
    assert got[3] == pytest.approx(_r(norm.cdf((2.5 - 3.25) / sd), 0.2), abs=1e-12)


def test_pair_prompts_and_mos_prompts_of_one_batch_are_never_compared():
    mos_scores, pair_scores = [3.0, 3.5, 2.0, 2.4, 4.0, 4.6], [2.2, 2.8, 3.9, 3.1]
    mixed = thurstone_rewards_detailed(
        mos_scores + pair_scores,
        [3.0, 2.0, 3.5, None, None],
        2,
        groups=["d"] * 5,
        pairs=[None, None, None, ("p0", "a", 0.0), ("p0", "b", 0.0)],
    )
    assert list(mixed)[:6] == pytest.approx(thurstone_rewards(mos_scores, [3.0, 2.0, 3.5], 2), abs=1e-12)
    assert list(mixed)[6:] == pytest.approx(thurstone_rewards(pair_scores, [1, 2], 2), abs=1e-12)
    assert mixed.lonely_prompts == 0


def test_two_pairs_in_one_batch_stay_apart_and_a_repeated_side_is_a_tie():
    scores = [3.0, 3.5, 2.0, 2.5, 1.0, 1.4, 4.0, 4.2]
    two = thurstone_rewards(scores, [None] * 4, 2, pairs=[("x", "a", 1), ("x", "b", 1), ("y", "a", 0), ("y", "b", 0)])
    assert two == pytest.approx(thurstone_rewards(scores[:4], [2, 1], 2) + thurstone_rewards(scores[4:], [1, 2], 2))
    # the sampler's fill may repeat a pair: a copy of one's own side is a tie, the other side is ordered by p
    repeated = thurstone_rewards(
        scores, [None] * 4, 2, pairs=[("x", "a", 1), ("x", "b", 1), ("x", "a", 1), ("x", "b", 1)]
    )
    assert repeated == pytest.approx(thurstone_rewards(scores, [2, 1, 2, 1], 2), abs=1e-12)


def test_a_pair_prompt_without_its_partner_is_lonely_and_bad_pairs_are_refused():
    res = thurstone_rewards_detailed([3.0, 3.5, 2.0, 2.5], [4, None], 2, pairs=[None, ("k", "a", 1.0)])
    assert list(res) == [0.5] * 4 and res.lonely_prompts == 2
    with pytest.raises(ValueError, match="side must be 'a' or 'b'"):
        thurstone_rewards([3.0, 2.0], [None, None], 1, pairs=[("k", "left", 1.0), ("k", "b", 1.0)])
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        thurstone_rewards([3.0, 2.0], [None, None], 1, pairs=[("k", "a", 2.0), ("k", "b", 2.0)])
    with pytest.raises(ValueError, match="Non-finite MOS"):
        thurstone_rewards([3.0, 2.0], [None, 2.0], 1)
    with pytest.raises(ValueError, match="different pairs"):
        thurstone_rewards(
            [3.0, 2.0, 1.0, 1.0], [None] * 4, 2, pairs=[("k", "a", 1), ("j", "a", 1), ("k", "b", 1), ("k", "b", 1)]
        )


def test_trl_wrapper_reads_the_pair_columns_and_logs_the_pair_prompts():
    scores = [3.0, 3.4, 2.0, 2.6, 3.0, 3.2, 1.0, 4.0]
    logged = {}
    got = _thurstone(2)(
        [f"<answer>{s}</answer>" for s in scores],
        mos=[4.0, 4.0, 2.0, 2.0, None, None, None, None],
        dataset=["d"] * 8,
        video=["m1", "m1", "m2", "m2", "v", "v", "w", "w"],
        pair_id=[None] * 4 + ["0:7"] * 4,
        pair_side=[None] * 4 + ["a", "a", "b", "b"],
        pair_p=[None] * 4 + [0.0] * 4,
        log_metric=logged.__setitem__,
    )
    pairs = [None, None, ("0:7", "a", 0.0), ("0:7", "b", 0.0)]
    assert got == pytest.approx(thurstone_rewards(scores, [4, 2, None, None], 2, groups=["d"] * 4, pairs=pairs))
    assert got[4:] == pytest.approx(thurstone_rewards(scores[4:], [1, 2], 2), abs=1e-12)
    assert logged == {
        "thurstone/unparseable_frac": 0.0,
        "thurstone/lonely_prompts": 0.0,
        "thurstone/pair_prompts": 2.0,
    }
