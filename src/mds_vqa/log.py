"""Logging set-up of the recipes: each message once per job, not once per process.

Under ``accelerate launch`` / ``torchrun`` every process runs the recipe. :func:`setup_logging` lets the main process
log at INFO and every other process at WARNING only — for mds-vqa's loggers and for ``transformers`` and ``datasets``
(whose progress bars are switched off on the other processes too), as open-r1's recipes do.
"""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["LOG_FORMAT", "process_rank", "setup_logging"]

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def process_rank() -> int:
    """This process's global rank, read from the ``RANK`` environment variable that ``accelerate launch`` and
    ``torchrun`` set before the script starts (0 for a plain ``python`` run). Reading it initialises nothing, so
    logging can be set up before the distributed state exists."""
    return int(os.environ.get("RANK", "0") or 0)


def setup_logging(main_level: int = logging.INFO, other_level: int = logging.WARNING) -> int:
    """Configure logging for this process and return the level used: ``main_level`` on rank 0, ``other_level`` on
    every other rank. Applies to the root logger (so ``mds_vqa.*`` and the recipes' loggers), to ``transformers``
    and ``datasets`` verbosity, and disables their progress bars off the main process."""
    import datasets
    import transformers

    main = process_rank() == 0
    level = main_level if main else other_level
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr, force=True)
    logging.getLogger("mds_vqa").setLevel(level)
    library_level = max(level, logging.WARNING) if main else other_level  # their INFO is per-file noise
    transformers.utils.logging.set_verbosity(library_level)
    datasets.utils.logging.set_verbosity(library_level)
    if not main:
        transformers.utils.logging.disable_progress_bar()
        datasets.utils.logging.disable_progress_bar()
    return level
