"""The one parser of ``mqtt.url``: the schema validates with it and the MQTT client connects with it.

One function, so a URL the config accepts is exactly a URL the client can connect to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
# A DNS name (underscores tolerated: some LANs use them) or IPv4 address; IPv6 literals come out of
# urlsplit without their brackets.
_HOST = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$")
_IPV6 = re.compile(r"^[0-9A-Fa-f:.]+$")


class BrokerUrlError(ValueError):
    """``mqtt.url`` is not a usable broker address. ``str()`` is one line, without the field name."""


@dataclass(frozen=True)
class BrokerAddress:
    scheme: str  # "mqtt" or "mqtts"
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.scheme == "mqtts"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://host[:port]`` or ``mqtts://host[:port]`` -> :class:`BrokerAddress`; else :class:`BrokerUrlError`."""
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise BrokerUrlError("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unbalanced "[" in the host
        raise BrokerUrlError(f"not a URL: {exc}") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise BrokerUrlError("must start with mqtt:// or mqtts://")
    if "@" in parts.netloc:
        # A URL is logged and shown in errors; credentials belong in password_file/password_env.
        raise BrokerUrlError("must not contain credentials; use username and password_file/password_env")
    host = parts.hostname or ""
    if not host:
        raise BrokerUrlError(f"has no host (e.g. {parts.scheme}://broker.example:{DEFAULT_PORTS[parts.scheme]})")
    if ".." in host or not (_HOST.match(host) or (":" in host and _IPV6.match(host))):
        raise BrokerUrlError(f"{host!r} is not a host name or IP address")
    try:
        port = parts.port
    except ValueError:
        raise BrokerUrlError("port must be a number from 1 to 65535") from None
    if port == 0:
        raise BrokerUrlError("port must be a number from 1 to 65535")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise BrokerUrlError("must be only scheme, host and port (no path, query or fragment)")
    return BrokerAddress(parts.scheme, host, port or DEFAULT_PORTS[parts.scheme])
