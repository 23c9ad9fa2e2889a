"""Board cameras read from the board's camera program over a pipe (``libcamera:N``, ``argus:N``).

The program is a stand-in (tests/camera_standin.py) installed as ``rpicam-vid`` and
``gst-launch-1.0`` on PATH: it checks the command line is one the real program takes and writes
the byte stream the real one writes (JPEG after JPEG, made by ffmpeg from the sample clip). It can
die, hang, or send a burst and hang, run by run, so reconnecting is tested against a real process.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import List

import cv2
import numpy as np
import pytest
from support.cameras import RunningDevice, StandIn
from support.waiting import eventually

from appliance.capture import FrameSource, open_source
from appliance.capture.camera_program import MAX_FRAME_BYTES, ProgramConnection, split_jpeg
from appliance.config.schema import CaptureConfig
from appliance.errors import SourceError

SIZE = (768, 576)  # the clip's own size: the stand-in does not scale
FAST = CaptureConfig(reconnect_initial_s=0.1, reconnect_max_s=0.5, read_timeout_s=1.5, camera_fps=20)






def frames_from(source: FrameSource, n: int, timeout_s: float = 60.0) -> List[np.ndarray]:
    got: List[np.ndarray] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < deadline:
        frame = source.read()
        if frame is not None:
            got.append(frame.image)
    return got


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too: the source reaps its programs, so it only lasts a moment.
    return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()


# --------------------------------------------------------------------------- the byte stream


def split_all(stream: bytes, chunk_size: int) -> List[bytes]:
    """Feed ``stream`` in chunks as a pipe would deliver it; every whole image found."""
    buf, found = bytearray(), []
    for i in range(0, len(stream), chunk_size):
        buf += stream[i : i + chunk_size]
        while True:
            image, used = split_jpeg(buf)
            del buf[:used]
            if image is None:
                break
            found.append(image)
    return found


def test_the_mjpeg_stream_is_split_into_whole_images_however_it_arrives(clip_jpegs: Path) -> None:
    jpegs = [p.read_bytes() for p in sorted(clip_jpegs.glob("*.jpg"))[:5]]
    stream = b"garbage before the first image" + b"".join(jpegs)
    for chunk_size in (997, 65536, len(stream)):
        assert split_all(stream, chunk_size) == jpegs, chunk_size


def test_an_embedded_thumbnail_does_not_end_an_image_early() -> None:
    small = [cv2.imencode(".jpg", np.full((16, 24, 3), v, np.uint8))[1].tobytes() for v in (40, 200)]
    # An APP1 segment holding a thumbnail's own SOI and EOI (FF D9), as EXIF data does.
    app1 = b"\xff\xe1" + (2 + 6).to_bytes(2, "big") + b"\xff\xd8\x00\x00\xff\xd9"
    small[0] = small[0][:2] + app1 + small[0][2:]
    assert cv2.imdecode(np.frombuffer(small[0], np.uint8), cv2.IMREAD_COLOR) is not None
    assert split_all(b"".join(small), 1) == small  # every byte boundary


# --------------------------------------------------------------------------- the programs


def test_a_pi_camera_module_is_read_from_rpicam_vid(standin: StandIn, opened: List[FrameSource]) -> None:
    source = open_source("libcamera:0", FAST, SIZE)
    opened.append(source)
    assert source.live
    frames = frames_from(source, 5)
    assert len(frames) == 5 and all(f.shape == (576, 768, 3) for f in frames)
    [run] = standin.runs()
    assert run["argv"][:3] == ["rpicam-vid", "--camera", "0"]
    width = run["argv"].index("--width")
    assert run["argv"][width : width + 4] == ["--width", "768", "--height", "576"]


def test_a_jetson_csi_camera_is_read_from_nvarguscamerasrc(standin: StandIn, opened: List[FrameSource]) -> None:
    source = open_source("argus:1", FAST, SIZE)
    opened.append(source)
    assert len(frames_from(source, 5)) == 5
    [run] = standin.runs()
    assert run["argv"][:4] == ["gst-launch-1.0", "-q", "nvarguscamerasrc", "sensor-id=1"]
    assert "video/x-raw,format=I420,width=768,height=576" in run["argv"]


def test_a_camera_program_that_dies_is_restarted_and_frames_come_again(
    standin: StandIn, opened: List[FrameSource]
) -> None:
    standin.behave("die-after 5", "play")
    source = open_source("libcamera:0", FAST, SIZE)
    opened.append(source)
    assert eventually(lambda: len(standin.runs()) == 2 and source.state == "ok" and source.reconnects == 1)
    assert len(frames_from(source, 3)) == 3
    assert not alive(standin.runs()[0]["pid"])


def test_a_hung_camera_program_is_killed_and_restarted(standin: StandIn, opened: List[FrameSource]) -> None:
    standin.behave("hang-after 3", "play")
    source = open_source("libcamera:0", FAST, SIZE)
    opened.append(source)
    assert len(frames_from(source, 1)) == 1
    # Nothing comes for read_timeout_s: the source says so, kills the program and starts it again.
    assert eventually(lambda: source.read() is None and source.state in ("lost", "reconnecting"))
    assert eventually(lambda: len(standin.runs()) == 2)
    assert eventually(lambda: not alive(standin.runs()[0]["pid"]))
    assert len(frames_from(source, 3)) == 3 and source.state == "ok" and source.reconnects == 1


def test_only_the_newest_frame_is_handed_on(standin: StandIn, clip_jpegs: Path, opened: List[FrameSource]) -> None:
    """Ten frames arrive at once: a pipeline that was busy gets the tenth, never the first nine."""
    standin.behave("burst-then-hang 10", "hang-after 0")
    source = open_source("libcamera:0", CaptureConfig(read_timeout_s=30), SIZE)
    opened.append(source)
    assert eventually(lambda: source.stats().frames_skipped == 9)
    frame = source.read()
    assert frame is not None
    tenth = cv2.imread(str(sorted(clip_jpegs.glob("*.jpg"))[9]), cv2.IMREAD_COLOR)
    assert np.array_equal(frame.image, tenth)
    assert source.stats().frames_read == 1


def test_close_stops_the_camera_program_at_once_even_when_it_hangs(
    standin: StandIn, opened: List[FrameSource]
) -> None:
    standin.behave("hang-after 2")
    source = open_source("argus:0", CaptureConfig(read_timeout_s=60), SIZE)
    assert source.read() is not None
    pid = standin.runs()[0]["pid"]
    source.close()  # with a read_timeout_s of 60 s, only killing the program ends its read
    assert not alive(pid)
    assert source.read() is None


def test_a_missing_camera_program_fails_a_one_off_command_and_is_retried_by_the_service(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, opened: List[FrameSource]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SourceError, match="rpicam-vid not found"):
        open_source("libcamera:0", FAST, SIZE)
    source = open_source("libcamera:0", FAST, SIZE, keep_trying=True)
    opened.append(source)
    assert source.state == "reconnecting" and source.read() is None


def test_a_garbled_stream_that_never_completes_an_image_does_not_fill_the_memory(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A JPEG start and scan header, then 20 MiB of entropy-coded-looking bytes with no end marker.
    script = (
        "import sys; out = sys.stdout.buffer; out.write(b'\\xff\\xd8\\xff\\xda\\x00\\x02');"
        "[out.write(b'\\x01' * (1 << 20)) for _ in range(20)]; out.flush()"
    )
    conn = ProgramConnection([sys.executable, "-c", script], "garbled", read_timeout_s=30)
    try:
        assert conn.read() is None  # the program ended without a whole image
        assert "without a whole JPEG image; dropped" in caplog.text
        assert len(conn._buf) <= MAX_FRAME_BYTES
    finally:
        conn.close()


@pytest.mark.slow
def test_a_device_on_a_pi_camera_reports_the_program_dying_and_counts_again_after_its_restart(
    standin: StandIn,
) -> None:
    # The program dies after 3 s of frames, then fails at once three times (camera busy), then runs.
    standin.behave("die-after 30", "die-after 0", "die-after 0", "die-after 0", "play")
    live = {"read_timeout_s": 1.0, "reconnect_initial_s": 0.5, "reconnect_max_s": 1.0, "camera_fps": 10}
    device = RunningDevice("libcamera:0", live, device_id="pi-cam")
    try:
        assert eventually(lambda: any(not w["camera_ok"] for w in device.windows()), timeout_s=120), device.windows()
        assert eventually(lambda: any(h["camera"]["state"] == "reconnecting" for h in device.messages("health")))
        assert any(a["type"] == "camera_tamper" and a["state"] == "raised" for a in device.messages("anomalies"))
        lost_at = next(i for i, w in enumerate(device.windows()) if not w["camera_ok"])
        assert eventually(lambda: any(w["frames_analyzed"] > 0 and w["camera_ok"] for w in device.windows()[lost_at:]))
    finally:
        device.close()
    assert len(standin.runs()) == 5 and device.pipeline.source.reconnects == 4
    print(f"\nwindows (2 s each): {device.windows()}")
