"""The running device's side of the audit log: record events without ever stopping the count.

Fail closed on evidence, not on counting: an entry that cannot be written (disk full, file made
read-only, a folder where the log should be) is held in memory, in order, with its own time, and
retried on every later entry and every health message; health shows the problem meanwhile. The
recorder also notices the log losing entries under it (deleted or cut while running): it says so
in the log, starts a new chain with a ``reset`` entry naming the head it lost, and health stays
degraded until someone runs ``appliance audit ack`` on the device.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Deque, Optional, Tuple

from appliance.audit.chain import GENESIS, EntryError, Head, parse_entry
from appliance.audit.entries import Acknowledged, AuditEvent, Reset
from appliance.audit.files import archives
from appliance.audit.lifecycle import TailState, record_start, start_events, unacknowledged_problems
from appliance.audit.log import AuditLog
from appliance.errors import ApplianceError

if TYPE_CHECKING:
    from appliance.config import ApplianceConfig

log = logging.getLogger(__name__)

# Entries held while the log cannot be written. Each is a few hundred bytes; past this the oldest
# go (and health says how many), the count goes on.
MAX_PENDING = 1000


@dataclass(frozen=True)
class PublishedHead:
    """What birth and health carry about the log (``appliance.report`` turns it into the payload)."""

    length: int
    sha256: str
    sig: Optional[str] = None  # over signing.head_statement(device_id, length, sha256)
    problem: Optional[str] = None
    unacknowledged: int = 0
    reset_from: Optional[Tuple[Optional[int], Optional[str]]] = None  # the lost chain's head


class AuditRecorder:
    def __init__(self, audit: AuditLog, device_id: str) -> None:
        self.log = audit
        self.device_id = device_id
        self._pending: Deque[Tuple[AuditEvent, datetime]] = deque()
        self._known: Head = (0, GENESIS)  # the head as we last wrote or read it
        self._problem: Optional[str] = None
        self._dropped = 0
        self.unacknowledged = 0
        self.reset_from: Optional[Tuple[Optional[int], Optional[str]]] = None

    @property
    def problem(self) -> Optional[str]:
        if self._problem is None and not self._dropped:
            return None
        lost = f"; {self._dropped} entries lost (memory full)" if self._dropped else ""
        return ((self._problem or "audit log unwritable earlier") + lost)[:200]

    # ------------------------------------------------------------------ start

    def start(self, cfg: ApplianceConfig) -> None:
        """Repair a torn end, restart a chain whose newest file is gone, then record the start."""
        try:
            recovered = self.log.recover()
            if recovered is not None:
                log.warning(
                    "%s: audit log ended in a torn line (power cut?): cut %d bytes (sha256 %s), recorded; "
                    "health stays degraded until 'appliance audit ack'",
                    self.log.path, recovered.cut_bytes, recovered.cut_sha256,
                )
            if not self.log.path.exists() and archives(self.log.path):
                # What the rotated files still hold is the least the lost file had.
                self._reset("the active audit file was missing at start", self.log.head())
            self._known = self.log.head()
            self.unacknowledged = unacknowledged_problems(self.log)  # counts the recovery just made
            self.log.recoveries.clear()
            self.reset_from = self._chain_reset()
            record_start(self.log, cfg)
            self._known = self.log.head()
        except (ApplianceError, OSError) as exc:
            self._fail(exc if isinstance(exc, ApplianceError) else ApplianceError(f"{self.log.path}: {exc}"))
            now = datetime.now(timezone.utc)
            self._pending.extend((e, now) for e in start_events(cfg, TailState(None, self.unacknowledged)))

    def _chain_reset(self) -> Optional[Tuple[Optional[int], Optional[str]]]:
        """The lost chain's head when the current chain began with a reset entry (the newest file
        that starts a chain tells; resets in the middle of a file are for ``verify`` to show)."""
        for p in reversed([*archives(self.log.path), self.log.path]):
            try:
                with open(p, "rb") as f:
                    first = f.readline()
            except OSError:
                continue
            if first:
                try:
                    e = parse_entry(first.rstrip(b"\n"))
                except EntryError:
                    return None
                if e["kind"] == Reset.kind:
                    return e["data"].get("previous_length"), e["data"].get("previous_sha256")
                if e["seq"] == 1:
                    return None
        return None

    # ------------------------------------------------------------------ running

    def record(self, event: AuditEvent) -> None:
        """Queue the entry and write what is queued; never raises (the caller goes on publishing)."""
        if len(self._pending) >= MAX_PENDING:
            self._pending.popleft()
            self._dropped += 1
        self._pending.append((event, datetime.now(timezone.utc)))
        self.flush()

    def flush(self) -> None:
        try:
            if self.log.recover() is not None:  # torn mid-run (a full disk cut a write short)
                log.warning("%s: the audit log ended in a torn line: cut back and recorded", self.log.path)
            self._check_lost()
            while self._pending:
                event, at = self._pending[0]
                self._known = self.log.append(event, at)
                self._pending.popleft()
            self._note_recoveries()
        except ApplianceError as exc:
            self._fail(exc)
            return
        except OSError as exc:  # e.g. the state folder made unreadable: the same, in words
            self._fail(ApplianceError(f"{self.log.path}: audit log unusable: {exc.strerror or exc}"))
            return
        if self._problem is not None:
            log.warning("%s: the audit log is writable again; the held entries are written", self.log.path)
            self._problem = None

    def _fail(self, exc: ApplianceError) -> None:
        text = str(exc)
        if text != self._problem:
            log.error("%s (entries are held in memory and retried; counting goes on)", text)
        self._problem = text

    def _note_recoveries(self) -> None:
        while self.log.recoveries:
            self.log.recoveries.pop()
            self.unacknowledged += 1

    def _check_lost(self) -> None:
        """A head behind ours (or another hash at our length) means entries vanished under us."""
        disk = self.log.head()
        known = self._known
        if known[0] == 0:
            self._known = disk
            return
        if disk[0] < known[0] or (disk[0] == known[0] and disk[1] != known[1]):
            log.error(
                "%s: the audit log lost entries while running (head %d:%s, now %d): starting a new chain "
                "with a reset entry; health stays degraded until 'appliance audit ack'",
                self.log.path, known[0], known[1], disk[0],
            )
            self._reset("the audit log was deleted or cut while running", known)
        elif disk[0] > known[0]:
            self._acks_since(known[0])
            self._known = disk

    def _reset(self, reason: str, lost: Optional[Head]) -> None:
        event = Reset(
            reason=reason,
            previous_length=None if lost is None else lost[0],
            previous_sha256=None if lost is None else lost[1],
        )
        self._known = self.log.append(event)
        self.unacknowledged += 1
        self.reset_from = (event.previous_length, event.previous_sha256)

    def _acks_since(self, seq: int) -> None:
        """Another writer appended (``audit ack``, ``blur``): an acknowledgement clears the degraded state."""
        for e in self.log.entries_backward():
            if e["seq"] <= seq:
                return
            if e["kind"] == Acknowledged.kind:
                self.unacknowledged = 0
                return

    def published_head(self) -> PublishedHead:
        """Retries held entries, then the head for a health or birth message (signed when the log is)."""
        self.flush()
        length, digest = self._known
        sig = None
        if self.log.signer is not None and length > 0:
            sig = self.log.signer.sign_head(self.device_id, length, digest)
        return PublishedHead(length, digest, sig, self.problem, self.unacknowledged, self.reset_from)
