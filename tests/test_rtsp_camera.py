"""An IP camera over RTSP: GStreamer's RTSP server on loopback (tests/rtsp_camera.py), as the device
meets it in the field: windows of counts, the camera's power cut and back, a stream that stalls with
its connection open, a camera that is not there yet when the device starts, and frames that stay fresh
when the pipeline is slower than the camera.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Callable, List

import pytest
from support.cameras import RtspCamera, RunningDevice
from support.waiting import eventually

from appliance.capture import FrameSource, open_source
from appliance.config.schema import CaptureConfig

pytestmark = pytest.mark.slow

FPS = 10  # tests/rtsp_camera.py's default
LIVE = {"read_timeout_s": 1.5, "reconnect_initial_s": 0.2, "reconnect_max_s": 1.0, "open_timeout_s": 5.0}






def test_counts_go_on_through_a_camera_outage_and_a_stalled_stream(rtsp_camera: RtspCamera) -> None:
    device = RunningDevice(rtsp_camera.url, LIVE)
    source = device.pipeline.source
    try:
        def working_windows(after: int = 0) -> bool:
            return any(w["frames_analyzed"] > 0 and w["camera_ok"] for w in device.windows()[after:])

        assert eventually(working_windows, timeout_s=90.0), device.windows()

        # The camera loses power: the window says camera_ok false, health says reconnecting, and
        # the signal-loss flag (camera_tamper) is raised.
        rtsp_camera.kill()
        assert eventually(lambda: any(not w["camera_ok"] for w in device.windows()), timeout_s=90.0), device.windows()
        assert eventually(
            lambda: any(h["camera"]["state"] == "reconnecting" for h in device.messages("health")), timeout_s=90.0
        )
        assert any(a["type"] == "camera_tamper" and a["state"] == "raised" for a in device.messages("anomalies"))

        # Back: frames again within reconnect_max_s (plus the stream's open) of its return.
        reconnects = source.reconnects
        rtsp_camera.start()
        back = time.monotonic()
        assert eventually(lambda: source.reconnects > reconnects and source.state == "ok", timeout_s=90.0)
        back_after_s = time.monotonic() - back
        # The next try comes at most reconnect_max_s after the return; opening the stream and its
        # first frame take at most open_timeout_s and read_timeout_s more.
        assert back_after_s <= LIVE["reconnect_max_s"] + LIVE["open_timeout_s"] + LIVE["read_timeout_s"]
        outage_end = len(device.windows())
        assert eventually(lambda: working_windows(outage_end), timeout_s=90.0), device.windows()

        # The stream stalls with its connection open: lost within read_timeout_s, reopened, and
        # frames again once it sends.
        reconnects = source.reconnects
        rtsp_camera.stall()
        stalled = time.monotonic()
        assert eventually(lambda: source.state != "ok", timeout_s=90.0)
        lost_after_s = time.monotonic() - stalled
        stall_start = len(device.windows())
        assert eventually(lambda: any(not w["camera_ok"] for w in device.windows()[stall_start:]), timeout_s=90.0)
        rtsp_camera.stall(False)
        assert eventually(lambda: source.reconnects > reconnects and source.state == "ok", timeout_s=90.0)
        stall_end = len(device.windows())
        assert eventually(lambda: working_windows(stall_end), timeout_s=90.0), device.windows()
    finally:
        device.close()
    print(f"\nwindows (2 s each): {device.windows()}")
    print(f"frames again {back_after_s:.1f} s after the camera's return; stall lost after {lost_after_s:.1f} s")
    assert device.messages("status")[-1]["state"] == "offline"


def test_a_stalled_stream_is_dropped_and_reopened_not_waited_on_forever(
    rtsp_camera: RtspCamera, opened: List[FrameSource]
) -> None:
    """Without OpenCV's read timeout the capture thread would block in FFmpeg for good and the
    source would never leave 'lost' for 'reconnecting'."""
    source = open_source(rtsp_camera.url, CaptureConfig(**LIVE), (384, 288))
    opened.append(source)
    assert eventually(lambda: source.read() is not None, timeout_s=90.0)
    reconnects = source.reconnects
    rtsp_camera.stall()
    # The read times out after read_timeout_s (1.5 s) and the connection is dropped; without the
    # timeout set, OpenCV's own default would take 30 s. 15 s: room for a loaded machine.
    assert eventually(lambda: source.state == "reconnecting", timeout_s=15)
    assert source.read() is None
    rtsp_camera.stall(False)
    assert eventually(lambda: source.reconnects > reconnects and source.read() is not None, timeout_s=90.0)


def test_a_camera_not_there_at_start_is_retried_inside_the_process(
    rtsp_camera_factory: Callable[..., RtspCamera], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # systemd's notify socket: the service must say it is up while it waits, or systemd's start
    # timeout would restart it (the very loop this avoids).
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(120)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    camera = rtsp_camera_factory()  # not started: nothing listens on its port yet
    device = RunningDevice(camera.url, LIVE, device_id="late-camera")
    source = device.pipeline.source
    try:
        assert source.state == "reconnecting"
        assert notify.recv(4096).decode() == "READY=1\nSTATUS=waiting for the camera"
        assert eventually(
            lambda: any(h["camera"]["state"] == "reconnecting" for h in device.messages("health")), timeout_s=90.0
        )
        assert eventually(lambda: any(not w["camera_ok"] for w in device.windows()), timeout_s=90.0)
        camera.start()
        assert eventually(
            lambda: any(w["frames_analyzed"] > 0 and w["camera_ok"] for w in device.windows()), timeout_s=90.0
        )
        assert device.thread.is_alive()  # the same process: no exit, no restart by the service manager
        assert notify.recv(4096).decode() == "STATUS=analysing frames"
    finally:
        device.close()
        notify.close()
    assert source.reconnects >= 1


def test_the_frame_handed_on_is_never_older_than_a_frame_period_plus_the_processing_time(
    rtsp_camera: RtspCamera, opened: List[FrameSource]
) -> None:
    """A pipeline three times slower than the camera gets the newest frame each time, not a queue."""
    source = open_source(rtsp_camera.url, CaptureConfig(**LIVE), (384, 288))
    opened.append(source)
    assert eventually(lambda: source.read() is not None, timeout_s=90.0)
    processing_s = 3.0 / FPS
    ages: List[float] = []
    while len(ages) < 15:
        asked = time.monotonic()  # live frames carry monotonic time
        frame = source.read()
        now = time.monotonic()
        if frame is not None:
            ages.append(now - frame.timestamp_s)
            # One frame period, the processing of the frame before, and however long read() waited.
            assert ages[-1] <= 1.0 / FPS + processing_s + (now - asked), ages
        time.sleep(processing_s)  # the pipeline's work on this frame
    assert source.stats().frames_skipped >= 15  # about two of every three frames were never analysed
    print(f"\nframe ages at hand-over (s): max {max(ages):.3f}, mean {sum(ages) / len(ages):.3f}")
