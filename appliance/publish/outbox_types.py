"""What the outbox stores and reports, where it lives, and how to read the storage errors it meets."""

from __future__ import annotations

import errno
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

from appliance.config.schema import OutboxConfig
from appliance.config.transport import state_path
from appliance.errors import ApplianceError


def outbox_path(cfg: OutboxConfig, device_id: str) -> Path:
    """``outbox.path`` with its placeholders filled: one outbox per device by default."""
    return state_path(cfg.path, device_id)


class OutboxConflict(ApplianceError):
    """A write that would break seq continuity: someone else wrote to the file. Exit 1."""


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


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(exc, sqlite3.Error) and "full" in str(exc).lower()


def is_transient(exc: sqlite3.Error) -> bool:
    """Locked, busy, disk full, I/O: may clear by itself. Anything else (a corrupt file, a closed
    connection) will not, and retrying would only hide it."""
    return isinstance(exc, sqlite3.OperationalError)
