"""How long the device's TLS client certificate (its MQTT identity) stays valid.

Shown by ``appliance selftest`` and in every health message (``cert_days_left``), so an expiry
months away is seen long before the broker starts refusing the device.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from pathlib import Path
from typing import Optional

from cryptography import x509

from appliance.config.schema import MqttConfig

log = logging.getLogger(__name__)


def not_valid_after(cert: x509.Certificate) -> dt.datetime:
    when = getattr(cert, "not_valid_after_utc", None)  # cryptography >= 42
    return when if when is not None else cert.not_valid_after.replace(tzinfo=dt.timezone.utc)


def load_certificate(path: str) -> x509.Certificate:
    """The first certificate of a PEM file; ``OSError`` or ``ValueError`` when it cannot be read."""
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def days_left(cert: x509.Certificate, now: Optional[dt.datetime] = None) -> int:
    """Whole days until ``cert`` expires, rounded down; negative once it has expired."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return math.floor((not_valid_after(cert) - now).total_seconds() / 86400)


def client_cert_days_left(mqtt: MqttConfig) -> Optional[int]:
    """Days left of the client certificate the device logs in with; None without one (no broker,
    or a password login) or when the file cannot be read (the connection reports that)."""
    if mqtt.url is None or not mqtt.tls.cert_file:
        return None
    try:
        return days_left(load_certificate(mqtt.tls.cert_file))
    except (OSError, ValueError) as exc:
        log.debug("cannot read the client certificate %s: %s", mqtt.tls.cert_file, exc)
        return None
