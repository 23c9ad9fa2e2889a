"""Birth and death: one ``online`` and one ``offline`` status per boot, at two reserved seqs.

The composition root builds the birth with :func:`make_birth`; the publisher stamps it with the
boot's first reserved seq and derives the death (the last will) at the next one. Both are sealed
at start, so the will registered with the broker already carries its final bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Optional, Tuple

from appliance.publish.egress import ApprovedPayload
from appliance.publish.messages import AuditHead, ModelInfo, StatusMessage, utcnow
from appliance.publish.outbox.rows import Sealed
from appliance.publish.stamper import Stamper


def make_birth(
    *,
    config_hash: str,
    board: str,
    models: Iterable[ModelInfo],
    started_at: Optional[datetime] = None,
    notice_hash: Optional[str] = None,
    audit: Optional[AuditHead] = None,
) -> StatusMessage:
    """The ``online`` status for this configuration (envelope left for the publisher to stamp)."""
    return StatusMessage(
        state="online",
        models=list(models),
        config_hash=config_hash,
        board=board,
        started_at=started_at or utcnow(),
        notice_hash=notice_hash,
        audit=audit,
    )


@dataclass(frozen=True)
class Boot:
    """One run of the appliance as the control room sees it: ``boot_id``, birth seq, death seq."""

    boot_id: int
    birth: ApprovedPayload
    death: ApprovedPayload

    @property
    def birth_seq(self) -> int:
        return self.birth.seq

    @property
    def death_seq(self) -> int:
        return self.death.seq

    def sealed(self) -> Tuple[Sealed, Sealed]:
        return (
            Sealed(self.birth.seq, "status", self.birth.topic, self.birth.payload),
            Sealed(self.death.seq, "status", self.death.topic, self.death.payload),
        )


def seal_boot(stamper: Stamper, birth: StatusMessage, *, boot_id: int, first_seq: int) -> Boot:
    if birth.state != "online":
        raise ValueError("the birth message must be 'online'")
    return Boot(
        boot_id,
        stamper.approve(birth, boot_id=boot_id, seq=first_seq),
        stamper.approve(birth.as_offline(), boot_id=boot_id, seq=first_seq + 1),
    )
