"""The control room's anchor on each device's audit log: the last head it published.

A head's length never goes down and, for one length, its hash never changes, unless the device
itself recorded a ``reset`` (its log was lost) and says so in the head. Anything else is a log
deleted, cut or rewritten behind the device's back: flagged, and kept flagged (it is evidence).
Heads are ordered by ``(boot_id, seq)``, so a late-delivered older message is judged as older.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from appliance.publish.messages import AuditHead

MAX_FLAGS = 20  # flags kept per device: the first ones matter, a flood must not grow memory


@dataclass(frozen=True)
class AuditSeen:
    """One device's audit log as the control room last saw it."""

    length: int
    sha256: str
    signed: bool
    problem: Optional[str]
    unacknowledged: int
    flags: List[str]  # head went backwards, rewritten, reset: each stays until the monitor restarts

    def to_dict(self) -> Dict[str, object]:
        return {
            "length": self.length,
            "sha256": self.sha256,
            "signed": self.signed,
            "problem": self.problem,
            "unacknowledged": self.unacknowledged,
            "flags": list(self.flags),
        }


@dataclass
class AuditHeadTracker:
    last: Optional[AuditHead] = None
    key: Optional[Tuple[int, int]] = None  # (boot_id, seq) of the message that carried ``last``
    flags: List[str] = field(default_factory=list)

    def forget_order(self) -> None:
        """The device's seq counters restarted (outbox lost): keep the head, compare by arrival."""
        self.key = None

    def observe(self, head: AuditHead, boot_id: int, seq: int) -> None:
        key = (boot_id, seq)
        if self.last is None:
            self.last, self.key = head, key
            return
        newer = self.key is None or key >= self.key
        old, new = (self.last, head) if newer else (head, self.last)
        self._judge(old, new)
        if newer:
            self.last, self.key = head, key

    def _judge(self, old: AuditHead, new: AuditHead) -> None:
        backwards = new.length < old.length
        rewritten = new.length == old.length and new.sha256 != old.sha256
        if not (backwards or rewritten):
            return
        lost = new.reset
        if lost is not None and lost.length is not None and lost.length >= old.length:
            self._flag(f"audit log reset by the device: chain of {lost.length} entries lost, new chain at {new.length}")
        elif lost is not None:
            self._flag(
                f"audit log reset by the device, but its lost chain ({lost.length}) is shorter than the "
                f"{old.length} entries published before"
            )
        elif backwards:
            self._flag(f"audit head went backwards from {old.length} to {new.length} with no recorded reset")
        else:
            self._flag(f"audit head at {new.length} changed hash (the log was rewritten)")

    def _flag(self, text: str) -> None:
        if text not in self.flags and len(self.flags) < MAX_FLAGS:
            self.flags.append(text)

    def seen(self) -> Optional[AuditSeen]:
        head = self.last
        if head is None:
            return None
        return AuditSeen(
            head.length, head.sha256, head.sig is not None, head.problem, head.unacknowledged, list(self.flags)
        )
