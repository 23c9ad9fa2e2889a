"""The sign's QR code: only the public page's URL, large enough to scan from a printed A4 sign.

A QR code's modules shrink as its content grows; below about 1 mm on paper a phone has to be held
at arm's length or closer. The code has a fixed side on A4, so a URL too long for 1 mm modules is
refused rather than printed unreadable.
"""

from __future__ import annotations

from typing import List, Optional

import segno

from appliance.errors import InputError

QR_SIDE_A4_MM = 56.0
MIN_MODULE_MM = 1.0


def qr_matrix(url: str) -> List[List[bool]]:
    """The QR symbol of ``url`` (error correction M), without its quiet zone."""
    return [[bool(v) for v in row] for row in segno.make(url, error="m", micro=False, boost_error=False).matrix]


def module_mm_on_a4(url: str) -> float:
    return QR_SIDE_A4_MM / len(qr_matrix(url))


def check_public_url(url: Optional[str], config_label: Optional[str] = None) -> str:
    """The URL the QR code will carry; refused (exit 2) when missing or too long for 1 mm modules."""
    field = "transparency.public_url"
    if not url:
        raise InputError(
            "required to print a sign: the QR code leads to the public page (appliance notice page writes it)",
            path=config_label,
            field=field,
        )
    size = module_mm_on_a4(url)
    if size < MIN_MODULE_MM:
        raise InputError(
            f"{len(url)} characters make QR modules of {size:.2f} mm on an A4 sign (at least {MIN_MODULE_MM:g} mm "
            "scans from a distance); use a shorter URL",
            path=config_label,
            field=field,
        )
    return url
