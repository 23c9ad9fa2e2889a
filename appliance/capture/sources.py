"""Capture stage: turn a source spec into a stream of ``RawFrame`` at the working resolution.

Source specs (``capture.source`` or ``--source``):

* ``sample``: the bundled clip;
* a video file; a folder of images (``*.jpg``, ``*.jpeg``, ``*.png``, sorted by name);
* ``/dev/videoN`` or a bare index ``0``: a V4L2 camera;
* ``rtsp://``, ``rtsps://``, ``http://``, ``https://``: a network stream;
* a GStreamer pipeline (anything containing ``!`` and ending in ``appsink``), e.g. libcamera on
  a Pi or ``nvarguscamerasrc`` on a Jetson.

Files are finite: the run ends at their end (unless ``loop``) and frames are timestamped on the
media clock, so a clip analysed faster than real time still gives 10-second windows of video.
Live sources are read by a background thread that keeps only the newest frame (a slow pipeline
skips frames instead of falling behind) and reopens a lost source with exponential backoff; their
frames are timestamped on the monotonic clock, so a wall clock that steps cannot stretch or stop
a window (the run labels them with wall time when it publishes).
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import cv2
import numpy as np

from appliance.capture.frame import RawFrame
from appliance.capture.limits import check_image, check_pixels, image_size
from appliance.config.schema import CaptureConfig
from appliance.errors import InputError, SourceError
from appliance.resources import sample_clip
from appliance.vocabulary import CameraState, SourceState, camera_state

log = logging.getLogger(__name__)

# Reads to try past a frame the decoder refuses before giving the file up as truncated.
DECODE_RETRIES = 30
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
LIVE_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://")


@dataclass
class CaptureStats:
    state: SourceState
    reconnects: int
    frames_read: int
    frames_skipped: int  # live frames replaced by a newer one before the pipeline took them
    decode_errors: int = 0  # frames a file's decoder could not decode (corrupt or truncated media)

    @property
    def camera_state(self) -> CameraState:
        """The state health publishes (a file that ended had a working camera)."""
        return camera_state(self.state)


def to_working_size(image: np.ndarray, size: Optional[Tuple[int, int]]) -> np.ndarray:
    """The frame as capture hands it on at the working resolution ``(width, height)`` (None: as it
    is). The evaluation and benchmark scripts call this too, so they see the frames the device sees."""
    if size is None or (image.shape[1], image.shape[0]) == size:
        return image
    # Area averaging, though bilinear costs 0.5 ms where it costs up to 9 (768 -> 640 on x86): on
    # vtest replayed at rpi4's 640x480, bilinear frames raised the count error of the shipped
    # setting from 0.70 to 0.90 (far, small people alias away; docs/performance.md).
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


class FrameSource(ABC):
    """A source of raw frames. ``read`` returns the next frame, or None when none is available."""

    def __init__(self, size: Optional[Tuple[int, int]]) -> None:
        self.size = size
        self.state: SourceState = "ok"
        self.reconnects = 0
        self.frames_read = 0
        self.frames_skipped = 0
        self.decode_errors = 0

    @abstractmethod
    def read(self) -> Optional[RawFrame]:
        """The next frame; None when the source has ended (state 'ended') or is lost for now."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    @property
    def live(self) -> bool:
        return False

    @property
    def frame_period_s(self) -> Optional[float]:
        """Media time between frames for files; None for live sources (their frames carry monotonic time)."""
        return None

    @property
    def expected_frames(self) -> Optional[int]:
        """How many frames a finite source will give (for progress); None when unknown or endless."""
        return None

    def stats(self) -> CaptureStats:
        return CaptureStats(self.state, self.reconnects, self.frames_read, self.frames_skipped, self.decode_errors)


class VideoFileSource(FrameSource):
    def __init__(
        self, path: Path, size: Optional[Tuple[int, int]], loop: bool = False, max_pixels: Optional[int] = None
    ) -> None:
        super().__init__(size)
        self.path = path
        self.loop = loop
        self._cap = cv2.VideoCapture(str(path))
        if not self._cap.isOpened():
            raise InputError("cannot open as video (unknown format or unreadable)", path=str(path))
        if max_pixels is not None:
            # The container's frame size, before any frame is decoded.
            width, height = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            try:
                check_pixels(width, height, max_pixels, path=str(path))
            except InputError:
                self._cap.release()
                raise
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 0 < fps < 1000 else 10.0
        self._t0 = time.time()
        self._position = 0  # frames into the media, across loops: the media clock
        self._pass_position = 0  # frames into the current pass through the file
        self._announced = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))  # what the container says it holds

    @property
    def frame_period_s(self) -> Optional[float]:
        return 1.0 / self.fps

    @property
    def expected_frames(self) -> Optional[int]:
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        return count if count > 0 and not self.loop else None

    def _decode(self) -> Tuple[bool, Optional[np.ndarray]]:
        """The next frame. A read that fails before the container's announced end is a decode error
        (corrupt or truncated media), not the end: count and log it, and try to get past it."""
        ok, image = self._cap.read()
        failed = 0
        while not ok and self._pass_position + failed < self._announced and failed < DECODE_RETRIES:
            failed += 1
            ok, image = self._cap.read()
        if failed:
            where = f"after frame {self._pass_position} of the {self._announced} the file announces"
            if ok:
                self.decode_errors += failed
                log.warning("%s: %d frame(s) could not be decoded %s; skipped", self.path, failed, where)
            else:
                self.decode_errors += self._announced - self._pass_position  # every frame it never gave
                log.error("%s: the video cannot be decoded %s (truncated or corrupt); it ends here", self.path, where)
        return ok, image

    def read(self) -> Optional[RawFrame]:
        ok, image = self._decode()
        if not ok and self.loop and self._position > 0:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._pass_position = 0
            ok, image = self._decode()
        if not ok or image is None:
            self.state = "ended"
            return None
        frame = RawFrame(self.frames_read, self._t0 + self._position / self.fps, to_working_size(image, self.size))
        self.frames_read += 1
        self._position += 1
        self._pass_position += 1
        return frame

    def close(self) -> None:
        self._cap.release()


class ImageFilesSource(FrameSource):
    """Still images, one frame each, in the given order, spaced one second apart on the media clock."""

    def __init__(
        self, files: List[Path], size: Optional[Tuple[int, int]], loop: bool = False, max_pixels: Optional[int] = None
    ) -> None:
        super().__init__(size)
        self.files = files
        self.loop = loop
        self.max_pixels = max_pixels
        if max_pixels is not None:
            for path in files:  # headers only: a few bytes each
                try:
                    width, height = image_size(path)
                except InputError:
                    continue  # unreadable: skipped when its turn comes, like any unreadable file
                check_pixels(width, height, max_pixels, path=str(path))
        self._t0 = time.time()
        self._next = 0
        self._position = 0  # files taken, across loops: the media clock never runs back

    @property
    def frame_period_s(self) -> Optional[float]:
        return 1.0

    @property
    def expected_frames(self) -> Optional[int]:
        return None if self.loop else len(self.files)

    @classmethod
    def from_folder(
        cls, folder: Path, size: Optional[Tuple[int, int]], loop: bool = False, max_pixels: Optional[int] = None
    ) -> ImageFilesSource:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder", path=str(folder))
        return cls(files, size, loop, max_pixels)

    def read(self) -> Optional[RawFrame]:
        while True:
            if self._next >= len(self.files):
                if not self.loop:
                    self.state = "ended"
                    return None
                self._next = 0
            path = self.files[self._next]
            position = self._position
            self._next += 1
            self._position += 1
            if self.max_pixels is not None:
                try:
                    check_image(path, self.max_pixels)  # again: the file may have changed since the start
                except InputError as exc:
                    log.warning("%s; skipped", exc)
                    self.frames_skipped += 1
                    continue
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                frame = RawFrame(self.frames_read, self._t0 + position, to_working_size(image, self.size))
                self.frames_read += 1
                return frame
            self.frames_skipped += 1  # unreadable file: skip it, the health counters show it


class LiveSource(FrameSource):
    """A camera or stream, read continuously by a thread; reopened with backoff when lost."""

    def __init__(self, spec: str, size: Optional[Tuple[int, int]], cfg: CaptureConfig) -> None:
        super().__init__(size)
        self.spec = spec
        self.cfg = cfg
        self._lock = threading.Condition()
        self._latest: Optional[np.ndarray] = None
        self._latest_ts = 0.0
        self._stop = threading.Event()
        self._cap = self._open()
        if self._cap is None:
            raise SourceError(f"{spec}: cannot open camera or stream")
        try:
            self._check_size(self._cap)
        except InputError:
            self._cap.release()
            raise
        self._thread = threading.Thread(target=self._reader, name="capture", daemon=True)
        self._thread.start()

    @property
    def live(self) -> bool:
        return True

    def _open(self) -> Optional[cv2.VideoCapture]:
        spec = self.spec
        if spec.isdigit():
            cap = cv2.VideoCapture(int(spec))
        elif "!" in spec:
            cap = cv2.VideoCapture(spec, cv2.CAP_GSTREAMER)
        else:
            cap = cv2.VideoCapture(spec)
        if not cap.isOpened():
            cap.release()
            return None
        return cap

    def _check_size(self, cap: cv2.VideoCapture) -> None:
        """The size the camera or stream reports (0 where it reports none), before a frame is read."""
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        check_pixels(width, height, self.cfg.max_pixels, path=self.spec)

    def _reader(self) -> None:
        backoff = self.cfg.reconnect_initial_s
        while not self._stop.is_set():
            cap = self._cap
            ok, image = (False, None) if cap is None else cap.read()
            if ok and image is not None:
                backoff = self.cfg.reconnect_initial_s
                with self._lock:
                    if self._latest is not None:
                        self.frames_skipped += 1
                    self._latest = image
                    self._latest_ts = time.monotonic()
                    self.state = "ok"
                    self._lock.notify_all()
                continue
            # Lost: release, wait, reopen. The health topic shows 'reconnecting' meanwhile.
            with self._lock:
                self.state = "reconnecting"
            if cap is not None:
                cap.release()
            self._cap = None
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, self.cfg.reconnect_max_s)
            self._cap = self._open()
            if self._cap is not None:
                try:
                    self._check_size(self._cap)
                except InputError as exc:  # the stream changed its size: not taken, retried as lost
                    log.error("%s", exc)
                    self._cap.release()
                    self._cap = None
                    continue
                self.reconnects += 1

    def read(self) -> Optional[RawFrame]:
        with self._lock:
            if self._latest is None:
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
        self._thread.join(timeout=5)
        if self._cap is not None:
            self._cap.release()


def open_source(spec: str, cfg: CaptureConfig, size: Optional[Tuple[int, int]]) -> FrameSource:
    """Open ``spec``; raises InputError (exit 2) for a path that does not exist or cannot be read."""
    if spec == "sample":
        return VideoFileSource(sample_clip(), size, cfg.loop, cfg.max_pixels)
    if spec.startswith(LIVE_PREFIXES) or spec.isdigit() or spec.startswith("/dev/video") or "!" in spec:
        return LiveSource(spec, size, cfg)
    path = Path(spec)
    if not path.exists():
        raise InputError("no such file or folder", path=spec)
    if path.is_dir():
        return ImageFilesSource.from_folder(path, size, cfg.loop, cfg.max_pixels)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        check_image(path, cfg.max_pixels)  # from the header, before the decode below
        if cv2.imread(str(path), cv2.IMREAD_COLOR) is None:
            raise InputError("cannot read as an image", path=spec)
        return ImageFilesSource([path], size, max_pixels=cfg.max_pixels)
    return VideoFileSource(path, size, cfg.loop, cfg.max_pixels)

