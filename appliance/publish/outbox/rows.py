"""What the outbox stores and reports: one row, one sealed message, the stats health shows."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Dict, Optional

from appliance.publish.clock import Stamp


def row_checksum(seq: int, kind: str, topic: str, payload: bytes, stamp: Stamp) -> bytes:
    """What each stored row carries beside its content: a changed byte in the seq, kind, topic,
    payload or stamp (a worn SD card, a flipped bit) makes the row fail it and go to quarantine."""
    digest = hashlib.blake2b(digest_size=16)
    parts = (seq, kind, topic, repr(stamp.wall), stamp.boot, repr(stamp.since_boot_s), int(stamp.synced))
    for part in (str(p).encode() for p in parts):
        digest.update(len(part).to_bytes(4, "big") + part)
    digest.update(payload)
    return digest.digest()


@dataclass(frozen=True)
class OutboxRow:
    """A stored message read back, its checksum verified."""

    seq: int
    kind: str
    topic: str
    payload: bytes
    stamp: Stamp


@dataclass(frozen=True)
class OutboxStats:
    """What health reports about store-and-forward."""

    pending: int
    pending_bytes: int
    oldest_age_s: Optional[float]
    dropped: Dict[str, int] = field(default_factory=dict)
    lost: int = 0
    quarantined: int = 0  # rows set aside: damaged on disk, or refused by the egress re-check
    files_set_aside: int = 0  # outbox files SQLite could not use, moved aside for a fresh one


@dataclass(frozen=True)
class Sealed:
    """A payload built for its seq, ready to store: what :meth:`Outbox.append` takes."""

    seq: int
    kind: str
    topic: str
    payload: bytes
