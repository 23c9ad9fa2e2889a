"""What the publish stage reports: one snapshot type, and how it fills a health message.

The pipeline builds health from its own stages; the publisher adds ``outbox`` and ``link`` and
downgrades ``ok`` to ``degraded`` while delivery is stuck, so a control room reading the backlog
after an outage sees the outage in the health history instead of a row of ``ok``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional

from appliance.publish.messages import HealthMessage, LinkHealth, OutboxHealth

MAX_ERROR_CHARS = 200


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
    quarantined: int = 0  # outbox rows set aside as damaged (their seqs are gaps)
    files_set_aside: int = 0  # damaged outbox files replaced by a fresh one

    def to_health(self) -> OutboxHealth:
        return OutboxHealth(
            pending=self.pending,
            dropped=dict(self.dropped),
            rejected=self.rejected,
            egress_refused=self.egress_refused,
            oldest_age_s=self.oldest_age_s,
            write_errors=self.write_errors,
            lost=self.lost,
            quarantined=self.quarantined,
            files_set_aside=self.files_set_aside,
        )

    def to_link(self) -> LinkHealth:
        error = self.last_error
        if error is not None and len(error) > MAX_ERROR_CHARS:
            error = error[: MAX_ERROR_CHARS - 3] + "..."
        return LinkHealth(connected=self.connected, last_error=error, seconds_since_puback=self.seconds_since_puback)

    def delivery_stuck(self, stuck_after_s: float) -> bool:
        """Messages are not getting out: no link, the broker refuses them, the disk refuses them,
        or there is a backlog and no PUBACK for ``stuck_after_s``."""
        if not self.connected or self.refusing or self.held_in_memory:
            return True
        waiting = self.pending > 0 and (self.oldest_age_s or 0.0) > stuck_after_s
        silent = self.seconds_since_puback is None or self.seconds_since_puback > stuck_after_s
        return waiting and silent


def fill_health(msg: HealthMessage, stats: PublisherStats, *, stuck_after_s: float) -> HealthMessage:
    """``msg`` with ``outbox`` and ``link`` filled where left None, and ``ok`` downgraded to
    ``degraded`` while delivery is stuck (``failed`` stays ``failed``)."""
    data = msg.model_dump()
    if msg.outbox is None:
        data["outbox"] = stats.to_health().model_dump()
    if msg.link is None:
        data["link"] = stats.to_link().model_dump()
    if msg.state == "ok" and stats.delivery_stuck(stuck_after_s):
        data["state"] = "degraded"
    return HealthMessage.model_validate(data)
