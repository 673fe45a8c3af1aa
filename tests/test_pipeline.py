"""The whole loop on the demo's toy world (smallest sizes), and the stages' resume keys."""

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import pytest
from conftest import load_recipe
from datasets import load_from_disk


def _toy_loop(tmp_path, **overrides):
    """The demo's world for one seed (small, random f) and a pipeline config over it (the loop, not the
    comparison)."""
    demo = load_recipe("demo")
    args = demo.DemoArguments(output_dir=str(tmp_path / "demo"), source_videos=16, target_videos=24, pretrain=False)
    seed_dir = tmp_path / "demo" / "seeds" / "seed_0"
    paths = demo.prepare_seed(args, 0, seed_dir)
    config = demo.pipeline_config(args, 0, seed_dir, paths)
    fields = {
        "output_dir": str(tmp_path / "demo" / "run"),
        "strategies": ["mds", "difficulty", "random"],
        "finetune_strategies": "first",
        "budget": "0.25",
        "stage_hub": True,
        "launcher": "python",  # each stage as the recipe a user runs: its own process
        "score_launcher": None,
        "failure_predictor_args": {**config.failure_predictor_args, "max_steps": 4},
        "finetune_args": {**config.finetune_args, "max_steps": 2, "per_device_train_batch_size": 8},
        **overrides,
    }
    return dataclasses.replace(config, **fields), paths


@pytest.mark.slow
def test_the_loop_runs_two_rounds_and_resumes(tmp_path, monkeypatch):
    """Two rounds end to end; a re-run skips everything; a new λ re-runs exactly the stages it invalidates."""
    import yaml
    from peft import PeftModel

    from mds_vqa.loading import load_pool
    from mds_vqa.modeling import load_model_and_processor
    from mds_vqa.pipeline import Pipeline, PipelineConfig

    monkeypatch.chdir(tmp_path)
    config, paths = _toy_loop(tmp_path, rounds=2)
    (tmp_path / "demo" / "pipeline.yaml").write_text(yaml.safe_dump(dataclasses.asdict(config), sort_keys=False))
    summary = Pipeline(config).run()
    run = tmp_path / "demo" / "run"

    # every artifact exists and loads
    for r in (1, 2):
        selection = load_from_disk(str(run / f"round_{r}" / "selection" / "mds"))
        assert len(selection) > 0 and "rank" in selection.column_names
        labelled = load_from_disk(str(run / f"round_{r}" / "labelled"))
        assert sorted(labelled["video_id"]) == sorted(selection["video_id"])
    base, _ = load_model_and_processor(paths["model"], dtype="float32")
    PeftModel.from_pretrained(base, str(run / "round_2" / "adapter"))
    assert (run / "round_1" / "model" / "config.json").exists()  # round 2 started from the fine-tuned f

    # two rounds never select a video twice; the annotator revealed exactly the selections
    first = set(load_from_disk(str(run / "round_1" / "labelled"))["video_id"])
    second = set(load_from_disk(str(run / "round_2" / "labelled"))["video_id"])
    assert first and second and not first & second
    assert summary["annotations_spent"] == len(first) + len(second)
    log = [json.loads(line) for line in (run / "annotation_log.jsonl").read_text().splitlines()]
    assert [set(e["video_ids"]) for e in log] == [first, second]

    # report tables with numbers for every round, cards staged
    table = json.loads((run / "report" / "correlation_table.json").read_text())
    text = json.dumps(table)
    assert "round 1" in text and "round 2" in text and "toy_target" in text
    md = (run / "report" / "correlation_table.md").read_text()
    assert "| toy_target |" in md and any(ch.isdigit() for ch in md.split("| toy_target |")[1].split("\n")[0])
    assert (run / "report" / "failure_identification.md").exists() and (run / "report" / "README.md").exists()
    card = (run / "hub" / "adapter" / "README.md").read_text()
    assert card.startswith("---") and "grpo" in card
    selection_card = (run / "hub" / "selection" / "README.md").read_text()
    assert str(run / "round_2" / "g") in selection_card and "| Frames per video | 4 |" in selection_card
    staged = load_pool(run / "hub" / "selection")  # by its files: a same-named folder staged before cannot leak in
    assert staged.num_rows == len(second)
    stages = {t["stage"]: t for t in summary["stages"]}
    assert all(not t["skipped"] for t in summary["stages"]) and "r2_finetune" in stages

    # resume: a second run skips every finished stage
    again = Pipeline(config).run()
    assert again["stages"] and all(t["skipped"] for t in again["stages"])
    assert Path(again["report_dir"]) == run / "report"

    # a new λ re-runs the selection and everything downstream of it, nothing upstream (one round and one strategy
    # keep this short: round 1's stages have the same arguments in a one-round run)
    config = yaml.safe_load((tmp_path / "demo" / "pipeline.yaml").read_text())
    config.update(lam=0.0, rounds=1, strategies=["mds"], stage_hub=False)
    changed = Pipeline(PipelineConfig(**config)).run()
    now = {t["stage"]: t for t in changed["stages"]}
    upstream = ["base_score_source", "base_score_target", "target_train_unlabelled", "features"]
    upstream += ["r1_failure_predictor", "r1_unlabelled", "r1_difficulty", "r1_candidates"]
    assert all(now[s]["skipped"] and now[s]["key"] == stages[s]["key"] for s in upstream)
    assert now["r1_select_mds"]["reason"] == "arguments changed: lam 0.25 -> 0.0"
    downstream = {
        "r1_annotate": "input r1_select_mds changed",
        "r1_finetune": "input r1_annotate changed",
        "r1_score_source_test": "input r1_finetune changed",
        "r1_score_target_test": "input r1_finetune changed",
    }
    for stage, reason in {"r1_select_mds": None, **downstream}.items():
        assert not now[stage]["skipped"] and now[stage]["key"] != stages[stage]["key"], stage
        assert reason is None or now[stage]["reason"] == reason, (stage, now[stage]["reason"])
    assert "input r1_select_mds changed" in now["evaluate"]["reason"]
    # λ = 0 leaves g alone: the mds picks are now the top-g picks, and they are what was annotated
    picked = sorted(load_from_disk(str(run / "round_1" / "selection" / "mds"))["video_id"])
    assert picked == sorted(load_from_disk(str(run / "round_1" / "selection" / "difficulty"))["video_id"])
    assert sorted(load_from_disk(str(run / "round_1" / "labelled"))["video_id"]) == picked
    report = json.loads((run / "report" / "summary.json").read_text())
    assert report["config"]["lam"] == 0.0
    assert {t["stage"]: t["key"] for t in report["stages"]} == {s: t["key"] for s, t in now.items()}
    table = json.dumps(json.loads((run / "report" / "correlation_table.json").read_text()))
    assert "base+mds" in table and "round 2" not in table  # the report is the new run's
    assert "re-run: arguments changed: lam 0.25 -> 0.0" in (run / "report" / "README.md").read_text()


# ------------------------------------------------------------------ resume keys (in-process stages, no model)


def _two_stages(tmp_path, x: int, calls: list[str]) -> dict:
    """A pipeline of two in-process stages: ``a`` writes ``x``, ``b`` copies what ``a`` wrote; returns the stages."""
    from mds_vqa.pipeline import Pipeline, PipelineConfig

    pipe = Pipeline(PipelineConfig(output_dir=str(tmp_path / "run"), source_pool="source", target_pool="target"))
    a_out, b_out = pipe.out / "a.txt", pipe.out / "b"

    def a():
        calls.append("a")
        a_out.write_text(str(x))

    def b():
        calls.append("b")
        b_out.mkdir()  # raises if a stale output was left in place
        (b_out / "copy.txt").write_text(a_out.read_text())

    pipe.step("a", a_out, a, params={"x": x})
    pipe.step("b", b_out, b, params={"source": str(a_out)})
    pipe.step("c", pipe.out / "c.txt", lambda: calls.append("c") or (pipe.out / "c.txt").write_text("c"), params={})
    return {t["stage"]: t for t in pipe.timings}


def test_a_stage_is_skipped_only_while_its_arguments_and_inputs_are_unchanged(tmp_path, caplog):
    calls: list[str] = []
    first = _two_stages(tmp_path, 1, calls)
    assert calls == ["a", "b", "c"] and not any(t["skipped"] for t in first.values())
    marker = json.loads((tmp_path / "run" / "state" / "b.json").read_text())
    assert marker["key"] == first["b"]["key"] and marker["inputs"] == {"a": first["a"]["key"]}
    assert marker["args"] == {"source": str(tmp_path / "run" / "a.txt")}

    calls.clear()
    again = _two_stages(tmp_path, 1, calls)
    assert calls == [] and all(t["skipped"] for t in again.values())
    assert {k: t["key"] for k, t in again.items()} == {k: t["key"] for k, t in first.items()}

    calls.clear()
    with caplog.at_level(logging.INFO, logger="mds_vqa.pipeline"):
        changed = _two_stages(tmp_path, 2, calls)
    assert calls == ["a", "b"] and changed["c"]["skipped"]  # a and what reads it; c is independent
    assert changed["a"]["reason"] == "arguments changed: x 1 -> 2"
    assert changed["b"]["reason"] == "input a changed" and changed["b"]["key"] != first["b"]["key"]
    assert "[rerun] a: arguments changed: x 1 -> 2" in caplog.text and "[rerun] b: input a changed" in caplog.text
    assert (tmp_path / "run" / "b" / "copy.txt").read_text() == "2"

    calls.clear()
    shutil.rmtree(tmp_path / "run" / "b")
    gone = _two_stages(tmp_path, 2, calls)
    assert calls == ["b"] and gone["b"]["reason"] == f"its output {tmp_path / 'run' / 'b'} is missing"


def test_a_marker_without_a_key_is_not_trusted(tmp_path):
    calls: list[str] = []
    _two_stages(tmp_path, 1, calls)
    (tmp_path / "run" / "state" / "a.json").write_text(json.dumps({"seconds": 1.0, "output": "a.txt"}))  # old format
    calls.clear()
    stages = _two_stages(tmp_path, 1, calls)
    assert calls == ["a"] and stages["a"]["reason"] == "its marker records no key (written by an older version)"
    assert stages["b"]["skipped"]  # a's key did not change: what reads it is still valid


def test_a_per_stage_field_its_recipe_does_not_know_is_refused_before_any_stage_runs(tmp_path):
    from mds_vqa.pipeline import Pipeline, PipelineConfig

    config = PipelineConfig(
        output_dir=str(tmp_path / "run"),
        source_pool="source",
        target_pool="target",
        score_args={"batch_size": 2, "batchsize": 4},
        finetune_args={"num_generation": 4},
        sampling={"fps": 2.0},
    )
    with pytest.raises(ValueError) as err:
        Pipeline(config)
    message = str(err.value)
    assert "score_args.batchsize: not a field of recipes/score.py (did you mean 'batch_size'?)" in message
    assert (
        "finetune_args.num_generation: not a field of recipes/finetune.py (did you mean 'num_generations'?)" in message
    )
    assert "sampling" not in message and not (tmp_path / "run").exists()


def test_recipe_stages_write_the_recipe_fields_with_the_users_fields_on_top():
    from mds_vqa.pipeline.stage_args import ScoreStage

    stage = ScoreStage(dataset_path="pool", output_dir="out", model_name_or_path="f", dtype="float32")
    args = stage.args({"fps": 1.0}, {"batch_size": 8, "dtype": "bfloat16"})
    assert args["adapter"] is None and args["mode"] == "expectation" and args["task"] == "scoring"
    assert args["fps"] == 1.0 and args["batch_size"] == 8 and args["dtype"] == "bfloat16"
    assert stage.recipe == "score" and stage.kind == "score"


# ------------------------------------------------------------------ scoring modes per stage (no model runs)

PAPER_PIPELINE = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "youtube_sfv_sdr" / "pipeline.yaml"


def _recorded_scoring_stages(tmp_path, monkeypatch, **overrides) -> dict:
    """The arguments every scoring stage of the paper's pipeline config (with ``overrides``) would run with: the base
    scores, round 2 (f re-scores the source there) and the evaluation's source scores; the recipes are not run."""
    import yaml

    from mds_vqa.pipeline import Pipeline, PipelineConfig

    config = {**yaml.safe_load(PAPER_PIPELINE.read_text()), "output_dir": str(tmp_path / "run"), **overrides}
    pipe = Pipeline(PipelineConfig(**config))
    stages: dict[str, dict] = {}

    def record(name, recipe, args, output, kind="score", fingerprint=None):
        stages[name] = {"recipe": recipe, **args}
        return output

    monkeypatch.setattr(pipe, "recipe", record)
    for step in ("unlabelled_pool", "candidates", "annotate"):  # in-process steps that read earlier outputs
        monkeypatch.setattr(pipe, step, lambda r, *a, step=step: tmp_path / step)
    monkeypatch.setattr(pipe, "labelled_features", lambda r, *a: [])
    source, _ = pipe.score_base()
    pipe.run_round(2, "f_round_1", tmp_path / "features", source)
    pipe.base_source_for_eval(source)
    return {name: args for name, args in stages.items() if args["recipe"] == "score"}


def test_each_scoring_stage_reads_with_its_own_mode_the_paper_config_reading_f_by_sampled_thinking(
    tmp_path, monkeypatch
):
    stages = _recorded_scoring_stages(tmp_path, monkeypatch)
    modes = {name: args["mode"] for name, args in stages.items()}
    assert modes == {
        "base_score_source": "generate",  # what g learns from
        "base_score_target": "generate",
        "r2_score_source": "generate",
        "r2_difficulty": "expectation",  # g
        "r2_score_source_test": "generate",  # evaluation
        "r2_score_target_test": "generate",
    }  # the evaluation reads like f's source scores: the base source scores are reused, not scored again
    parser = load_recipe("score").make_parser()
    _, f, _, _ = parser.parse_dict({k: v for k, v in stages["base_score_source"].items() if k != "recipe"})
    assert (f.variant, f.do_sample, f.top_k, f.top_p, f.temperature) == ("thinking", True, 50, 1.0, None)
    _, g, _, _ = parser.parse_dict({k: v for k, v in stages["r2_difficulty"].items() if k != "recipe"})
    assert (g.task, g.variant, g.reading, g.decimals) == ("difficulty", "direct", "prefix", 0)  # as g is trained
    assert stages["r2_difficulty"]["adapter"] == str(tmp_path / "run" / "round_2" / "g")


def test_an_evaluation_mode_other_than_the_source_mode_scores_the_source_again(tmp_path, monkeypatch):
    stages = _recorded_scoring_stages(tmp_path, monkeypatch, eval_score_mode="both", source_score_mode="expectation")
    assert stages["base_score_source"]["mode"] == "expectation"
    assert stages["base_score_source_eval"]["mode"] == "both" and stages["r2_score_target_test"]["mode"] == "both"


def test_a_scoring_mode_for_every_stage_at_once_is_refused():
    from mds_vqa.pipeline import PipelineConfig

    with pytest.raises(ValueError, match="source_score_mode, difficulty_score_mode and eval_score_mode"):
        PipelineConfig(score_args={"mode": "generate"})
    with pytest.raises(ValueError, match="difficulty_score_mode must be one of"):
        PipelineConfig(difficulty_score_mode="sampled")


# ------------------------------------------------------------------ the human annotator and labelled diversity


def _human_pipeline(tmp_path, **overrides):
    from mds_vqa.pipeline import Pipeline, PipelineConfig

    config = PipelineConfig(
        output_dir=str(tmp_path / "run"), source_pool="source", target_pool="target", annotator="human", **overrides
    )
    return Pipeline(config)


def test_a_human_round_waits_for_ratings_then_imports_them_and_reimports_when_they_change(tmp_path, video_dir):
    from datasets import Dataset

    from mds_vqa.pipeline import AwaitingRatings

    _, rows = video_dir
    ids = [r["video_id"] for r in rows[:3]]
    selection = tmp_path / "selection"
    Dataset.from_dict(
        {"rank": [1, 2, 3], "video_id": ids, "video": [r["video"] for r in rows[:3]], "dataset": ["t"] * 3}
    ).save_to_disk(str(selection))
    pipe = _human_pipeline(tmp_path, min_ratings=2)
    with pytest.raises(AwaitingRatings) as paused:
        pipe.annotate(1, selection)
    ratings = tmp_path / "run" / "round_1" / "ratings" / "ratings.csv"
    assert f"0 of 3 selected videos have at least 2 rating(s) in {ratings}" in str(paused.value)
    assert f"python recipes/rate.py --subset_path {selection} --output_dir {ratings.parent}" in str(paused.value)

    ratings.parent.mkdir(parents=True)
    lines = ["video_id,rater,score"] + [f"{v},{rater},{s}" for v, s in zip(ids, (5, 3, 1)) for rater in ("a", "b")]
    ratings.write_text("\n".join(lines[:-1]) + "\n")  # the last video has one rating only
    with pytest.raises(AwaitingRatings, match="2 of 3 selected videos"):
        pipe.annotate(1, selection)

    ratings.write_text("\n".join(lines) + "\n")
    labelled = pipe.annotate(1, selection)
    pool = load_from_disk(str(labelled))
    assert dict(zip(pool["video_id"], pool["mos"])) == {ids[0]: 5.0, ids[1]: 3.0, ids[2]: 1.0}
    assert pipe.labelled_ids == ids and not pipe.timings[-1]["skipped"]

    again = _human_pipeline(tmp_path, min_ratings=2)
    again.annotate(1, selection)
    assert again.timings[-1]["skipped"]  # same answers: nothing to import again
    ratings.write_text("\n".join([*lines, f"{ids[0]},c,4"]) + "\n")
    third = _human_pipeline(tmp_path, min_ratings=2)
    third.annotate(1, selection)
    assert not third.timings[-1]["skipped"] and "fingerprint.ratings_sha256" in third.timings[-1]["reason"]
    assert load_from_disk(str(labelled))["mos"][0] == pytest.approx(14 / 3)


def test_from_round_two_the_selection_counts_the_videos_labelled_before(tmp_path):
    from datasets import Dataset

    from mds_vqa.pipeline import Pipeline, PipelineConfig

    features = tmp_path / "features"
    Dataset.from_dict({"video_id": ["a", "b", "c"], "features": [[[0.0, 1.0]]] * 3}).save_to_disk(str(features))
    config = PipelineConfig(output_dir=str(tmp_path / "run"), source_pool="source", target_pool="target")
    pipe = Pipeline(config)
    pipe.labelled_ids = ["c", "a"]
    assert pipe.labelled_features(1, features, None) == []  # round 1: nothing labelled yet
    (path,) = pipe.labelled_features(2, features, None)
    assert sorted(load_from_disk(str(path))["video_id"]) == ["a", "c"]
    args = {}
    pipe.recipe = lambda name, recipe, a, output, **kw: args.update(a) or output
    pipe.select(2, tmp_path / "candidates", "mds", [path])
    assert args["labelled_paths"] == [str(path)]
    blind = Pipeline(PipelineConfig(**{**config.__dict__, "diversity_labelled": False}))
    assert blind.labelled_features(2, features, None) == []
