"""Capture: files end, folders are read in order, frames arrive at the working resolution."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import pytest
from support.brokers import free_port
from support.publishing import printing_publisher

from appliance.app import build_pipeline
from appliance.capture import open_source, parse_source
from appliance.capture.spec import stream_url
from appliance.config import load_config
from appliance.config.schema import CaptureConfig
from appliance.errors import InputError, SourceError
from appliance.resources import sample_clip


def test_sample_clip_is_read_to_its_end_at_the_working_size_on_the_media_clock() -> None:
    source = open_source("sample", CaptureConfig(), (640, 480))
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
    assert source.state == "ended"
    assert len(frames) == 300
    assert frames[0].image.shape == (480, 640, 3)
    assert [f.index for f in frames[:3]] == [0, 1, 2]
    # 10 fps media clock, however fast the frames were decoded.
    assert frames[10].timestamp_s - frames[0].timestamp_s == pytest.approx(1.0)


def test_file_source_loops_when_asked() -> None:
    source = open_source(str(sample_clip()), CaptureConfig(loop=True), None)
    for _ in range(305):
        assert source.read() is not None
    source.close()


def test_image_folder_in_name_order_and_unreadable_files_skipped(tmp_path: Path) -> None:
    for name, value in (("b.png", 20), ("a.png", 10)):
        cv2.imwrite(str(tmp_path / name), np.full((40, 60, 3), value, np.uint8))
    (tmp_path / "c.jpg").write_bytes(b"not a jpeg")
    source = open_source(str(tmp_path), CaptureConfig(), (64, 64))
    first, second = source.read(), source.read()
    assert first is not None and second is not None
    assert int(first.image.mean()) == 10 and int(second.image.mean()) == 20
    assert first.image.shape == (64, 64, 3)
    assert source.read() is None
    assert source.stats().frames_skipped == 1


@pytest.mark.parametrize("spec", ["/no/such/clip.mp4", "/no/such/folder/"])
def test_missing_path_is_an_input_error_naming_it(spec: str) -> None:
    with pytest.raises(InputError, match=spec.rstrip("/")):
        open_source(spec, CaptureConfig(), None)


def test_a_file_that_is_not_video_is_an_input_error(tmp_path: Path) -> None:
    bogus = tmp_path / "clip.mp4"
    bogus.write_bytes(b"\x00" * 100)
    with pytest.raises(InputError, match=r"clip\.mp4"):
        open_source(str(bogus), CaptureConfig(), None)


def damaged_copy(tmp_path: Path, how: str) -> Path:
    """The sample clip cut in half, or with 20 kB zeroed in its middle."""
    data = bytearray(sample_clip().read_bytes())
    if how == "truncated":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2 : len(data) // 2 + 20000] = bytes(20000)
    path = tmp_path / f"{how}.mp4"
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("how", ["truncated", "corrupt"])
def test_a_damaged_video_reports_decode_errors_instead_of_ending_quietly(tmp_path: Path, how: str) -> None:
    source = open_source(str(damaged_copy(tmp_path, how)), CaptureConfig(), (320, 240))
    frames = 0
    while source.read() is not None:
        frames += 1
    stats = source.stats()
    assert stats.state == "ended" and 0 < frames < 300
    # Every frame the file announced is either read or counted as not decodable.
    assert stats.decode_errors > 0 and frames + stats.decode_errors >= 290
    if how == "corrupt":
        assert frames > 200  # the decoder was taken past the damage, not stopped at it


@pytest.mark.slow
def test_a_truncated_clip_marks_its_last_window_and_health(tmp_path: Path) -> None:
    cfg = load_config(overrides={"capture": {"source": str(damaged_copy(tmp_path, "truncated"))}})
    out = io.StringIO()
    publisher = printing_publisher(cfg, out)
    result = build_pipeline(cfg, publisher=publisher).run()
    messages = [json.loads(line)["payload"] for line in out.getvalue().splitlines()]
    counts = [m for m in messages if "window_start" in m]
    health = [m for m in messages if "uptime_s" in m][-1]
    assert result.stopped_by == "end_of_source"
    assert counts[-1]["camera_ok"] is False  # the window where the media broke off
    assert health["camera"]["decode_errors"] > 0 and health["state"] == "degraded"


@pytest.mark.parametrize(
    ("spec", "kind", "index"),
    [
        ("sample", "sample", None),
        ("/dev/video2", "device", 2),
        ("0", "device", 0),
        ("rtsp://viewer@cam/stream", "stream", None),
        ("https://cam/mjpeg", "stream", None),
        ("libcamera:1", "libcamera", 1),
        ("argus:0", "argus", 0),
        ("libcamerasrc ! videoconvert ! appsink", "gstreamer", None),
        ("clips/monday.mp4", "path", None),
        ("libcamera.mp4", "path", None),
    ],
)
def test_one_classification_of_a_source_spec(spec: str, kind: str, index: Optional[int]) -> None:
    parsed = parse_source(spec)
    assert (parsed.kind, parsed.index) == (kind, index)
    assert parsed.live is (kind not in ("sample", "path"))


def test_a_stream_password_from_a_file_is_put_into_the_url_only_when_opening(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("p@ss/w:rd\n")
    cfg = CaptureConfig(source="rtsp://viewer@cam:554/s?x=1", password_file=str(tmp_path / "pw"))
    spec = parse_source(cfg.source)
    assert stream_url(spec, cfg) == "rtsp://viewer:p%40ss%2Fw%3Ard@cam:554/s?x=1"  # quoted: '@', '/', ':'
    assert spec.shown == "rtsp://viewer@cam:554/s?x=1"


def test_a_stream_that_cannot_be_opened_is_named_without_its_password() -> None:
    nobody = f"rtsp://viewer:Secret-9@127.0.0.1:{free_port()}/cam"
    with pytest.raises(SourceError) as failed:
        open_source(nobody, CaptureConfig(open_timeout_s=5), None)
    assert str(failed.value) == nobody.replace("Secret-9", "***") + ": cannot open camera or stream"
