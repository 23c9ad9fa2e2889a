"""Open what a ``capture.source`` names (classified by ``appliance.capture.spec``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import cv2

from appliance.capture.camera_program import camera_program_problem, open_program
from appliance.capture.limits import check_image
from appliance.capture.live import Connection, LiveSource
from appliance.capture.sources import IMAGE_SUFFIXES, FrameSource, ImageFilesSource, VideoFileSource
from appliance.capture.spec import CAMERA_PROGRAMS, SourceSpec, parse_source, stream_url
from appliance.capture.stream import open_opencv, opencv_problem
from appliance.config.schema import CaptureConfig
from appliance.errors import InputError
from appliance.resources import sample_clip

# A camera program is asked for this size when the caller has no working size.
DEFAULT_CAMERA_SIZE = (1280, 720)


def open_source(
    spec: str, cfg: CaptureConfig, size: Optional[Tuple[int, int]], *, keep_trying: bool = False
) -> FrameSource:
    """Open ``spec``; InputError (exit 2) for a path that does not exist or cannot be read, or a
    malformed spec or camera password setting. A live camera that cannot be opened is a
    SourceError, unless ``keep_trying`` (the service): then it is retried in the background."""
    source = parse_source(spec)
    if source.kind == "sample":
        return VideoFileSource(sample_clip(), size, cfg.loop, cfg.max_pixels)
    if source.live:
        if source.kind in CAMERA_PROGRAMS:
            camera_size = size or DEFAULT_CAMERA_SIZE

            def connect() -> Connection:
                return open_program(source, camera_size, cfg)

        else:
            url = stream_url(source, cfg)  # the password file is read once, at start

            def connect() -> Connection:
                return open_opencv(source, url, cfg)

        return LiveSource(source.shown, connect, size, cfg, keep_trying=keep_trying)
    path = Path(spec)
    if not path.exists():
        raise InputError("no such file or folder", path=source.shown)
    if path.is_dir():
        return ImageFilesSource.from_folder(path, size, cfg.loop, cfg.max_pixels)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        check_image(path, cfg.max_pixels)  # from the header, before the decode below
        if cv2.imread(str(path), cv2.IMREAD_COLOR) is None:
            raise InputError("cannot read as an image", path=source.shown)
        return ImageFilesSource([path], size, max_pixels=cfg.max_pixels)
    return VideoFileSource(path, size, cfg.loop, cfg.max_pixels)


def source_problem(spec: SourceSpec) -> Optional[str]:
    """Why a live ``spec`` can never be opened on this machine (its camera program is not
    installed, OpenCV cannot read it); None when it may be. Retrying would not help: preflight
    refuses such a config."""
    return camera_program_problem(spec) or opencv_problem(spec)
