"""What the publish stage reports about itself: one snapshot type, for the CLI and for the health
message (``appliance.health.monitor`` builds its ``outbox`` and ``link`` sections from it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional


@dataclass(frozen=True)
class PublisherStats:
    """State of the publish stage, for the health message and for the CLI."""

    connected: bool
    last_error: Optional[str]
    pending: int = 0
    pending_bytes: int = 0
    oldest_age_s: Optional[float] = None
    dropped: Dict[str, int] = field(default_factory=dict)
    rejected: int = 0
    egress_refused: int = 0
    write_errors: int = 0
    lost: int = 0
    held_in_memory: int = 0
    seconds_since_puback: Optional[float] = None
    refusing: bool = False  # the broker refused the last message it was offered
    cert_days_left: Optional[int] = None  # days until the device's TLS client certificate expires
    quarantined: int = 0  # outbox rows set aside as damaged (their seqs are gaps)
    files_set_aside: int = 0  # damaged outbox files replaced by a fresh one
    broker: Optional[str] = None  # the broker of mqtt.url in use (or tried next), scheme://host:port
