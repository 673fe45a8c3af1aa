"""How results are shown: Markdown tables, numbers in tables, matplotlib pictures, and lists in error messages.

One helper per job, used by the selection report, the evaluation tables and the gMAD summary:

- :func:`markdown_table`: a pipe table from a header and rows of cells (hand-written: ``DataFrame.to_markdown``
  needs ``tabulate``, which is not a dependency);
- :func:`format_number`: a number with fixed decimals, a dash when it is missing (``None``, NaN, ±inf);
- :func:`pyplot` and :func:`save_figure`: matplotlib on the non-interactive Agg backend, and a figure written to a
  file then closed;
- :data:`MAX_LISTED`: how many offenders an error message or a log line lists at most.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["MAX_LISTED", "markdown_table", "format_number", "pyplot", "save_figure"]

MAX_LISTED = 20

_ALIGN = {"l": "---", "c": ":---:", "r": "---:"}


def markdown_table(header: Sequence[Any], rows: Sequence[Sequence[Any]], *, align: str | None = None) -> str:
    """A Markdown pipe table, one line per row, without a trailing newline.

    ``align`` has one letter per column, ``l`` (``---``), ``c`` (``:---:``) or ``r`` (``---:``); ``None`` aligns every
    column left. Cells are written with ``str`` as they are (no escaping of ``|``); an empty cell as one space.
    """
    align = "l" * len(header) if align is None else align
    if len(align) != len(header) or set(align) - set(_ALIGN):
        raise ValueError(f"align needs one of l/c/r per column ({len(header)}), got {align!r}")
    lines = [_row(header), "|" + "|".join(_ALIGN[a] for a in align) + "|"]
    lines.extend(_row(cells) for cells in rows)
    return "\n".join(lines)


def _row(cells: Sequence[Any]) -> str:
    return "|" + "|".join(f" {c} " if str(c) else " " for c in cells) + "|"


def format_number(value: Any, digits: int = 4, *, missing: str = "–") -> str:
    """``value`` with ``digits`` decimals; ``missing`` (an en dash by default) for ``None``, NaN and ±inf."""
    if value is None or not math.isfinite(float(value)):
        return missing
    return f"{value:.{digits}f}"


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (files only, no display needed: servers, CI, workers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, *, dpi: float | None = None) -> Path:
    """Save ``fig`` to ``path`` (its folder created if needed; ``dpi=None``: the figure's own) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if dpi is None:
        fig.savefig(path)
    else:
        fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path
