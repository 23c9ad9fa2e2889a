"""What a ``capture.source`` names: the one classification capture opens by and preflight checks by.

* ``sample``: the bundled clip;
* ``path``: a video file, an image or a folder of images (anything not matched below);
* ``device``: a V4L2 camera, ``/dev/videoN`` or a bare index ``N``;
* ``stream``: ``rtsp://``, ``rtsps://``, ``http://``, ``https://`` (an IP camera);
* ``libcamera``: ``libcamera:N``, a Raspberry Pi camera module read from ``rpicam-vid`` over a pipe;
* ``argus``: ``argus:N``, a Jetson CSI camera read from ``gst-launch-1.0 nvarguscamerasrc`` over a pipe;
* ``gstreamer``: a GStreamer pipeline ending in ``appsink`` (needs an OpenCV built with GStreamer,
  which the opencv-python-headless wheel is not).

A stream's password may come from ``capture.password_file`` or ``password_env`` instead of its URL
(``rtsp://user@host/...``): :func:`stream_url` puts it in at open time, so the config, and whatever
shows it, never holds it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Literal, Optional
from urllib.parse import quote, urlsplit

from appliance.config.schema import CaptureConfig
from appliance.errors import InputError
from appliance.redaction import redact_url

SourceKind = Literal["sample", "path", "device", "stream", "libcamera", "argus", "gstreamer"]

STREAM_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://")
CAMERA_PROGRAMS = ("libcamera", "argus")  # read from the board's own camera program over a pipe
_PROGRAM_SPEC = re.compile(r"(?P<kind>libcamera|argus):(?P<index>.*)")


@dataclass(frozen=True)
class SourceSpec:
    kind: SourceKind
    text: str  # as configured (may hold a password: show ``shown`` instead)
    index: Optional[int] = None  # the camera number of a device, libcamera or argus source

    @property
    def live(self) -> bool:
        return self.kind not in ("sample", "path")

    @property
    def shown(self) -> str:
        """The spec as it may be logged or printed: no password, no control characters."""
        text = redact_url(self.text)
        return text if text.isprintable() else repr(text)


def parse_source(spec: str) -> SourceSpec:
    """Classify ``spec``; an InputError (exit 2) for a malformed ``libcamera:``/``argus:`` spec."""
    if spec == "sample":
        return SourceSpec("sample", spec)
    if spec.startswith(STREAM_PREFIXES):
        return SourceSpec("stream", spec)
    if spec.isdigit():
        return SourceSpec("device", spec, int(spec))
    if spec.startswith("/dev/video"):
        number = spec[len("/dev/video"):]
        return SourceSpec("device", spec, int(number) if number.isdigit() else None)
    program = _PROGRAM_SPEC.fullmatch(spec)
    if program:
        index = program.group("index")
        if not (index.isdigit() and len(index) <= 2):
            kind = program.group("kind")
            problem = f"{kind}:{index!r}: the camera number must be 0, 1, ... (e.g. {kind}:0)"
            raise InputError(problem, field="capture.source")
        return SourceSpec(program.group("kind"), spec, int(index))  # type: ignore[arg-type]
    if "!" in spec:
        return SourceSpec("gstreamer", spec)
    return SourceSpec("path", spec)


def camera_password(cfg: CaptureConfig) -> Optional[str]:
    """The stream password from ``password_file`` or ``password_env``; None when neither is set.
    One-line InputErrors name the field (never the password)."""
    if cfg.password_file is not None:
        try:
            with open(cfg.password_file, encoding="utf-8") as f:
                return f.read().rstrip("\r\n")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise InputError(f"{cfg.password_file}: cannot read ({reason})", field="capture.password_file") from None
    if cfg.password_env is not None:
        value = os.environ.get(cfg.password_env)
        if value is None:
            raise InputError(f"environment variable {cfg.password_env} is not set", field="capture.password_env")
        return value
    return None


def stream_url(spec: SourceSpec, cfg: CaptureConfig) -> str:
    """The URL to open: ``spec`` with the configured password put in after its user name."""
    password = camera_password(cfg)
    if password is None:
        return spec.text
    field = "capture.password_file" if cfg.password_file is not None else "capture.password_env"
    if spec.kind != "stream":
        raise InputError(f"a password is only used with an rtsp:// or http(s):// source, not {spec.shown}", field=field)
    parts = urlsplit(spec.text)
    user, at, host = parts.netloc.rpartition("@")
    if not at or not user:
        raise InputError(f"{spec.shown}: name the camera's user in the URL (rtsp://USER@host/...)", field=field)
    if ":" in user:
        raise InputError(f"{spec.shown}: the URL has a password of its own; remove it from capture.source", field=field)
    netloc = f"{user}:{quote(password, safe='')}@{host}"
    return parts._replace(netloc=netloc).geturl()
