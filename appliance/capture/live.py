"""Live sources: a camera or stream read continuously by a thread that keeps only the newest frame.

A slow pipeline skips frames instead of falling behind: ``read`` hands on the frame the camera
delivered last, never a queued older one. A connection that fails (an error, no frame within
``read_timeout_s``, a camera program that dies or hangs) is closed and reopened with exponential
backoff from ``reconnect_initial_s`` up to ``reconnect_max_s``; meanwhile the state is
``reconnecting`` and ``read`` returns None after ``read_timeout_s`` (the run reports the window as
``camera_ok: false`` and raises the signal-loss flag). A camera that cannot be opened at start is
retried the same way when ``keep_trying`` (the service), so a camera still booting, or an IP camera
behind a switch that comes up later, does not restart the whole appliance.

How frames are got from the camera is a :class:`Connection`: OpenCV's VideoCapture for USB cameras
and streams (``appliance.capture.stream``), a camera program's pipe for the Pi camera module and the
Jetson CSI camera (``appliance.capture.camera_program``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional, Protocol, Tuple

import numpy as np

from appliance.capture.frame import RawFrame
from appliance.capture.sources import FrameSource, to_working_size
from appliance.config.schema import CaptureConfig
from appliance.errors import InputError, SourceError

log = logging.getLogger(__name__)


class Connection(Protocol):
    """One open connection to a camera. ``read`` blocks for the next frame and returns None when
    the connection is lost (error, end, or nothing within the read timeout); it is then closed."""

    superseded: int  # frames the connection itself dropped for a newer one already there

    def read(self) -> Optional[np.ndarray]: ...

    def interrupt(self) -> None:
        """Make a ``read`` blocked in another thread return soon (called by ``close``)."""

    def close(self) -> None: ...


Connect = Callable[[], Connection]  # raises SourceError (a one-line message, no secret) when it cannot


class LiveSource(FrameSource):
    def __init__(
        self, shown: str, connect: Connect, size: Optional[Tuple[int, int]], cfg: CaptureConfig, *, keep_trying: bool
    ) -> None:
        super().__init__(size)
        self.shown = shown  # the spec as it may be logged: no password
        self.cfg = cfg
        self._connect = connect
        self._lock = threading.Condition()
        self._latest: Optional[np.ndarray] = None
        self._latest_ts = 0.0
        self._stop = threading.Event()
        self._conn: Optional[Connection] = None
        try:
            self._conn = connect()
        except (SourceError, InputError) as exc:
            if not keep_trying:
                raise
            # Not reachable at start, or sending frames larger than capture.max_pixels: retried
            # below, with backoff, while health reports it. The service stays up to say so; an exit
            # here would be restarted into the same refusal, or not restarted at all.
            self.state = "reconnecting"
            log.warning("%s; retrying, every %g s at most", exc, cfg.reconnect_max_s)
        self._thread = threading.Thread(target=self._reader, name="capture", daemon=True)
        self._thread.start()

    @property
    def live(self) -> bool:
        return True

    def _reader(self) -> None:
        backoff = self.cfg.reconnect_initial_s
        while not self._stop.is_set():
            conn = self._conn
            image = conn.read() if conn is not None else None
            if image is not None and conn is not None:
                backoff = self.cfg.reconnect_initial_s
                with self._lock:
                    self.frames_skipped += conn.superseded + (self._latest is not None)
                    conn.superseded = 0
                    self._latest = image
                    self._latest_ts = time.monotonic()  # a wall-clock step cannot stretch a window
                    if self.state != "ok":
                        log.info("%s: frames again", self.shown)
                    self.state = "ok"
                    self._lock.notify_all()
                continue
            if self._stop.is_set():
                return
            # Lost (or never opened): close, wait, reopen. Health shows 'reconnecting' meanwhile.
            with self._lock:
                if self.state == "ok":
                    log.warning("%s: camera lost; reconnecting", self.shown)
                self.state = "reconnecting"
                if self._latest is not None:  # from before the loss: no longer the camera's view
                    self._latest = None
                    self.frames_skipped += 1
            if conn is not None:
                conn.close()
            self._conn = None
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, self.cfg.reconnect_max_s)
            try:
                self._conn = self._connect()
            except SourceError as exc:
                log.debug("%s; next try in %.1f s", exc, backoff)
                continue
            except InputError as exc:  # the stream changed to a size it may not have: not taken, retried
                log.error("%s", exc)
                continue
            self.reconnects += 1

    def read(self) -> Optional[RawFrame]:
        with self._lock:
            if self._latest is None and not self._stop.is_set():
                self._lock.wait(self.cfg.read_timeout_s)
            if self._latest is None:
                if self.state == "ok":
                    self.state = "lost"
                return None
            image, ts = self._latest, self._latest_ts
            self._latest = None
        frame = RawFrame(self.frames_read, ts, to_working_size(image, self.size))
        self.frames_read += 1
        return frame

    def close(self) -> None:
        self._stop.set()
        conn = self._conn
        if conn is not None:
            conn.interrupt()
        # A stream's open or read returns within its timeout; a camera program's at once (interrupted).
        self._thread.join(timeout=max(self.cfg.read_timeout_s, self.cfg.open_timeout_s) + 5)
        if self._thread.is_alive():
            log.error("%s: capture thread still in a read; leaving the connection open", self.shown)
            return
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        with self._lock:
            self._latest = None
