import numpy as np
import pytest

from mds_vqa.testing import Distortion, make_video
from mds_vqa.video import VideoReadError, available_backends, probe_video, read_frames, sample_indices

BACKENDS = available_backends()


def test_both_decoders_are_installed():
    assert set(BACKENDS) == {"decord", "pyav"}


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
def test_empty_file_raises_video_read_error(tmp_path, backend):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(VideoReadError, match="empty"):
        read_frames(path, 4, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_garbage_file_raises_video_read_error(tmp_path, backend):
    path = tmp_path / "garbage.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoReadError, match="garbage.mp4"):
        read_frames(path, 4, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("faststart", [False, True])
def test_truncated_file_raises_video_read_error(tmp_path, backend, faststart):
    good = make_video(tmp_path / "full.mp4", Distortion(noise=20), num_frames=24, faststart=faststart)
    data = open(good, "rb").read()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoReadError, match="truncated.mp4"):
        read_frames(path, "all", backend=backend)


def test_probe_video_reads_header_only(video_file):
    meta = probe_video(video_file)
    assert meta.total_num_frames == 16 and meta.frames_indices == [] and meta.width == 64


def test_unknown_backend_is_rejected(video_file):
    with pytest.raises(ValueError, match="backend"):
        read_frames(video_file, 4, backend="opencv")  # type: ignore[arg-type]
