"""The shared presentation helpers: Markdown tables, numbers in tables, figures."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mds_vqa.reporting import format_number, markdown_table, pyplot, save_figure


def test_markdown_table_writes_header_alignment_and_rows():
    md = markdown_table(["Domain", "a SRCC", "b SRCC"], [["x", "0.5000", "**0.6000**"]], align="lcr")
    assert md.split("\n") == [
        "| Domain | a SRCC | b SRCC |",
        "|---|:---:|---:|",
        "| x | 0.5000 | **0.6000** |",
    ]
    assert not md.endswith("\n")


def test_markdown_table_defaults_to_left_and_writes_an_empty_cell_as_one_space():
    md = markdown_table(["", "pool"], [["mean g", 1]])
    assert md == "| | pool |\n|---|---|\n| mean g | 1 |"
    assert markdown_table(["a"], []) == "| a |\n|---|"


@pytest.mark.parametrize("align", ["lc", "lx", "lcc c"])
def test_markdown_table_rejects_an_alignment_that_does_not_fit(align):
    with pytest.raises(ValueError, match="one of l/c/r per column"):
        markdown_table(["a", "b", "c"], [], align=align)


def test_format_number_fixes_the_decimals_and_dashes_missing_values():
    assert format_number(0.123456) == "0.1235"
    assert format_number(np.float32(2.5), 2) == "2.50"
    assert format_number(3, 1) == "3.0"
    for missing in (None, math.nan, np.nan, math.inf, -math.inf):
        assert format_number(missing) == "–"
    assert format_number(None, missing="—") == "—"


def test_save_figure_creates_the_folder_writes_a_png_and_closes_the_figure(tmp_path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path / "sub" / "f.png", dpi=50)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)
    assert plt.get_backend().lower() == "agg"
