"""Frame sources: the interface every source has, and the finite ones (a video file, still images).

Files are finite: the run ends at their end (unless ``loop``) and frames are timestamped on the
media clock, so a clip analysed faster than real time still gives 10-second windows of video.
Live sources (cameras, streams) are in ``appliance.capture.live``: a background thread keeps only
the newest frame and reopens a lost source with backoff; their frames are timestamped on the
monotonic clock, so a wall clock that steps cannot stretch or stop a window (the run labels them
with wall time when it publishes). Which source a spec names is decided in
``appliance.capture.spec``, and ``appliance.capture.opener`` opens it.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import cv2
import numpy as np

from appliance.capture.frame import RawFrame
from appliance.capture.limits import check_image, check_pixels, image_size
from appliance.errors import InputError
from appliance.vocabulary import CameraState, SourceState, camera_state

log = logging.getLogger(__name__)

# Reads to try past a frame the decoder refuses before giving the file up as truncated.
DECODE_RETRIES = 30
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


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
