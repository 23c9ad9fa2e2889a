"""How many pixels a frame may hold, checked before anything decodes it.

A compressed image is tiny next to what it decodes to: a 389 KB PNG may declare 20000x20000
pixels, 1.2 GB once decoded to BGR, far above the service's MemoryMax. So an image's size is read
from its header (PNG IHDR, JPEG SOFn, BMP info header) and a video's from its container, and a
frame above ``capture.max_pixels`` is refused (exit 2) before a decoder allocates anything.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO, Tuple

from appliance.errors import InputError

# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic); C4, C8 and CC are not frames.
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
# Markers that stand alone, without a length: TEM, RST0-7.
_STANDALONE = {0x01, *range(0xD0, 0xD8)}
# A JPEG's SOF comes after its APPn/DQT/DHT segments; past this many the file is not a usable image.
_MAX_JPEG_SEGMENTS = 1000


def image_size(path: Path) -> Tuple[int, int]:
    """``(width, height)`` from the image's header, without decoding it; InputError (naming the file)
    for a file that is not a PNG, JPEG or BMP, or whose header is cut short."""
    try:
        with open(path, "rb") as f:
            magic = f.read(8)
            f.seek(0)
            if magic.startswith(b"\x89PNG\r\n\x1a\n"):
                return _png_size(f)
            if magic.startswith(b"\xff\xd8"):
                return _jpeg_size(f)
            if magic.startswith(b"BM"):
                return _bmp_size(f)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path=str(path)) from None
    except (struct.error, ValueError) as exc:
        raise InputError(f"damaged image header ({exc})", path=str(path)) from None
    raise InputError("not a PNG, JPEG or BMP image", path=str(path))


def _exact(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise ValueError("cut short")
    return data


def _png_size(f: BinaryIO) -> Tuple[int, int]:
    head = _exact(f, 24)
    if head[12:16] != b"IHDR":
        raise ValueError("no IHDR chunk first")
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)


def _jpeg_size(f: BinaryIO) -> Tuple[int, int]:
    _exact(f, 2)  # SOI
    for _ in range(_MAX_JPEG_SEGMENTS):
        byte = _exact(f, 1)
        if byte != b"\xff":
            raise ValueError("expected a marker")
        marker = _exact(f, 1)[0]
        while marker == 0xFF:  # fill bytes before a marker
            marker = _exact(f, 1)[0]
        if marker in _STANDALONE:
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            raise ValueError("no frame header before the image data")
        (length,) = struct.unpack(">H", _exact(f, 2))
        if length < 2:
            raise ValueError("bad segment length")
        if marker in _SOF_MARKERS:
            _, height, width = struct.unpack(">BHH", _exact(f, 5))
            return int(width), int(height)
        f.seek(length - 2, 1)
    raise ValueError("no frame header")


def _bmp_size(f: BinaryIO) -> Tuple[int, int]:
    head = _exact(f, 26)
    (info_size,) = struct.unpack("<I", head[14:18])
    if info_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        width, height = struct.unpack("<HH", head[18:22])
    else:
        width, height = struct.unpack("<ii", head[18:26])
    return abs(int(width)), abs(int(height))  # a negative height means top-down rows


def check_pixels(width: int, height: int, max_pixels: int, *, path: str) -> None:
    """Refuse a frame of ``width`` x ``height`` above ``max_pixels``, in one line naming the file."""
    if width * height > max_pixels:
        raise InputError(
            f"{width}x{height} is {width * height:,} pixels per frame, above capture.max_pixels "
            f"({max_pixels:,}; --max-pixels); refused before decoding",
            path=path,
        )


def check_image(path: Path, max_pixels: int) -> None:
    width, height = image_size(path)
    check_pixels(width, height, max_pixels, path=str(path))
