"""The pipeline's report page: stage timings (and why a stage re-ran), the tables of the evaluate stage, links to
every selection report, and the rounds; ``summary.json`` holds the same and the config."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..reporting import markdown_table

if TYPE_CHECKING:
    from .loop import Pipeline, RoundResult

__all__ = ["write_summary", "stage_status"]


def stage_status(timing: dict[str, Any]) -> str:
    """The report's note on a stage: done before, or why it ran again."""
    if timing["skipped"]:
        return "skipped (done)"
    reason = timing.get("reason")
    return "" if reason in (None, "not run before") else f"re-run: {reason}".replace("|", "\\|")


def write_summary(pipeline: Pipeline, report: Path, rounds: list[RoundResult]) -> dict[str, Any]:
    """Write ``report/summary.json`` and ``report/README.md`` for a finished run; returns the summary."""
    table_path = report / "correlation_table.json"
    timings = pipeline.timings
    # the simulated annotator counts what it revealed; with raters, every selected video was sent to them
    spent = pipeline.annotator.spent if pipeline.annotator is not None else len(pipeline.labelled_ids)
    spent += sum(a.spent for a in pipeline.arm_annotators.values())  # a comparison: one annotator per strategy
    summary = {
        "config": asdict(pipeline.cfg),
        "stages": timings,
        "total_seconds": round(sum(t["seconds"] for t in timings), 2),
        "rounds": [
            {
                "round": r.round,
                "labelled_total": r.labelled_total,
                "adapter": str(r.adapter),
                "arms": {s: str(a.adapter) for s, a in r.arms.items()},
            }
            for r in rounds
        ],
        "annotations_spent": spent,
        "report_dir": str(report),
        "correlation_table": json.loads(table_path.read_text()) if table_path.exists() else None,
    }
    (report / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    stage_rows = [(t["stage"], f"{t['seconds']:.1f}", stage_status(t)) for t in timings]
    lines = ["# MDS-VQA run", "", markdown_table(["stage", "seconds", ""], stage_rows, align="lrl")]
    lines += ["", f"Total: {summary['total_seconds']:.1f} s; videos annotated: {spent}.", ""]
    for name in ("correlation_table.md", "failure_identification.md"):
        if (report / name).exists():
            lines += [(report / name).read_text(), f"![{name[:-3]}]({name[:-3]}.png)", ""]
    selections = sorted(pipeline.out.glob("round_*/selection/*/report.md"))
    if selections:
        lines += ["## Selection reports", ""]
        lines += [
            f"- [{p.parent.parent.parent.name} / {p.parent.name}]({os.path.relpath(p, report)})" for p in selections
        ]
    if rounds:
        round_rows = [(r.round, r.labelled_total, f"`{r.adapter}`") for r in rounds]
        lines += [
            "",
            "## Rounds",
            "",
            markdown_table(["round", "videos labelled so far", "adapter"], round_rows, align="rrl"),
        ]
    (report / "README.md").write_text("\n".join(lines))
    return summary
