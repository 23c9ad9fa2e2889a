"""Cameras OpenCV opens itself: USB (V4L2) cameras, IP camera streams (FFmpeg), GStreamer pipelines.

A stream is opened with OpenCV's open and read timeouts (``open_timeout_s``, ``read_timeout_s``),
so an IP camera that stops sending while its connection stays open makes ``read`` fail within
``read_timeout_s`` instead of blocking the capture thread for good. RTSP goes over TCP by default:
one connection that either delivers whole frames or fails, where UDP loses packets (grey smears)
and can be blocked between the camera network and the device.
"""

from __future__ import annotations

import os
import re
import threading
from typing import List, Optional

import cv2
import numpy as np

from appliance.capture.limits import check_pixels
from appliance.capture.spec import SourceSpec
from appliance.config.schema import CaptureConfig
from appliance.errors import InputError, SourceError

# FFmpeg reads its capture options from this variable at each open; set it under a lock.
_FFMPEG_OPTIONS = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_open_lock = threading.Lock()


class OpenCvConnection:
    def __init__(self, cap: cv2.VideoCapture) -> None:
        self._cap = cap
        self.superseded = 0

    def read(self) -> Optional[np.ndarray]:
        ok, image = self._cap.read()
        return image if ok and image is not None else None

    def interrupt(self) -> None:
        pass  # a read returns by itself within the read timeout; releasing under it is not safe

    def close(self) -> None:
        self._cap.release()


def _stream_params(cfg: CaptureConfig) -> List[int]:
    return [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, max(1, round(cfg.open_timeout_s * 1000)),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC, max(1, round(cfg.read_timeout_s * 1000)),
    ]


def open_opencv(spec: SourceSpec, url: str, cfg: CaptureConfig) -> OpenCvConnection:
    """Open ``spec`` (``url``: the spec with its password, if any); SourceError when it cannot."""
    if spec.kind == "stream":
        with _open_lock:
            previous = os.environ.get(_FFMPEG_OPTIONS)
            if url.startswith(("rtsp://", "rtsps://")):
                os.environ[_FFMPEG_OPTIONS] = f"rtsp_transport;{cfg.rtsp_transport}"
            try:
                cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, _stream_params(cfg))
            finally:
                if previous is None:
                    os.environ.pop(_FFMPEG_OPTIONS, None)
                else:
                    os.environ[_FFMPEG_OPTIONS] = previous
    elif spec.kind == "gstreamer":
        cap = cv2.VideoCapture(url, cv2.CAP_GSTREAMER)
    elif spec.index is not None:
        cap = cv2.VideoCapture(spec.index)
    else:
        cap = cv2.VideoCapture(url)
    if not cap.isOpened():
        cap.release()
        raise SourceError(f"{spec.shown}: cannot open camera or stream")
    # The size the camera or stream reports (0 where it reports none), before a frame is decoded.
    width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    try:
        check_pixels(width, height, cfg.max_pixels, path=spec.shown)
    except InputError:
        cap.release()
        raise
    return OpenCvConnection(cap)


def opencv_problem(spec: SourceSpec) -> Optional[str]:
    """Why OpenCV can never open ``spec`` on this machine; None when it may."""
    if spec.kind == "gstreamer" and not re.search(r"GStreamer:\s*YES", cv2.getBuildInformation()):
        return (
            "a GStreamer pipeline, but this OpenCV is built without GStreamer: use libcamera:N "
            "(Raspberry Pi camera module) or argus:N (Jetson CSI camera)"
        )
    return None
