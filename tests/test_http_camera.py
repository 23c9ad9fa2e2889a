"""An IP camera's MJPEG stream over HTTP (``multipart/x-mixed-replace``, what most IP cameras and
webcam servers offer at ``http://cam/...mjpg``), served live on loopback from the clip's JPEG frames:
a stream that stalls with its connection open is dropped and reopened, and a camera that goes away
and comes back on the same address gives frames again.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator, List, Optional

import pytest
from support.brokers import free_port
from support.waiting import eventually

from appliance.capture import FrameSource, open_source
from appliance.config.schema import CaptureConfig

pytestmark = pytest.mark.slow

LIVE = CaptureConfig(read_timeout_s=1.5, reconnect_initial_s=0.2, reconnect_max_s=1.0, open_timeout_s=5.0)


class MjpegCamera:
    """A live MJPEG-over-HTTP camera at 10 fps; ``stall`` keeps connections open but sends nothing,
    ``stop`` drops every connection and closes the port, ``start`` opens it again."""

    def __init__(self, frames: List[bytes]) -> None:
        self.frames = frames
        self.port = free_port()
        self.stalled = threading.Event()
        self.stopped = threading.Event()
        self.server: Optional[ThreadingHTTPServer] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/video.mjpg"

    def start(self) -> None:
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                sent = 0
                while not camera.stopped.is_set():
                    if not camera.stalled.is_set():
                        jpeg = camera.frames[sent % len(camera.frames)]
                        head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                        try:
                            self.wfile.write(head + jpeg + b"\r\n")
                            self.wfile.flush()
                        except OSError:
                            return
                        sent += 1
                    time.sleep(0.1)

        self.stopped.clear()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.stopped.set()  # every open stream ends: the connections close
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def mjpeg_camera(clip_jpegs: Path) -> Iterator[MjpegCamera]:
    camera = MjpegCamera([p.read_bytes() for p in sorted(clip_jpegs.glob("*.jpg"))])
    camera.start()
    yield camera
    camera.stop()






def test_a_stalled_http_stream_is_dropped_and_reopened(mjpeg_camera: MjpegCamera, opened: List[FrameSource]) -> None:
    source = open_source(mjpeg_camera.url, LIVE, (384, 288))
    opened.append(source)
    assert eventually(lambda: source.read() is not None)
    mjpeg_camera.stalled.set()
    # The read times out after read_timeout_s (1.5 s) and the connection is dropped; without the
    # timeout set, OpenCV's own default would take 30 s. 15 s: room for a loaded machine.
    assert eventually(lambda: source.state == "reconnecting", timeout_s=15)
    mjpeg_camera.stalled.clear()
    assert eventually(lambda: source.reconnects >= 1 and source.read() is not None)
    assert source.state == "ok"


def test_an_http_camera_that_goes_away_gives_frames_again_when_it_is_back(
    mjpeg_camera: MjpegCamera, opened: List[FrameSource]
) -> None:
    source = open_source(mjpeg_camera.url, LIVE, (384, 288))
    opened.append(source)
    assert eventually(lambda: source.read() is not None)
    mjpeg_camera.stop()
    assert eventually(lambda: source.state == "reconnecting")
    assert source.read() is None
    mjpeg_camera.start()
    assert eventually(lambda: source.read() is not None and source.state == "ok")
    assert source.reconnects >= 1
