"""Shared fixtures: offline Hub, hermetic Hugging Face caches, a tiny Qwen2.5-VL saved to a folder, generated videos.

The suite never reads or writes the user's Hugging Face caches: before anything imports ``datasets``,
``transformers`` or ``huggingface_hub``, every cache location points into one temporary folder for the whole session
(subprocesses the tests start inherit it), removed at exit. A cache used by earlier runs (``make demo``, another
checkout) therefore cannot leak rows or models into a test.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

_HF_HOME = tempfile.mkdtemp(prefix="mds-vqa-tests-hf-")
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)
for _var, _sub in {
    "HF_HOME": "",
    "HF_DATASETS_CACHE": "datasets",
    "HF_HUB_CACHE": "hub",
    "HUGGINGFACE_HUB_CACHE": "hub",
    "HF_MODULES_CACHE": "modules",
    "HF_EVALUATE_CACHE": "evaluate",
    "TRANSFORMERS_CACHE": "hub",
}.items():
    os.environ[_var] = os.path.join(_HF_HOME, _sub) if _sub else _HF_HOME
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from mds_vqa.pipeline.config import load_recipe  # noqa: E402, F401  (tests import it from here)
from mds_vqa.testing import Distortion, build_tiny_qwen2_5_vl, make_video, make_video_pool  # noqa: E402

# operators that read a value back to the host (``.item()``, ``bool()``, ``int()``) or whose output shape depends on
# the data (boolean-mask indexing, ``nonzero``, ``unique``): each is a host synchronisation on a GPU
SYNCING_OPS = ("_local_scalar_dense", "is_nonzero", "nonzero", "masked_select", "unique", "equal", "item")


class RecordOps(TorchDispatchMode):
    """Records the name of every operator dispatched inside the ``with`` block."""

    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.__name__)
        return func(*args, **(kwargs or {}))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A tiny random Qwen2.5-VL + processor saved to a folder (loaded by path like a Hub checkpoint)."""
    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny_qwen2_5_vl"))


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory):
    """Six generated videos of known quality order (same content, increasing distortion)."""
    folder = tmp_path_factory.mktemp("videos")
    distortions = [
        Distortion(),
        Distortion(blur=0.8),
        Distortion(noise=12),
        Distortion(blur=1.5, crf=32),
        Distortion(noise=30, crf=36),
        Distortion(blur=2.5, noise=25, crf=42),
    ]
    rows = make_video_pool(folder, distortions, same_content=True)
    return folder, rows


@pytest.fixture
def video_file(tmp_path) -> str:
    """One short generated mp4 (16 frames, 64×64, 8 fps)."""
    return make_video(tmp_path / "clip.mp4", Distortion(blur=1.0))
