"""Secrets out of anything shown: a password in a URL becomes ``***``.

IP cameras take their password in the stream URL (``rtsp://user:pass@host/stream``). Such a URL is
in the config, so every place that shows config values or a source (log lines, errors, the audit
log's config entry, the config hash, self-test output) passes them through here first.
Dependency-free, so every stage and tool may use it.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "***"

# scheme://authority: the authority ends at the first '/', '?', '#' or whitespace; userinfo is what
# comes before its last '@'. A password with an unencoded '@' in it is still hidden whole.
_AUTHORITY = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<authority>[^/?#\s]*)")


def _redact_authority(match: re.Match[str]) -> str:
    scheme, authority = match.group("scheme"), match.group("authority")
    userinfo, at, host = authority.rpartition("@")
    if not at or ":" not in userinfo:
        return match.group(0)
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{user}:{REDACTED}@{host}"


def redact_url(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***`` (user and host kept)."""
    if "://" not in text:
        return text
    return _AUTHORITY.sub(_redact_authority, text)


def redact_secrets(value: Any) -> Any:
    """A JSON-like value (dicts, lists, strings) with :func:`redact_url` applied to every string."""
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, dict):
        return {k: redact_secrets(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_secrets(v) for v in value]
    return value
