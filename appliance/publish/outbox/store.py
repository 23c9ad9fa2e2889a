"""Durable store-and-forward outbox on SQLite.

Every message is written here before it is sent and deleted only after the broker's PUBACK, so a
broker outage, a dropped 4G link, ``kill -9`` or a power cut loses nothing that was committed. The
``seq`` counter and the ``boot_id`` counter live in the same file and advance in the same
transaction as the rows they stamp, so they are monotonic across restarts and never reused.

The caller builds each payload *before* it writes: it peeks the next seq (:attr:`Outbox.last_seq`,
under its own lock), seals the payload, then :meth:`Outbox.append` stores it with a continuity
check (the seq must follow the last one stored, plus the seqs the caller declares lost). No caller
code runs inside a transaction.

One file per device, held with an exclusive lock (:class:`~appliance.publish.lockfile.FileLock`)
for as long as it is open, and stamped with its owner's device id: a second process is refused,
and a file that holds another device's messages is refused instead of being emptied.

SD-card wear: a few small transactions per publish interval (never per frame); deletions after
PUBACK are batched (:meth:`Outbox.ack`); WAL mode appends each commit to the ``-wal`` file.
``synchronous=FULL`` fsyncs each commit: a power cut must not roll the seq counter back, or the
next boot would reuse seqs that subscribers have already seen and discard as duplicates. The one
exception is the deletion after PUBACK (:meth:`Outbox.ack`): undoing it only sends a delivered
message again, so it is not fsync'd.

Bounds (``OutboxConfig``):

* **age**: health and counts older than ``max_age_s`` are dropped. Anomaly events are not aged
  out: they carry their own timestamps and are rare; only the byte cap can remove them.
* **bytes**: while the queued payloads exceed ``max_bytes``, drop the oldest *health* message;
  when there is none, the oldest *counts*; only when neither is left, the oldest *anomalies*.
  The message being queued goes last (a fresh health message is the one reporting the drops).

Every drop is counted per kind in the file (health reports drops from before a restart too).
Birth and death (``status``) are never dropped.

Boots: :meth:`begin_boot` reserves two seqs, stores the birth as a message at the first and keeps
the death (the last will) in the ``boots`` table. A boot that ends without its death having been
acknowledged (killed, or stopped while the broker was away) gets that death queued at its reserved
seq by :meth:`close_boot` or, after a crash, by the next :meth:`begin_boot`; so every reserved seq
is eventually delivered, in seq order with the rest of the backlog.
"""

from __future__ import annotations

import errno
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional, Tuple

from appliance.config.schema import OutboxConfig
from appliance.config.transport import state_path
from appliance.errors import ApplianceError, InputError
from appliance.publish.lockfile import FileLock
from appliance.publish.outbox.rows import OutboxRow, OutboxStats, Sealed


def outbox_path(cfg: OutboxConfig, device_id: str) -> Path:
    """``outbox.path`` with its placeholders filled: one outbox per device by default."""
    return state_path(cfg.path, device_id)


class OutboxConflict(ApplianceError):
    """A write that would break seq continuity: someone else wrote to the file. Exit 1."""

def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(exc, sqlite3.Error) and "full" in str(exc).lower()


def is_transient(exc: sqlite3.Error) -> bool:
    """Locked, busy, disk full, I/O: may clear by itself. Anything else (a corrupt file, a closed
    connection) will not, and retrying would only hide it."""
    return isinstance(exc, sqlite3.OperationalError)


# Cap drops go through kinds in this order. Anything not listed (status) is never dropped.
DROP_ORDER: Tuple[str, ...] = ("health", "counts", "anomalies")
AGE_LIMITED_KINDS: Tuple[str, ...] = ("health", "counts")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS owner (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    device_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    seq     INTEGER PRIMARY KEY,      -- delivery order too
    kind    TEXT NOT NULL,
    topic   TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL,            -- unix time when queued
    vouched BLOB                      -- the egress tag of the process that stored it (or NULL)
);
CREATE INDEX IF NOT EXISTS messages_kind_seq ON messages (kind, seq);
CREATE TABLE IF NOT EXISTS boots (
    boot_id    INTEGER PRIMARY KEY,
    first_seq  INTEGER NOT NULL,      -- seqs [first_seq, first_seq + reserved) are birth/death
    reserved   INTEGER NOT NULL,
    started_at REAL NOT NULL
);
"""
# Added after the first release; files written before have no such columns.
_BOOT_COLUMNS = {"death_topic": "TEXT", "death_payload": "BLOB", "closed": "INTEGER NOT NULL DEFAULT 0"}
_MESSAGE_COLUMNS = {"vouched": "BLOB"}


class Outbox:
    """One SQLite file per device. Thread-safe: the pipeline appends, the delivery thread drains."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int,
        max_age_s: float,
        owner: Optional[str] = None,
        busy_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._file_lock: Optional[FileLock] = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file_lock = FileLock(self.path.with_name(self.path.name + ".lock"), f"outbox {self.path}")
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a "batch" is exactly one
            # transaction and nothing is left open implicitly between calls.
            self._db = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=busy_timeout_s
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._migrate()
            if owner is not None:
                self._claim(owner)
            self._bytes = int(self._db.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM messages").fetchone()[0])
            self.boot_id = self._meta("boot_id")
        except ApplianceError:
            self._release()
            raise
        except (OSError, sqlite3.Error) as exc:
            self._release()
            if is_disk_full(exc) or (isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)):
                # Not a config mistake: it may clear (a log rotated, a lock released), so exit 1
                # and let the service manager restart us, rather than exit 2 and stay down.
                raise ApplianceError(f"{self.path}: cannot open the outbox: {exc}") from None
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise InputError(f"cannot open the outbox: {reason}", path=str(self.path), field="outbox.path") from None

    def _release(self) -> None:
        if self._file_lock is not None:
            self._file_lock.release()
            self._file_lock = None

    def _migrate(self) -> None:
        for table, columns in (("boots", _BOOT_COLUMNS), ("messages", _MESSAGE_COLUMNS)):
            have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for name, decl in columns.items():
                if name not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")

    def _claim(self, device_id: str) -> None:
        row = self._db.execute("SELECT device_id FROM owner WHERE id = 1").fetchone()
        if row is None:
            self._db.execute("INSERT INTO owner (id, device_id) VALUES (1, ?)", (device_id,))
        elif row[0] != device_id:
            # Its messages are another device's history: never deliver them as ours, never delete them.
            raise InputError(
                f"this outbox belongs to device {row[0]!r}, not {device_id!r}; give each device its own "
                "file (the default path contains {device_id})",
                path=str(self.path),
                field="outbox.path",
            )

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

    @property
    def last_seq(self) -> int:
        """The last seq stored (or reserved); the next message takes ``last_seq + 1``."""
        with self._lock:
            return self._meta("last_seq")

    def next_boot(self) -> Tuple[int, int]:
        """``(boot_id, first_reserved_seq)`` the next :meth:`begin_boot` must be given."""
        with self._lock:
            return self._meta("boot_id") + 1, self._meta("last_seq") + 1

    def begin_boot(self, birth: Sealed, death: Sealed, boot_id: int) -> None:
        """Start boot ``boot_id``: reserve the birth's and the death's seqs (consecutive, next in
        line), queue the birth, keep the death for when this boot ends without saying goodbye.

        Earlier boots that never closed (killed) get their deaths queued at their reserved seqs.
        """
        if death.seq != birth.seq + 1:
            raise ValueError("birth and death take two consecutive seqs")
        with self._lock, self._transaction():
            self._check_next(boot_id=boot_id, seq=birth.seq)
            self._queue_unclosed_deaths()
            self._bump("boot_id")
            self._bump("last_seq", 2)
            self._db.execute(
                "INSERT INTO boots (boot_id, first_seq, reserved, started_at, death_topic, death_payload) "
                "VALUES (?, ?, 2, ?, ?, ?)",
                (boot_id, birth.seq, self._clock(), death.topic, death.payload),
            )
            self._insert(birth)
        self.boot_id = boot_id

    def close_boot(self, boot_id: int, *, undelivered_death: Optional[Sealed]) -> None:
        """End a boot. ``undelivered_death``: the ``offline`` the broker did not acknowledge,
        queued now at its reserved seq; None when it was acknowledged."""
        with self._lock, self._transaction():
            if undelivered_death is not None:
                self._insert(undelivered_death)
            self._db.execute("UPDATE boots SET closed = 1 WHERE boot_id = ?", (boot_id,))

    def _queue_unclosed_deaths(self) -> None:
        for (boot_id,) in self._db.execute("SELECT boot_id FROM boots WHERE closed = 0").fetchall():
            self._queue_death(int(boot_id))
            self._db.execute("UPDATE boots SET closed = 1 WHERE boot_id = ?", (boot_id,))

    def _queue_death(self, boot_id: int) -> None:
        row = self._db.execute(
            "SELECT first_seq, death_topic, death_payload FROM boots WHERE boot_id = ?", (boot_id,)
        ).fetchone()
        if row is None or row[2] is None:
            return  # a boot recorded before deaths were kept: nothing to send
        # The very bytes registered as the last will: if the broker did publish the will, this is
        # an exact duplicate (same seq), which subscribers already drop.
        self._db.execute(
            "INSERT OR IGNORE INTO messages (seq, kind, topic, payload, created) VALUES (?, 'status', ?, ?, ?)",
            (int(row[0]) + 1, row[1], bytes(row[2]), self._clock()),
        )
        self._bytes += len(row[2])

    def reserved_seqs(self) -> List[int]:
        """Every seq ever reserved for a birth or death (for gap accounting in tests and tools)."""
        with self._lock:
            rows = self._db.execute("SELECT first_seq, reserved FROM boots ORDER BY boot_id").fetchall()
        return [first + i for first, n in rows for i in range(n)]

    # ------------------------------------------------------------------ writing

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        # IMMEDIATE: take the write lock up front, so a concurrent reader never upgrades mid-way.
        # The in-memory byte total is restored too when the transaction rolls back.
        before = self._bytes
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._bytes = before
            raise

    def _check_next(self, *, seq: int, lost_before: int = 0, boot_id: Optional[int] = None) -> None:
        last = self._meta("last_seq")
        if seq != last + 1 + lost_before:
            raise OutboxConflict(f"{self.path}: seq {seq} does not follow {last} (+{lost_before} lost)")
        if boot_id is not None and boot_id != self._meta("boot_id") + 1:
            raise OutboxConflict(f"{self.path}: boot {boot_id} does not follow {self._meta('boot_id')}")

    def append(self, sealed: Sealed, *, lost_before: int = 0) -> None:
        """Store one sealed message. Its seq must be the next one, after ``lost_before`` seqs that
        the caller could not store and gave up on: those are counted as ``lost`` and stay a gap."""
        with self._lock, self._transaction():
            self._check_next(seq=sealed.seq, lost_before=lost_before)
            self._bump("last_seq", 1 + lost_before)
            if lost_before:
                self._bump("lost", lost_before)
            self._insert(sealed)
            self._enforce_bounds(newest=sealed.seq)

    def _insert(self, sealed: Sealed) -> None:
        self._db.execute(
            "INSERT INTO messages (seq, kind, topic, payload, created, vouched) VALUES (?, ?, ?, ?, ?, ?)",
            (sealed.seq, sealed.kind, sealed.topic, sealed.payload, sealed.created or self._clock(), sealed.vouched),
        )
        self._bytes += len(sealed.payload)

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

    # ------------------------------------------------------------------ draining

    def pending(self, after_seq: int = 0, limit: int = 100) -> List[OutboxRow]:
        """Queued messages with seq > ``after_seq``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, kind, topic, payload, created, vouched FROM messages WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [OutboxRow(r[0], r[1], r[2], bytes(r[3]), r[4], r[5]) for r in rows]

    def ack(self, seqs: Iterable[int]) -> None:
        """Delete delivered messages (one transaction for the whole batch).

        The only commit that is not fsync'd (``synchronous=NORMAL`` for this transaction): a power
        cut can undo it, and then the messages are sent once more after the restart, which
        subscribers drop by seq. Nothing that was stored is lost, and the seq counter is only ever
        written by fsync'd commits (which also make every earlier commit durable). Without the
        fsync a backlog drains without stalling on the SD card every batch.
        """
        if not (seqs := list(seqs)):
            return
        with self._lock:
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                with self._transaction():
                    for i in range(0, len(seqs), 500):
                        chunk = seqs[i : i + 500]
                        marks = ",".join("?" * len(chunk))
                        where = f"FROM messages WHERE seq IN ({marks})"
                        size = self._db.execute(f"SELECT COALESCE(SUM(LENGTH(payload)), 0) {where}", chunk).fetchone()
                        self._db.execute(f"DELETE {where}", chunk)
                        self._bytes -= int(size[0])
            finally:
                self._db.execute("PRAGMA synchronous=FULL")

    def discard_invalid(self, seq: int) -> None:
        """Remove a stored message that no longer passes egress (counted by the egress policy)."""
        with self._lock, self._transaction():
            size = self._db.execute("SELECT LENGTH(payload) FROM messages WHERE seq = ?", (seq,)).fetchone()
            if size:
                self._db.execute("DELETE FROM messages WHERE seq = ?", (seq,))
                self._bytes -= int(size[0])

    # ------------------------------------------------------------------ reporting

    def stats(self) -> OutboxStats:
        with self._lock:
            # The oldest waiting is the first in seq order: an index lookup, not a scan of every row.
            oldest_q = "SELECT created FROM messages ORDER BY seq LIMIT 1"
            count, oldest = self._db.execute(f"SELECT COUNT(*), ({oldest_q}) FROM messages").fetchone()
            dropped = {
                key.split(".", 1)[1]: int(value)
                for key, value in self._db.execute("SELECT key, value FROM meta WHERE key LIKE 'dropped.%'")
            }
            lost = self._meta("lost")
        age = max(0.0, self._clock() - oldest) if oldest is not None else None
        return OutboxStats(int(count), self._bytes, age, dropped, lost)

    def integrity_check(self) -> str:
        with self._lock:
            return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._release()
