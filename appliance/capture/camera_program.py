"""Board cameras read from the board's own camera program over a pipe: MJPEG frames on its stdout.

The opencv-python-headless wheel is built without GStreamer, so OpenCV cannot open a Raspberry Pi
camera module (libcamera) or a Jetson CSI camera (Argus) itself. Their vendors' programs can, and
both write a stream of JPEG images to stdout:

* ``libcamera:N``: ``rpicam-vid`` (Raspberry Pi OS Bookworm and later; ``libcamera-vid`` before),
  ``--codec mjpeg -o -``: one JPEG per frame, at the working size and ``capture.camera_fps``;
* ``argus:N``: ``gst-launch-1.0 -q nvarguscamerasrc sensor-id=N ! ... ! jpegenc ! fdsink fd=1``
  (JetPack): the sensor's 1920x1080 mode scaled by the VIC (``nvvidconv``) to the working size.

The program runs in its own process group; when it exits, or writes no whole frame within
``read_timeout_s`` (hung), the connection is lost: the program is killed and ``LiveSource``
starts it again with backoff.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import signal
import subprocess
import threading
from collections import deque
from fractions import Fraction
from typing import Deque, List, Optional, Tuple

import cv2
import numpy as np

from appliance.capture.spec import SourceSpec
from appliance.config.schema import CaptureConfig
from appliance.errors import SourceError

log = logging.getLogger(__name__)

LIBCAMERA_PROGRAMS = ("rpicam-vid", "libcamera-vid")  # the second is the name before Bookworm
ARGUS_PROGRAM = "gst-launch-1.0"
READ_CHUNK = 1 << 16
# Far above any JPEG frame at a working size (a 1280x720 frame is 50-300 kB): bytes that never
# complete an image are dropped past this, so a garbled stream cannot fill the memory.
MAX_FRAME_BYTES = 16 << 20
KILL_WAIT_S = 2.0


def libcamera_program() -> str:
    return next((p for p in LIBCAMERA_PROGRAMS if shutil.which(p)), LIBCAMERA_PROGRAMS[0])


def camera_program_problem(spec: SourceSpec) -> Optional[str]:
    """What is missing to run ``spec``'s camera program on this machine; None if nothing (or not one)."""
    if spec.kind == "libcamera" and not any(shutil.which(p) for p in LIBCAMERA_PROGRAMS):
        return "rpicam-vid not found: install it (sudo apt install rpicam-apps) on Raspberry Pi OS"
    if spec.kind == "argus" and not shutil.which(ARGUS_PROGRAM):
        return f"{ARGUS_PROGRAM} not found: install gstreamer1.0-tools and JetPack's nvarguscamerasrc"
    return None


def camera_command(spec: SourceSpec, size: Tuple[int, int], cfg: CaptureConfig) -> List[str]:
    """The camera program's command line for a ``libcamera:N`` or ``argus:N`` spec."""
    width, height = size
    fps = Fraction(cfg.camera_fps).limit_denominator(1000)
    if spec.kind == "libcamera":
        return [
            libcamera_program(), "--camera", str(spec.index), "--nopreview", "--timeout", "0",
            "--codec", "mjpeg", "--width", str(width), "--height", str(height),
            "--framerate", f"{float(fps):g}", "--flush", "--output", "-",
        ]
    if spec.kind == "argus":
        # The sensor runs its 30 fps mode; videorate drops to camera_fps before the JPEG encoder.
        return [
            ARGUS_PROGRAM, "-q", "nvarguscamerasrc", f"sensor-id={spec.index}",
            "!", "video/x-raw(memory:NVMM),width=1920,height=1080,framerate=30/1",
            "!", "nvvidconv", "!", f"video/x-raw,format=I420,width={width},height={height}",
            "!", "videorate", "drop-only=true", "!", f"video/x-raw,framerate={fps.numerator}/{fps.denominator}",
            "!", "jpegenc", "!", "fdsink", "fd=1", "sync=false",
        ]
    raise ValueError(f"not a camera program source: {spec.kind}")


def split_jpeg(buf: bytearray) -> Tuple[Optional[bytes], int]:
    """The first whole JPEG image in ``buf`` and how many bytes it and anything before it took;
    ``(None, n)`` when no whole image is there yet (``n`` bytes before its start may be dropped).

    The image is walked marker by marker (segment lengths, then the entropy-coded data up to the
    next marker that is not a stuffed 0xFF00 or a restart marker), so an EOI inside an embedded
    thumbnail does not end it early."""
    start = buf.find(b"\xff\xd8")
    if start < 0:
        return None, max(0, len(buf) - 1)
    pos = start + 2
    while True:
        if pos + 2 > len(buf):
            return None, start
        if buf[pos] != 0xFF:  # not a marker where one must be: damaged, look for the next image
            return None, pos
        marker = buf[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:  # EOI
            return bytes(buf[start : pos + 2]), pos + 2
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
            continue
        if pos + 4 > len(buf):
            return None, start
        pos += 2 + int.from_bytes(buf[pos + 2 : pos + 4], "big")
        if marker != 0xDA:  # SOS: entropy-coded data follows
            continue
        while True:
            i = buf.find(b"\xff", pos)
            if i < 0 or i + 1 >= len(buf):
                return None, start
            nxt = buf[i + 1]
            if nxt == 0x00 or 0xD0 <= nxt <= 0xD7 or nxt == 0xFF:
                pos = i + 1
                continue
            pos = i
            break


class ProgramConnection:
    """One run of the camera program. ``read`` returns the newest whole frame it has written."""

    def __init__(self, argv: List[str], shown: str, read_timeout_s: float) -> None:
        self.shown = shown
        self.read_timeout_s = read_timeout_s
        self.superseded = 0
        self._interrupted = False
        self._buf = bytearray()
        self._stderr: Deque[str] = deque(maxlen=5)
        try:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                start_new_session=True, close_fds=True,
            )
        except FileNotFoundError:
            raise SourceError(f"{shown}: {argv[0]} not found (install the board's camera software)") from None
        except OSError as exc:
            raise SourceError(f"{shown}: cannot start {argv[0]}: {exc.strerror}") from None
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._out = self._proc.stdout.fileno()
        self._drain = threading.Thread(target=self._drain_stderr, name="camera-stderr", daemon=True)
        self._drain.start()

    def _drain_stderr(self) -> None:
        # The program's messages, kept for the log line when it fails (and so its pipe never fills).
        assert self._proc.stderr is not None
        for raw in iter(self._proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").strip()
            if line:
                self._stderr.append(line)

    def _why(self) -> str:
        code = self._proc.poll()
        said = f": {self._stderr[-1]}" if self._stderr else ""
        return f"exited with code {code}{said}" if code is not None else f"no frame for {self.read_timeout_s:g} s"

    def _next_jpeg(self) -> Optional[bytes]:
        """The newest whole JPEG once at least one has come; None when the program exited or hung."""
        jpeg: Optional[bytes] = None
        while jpeg is None:
            ready, _, _ = select.select([self._out], [], [], self.read_timeout_s)
            chunk = os.read(self._out, READ_CHUNK) if ready else b""
            if not chunk:
                if not self._interrupted:
                    log.warning("%s: camera program %s", self.shown, self._why())
                return None
            self._buf += chunk
            if len(self._buf) > MAX_FRAME_BYTES:
                log.warning("%s: %d bytes from the camera program without a whole JPEG image; dropped",
                            self.shown, len(self._buf))
                self._buf.clear()
            while True:  # every whole frame in the buffer; only the newest is kept
                frame, used = split_jpeg(self._buf)
                del self._buf[:used]
                if frame is None:
                    break
                if jpeg is not None:
                    self.superseded += 1
                jpeg = frame
        return jpeg

    def read(self) -> Optional[np.ndarray]:
        while True:
            jpeg = self._next_jpeg()
            if jpeg is None:
                return None
            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            if image is not None:
                return image
            self.superseded += 1  # a damaged frame: the next one is read instead
            log.warning("%s: the camera program wrote a frame that does not decode; skipped", self.shown)

    def interrupt(self) -> None:
        self._interrupted = True
        self._kill()

    def _kill(self) -> None:
        if self._proc.poll() is not None:
            return
        try:
            os.killpg(self._proc.pid, signal.SIGTERM)
            self._proc.wait(KILL_WAIT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        except ProcessLookupError:
            self._proc.wait()

    def close(self) -> None:
        self._kill()
        self._drain.join(timeout=KILL_WAIT_S)
        for pipe in (self._proc.stdout, self._proc.stderr):
            if pipe is not None:
                pipe.close()


def open_program(spec: SourceSpec, size: Tuple[int, int], cfg: CaptureConfig) -> ProgramConnection:
    return ProgramConnection(camera_command(spec, size, cfg), spec.shown, cfg.read_timeout_s)
