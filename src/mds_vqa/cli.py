"""The command-line entry of the recipes: logging set up once per job, the recipe's parser (a YAML via ``--config``,
flags on top), and an expected error — a bad argument, a missing file or video, a refused push — printed as one line
``error: …`` on stderr with exit code 2 instead of a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from .hub.pushing import HubPushError
from .log import setup_logging
from .resumable import InitialFailuresError
from .video import VideoReadError

__all__ = ["RECIPE_ERRORS", "run_recipe"]

# what a user can cause and fix: the message says what and where (ValueError covers the project's validation errors:
# PoolValidationError, CorrelationInputError, TeacherError, RunConfigError)
RECIPE_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError,
    FileExistsError,
    KeyError,
    ValueError,
    VideoReadError,
    InitialFailuresError,
    HubPushError,
)


def run_recipe(main: Callable[..., Any], make_parser: Callable[[], Any], *, exit_code: int = 2) -> Any:
    """Set up logging, parse the command line with ``make_parser()`` and call ``main(*parsed)``; an error of
    :data:`RECIPE_ERRORS` exits with ``exit_code`` after printing it. Returns what ``main`` returns."""
    setup_logging()
    parsed = make_parser().parse_args_and_config()
    try:
        return main(*parsed)
    except RECIPE_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(exit_code)
