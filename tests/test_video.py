import sys

import numpy as np
import pytest
from broken_videos import BROKEN_CAUSES, make_broken_video

from mds_vqa.testing import Distortion, make_video
from mds_vqa.video import (
    VideoReadError,
    available_backends,
    probe_video,
    read_frames,
    read_frames_at,
    sample_indices,
)

BACKENDS = available_backends()


def test_both_decoders_are_installed_where_decord_has_wheels():
    import platform

    # decord ships x86_64 wheels only (pyproject.toml installs it there); PyAV is everywhere
    assert set(BACKENDS) == ({"decord", "pyav"} if platform.machine() == "x86_64" else {"pyav"})


@pytest.mark.parametrize("backend", BACKENDS)
def test_read_uniform_frames_returns_uint8_rgb_and_metadata(video_file, backend):
    frames, meta = read_frames(video_file, 8, backend=backend)
    assert frames.dtype == np.uint8 and frames.shape == (8, 64, 64, 3)
    assert meta.total_num_frames == 16 and meta.fps == pytest.approx(8.0)
    assert meta.frames_indices == [0, 2, 4, 6, 9, 11, 13, 15]
    assert meta.backend == backend and (meta.width, meta.height) == (64, 64)
    assert meta.duration == pytest.approx(2.0)


def test_decoders_agree_on_pixels(video_file):
    a, ma = read_frames(video_file, 5, backend="decord")
    b, mb = read_frames(video_file, 5, backend="pyav")
    assert ma.frames_indices == mb.frames_indices
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 3.0  # same frames, colour conversion may differ by ±1


@pytest.mark.parametrize("backend", BACKENDS)
def test_read_all_frames_and_at_an_fps(video_file, backend):
    frames, meta = read_frames(video_file, "all", backend=backend)
    assert frames.shape[0] == 16 and meta.frames_indices == list(range(16))
    frames, meta = read_frames(video_file, None, fps=2.0, backend=backend)
    assert frames.shape[0] == 4  # 2 s at 2 fps


def test_more_frames_than_the_video_has_returns_every_frame(video_file):
    frames, meta = read_frames(video_file, 100)
    assert frames.shape[0] == 16


def test_sample_indices_are_deterministic_and_cover_the_video():
    assert sample_indices(100, 5) == [0, 25, 50, 74, 99]
    assert sample_indices(3, "all") == [0, 1, 2]
    assert sample_indices(80, None, fps=2, source_fps=8) == sample_indices(80, 20)
    with pytest.raises(ValueError):
        sample_indices(10, 0)
    with pytest.raises(ValueError):
        sample_indices(10, None, fps=2)


def test_distortions_change_the_pixels_in_the_expected_direction(tmp_path):
    clean, _ = read_frames(make_video(tmp_path / "a.mp4", Distortion(crf=0), seed=3), 4)
    blurred, _ = read_frames(make_video(tmp_path / "b.mp4", Distortion(blur=2.0, crf=0), seed=3), 4)
    noisy, _ = read_frames(make_video(tmp_path / "c.mp4", Distortion(noise=30, crf=0), seed=3), 4)

    def sharpness(x):
        return np.abs(np.diff(x.astype(float), axis=2)).mean()

    assert sharpness(blurred) < sharpness(clean) < sharpness(noisy)
    assert Distortion().quality() == 5.0 > Distortion(blur=1).quality() > Distortion(blur=2, noise=20).quality() >= 1.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_file_raises_video_read_error_naming_it(tmp_path, backend):
    path = tmp_path / "nope.mp4"
    with pytest.raises(VideoReadError, match="nope.mp4.*does not exist") as info:
        read_frames(path, 4, backend=backend)
    assert info.value.path == str(path)


@pytest.mark.parametrize("backend", BACKENDS)
def test_garbage_file_raises_video_read_error(tmp_path, backend):
    path = tmp_path / "garbage.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoReadError, match="garbage.mp4"):
        read_frames(path, 4, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", sorted(BROKEN_CAUSES))
def test_each_kind_of_broken_file_names_the_file_and_its_cause_whatever_the_backend(tmp_path, kind, backend):
    path = make_broken_video(tmp_path, kind)
    with pytest.raises(VideoReadError, match=BROKEN_CAUSES[kind]) as info:
        read_frames(path, "all", backend=backend)
    assert info.value.path == path and str(info.value).startswith(f"Cannot read video {path}: ")


def test_without_decord_pyav_reads_the_same_frames(tmp_path, monkeypatch):
    path = make_video(tmp_path / "clip.mp4", Distortion(noise=20), num_frames=30, height=90, width=160, fps=25)
    with_decord, meta = read_frames(path, 7)
    monkeypatch.setitem(sys.modules, "decord", None)  # `import decord` now fails, as on aarch64
    assert available_backends() == ["pyav"]
    without, meta_av = read_frames(path, 7)
    assert (meta.backend, meta_av.backend) == (BACKENDS[0], "pyav")
    assert meta_av.frames_indices == meta.frames_indices and np.array_equal(without, with_decord)


def test_a_file_decord_cannot_read_is_read_by_pyav(video_file, monkeypatch):
    decord = pytest.importorskip("decord")

    def refuse(*args, **kwargs):
        raise RuntimeError("decord cannot open this one")

    monkeypatch.setattr(decord, "VideoReader", refuse)
    frames, meta = read_frames(video_file, 4, backend="decord")
    assert meta.backend == "pyav" and frames.shape == (4, 64, 64, 3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_read_frames_at_decodes_the_chosen_indices_repeats_included(video_file, backend):
    frames, meta = read_frames_at(video_file, lambda m: [m.total_num_frames - 1, 0, 0], backend=backend)
    every, _ = read_frames(video_file, "all", backend=backend)
    assert meta.frames_indices == [15, 0, 0] and np.array_equal(frames, every[[15, 0, 0]])
    with pytest.raises(ValueError, match="chose indices \\[16\\].*has 16 frames"):
        read_frames_at(video_file, lambda m: [m.total_num_frames], backend=backend)


def test_probe_video_reads_header_only(video_file):
    meta = probe_video(video_file)
    assert meta.total_num_frames == 16 and meta.frames_indices == [] and meta.width == 64


def test_unknown_backend_is_rejected(video_file):
    with pytest.raises(ValueError, match="backend"):
        read_frames(video_file, 4, backend="opencv")  # type: ignore[arg-type]
