"""Durable store-and-forward outbox on SQLite.

Every message is written here before it is sent and deleted only after the broker's PUBACK, so a
broker outage, a 4G drop-out, ``kill -9`` or a power cut loses nothing that was committed. The
``seq`` counter and the ``boot_id`` counter live in the same file and advance in the same
transaction as the row they stamp, so they are monotonic across restarts and never reused.

SD-card wear: the pipeline writes a few messages per publish interval (never per frame); each is
one small transaction. Deletions after PUBACK are batched by the caller (:meth:`Outbox.ack` takes
many seqs). WAL mode turns each commit into an append to the ``-wal`` file instead of rewriting
pages in place. ``synchronous=FULL`` fsyncs each commit: a power cut must not roll the seq counter
back, or the next boot would reuse seqs that subscribers have already seen and then discard as
duplicates.

Bounds (``OutboxConfig``):

* **age**: health and counts older than ``max_age_s`` are dropped. Anomaly events are not aged
  out: they carry their own timestamps and are rare; only the byte cap can remove them.
* **bytes**: while the queued payloads exceed ``max_bytes``, drop the oldest *health* message;
  when there is none, the oldest *counts*; only when neither is left, the oldest *anomalies*.
  The message being queued goes last (a fresh health message is the one reporting the drops).

Every drop is counted per kind in the file itself, so health can report drops from before a
restart too. Status is not queued: it is state, not history. The latest status is kept in its own
one-row table (each write replaces it) and is republished, retained, on every connect.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple

# Cap drops go through kinds in this order. Anything not listed (there is nothing else today) is
# never dropped by the cap.
DROP_ORDER: Tuple[str, ...] = ("health", "counts", "anomalies")
AGE_LIMITED_KINDS: Tuple[str, ...] = ("health", "counts")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    seq     INTEGER PRIMARY KEY,      -- delivery order too
    kind    TEXT NOT NULL,
    topic   TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL             -- unix time when queued
);
CREATE INDEX IF NOT EXISTS messages_kind_seq ON messages (kind, seq);
CREATE TABLE IF NOT EXISTS status (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    seq     INTEGER NOT NULL,
    topic   TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS boots (
    boot_id    INTEGER PRIMARY KEY,
    first_seq  INTEGER NOT NULL,      -- seqs [first_seq, first_seq + reserved) are birth/death
    reserved   INTEGER NOT NULL,
    started_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class OutboxRow:
    seq: int
    kind: str
    topic: str
    payload: bytes
    created: float


@dataclass(frozen=True)
class OutboxStats:
    """What health reports about store-and-forward."""

    pending: int
    pending_bytes: int
    oldest_age_s: Optional[float]
    dropped: Dict[str, int] = field(default_factory=dict)
    rejected: int = 0


@dataclass(frozen=True)
class Sealed:
    """What :meth:`Outbox.enqueue` stores: a payload built for a given seq (see ``seal``)."""

    kind: str
    topic: str
    payload: bytes


class Outbox:
    """One SQLite file per device. Thread-safe: the pipeline enqueues, the delivery thread drains."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int,
        max_age_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a "batch" is exactly one
        # transaction and nothing is left open implicitly between calls.
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._bytes = int(self._db.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM messages").fetchone()[0])
        self.boot_id = self._meta("boot_id")

    # ------------------------------------------------------------------ counters

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _bump(self, key: str, by: int = 1) -> int:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = value + excluded.value",
            (key, by),
        )
        return self._meta(key)

    def _take_seqs(self, n: int) -> int:
        """First of ``n`` fresh seqs (``last_seq`` holds the last one handed out)."""
        return self._bump("last_seq", n) - n + 1

    def start_boot(self, reserve: int = 2) -> Tuple[int, int]:
        """Begin a new boot: returns ``(boot_id, first_reserved_seq)``.

        The publisher reserves two seqs per boot, birth and death, so the last will (registered
        with the broker before connecting) already has its final seq.
        """
        with self._lock, self._transaction():
            boot_id = self._bump("boot_id")
            first = self._take_seqs(reserve)
            self._db.execute(
                "INSERT INTO boots (boot_id, first_seq, reserved, started_at) VALUES (?, ?, ?, ?)",
                (boot_id, first, reserve, self._clock()),
            )
        self.boot_id = boot_id
        return boot_id, first

    def reserved_seqs(self) -> List[int]:
        """Every seq ever reserved for a birth or death (for gap accounting in tests and tools)."""
        with self._lock:
            rows = self._db.execute("SELECT first_seq, reserved FROM boots ORDER BY boot_id").fetchall()
        return [first + i for first, n in rows for i in range(n)]

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._meta("last_seq")

    # ------------------------------------------------------------------ writing

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        # IMMEDIATE: take the write lock up front, so a concurrent reader never upgrades mid-way.
        # The in-memory byte total is restored too when the transaction rolls back.
        before = self._bytes
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            self._bytes = before
            raise
        self._db.execute("COMMIT")

    def enqueue(self, seal: Callable[[int], Sealed]) -> int:
        """Take the next seq, build the payload for it with ``seal(seq)``, store it; returns the seq.

        ``seal`` runs inside the transaction: if it raises (egress refusal), nothing is stored and
        the seq is not consumed, so refused messages leave no gap.
        """
        with self._lock, self._transaction():
            seq = self._take_seqs(1)
            sealed = seal(seq)
            self._db.execute(
                "INSERT INTO messages (seq, kind, topic, payload, created) VALUES (?, ?, ?, ?, ?)",
                (seq, sealed.kind, sealed.topic, sealed.payload, self._clock()),
            )
            self._bytes += len(sealed.payload)
            self._enforce_bounds(newest=seq)
        return seq

    def _enforce_bounds(self, newest: int) -> None:
        cutoff = self._clock() - self.max_age_s
        for kind in AGE_LIMITED_KINDS:
            rows = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM messages WHERE kind = ? AND created < ?",
                (kind, cutoff),
            ).fetchone()
            if rows[0]:
                self._db.execute("DELETE FROM messages WHERE kind = ? AND created < ?", (kind, cutoff))
                self._bytes -= int(rows[1])
                self._bump(f"dropped.{kind}", int(rows[0]))
        while self._bytes > self.max_bytes:
            victim = self._victim(exclude_seq=newest) or self._victim(exclude_seq=None)
            if victim is None:
                return  # nothing droppable left
            seq, kind, size = victim
            self._db.execute("DELETE FROM messages WHERE seq = ?", (seq,))
            self._bytes -= size
            self._bump(f"dropped.{kind}")

    def _victim(self, exclude_seq: Optional[int]) -> Optional[Tuple[int, str, int]]:
        """The next message the cap drops. The one being queued is spared while anything else can
        go: the newest health message is the one that reports the drops."""
        for kind in DROP_ORDER:
            row = self._db.execute(
                "SELECT seq, LENGTH(payload) FROM messages WHERE kind = ? AND seq != ? ORDER BY seq LIMIT 1",
                (kind, -1 if exclude_seq is None else exclude_seq),
            ).fetchone()
            if row:
                return int(row[0]), kind, int(row[1])
        return None

    def put_status(self, seq: int, topic: str, payload: bytes) -> None:
        """Replace the current status (retained on the broker, republished on every connect)."""
        with self._lock, self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO status (id, seq, topic, payload, created) VALUES (1, ?, ?, ?, ?)",
                (seq, topic, payload, self._clock()),
            )

    def status(self) -> Optional[OutboxRow]:
        with self._lock:
            row = self._db.execute("SELECT seq, topic, payload, created FROM status WHERE id = 1").fetchone()
        return OutboxRow(row[0], "status", row[1], bytes(row[2]), row[3]) if row else None

    # ------------------------------------------------------------------ draining

    def pending(self, after_seq: int = 0, limit: int = 100) -> List[OutboxRow]:
        """Queued messages with seq > ``after_seq``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, kind, topic, payload, created FROM messages WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [OutboxRow(r[0], r[1], r[2], bytes(r[3]), r[4]) for r in rows]

    def ack(self, seqs: Iterable[int]) -> None:
        """Delete delivered messages (one transaction for the whole batch)."""
        seqs = list(seqs)
        if not seqs:
            return
        with self._lock, self._transaction():
            for i in range(0, len(seqs), 500):
                chunk = seqs[i : i + 500]
                marks = ",".join("?" * len(chunk))
                size = self._db.execute(
                    f"SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM messages WHERE seq IN ({marks})", chunk
                ).fetchone()[0]
                self._db.execute(f"DELETE FROM messages WHERE seq IN ({marks})", chunk)
                self._bytes -= int(size)

    def _delete_one(self, seq: int) -> bool:
        """Delete one message inside the caller's transaction; False if it was already gone."""
        size = self._db.execute("SELECT LENGTH(payload) FROM messages WHERE seq = ?", (seq,)).fetchone()
        if not size:
            return False
        self._db.execute("DELETE FROM messages WHERE seq = ?", (seq,))
        self._bytes -= int(size[0])
        return True

    def reject(self, seq: int) -> None:
        """Discard a message the broker refused (it would be refused forever) and count it."""
        with self._lock, self._transaction():
            if self._delete_one(seq):
                self._bump("rejected")

    def discard_invalid(self, seq: int) -> None:
        """Remove a stored message that no longer passes egress (counted by the egress policy)."""
        with self._lock, self._transaction():
            self._delete_one(seq)

    # ------------------------------------------------------------------ reporting

    def stats(self) -> OutboxStats:
        with self._lock:
            count, oldest = self._db.execute("SELECT COUNT(*), MIN(created) FROM messages").fetchone()
            dropped = {
                key.split(".", 1)[1]: int(value)
                for key, value in self._db.execute("SELECT key, value FROM meta WHERE key LIKE 'dropped.%'")
            }
            rejected = self._meta("rejected")
        age = max(0.0, self._clock() - oldest) if oldest is not None else None
        return OutboxStats(int(count), self._bytes, age, dropped, rejected)

    def integrity_check(self) -> str:
        with self._lock:
            return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
