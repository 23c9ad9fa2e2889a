"""Live sources: a stream that drops is reopened with backoff, and a lost camera is reported, not silent.

The "camera" is the sample clip served over HTTP on loopback, read by the same OpenCV/FFmpeg path
as an IP camera's stream: when the clip ends or the server goes away, the source is lost.
"""

from __future__ import annotations

import io
import json
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any, Dict, List

import pytest
from support.http_camera import stream_url
from support.publishing import printing_publisher

from appliance.app import build_pipeline
from appliance.capture import open_source
from appliance.config import load_config
from appliance.config.schema import CaptureConfig

FAST_RECONNECT = CaptureConfig(reconnect_initial_s=0.05, reconnect_max_s=0.2, read_timeout_s=2.0)


@pytest.mark.slow
def test_a_stream_that_ends_is_reopened_and_frames_keep_coming(camera_server: ThreadingHTTPServer) -> None:
    source = open_source(stream_url(camera_server), FAST_RECONNECT, (320, 240))
    assert source.live
    frames_after_reconnect = 0
    deadline = time.monotonic() + 90
    try:
        while frames_after_reconnect < 5 and time.monotonic() < deadline:
            frame = source.read()
            if frame is not None:
                assert frame.image.shape == (240, 320, 3)
                if source.reconnects >= 1:
                    frames_after_reconnect += 1
    finally:
        source.close()
    assert source.reconnects >= 1
    assert frames_after_reconnect == 5


@pytest.mark.slow
def test_a_lost_camera_is_reported_in_health_and_flagged_while_the_device_keeps_running(
    camera_server: ThreadingHTTPServer,
) -> None:
    cfg = load_config(overrides={"capture": {"source": stream_url(camera_server), "read_timeout_s": 0.5,
                                             "reconnect_initial_s": 0.2, "reconnect_max_s": 0.5},
                                 "publish": {"health_interval_s": 1.0, "interval_s": 2.0},
                                 "device_id": "live-1"})
    out = io.StringIO()
    publisher = printing_publisher(cfg, out)
    pipeline = build_pipeline(cfg, publisher=publisher)
    stop = threading.Event()

    def published() -> List[Dict[str, Any]]:
        # The pipeline's thread is still writing: only whole lines count.
        lines = out.getvalue().splitlines(keepends=True)
        return [json.loads(line) for line in lines if line.endswith("\n")]

    def loss_reported() -> bool:
        got = published()
        return (
            any(m["topic"].endswith("/health") and m["payload"]["camera"]["state"] in ("lost", "reconnecting")
                for m in got)
            and any(m["topic"].endswith("/counts") and m["payload"]["camera_ok"] is False for m in got)
            and any(m["topic"].endswith("/anomalies") and m["payload"]["type"] == "camera_tamper" for m in got)
        )

    def camera_dies_then_stop() -> None:
        # Let some frames through, take the "camera" away, and stop once the loss has been
        # reported (or after a generous limit, for the assertions below to say what was missing).
        while pipeline.health.frames_analyzed < 3 and not stop.is_set():
            time.sleep(0.05)
        camera_server.shutdown()
        camera_server.server_close()
        deadline = time.monotonic() + 120
        while not loss_reported() and time.monotonic() < deadline and not stop.is_set():
            time.sleep(0.2)
        stop.set()

    killer = threading.Thread(target=camera_dies_then_stop, daemon=True)
    killer.start()
    result = pipeline.run(stop=stop)
    killer.join()
    messages = [json.loads(line) for line in out.getvalue().splitlines()]

    assert result.stopped_by == "signal" and result.frames_analyzed >= 3
    health = [m["payload"] for m in messages if m["topic"].endswith("/health")]
    assert any(h["camera"]["state"] in ("lost", "reconnecting") and h["state"] != "ok" for h in health)
    tamper = [m["payload"] for m in messages if m["topic"].endswith("/anomalies")]
    assert any(a["type"] == "camera_tamper" and a["state"] == "raised" for a in tamper)
    counts = [m["payload"] for m in messages if m["topic"].endswith("/counts")]
    assert any(c["camera_ok"] is False for c in counts)  # never a silent "0 people"
    assert messages[-1]["payload"]["state"] == "offline"
