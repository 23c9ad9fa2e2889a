"""An IP camera stand-in: the sample clip served over HTTP on loopback, read by the same
OpenCV/FFmpeg path as a camera's stream (when the server goes away, the source is lost)."""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

from appliance.resources import sample_clip


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def serve_sample_clip() -> ThreadingHTTPServer:
    """A running server; the caller shuts it down (``shutdown()`` then ``server_close()``)."""
    handler = functools.partial(QuietHandler, directory=str(sample_clip().parent))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def stream_url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/{sample_clip().name}"
