"""Durable store-and-forward outbox on SQLite.

Every message is written here before it is sent and deleted only after the broker's PUBACK, so a
broker outage, a dropped 4G link, ``kill -9`` or a power cut loses nothing that was committed. The
``seq`` counter and the ``boot_id`` counter live in the same file and advance in the same
transaction as the rows they stamp, so they are monotonic across restarts and never reused.

The caller builds each payload *before* it writes: it takes the next seq from its
:class:`~appliance.publish.seqs.SeqAllocator` (started from :attr:`Outbox.last_seq` and
:attr:`Outbox.boot_id`), seals the payload, then :meth:`Outbox.append` stores it with a continuity
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

Ages are measured on the time since boot where the clock allows it (:mod:`appliance.publish.clock`):
a wall-clock step (a board without RTC booting in 1970, then NTP) neither drops a fresh backlog nor
keeps an old one forever; a row whose age no clock can vouch for is left to the byte cap.

Every drop is counted per kind in the file (health reports drops from before a restart too).
Birth and death (``status``) are never dropped.

Damage: every row carries a checksum (:func:`~appliance.publish.outbox.rows.row_checksum`). A row
that fails it, or does not decode, is moved to the ``quarantine`` table when it is read, counted
(``quarantined``), and reading goes on with the next row: its seq stays a gap. A file SQLite cannot
use (a damaged header or B-tree page: ``PRAGMA quick_check`` at open) is renamed
``<name>.damaged-<UTC time>`` and a fresh file continues the seq and boot counters from the
reservation kept beside it (:mod:`~appliance.publish.outbox.seqfloor`).

Boots: :meth:`begin_boot` reserves two seqs, stores the birth as a message at the first and keeps
the death (the last will) in the ``boots`` table. A boot that ends without its death having been
acknowledged (killed, or stopped while the broker was away) gets that death queued at its reserved
seq by :meth:`close_boot` or, after a crash, by the next :meth:`begin_boot`; so every reserved seq
is eventually delivered, in seq order with the rest of the backlog.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, List, Optional, Sequence, Tuple

from appliance.config.schema import OutboxConfig
from appliance.config.transport import state_path
from appliance.errors import ApplianceError, InputError
from appliance.publish.clock import Clock, Stamp
from appliance.publish.lockfile import FileLock
from appliance.publish.messages import MESSAGE_TYPES
from appliance.publish.outbox.rows import OutboxRow, OutboxStats, Sealed, row_checksum
from appliance.publish.outbox.seqfloor import SEQ_BLOCK, Floor, floor_path, read_floor, write_floor

log = logging.getLogger(__name__)


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


class _Damaged(Exception):
    pass


# Each kind's own policy (appliance.publish.messages): cap drops go through kinds in their
# drop_rank order; a kind without one (status) is never dropped.
DROP_ORDER: Tuple[str, ...] = tuple(
    kind for kind, cls in sorted(MESSAGE_TYPES.items(), key=lambda kc: kc[1].drop_rank or 0)
    if cls.drop_rank is not None
)
AGE_LIMITED_KINDS: Tuple[str, ...] = tuple(kind for kind, cls in MESSAGE_TYPES.items() if cls.age_limited)

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
    seq        INTEGER PRIMARY KEY,   -- delivery order too
    kind       TEXT NOT NULL,
    topic      TEXT NOT NULL,
    payload    BLOB NOT NULL,
    created    REAL NOT NULL,         -- unix time when queued (a label: see the stamp below)
    boot       TEXT,                  -- kernel boot id when queued
    since_boot REAL,                  -- CLOCK_BOOTTIME when queued
    synced     INTEGER,               -- 1: the wall clock was set
    checksum   BLOB                   -- row_checksum (NULL: stored before checksums)
);
CREATE INDEX IF NOT EXISTS messages_kind_seq ON messages (kind, seq);
CREATE TABLE IF NOT EXISTS boots (
    boot_id    INTEGER PRIMARY KEY,
    first_seq  INTEGER NOT NULL,      -- seqs [first_seq, first_seq + reserved) are birth/death
    reserved   INTEGER NOT NULL,
    started_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    id      INTEGER PRIMARY KEY,
    seq     INTEGER,                  -- as read: the seq itself may be what was damaged
    kind    BLOB,
    topic   BLOB,
    payload BLOB,
    reason  TEXT NOT NULL,
    at      REAL NOT NULL
);
"""
_ROW_COLUMNS = (
    "seq, CAST(kind AS BLOB), CAST(topic AS BLOB), payload, created, CAST(boot AS BLOB), since_boot, synced, checksum"
)
# Added after the first release; files written before have no such columns.
_BOOT_COLUMNS = {"death_topic": "TEXT", "death_payload": "BLOB", "closed": "INTEGER NOT NULL DEFAULT 0"}
_MESSAGE_COLUMNS = {"boot": "TEXT", "since_boot": "REAL", "synced": "INTEGER", "checksum": "BLOB"}


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
        clock: Optional[Clock] = None,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._clock = clock or Clock()
        self._busy_timeout_s = busy_timeout_s
        self._lock = threading.Lock()
        self._file_lock: Optional[FileLock] = None
        self._floor_path = floor_path(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file_lock = FileLock(self.path.with_name(self.path.name + ".lock"), f"outbox {self.path}")
            self._floor = read_floor(self._floor_path)
            try:
                self._db = self._open()
            except sqlite3.DatabaseError as exc:
                if isinstance(exc, sqlite3.OperationalError):
                    raise
                self._db = self._replace_damaged(exc)
            if owner is not None:
                self._claim(owner)
            self._bytes = int(self._db.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM messages").fetchone()[0])
            self._quarantine_beyond_last_seq()
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

    def _open(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a "batch" is exactly one
        # transaction and nothing is left open implicitly between calls.
        db = sqlite3.connect(
            str(self.path), isolation_level=None, check_same_thread=False, timeout=self._busy_timeout_s
        )
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            # A damaged page shows here, at start, rather than as a failing query mid-run.
            verdict = db.execute("PRAGMA quick_check").fetchone()[0]
            if verdict != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {verdict}")
            db.executescript(_SCHEMA)
            self._db = db
            self._migrate()
        except BaseException:
            db.close()
            raise
        return db

    def _replace_damaged(self, exc: sqlite3.Error) -> sqlite3.Connection:
        """Set the unusable file aside (kept for a post-mortem) and start a fresh one that
        continues the seq and boot counters above anything the old file reached."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        aside = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            part = self.path.with_name(self.path.name + suffix)
            if part.exists():
                part.rename(aside.with_name(aside.name + suffix))
        floor = self._floor
        log.error(
            "%s: outbox file unusable (%s); moved to %s, a fresh outbox continues after seq %d, boot %d "
            "(its undelivered messages are not sent)",
            self.path, exc, aside.name, floor.seq, floor.boot_id,
        )
        db = self._open()
        db.execute("BEGIN IMMEDIATE")
        counters = (("last_seq", floor.seq), ("boot_id", floor.boot_id), ("set_aside", floor.files_set_aside + 1))
        for key, value in counters:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
        db.execute("COMMIT")
        self._save_floor(Floor(floor.seq, floor.boot_id, floor.files_set_aside + 1))
        return db

    def _release(self) -> None:
        if self._file_lock is not None:
            self._file_lock.release()
            self._file_lock = None

    def _quarantine_beyond_last_seq(self) -> None:
        """A row above the stored seq counter can only be a damaged key; left in place, the seq it
        took would collide with a new message's."""
        if self._db.execute("SELECT 1 FROM meta WHERE key = 'last_seq'").fetchone() is None:
            return  # no counter recorded (a file from a tool, not from us): nothing to compare with
        beyond = self._db.execute(
            f"SELECT {_ROW_COLUMNS} FROM messages WHERE seq > ?", (self._meta("last_seq"),)
        ).fetchall()
        if beyond:
            with self._transaction():
                for r in beyond:
                    self._quarantine_row(r, "its seq is beyond the last one stored")

    def _save_floor(self, floor: Floor) -> None:
        try:
            write_floor(self._floor_path, floor)
            self._floor = floor
        except OSError as exc:
            # Only a damaged outbox later needs this file; a full disk now must not stop storing.
            log.error("%s: cannot record the seq reservation: %s", self._floor_path, exc)

    def _reserve(self, last_seq: int, boot_id: int) -> None:
        """Keep the side file's floor above every seq and boot id this file has used."""
        floor = self._floor
        if last_seq > floor.seq or boot_id > floor.boot_id:
            seq = max(floor.seq, last_seq + SEQ_BLOCK)
            self._save_floor(Floor(seq, max(floor.boot_id, boot_id), floor.files_set_aside))

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
            self._reserve(self._bump("last_seq", 2), boot_id)
            self._db.execute(
                "INSERT INTO boots (boot_id, first_seq, reserved, started_at, death_topic, death_payload) "
                "VALUES (?, ?, 2, ?, ?, ?)",
                (boot_id, birth.seq, self._clock.wall(), death.topic, death.payload),
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
        self._insert(Sealed(int(row[0]) + 1, "status", str(row[1]), bytes(row[2])), or_ignore=True)

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
            self._reserve(self._bump("last_seq", 1 + lost_before), self._meta("boot_id"))
            if lost_before:
                self._bump("lost", lost_before)
            self._insert(sealed)
            self._enforce_bounds(newest=sealed.seq)

    def _insert(self, sealed: Sealed, *, or_ignore: bool = False) -> None:
        stamp = self._clock.now()
        checksum = row_checksum(sealed.seq, sealed.kind, sealed.topic, sealed.payload, stamp)
        cur = self._db.execute(
            f"INSERT {'OR IGNORE ' if or_ignore else ''}INTO messages "
            "(seq, kind, topic, payload, created, boot, since_boot, synced, checksum) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (sealed.seq, sealed.kind, sealed.topic, sealed.payload, stamp.wall, stamp.boot, stamp.since_boot_s,
             int(stamp.synced), checksum),
        )
        if cur.rowcount:
            self._bytes += len(sealed.payload)

    def _enforce_bounds(self, newest: int) -> None:
        now = self._clock.now()
        # Too old by the time since boot (stored this boot), or by the wall clock when it was set
        # both then and now; a row no clock vouches for is left to the byte cap.
        too_old = (
            "kind = ? AND ((boot = ? AND since_boot < ?) OR "
            "(? = 1 AND COALESCE(synced, 1) = 1 AND COALESCE(boot, '') != ? AND created < ?))"
        )
        for kind in AGE_LIMITED_KINDS:
            if not self._oldest_may_be_too_old(kind):
                continue  # the common case: one index lookup, not a scan of the backlog
            params = (kind, now.boot, now.since_boot_s - self.max_age_s, int(now.synced), now.boot,
                      now.wall - self.max_age_s)
            rows = self._db.execute(
                f"SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM messages WHERE {too_old}", params
            ).fetchone()
            if rows[0]:
                self._db.execute(f"DELETE FROM messages WHERE {too_old}", params)
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

    def _oldest_may_be_too_old(self, kind: str) -> bool:
        oldest = self._db.execute(
            "SELECT created, CAST(boot AS BLOB), since_boot, synced FROM messages WHERE kind = ? ORDER BY seq LIMIT 1",
            (kind,),
        ).fetchone()
        if oldest is None:
            return False
        try:
            age = self._clock.age_s(_stamp(*oldest))
        except _Damaged:
            return True
        # Unknown (stored before a clock step): rows behind it may still have an age; look at all.
        return age is None or age > self.max_age_s

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
        """Queued messages with seq > ``after_seq``, oldest first, each checked against its
        checksum. Damaged rows met on the way are moved to quarantine, not returned."""
        with self._lock:
            while True:
                raw = self._db.execute(
                    f"SELECT {_ROW_COLUMNS} FROM messages WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
                ).fetchall()
                good: List[OutboxRow] = []
                damaged: List[Tuple[Sequence[Any], str]] = []
                for r in raw:
                    try:
                        good.append(_decode(r))
                    except _Damaged as exc:
                        damaged.append((r, str(exc)))
                if damaged:
                    with self._transaction():
                        for r, reason in damaged:
                            self._quarantine_row(r, reason)
                if good or not raw:
                    return good
                after_seq = int(raw[-1][0])  # a whole page was damaged: go on with the next

    def _quarantine_row(self, r: Sequence[Any], reason: str) -> None:
        seq, kind, topic, payload = r[0], r[1], r[2], r[3]
        log.error("outbox seq %s quarantined: %s (its seq stays a gap)", seq, reason)
        self._db.execute(
            "INSERT INTO quarantine (seq, kind, topic, payload, reason, at) VALUES (?, ?, ?, ?, ?, ?)",
            (seq, kind, topic, payload, reason, self._clock.wall()),
        )
        self._db.execute("DELETE FROM messages WHERE seq = ?", (seq,))
        if isinstance(payload, (bytes, str)):
            self._bytes -= len(payload)
        self._bump("quarantined")

    def quarantine(self, seq: int, reason: str) -> None:
        """Move a stored message that no longer passes egress to quarantine (counted there too)."""
        with self._lock, self._transaction():
            r = self._db.execute(f"SELECT {_ROW_COLUMNS} FROM messages WHERE seq = ?", (seq,)).fetchone()
            if r is not None:
                self._quarantine_row(r, reason)

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

    # ------------------------------------------------------------------ reporting

    def stats(self) -> OutboxStats:
        with self._lock:
            # The oldest waiting is the first in seq order: an index lookup, not a scan of every row.
            count = int(self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
            oldest = self._db.execute(
                "SELECT created, CAST(boot AS BLOB), since_boot, synced FROM messages ORDER BY seq LIMIT 1"
            ).fetchone()
            dropped = {
                key.split(".", 1)[1]: int(value)
                for key, value in self._db.execute("SELECT key, value FROM meta WHERE key LIKE 'dropped.%'")
            }
            lost, quarantined, set_aside = self._meta("lost"), self._meta("quarantined"), self._meta("set_aside")
        age = None
        if oldest is not None:
            try:
                age = self._clock.age_s(_stamp(*oldest))
            except _Damaged:
                age = None  # quarantined when delivery reaches it
        return OutboxStats(count, self._bytes, age, dropped, lost, quarantined, set_aside)

    def integrity_check(self) -> str:
        with self._lock:
            return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._release()


def _stamp(created: Any, boot: Any, since_boot: Any, synced: Any) -> Stamp:
    if not isinstance(created, (int, float)) or not isinstance(since_boot, (int, float, type(None))):
        raise _Damaged("its stamp is not a number")
    try:
        boot_text = boot.decode("utf-8") if isinstance(boot, bytes) else ""
    except UnicodeDecodeError:
        raise _Damaged("its stamp does not decode") from None
    # Rows from before stamps: the wall clock only, as they were aged then.
    return Stamp(float(created), boot_text, float(since_boot or 0.0), True if synced is None else bool(synced))


def _decode(r: Sequence[Any]) -> OutboxRow:
    """One row as selected by _ROW_COLUMNS, checked; raises _Damaged naming what is wrong."""
    seq, kind_raw, topic_raw, payload, created, boot, since_boot, synced, checksum = r
    if not isinstance(kind_raw, bytes) or not isinstance(topic_raw, bytes) or not isinstance(payload, bytes):
        raise _Damaged("a column has the wrong type")
    try:
        kind, topic = kind_raw.decode("utf-8"), topic_raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _Damaged("its kind or topic does not decode as UTF-8") from None
    stamp = _stamp(created, boot, since_boot, synced)
    # NULL: stored before rows had checksums; the egress re-check (seq included) still applies.
    if checksum is not None and checksum != row_checksum(int(seq), kind, topic, payload, stamp):
        raise _Damaged("it does not match its checksum")
    return OutboxRow(int(seq), kind, topic, payload, stamp)
