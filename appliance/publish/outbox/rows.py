"""What the outbox stores and reports: one row, one sealed message, the stats health shows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional


@dataclass(frozen=True)
class OutboxRow:
    seq: int
    kind: str
    topic: str
    payload: bytes
    created: float
    vouched: Optional[bytes] = None  # the egress policy's tag, when this process stored it


@dataclass(frozen=True)
class OutboxStats:
    """What health reports about store-and-forward."""

    pending: int
    pending_bytes: int
    oldest_age_s: Optional[float]
    dropped: Dict[str, int] = field(default_factory=dict)
    lost: int = 0


@dataclass(frozen=True)
class Sealed:
    """A payload built for its seq, ready to store: what :meth:`Outbox.append` takes."""

    seq: int
    kind: str
    topic: str
    payload: bytes
    created: Optional[float] = None  # unix time it was sealed; None: when stored
    vouched: Optional[bytes] = None  # EgressPolicy.vouch: lets this process skip the re-check
