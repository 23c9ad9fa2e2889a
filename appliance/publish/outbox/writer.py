"""The write side of the outbox: a bounded memory queue for when the disk refuses.

``submit`` takes the next seq from the publisher's :class:`~appliance.publish.seqs.SeqAllocator`,
has the caller seal the payload for it (an egress refusal raises and consumes nothing), then
appends it to the outbox. When SQLite
refuses the write (disk full, file locked past the busy timeout), the sealed message waits here,
in seq order, and is appended as soon as the disk accepts again (on the next submit or the
delivery thread's next :meth:`flush`). If more than ``max_queued`` wait, the oldest is lost: it is
counted (``lost``), and its seq stays a gap in the stream the control room sees, recorded in the
outbox with the next append, never rolled back and reused.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Deque, Optional

from appliance.publish.outbox.rows import Sealed
from appliance.publish.outbox.store import Outbox, is_transient
from appliance.publish.seqs import SeqAllocator

log = logging.getLogger(__name__)

RETRY_S = 0.5


@dataclass(frozen=True)
class WriterStatus:
    """What the writer shows other threads, taken under its lock."""

    queued: int = 0  # sealed messages held in memory while the disk refuses them
    lost_unrecorded: int = 0  # lost seqs not yet recorded in the outbox file
    write_errors: int = 0
    last_error: Optional[str] = None
    fatal: Optional[sqlite3.Error] = None  # the file is unusable (not a passing error)


class OutboxWriter:
    def __init__(self, outbox: Outbox, *, seqs: SeqAllocator, max_queued: int) -> None:
        self.outbox = outbox
        self.seqs = seqs
        self.max_queued = max_queued
        self._lock = threading.Lock()
        self._queue: Deque[Sealed] = deque()
        self._lost_unrecorded = 0  # lost seqs not yet recorded in the file (they precede the queue)
        self._write_errors = 0
        self._last_error: Optional[str] = None
        self._fatal: Optional[sqlite3.Error] = None
        self._last_attempt = 0.0

    def submit(self, seal: Callable[[int], Sealed]) -> int:
        """Seal the next message with ``seal(seq)`` and store it (or hold it); returns its seq."""
        with self._lock:
            with self.seqs.next() as seq:
                sealed = seal(seq)
            self._queue.append(sealed)
            if len(self._queue) > self.max_queued:
                gone = self._queue.popleft()
                self._lost_unrecorded += 1
                log.error("outbox: seq %d (%s) lost: the disk has refused writes for %d messages",
                          gone.seq, gone.kind, self.max_queued + 1)
            # While the disk refuses, retry at most every RETRY_S here (the delivery thread retries
            # too): a file locked by another process costs a busy timeout per attempt.
            if len(self._queue) == 1 or time.monotonic() - self._last_attempt >= RETRY_S:
                self._flush_locked()
            return sealed.seq

    def flush(self) -> bool:
        """Try to store what waits; returns True when nothing waits any more."""
        with self._lock:
            return self._flush_locked()

    def _flush_locked(self) -> bool:
        self._last_attempt = time.monotonic()
        while self._queue:
            head = self._queue[0]
            try:
                self.outbox.append(head, lost_before=self._lost_unrecorded)
            except sqlite3.Error as exc:
                self._write_errors += 1
                if self._last_error != str(exc):
                    log.error("outbox write failed: %s (holding %d message(s) in memory)", exc, len(self._queue))
                self._last_error = str(exc)
                if not is_transient(exc):
                    self._fatal = exc
                return False
            self._queue.popleft()
            self._lost_unrecorded = 0
            if self._last_error is not None:
                log.warning("outbox accepts writes again")
                self._last_error = None
        return True

    def status(self) -> WriterStatus:
        with self._lock:
            return WriterStatus(
                len(self._queue), self._lost_unrecorded, self._write_errors, self._last_error, self._fatal
            )
