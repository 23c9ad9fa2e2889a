"""Bounded inputs: an image or video whose frames hold more pixels than ``capture.max_pixels``
(``--max-pixels``) is refused from its header, before anything decodes it, with one line and exit 2.

A 389 KB PNG can declare 20000x20000 pixels: decoded, that is 1.2 GB of BGR, far above the unit's
MemoryMax=512M. The sizes here are small with a low limit, so the tests stay fast; the header
files below declare huge sizes and hold no pixel data at all, so only a header check can refuse them
for their size (a decoder would fail on the missing data instead).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from support.cli import appliance, one_error_line
from support.http_camera import stream_url

from appliance.capture import open_source
from appliance.capture.limits import image_size
from appliance.config import load_config
from appliance.config.schema import CaptureConfig
from appliance.errors import InputError


def png_header(width: int, height: int) -> bytes:
    """The signature and IHDR chunk of an 8-bit RGB PNG of that size, and no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


def jpeg_header(width: int, height: int) -> bytes:
    """SOI, an APP0 segment to walk past, then a baseline SOF0 of that size; no scan data."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + app0 + sof0


def test_the_size_is_read_from_png_jpeg_and_bmp_headers_as_opencv_would_decode_them(tmp_path: Path) -> None:
    image = np.zeros((30, 70, 3), np.uint8)
    for suffix in (".png", ".jpg", ".bmp"):
        path = tmp_path / f"real{suffix}"
        assert cv2.imwrite(str(path), image)
        assert image_size(path) == (70, 30), suffix
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_header(20000, 20000))
    assert image_size(huge) == (20000, 20000)
    huge_jpeg = tmp_path / "huge.jpg"
    huge_jpeg.write_bytes(jpeg_header(40000, 40000))
    assert image_size(huge_jpeg) == (40000, 40000)


def test_a_file_that_is_no_known_image_is_refused_by_name(tmp_path: Path) -> None:
    fake = tmp_path / "photo.png"
    fake.write_bytes(b"GIF89a" + bytes(20))
    with pytest.raises(InputError, match=r"photo\.png"):
        image_size(fake)


def test_the_default_limit_fits_the_units_memory_max() -> None:
    # Measured (scripts/bench_hostile_inputs.py --size 4900): blur of a 24 MP PNG peaks at about
    # 320 MiB, inside MemoryMax=512M; 40 MP reached 443 MiB, too close to it.
    assert load_config().capture.max_pixels == 24_000_000


@pytest.mark.parametrize("command", ["blur", "count"])
def test_an_image_above_max_pixels_is_refused_with_one_line_and_exit_2(tmp_path: Path, command: str) -> None:
    big = tmp_path / "big.png"
    assert cv2.imwrite(str(big), np.zeros((1000, 1500, 3), np.uint8))
    out = tmp_path / "out.png"
    args = ["blur", str(big), "-o", str(out)] if command == "blur" else ["count", str(big), "--json"]
    proc = appliance(*args, "--max-pixels", "1000000")
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert str(big) in line and "1500x1000" in line and "max_pixels" in line
    assert proc.stdout == "" and not out.exists()


@pytest.mark.parametrize("header", [png_header(20000, 20000), jpeg_header(40000, 40000)], ids=["png", "jpeg"])
def test_a_huge_declared_size_is_refused_before_decoding_under_the_default_limit(tmp_path: Path, header: bytes) -> None:
    suffix = ".png" if header.startswith(b"\x89PNG") else ".jpg"
    bomb = tmp_path / f"bomb{suffix}"
    bomb.write_bytes(header)
    proc = appliance("blur", str(bomb), "-o", str(tmp_path / f"out{suffix}"))
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert str(bomb) in line and "max_pixels" in line
    assert "20000x20000" in line or "40000x40000" in line


def test_a_video_above_max_pixels_is_refused_from_its_container_before_any_frame(tmp_path: Path) -> None:
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for _ in range(3):
        writer.write(np.zeros((240, 320, 3), np.uint8))
    writer.release()
    proc = appliance("count", str(clip), "--json", "--max-pixels", "50000")
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert str(clip) in line and "320x240" in line
    assert proc.stdout == ""


def test_a_folder_holding_one_image_above_max_pixels_is_refused_naming_that_image(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    assert cv2.imwrite(str(folder / "a.jpg"), np.zeros((20, 20, 3), np.uint8))
    (folder / "b.png").write_bytes(png_header(20000, 20000))
    proc = appliance("count", str(folder), "--json")
    assert proc.returncode == 2, proc.stderr
    assert str(folder / "b.png") in one_error_line(proc)


def test_max_pixels_must_be_a_positive_integer() -> None:
    proc = appliance("blur", "x.png", "-o", "y.png", "--max-pixels", "0")
    line = one_error_line(proc)
    assert proc.returncode == 2 and "--max-pixels: must be an integer at least 1" in line


def test_a_live_stream_reporting_frames_above_max_pixels_is_refused_at_open(camera_server: Any) -> None:
    # The sample clip served over HTTP, read by the same OpenCV path as an IP camera: 768x576.
    with pytest.raises(InputError, match=r"768x576"):
        open_source(stream_url(camera_server), CaptureConfig(max_pixels=100_000), None)


def test_the_service_keeps_running_and_retrying_a_stream_above_max_pixels(camera_server: Any) -> None:
    """What run does (keep_trying): the device stays up and says 'reconnecting' (the log names the
    size), instead of an exit the service manager would not restart; a camera set back to a size
    that fits is taken at the next try."""
    source = open_source(stream_url(camera_server), CaptureConfig(max_pixels=100_000, read_timeout_s=0.5), None,
                         keep_trying=True)
    try:
        assert source.live and source.state == "reconnecting"
        assert source.read() is None
    finally:
        source.close()
