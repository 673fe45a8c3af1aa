"""The whole loop, as README's main command runs it (smallest sizes)."""

import json
from pathlib import Path

import pytest
from conftest import load_recipe
from datasets import load_dataset, load_from_disk


@pytest.mark.slow
def test_demo_runs_the_whole_loop_for_two_rounds_and_resumes(tmp_path, monkeypatch):
    from peft import PeftModel

    from mds_vqa.modeling import load_model_and_processor

    monkeypatch.chdir(tmp_path)
    demo = load_recipe("demo")
    args = demo.DemoArguments(
        output_dir=str(tmp_path / "demo"), videos_per_domain=16, rounds=2, fp_steps=4, grpo_steps=2
    )
    summary = demo.main(args)
    run = tmp_path / "demo" / "run"

    # every artifact exists and loads
    for r in (1, 2):
        selection = load_from_disk(str(run / f"round_{r}" / "selection" / "mds"))
        assert len(selection) > 0 and "rank" in selection.column_names
        labelled = load_from_disk(str(run / f"round_{r}" / "labelled"))
        assert sorted(labelled["video_id"]) == sorted(selection["video_id"])
    base, _ = load_model_and_processor(str(tmp_path / "demo" / "assets" / "tiny_qwen2_5_vl"), dtype="float32")
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
    staged = load_dataset(str(run / "hub" / "selection"))
    assert staged["train"].num_rows == len(second)
    stages = {t["stage"]: t for t in summary["stages"]}
    assert all(not t["skipped"] for t in summary["stages"]) and "r2_finetune" in stages

    # resume: a second run skips every finished stage
    again = demo.main(args)
    assert again["stages"] and all(t["skipped"] for t in again["stages"])
    assert Path(again["report_dir"]) == run / "report"
