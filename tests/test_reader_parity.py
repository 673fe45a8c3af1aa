"""One reader for the VLM: :mod:`mds_vqa.qwen_frames` gives what qwen-vl-utils gives (frames, metadata and the
processor's inputs) through :mod:`mds_vqa.video`, with decord or PyAV alone, and pads clips too short for it."""

from __future__ import annotations

import math
import sys

import pytest
import torch

from mds_vqa.modeling import VideoSamplingConfig, build_messages, load_model_and_processor, prepare_inputs
from mds_vqa.prompts import SCORING_PROMPT
from mds_vqa.qwen_frames import fetch_video, frame_indices
from mds_vqa.scoring import ScoringConfig, score_videos
from mds_vqa.testing import Distortion, make_video, make_video_pool

# (frames, height, width, fps): square, wide, tall and odd-sized-after-resize clips at several rates and lengths
CLIPS = {
    "square8": (24, 64, 64, 8),
    "wide25": (30, 90, 160, 25),
    "tall30": (17, 100, 62, 30),
    "long24": (61, 96, 128, 24),
}
SETTINGS = {
    "released_fps": {"fps": 2.0, "max_frames": 14, "min_frames": 4, "resized_height": 56, "resized_width": 56},
    "fps_pixel_budget": {"fps": 3.0, "min_pixels": 28 * 28 * 4, "max_pixels": 28 * 28 * 16},
    "nframes": {"nframes": 4, "resized_height": 84, "resized_width": 56},
    "nframes_default_budget": {"nframes": 6},
    "time_range": {"fps": 2.0, "video_start": 0.3, "video_end": 0.6},
}
SMALL = VideoSamplingConfig(resized_height=56, resized_width=56)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("parity")
    return {
        name: make_video(
            folder / f"{name}.mp4", Distortion(noise=15), num_frames=n, height=h, width=w, fps=fps, seed=i
        )
        for i, (name, (n, h, w, fps)) in enumerate(CLIPS.items())
    }


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    return load_model_and_processor(tiny_model_dir, dtype="float32")[1]


@pytest.fixture
def qwen_with_decord(monkeypatch):
    """qwen-vl-utils' own ``fetch_video``, reading with decord (its torchcodec and torchvision readers fail here)."""
    pytest.importorskip("decord")
    from qwen_vl_utils import vision_process

    monkeypatch.setattr(vision_process, "get_video_reader_backend", lambda: "decord")

    def fetch(ele):
        video, meta = vision_process.fetch_video(dict(ele), return_video_metadata=True)
        return video, {**meta, "frames_indices": list(meta["frames_indices"])}

    return fetch


def _processed(processor, video, metadata):
    text = processor.apply_chat_template(build_messages("v.mp4", SCORING_PROMPT), add_generation_prompt=True)
    return processor(
        text=[text], videos=[video], video_metadata=[metadata], do_sample_frames=False, return_tensors="pt"
    )


@pytest.mark.parametrize("backend", ["decord", "pyav"])
@pytest.mark.parametrize("setting", sorted(SETTINGS))
@pytest.mark.parametrize("clip", sorted(CLIPS))
def test_frames_metadata_and_processor_inputs_equal_qwen_vl_utils(
    clips, processor, qwen_with_decord, clip, setting, backend
):
    ele = {"type": "video", "video": clips[clip], **SETTINGS[setting]}
    want, want_meta = qwen_with_decord(ele)
    got, got_meta = fetch_video(ele, backend=backend)
    assert got.dtype == want.dtype == torch.float32 and got.shape == want.shape
    assert torch.equal(got, want)  # exact: same decoded pixels (decord and PyAV agree bit for bit), same resize
    assert {k: got_meta[k] for k in ("fps", "frames_indices", "total_num_frames")} == {
        k: want_meta[k] for k in ("fps", "frames_indices", "total_num_frames")
    }
    assert got_meta["video_backend"] == backend
    ours, theirs = _processed(processor, got, got_meta), _processed(processor, want, want_meta)
    assert ours["video_grid_thw"].tolist() == theirs["video_grid_thw"].tolist()
    assert ours["second_per_grid_ts"].tolist() == theirs["second_per_grid_ts"].tolist()
    assert torch.equal(ours["pixel_values_videos"], theirs["pixel_values_videos"])


def test_without_decord_the_vlm_frames_equal_qwen_vl_utils_with_decord(clips, qwen_with_decord, monkeypatch):
    ele = {"type": "video", "video": clips["wide25"], **SETTINGS["released_fps"]}
    want, want_meta = qwen_with_decord(ele)
    monkeypatch.setitem(sys.modules, "decord", None)  # `import decord` fails, as on aarch64
    got, got_meta = fetch_video(ele)
    assert got_meta["video_backend"] == "pyav" and got_meta["frames_indices"] == want_meta["frames_indices"]
    assert torch.equal(got, want)


@pytest.mark.parametrize(
    ("ele", "total", "want"),
    [
        ({"nframes": 4}, 3, [0, 1, 2, 2]),  # asks for more frames than the clip has: all of them, last repeated
        ({"nframes": 2}, 1, [0, 0]),
        ({"fps": 2.0, "min_frames": 4, "max_frames": 14}, 1, [0, 0]),  # one frame: repeated to Qwen's pair
        ({"fps": 2.0, "min_frames": 4, "max_frames": 14}, 3, [0, 2]),  # qwen-vl-utils' own rule: 2 of 3
        ({"nframes": 4}, 16, [0, 5, 10, 15]),
    ],
)
def test_frame_indices_follow_qwen_vl_utils_and_pad_short_clips(ele, total, want):
    assert frame_indices(ele, total, 8.0) == want


def test_a_bad_sampling_setting_is_a_value_error_not_a_read_error(video_file):
    with pytest.raises(ValueError, match="nframes should in interval"):
        fetch_video({"video": video_file, "nframes": 1})


@pytest.mark.parametrize(("num_frames", "grid_t"), [(1, 1), (3, 1)])
def test_one_and_three_frame_videos_are_scored_end_to_end(tiny_model_dir, tmp_path, num_frames, grid_t):
    model, processor = load_model_and_processor(tiny_model_dir, dtype="float32")
    rows = make_video_pool(tmp_path, [Distortion(), Distortion(noise=20)], num_frames=num_frames)
    videos = [r["video"] for r in rows]
    inputs = prepare_inputs(processor, videos, SCORING_PROMPT, SMALL)
    assert inputs["video_grid_thw"][:, 0].tolist() == [grid_t, grid_t]  # 2 frames (1 repeated, or 2 of 3) = 1 patch
    results = score_videos(model, processor, videos, ScoringConfig(), SMALL)
    assert len(results) == 2
    assert all(math.isfinite(r["score"]) and 1.0 <= r["score"] <= 5.0 for r in results)
