"""The command line of a run, with every Hugging Face token taken out (for cards and provenance records)."""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["REDACTED", "redact", "reproduce_command", "config_from_argv"]

_TOKEN_RE = re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")  # user access tokens: hf_ + 34 letters/digits
_SECRET_FLAGS = {"--hub_token", "--hub-token", "--token"}
REDACTED = "<redacted>"


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with ``secrets``, the token of ``HF_TOKEN``/``HUGGING_FACE_HUB_TOKEN`` and anything shaped like a
    Hugging Face token (``hf_…``) replaced by ``<redacted>``."""
    known = [s for s in (*secrets, os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN")) if s]
    for secret in sorted(set(known), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return _TOKEN_RE.sub(REDACTED, text)


def reproduce_command(argv: Sequence[str] | None = None) -> str:
    """The command line of this run (``python <script> <args>``, default ``sys.argv``) with token values removed."""
    argv = list(sys.argv if argv is None else argv)
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        flag, eq, _ = arg.partition("=")
        if flag in _SECRET_FLAGS:
            out.append(f"{flag}={REDACTED}" if eq else arg)
            hide_next = not eq
            continue
        out.append(arg)
    if out and Path(out[0]).parent.name == "recipes":
        out[0] = f"recipes/{Path(out[0]).name}"  # as run from the repository root
    return redact("python " + shlex.join(out)) if out else ""


def config_from_argv(argv: Sequence[str] | None = None) -> tuple[str, str] | None:
    """``(path, text)`` of the ``--config`` YAML of this run (tokens redacted), when there is one and it can be
    read."""
    argv = list(sys.argv if argv is None else argv)
    for i, arg in enumerate(argv):
        path = None
        if arg == "--config" and i + 1 < len(argv):
            path = argv[i + 1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        if path and Path(path).is_file():
            return path, redact(Path(path).read_text())
    return None
