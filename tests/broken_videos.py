"""Broken video files of every kind the reader must explain, and the cause its error must give for each."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mds_vqa.testing import Distortion, make_video

# kind -> a regex the VideoReadError's cause must match
BROKEN_CAUSES = {
    "empty": r"file is empty \(0 bytes\)",
    "audio_only": r"the file has no video stream \(it holds: audio\)",
    "text": r"not a video file FFmpeg can open \(Invalid data found when processing input\)",
    "truncated": r"truncated or corrupt MP4: it has no 'moov' index box \(the file was cut short",
    "truncated_faststart": r"truncated or corrupt: the header reports 24 frames but only \d+ could be decoded",
}


def _audio_only_mp4(path: Path) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_broken_video(folder: Path, kind: str) -> str:
    """Write ``folder/<kind>.mp4``, broken the way ``kind`` (a key of :data:`BROKEN_CAUSES`) says; return its path."""
    path = Path(folder) / f"{kind}.mp4"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "audio_only":
        _audio_only_mp4(path)
    elif kind == "text":
        path.write_text("these are notes, not a video\n" * 20)
    elif kind in ("truncated", "truncated_faststart"):
        full = make_video(
            Path(folder) / f"full_{kind}.mp4", Distortion(noise=20), num_frames=24, faststart=kind != "truncated"
        )
        data = Path(full).read_bytes()
        path.write_bytes(data[: len(data) // 2])  # cut in half
    else:
        raise ValueError(f"Unknown kind of broken video {kind!r}; expected one of {sorted(BROKEN_CAUSES)}")
    return str(path)
