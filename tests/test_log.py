"""Recipes log once per job: INFO on the main process, WARNING elsewhere (transformers and datasets too)."""

from __future__ import annotations

import logging

import datasets
import pytest
import transformers

from mds_vqa.log import setup_logging


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    saved = (root.level, list(root.handlers), logging.getLogger("mds_vqa").level)
    tf, ds = transformers.utils.logging.get_verbosity(), datasets.utils.logging.get_verbosity()
    yield
    root.handlers[:] = saved[1]
    root.setLevel(saved[0])
    logging.getLogger("mds_vqa").setLevel(saved[2])
    transformers.utils.logging.set_verbosity(tf)
    datasets.utils.logging.set_verbosity(ds)
    transformers.utils.logging.enable_progress_bar()
    datasets.utils.logging.enable_progress_bar()


def test_the_main_process_logs_info_and_keeps_library_warnings(monkeypatch, restore_logging):
    monkeypatch.setenv("RANK", "0")
    assert setup_logging() == logging.INFO
    assert logging.getLogger("mds_vqa.score").getEffectiveLevel() == logging.INFO
    assert logging.getLogger("recipe").getEffectiveLevel() == logging.INFO
    assert transformers.utils.logging.get_verbosity() == logging.WARNING
    assert datasets.utils.logging.is_progress_bar_enabled()


def test_other_processes_log_warnings_only_and_show_no_library_progress_bars(monkeypatch, restore_logging):
    monkeypatch.setenv("RANK", "3")
    assert setup_logging() == logging.WARNING
    assert logging.getLogger("mds_vqa.score").getEffectiveLevel() == logging.WARNING
    assert transformers.utils.logging.get_verbosity() == logging.WARNING
    assert datasets.utils.logging.get_verbosity() == logging.WARNING
    assert not datasets.utils.logging.is_progress_bar_enabled()
    assert not transformers.utils.logging.is_progress_bar_enabled()
