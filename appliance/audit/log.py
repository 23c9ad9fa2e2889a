"""The append-only audit log (JSON lines, possibly rotated): append an event, read the head, verify.

One writer at a time per log: ``append`` holds an exclusive ``flock`` on ``.audit.jsonl.lock``
(beside the log; a file of its own, so rotating the log never moves the lock) while it reads the
current head from the file's tail and writes the next line, so the service and a local command
(``blur``, ``audit ack``) that both append never fork the chain. Each line is flushed and fsynced
before ``append`` returns. A torn last line (a power cut mid-write) is cut back to the last
complete entry before anything is appended, and a ``recovered`` entry records what was cut.
Rotation (``audit.max_bytes``, ``audit.retention_days``) renames the active file and the chain runs
on in a fresh one; files past retention are deleted and a ``pruned`` entry says which entries went.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Dict, Iterator, List, Optional, Tuple

from appliance.audit.chain import (
    GENESIS,
    ChainReport,
    EntryError,
    Head,
    canonical,
    entry_hash,
    parse_entry,
    verify_lines,
)
from appliance.audit.entries import AuditEvent, Pruned, Recovered
from appliance.audit.files import (
    all_files,
    archives,
    check_not_folder,
    fsync_dir,
    lines_backward,
    lines_forward,
    next_archive,
    torn_tail,
)
from appliance.audit.signing import Signer
from appliance.config.transport import state_path
from appliance.errors import ApplianceError, InputError

if TYPE_CHECKING:
    from appliance.config import ApplianceConfig

UNSIGNED_WRITER = "the log is signed but no device key is configured (mqtt.tls.key_file): use --config"

# Entries stamped before this come from a board whose clock was not set yet: never pruned by age.
_CLOCK_SANE = datetime(2020, 1, 1, tzinfo=timezone.utc)


def audit_log_path(cfg: ApplianceConfig) -> Path:
    """``transparency.audit_log_path``, or ``audit.jsonl`` beside the device's outbox."""
    if cfg.transparency.audit_log_path:
        return state_path(cfg.transparency.audit_log_path, cfg.device_id)
    from appliance.publish.outbox.store import outbox_path

    return outbox_path(cfg.outbox, cfg.device_id).parent / "audit.jsonl"


def _iso(at: datetime) -> str:
    at = at.astimezone(timezone.utc)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def parse_at(text: Any) -> Optional[datetime]:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True)
class Rotation:
    max_bytes: Optional[int] = None
    retention_days: Optional[float] = None


class AuditLog:
    def __init__(self, path: Path, signer: Optional[Signer] = None, rotation: Rotation = Rotation()) -> None:
        self.path = Path(path)
        self.signer = signer
        self.rotation = rotation
        self.recoveries: List[Recovered] = []  # torn tails this object cut (health reports them)

    @classmethod
    def from_config(cls, cfg: ApplianceConfig) -> AuditLog:
        """The device's log; entries are signed with the mTLS key when one is configured."""
        key = cfg.mqtt.tls.key_file
        return cls(
            audit_log_path(cfg),
            Signer(key) if key else None,
            Rotation(cfg.audit.max_bytes, cfg.audit.retention_days),
        )

    # ------------------------------------------------------------------ writing

    def append(self, event: AuditEvent, at: Optional[datetime] = None) -> Head:
        """Append one entry; returns the new head ``(length, hash)``."""
        try:
            check_not_folder(self.path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._locked() as lock:
                self._recover_torn(lock.f)
                line, head = self._entry(lock.f, event, at)
                self._maybe_rotate(lock, len(line))
                self._put(lock.f, line)
                pruned = self._prune()
                if pruned is not None:
                    head = self._write(lock.f, pruned, None)
                return head
        except OSError as exc:
            raise ApplianceError(f"{self.path}: cannot append to the audit log: {exc.strerror or exc}") from None

    def recover(self) -> Optional[Recovered]:
        """Cut a torn last line (what a power cut leaves) and record it; None when the end was whole."""
        check_not_folder(self.path)
        if not self.path.exists():
            return None
        before = len(self.recoveries)
        try:
            with self._locked() as lock:
                self._recover_torn(lock.f)
        except OSError as exc:
            raise ApplianceError(f"{self.path}: cannot repair the audit log: {exc.strerror or exc}") from None
        return self.recoveries[-1] if len(self.recoveries) > before else None

    class _Lock:
        f: BinaryIO
        lock: BinaryIO

        def __init__(self, log: AuditLog) -> None:
            self.log = log

        def __enter__(self) -> AuditLog._Lock:
            # The lock is on a file of its own: rotation renames the log, which must not move the lock.
            lock_path = self.log.path.with_name(f".{self.log.path.name}.lock")
            self.lock = open(lock_path, "a+b")
            try:
                fcntl.flock(self.lock, fcntl.LOCK_EX)
                self.f = open(self.log.path, "a+b")
            except BaseException:
                self.lock.close()
                raise
            return self

        def __exit__(self, *exc: Any) -> None:
            self.f.close()
            self.lock.close()  # closing releases the flock

    def _locked(self) -> AuditLog._Lock:
        return AuditLog._Lock(self)

    def _write(self, f: BinaryIO, event: AuditEvent, at: Optional[datetime]) -> Head:
        line, head = self._entry(f, event, at)
        self._put(f, line)
        return head

    @staticmethod
    def _put(f: BinaryIO, line: bytes) -> None:
        f.seek(0, os.SEEK_END)
        f.write(line)
        f.flush()
        os.fsync(f.fileno())

    def _entry(self, f: BinaryIO, event: AuditEvent, at: Optional[datetime]) -> Tuple[bytes, Head]:
        """The next entry's line (canonical JSON and a newline) and the head it makes."""
        data = event.model_dump(mode="json")
        stamp = _iso(at or datetime.now(timezone.utc))
        if event.kind == "reset":
            length, prev = 0, GENESIS  # a reset starts a new chain
        else:
            length, prev = self._head_of(f)
        seq = length + 1
        key = self.signer.fingerprint if self.signer is not None else None
        digest = entry_hash(seq, stamp, event.kind, data, prev, key)
        entry: Dict[str, Any] = {"seq": seq, "at": stamp, "kind": event.kind, "data": data, "prev": prev}
        entry["hash"] = digest
        if self.signer is not None:
            entry["key"] = key
            entry["sig"] = self.signer.sign(digest)
        return canonical(entry) + b"\n", (seq, digest)

    def _recover_torn(self, f: BinaryIO) -> None:
        offset, cut = torn_tail(f)
        if not cut:
            return
        if self.signer is None and offset > 0 and "key" in _last_entry(f, self.path, end=offset):
            raise InputError(UNSIGNED_WRITER, path=str(self.path))  # its recovered entry could not be signed
        f.truncate(offset)
        f.flush()
        os.fsync(f.fileno())
        event = Recovered(cut_bytes=len(cut), cut_sha256=hashlib.sha256(cut).hexdigest(), file=self.path.name)
        self._write(f, event, None)
        self.recoveries.append(event)

    def _maybe_rotate(self, lock: AuditLog._Lock, adding: int) -> None:
        size = lock.f.seek(0, os.SEEK_END)
        if size == 0 or not self._rotation_due(lock.f, size + adding):
            return
        os.rename(self.path, next_archive(self.path))
        fsync_dir(self.path.parent)
        lock.f.close()
        lock.f = open(self.path, "a+b")  # noqa: SIM115 - held until __exit__

    def _rotation_due(self, f: BinaryIO, size: int) -> bool:
        if self.rotation.max_bytes is not None and size > self.rotation.max_bytes:
            return True
        if self.rotation.retention_days is None:
            return False
        f.seek(0)
        first = parse_at(_field(f.readline(), "at"))
        return first is not None and first < datetime.now(timezone.utc) - timedelta(days=self.rotation.retention_days)

    def _prune(self) -> Optional[Pruned]:
        if self.rotation.retention_days is None:
            return None
        cutoff = datetime.now(timezone.utc) - timedelta(days=self.rotation.retention_days)
        gone: List[Path] = []
        through: Optional[Head] = None
        for p in archives(self.path):
            with open(p, "rb") as g:
                last = next(lines_backward(g), b"")
            at, head = parse_at(_field(last, "at")), _head_from(last)
            if at is None or head is None or at < _CLOCK_SANE or at >= cutoff:
                break  # only a prefix of old files goes, so the kept chain stays whole
            gone.append(p)
            through = head
        if through is None:
            return None
        for p in gone:
            p.unlink()
        fsync_dir(self.path.parent)
        return Pruned(files=len(gone), through_seq=through[0], through_sha256=through[1])

    def _head_of(self, f: BinaryIO) -> Head:
        """Length and hash of the last entry, reading only the tail (of the previous file when this one is empty)."""
        last = self._last_entry(f)
        if last is None:
            return 0, GENESIS
        if "key" in last and self.signer is None:
            # An unsigned entry after signed ones is exactly what a forger leaves: never write one.
            raise InputError(UNSIGNED_WRITER, path=str(self.path))
        return int(last["seq"]), str(last["hash"])

    def _last_entry(self, f: BinaryIO) -> Optional[Dict[str, Any]]:
        if f.seek(0, os.SEEK_END) == 0:
            older = archives(self.path)
            if not older:
                return None
            with open(older[-1], "rb") as g:
                return _last_entry(g, older[-1])
        return _last_entry(f, self.path)

    # ------------------------------------------------------------------ reading

    def head(self) -> Head:
        """``(length, hash)`` of the last entry, ``(0, 64 zeros)`` for an empty or absent log.

        Goes into the health and birth messages so the control room holds an external anchor."""
        check_not_folder(self.path)
        files = all_files(self.path)
        for p in reversed(files):
            try:
                with open(p, "rb") as f:
                    if f.seek(0, os.SEEK_END) > 0:
                        return _last_head(f, p)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise InputError(f"cannot read the audit log: {exc.strerror}", path=str(p)) from None
        return 0, GENESIS

    def lines(self) -> Iterator[tuple]:
        check_not_folder(self.path)
        files = all_files(self.path)
        if not files:
            raise InputError("audit log not found", path=str(self.path))
        return lines_forward(files)

    def verify(
        self,
        expected_head: Optional[Head] = None,
        check_signature: Optional[Callable[[str, str], bool]] = None,
        key_fingerprint: Optional[str] = None,
    ) -> ChainReport:
        return verify_lines(self.lines(), expected_head, check_signature, key_fingerprint=key_fingerprint)

    def entries(self) -> Iterator[Dict[str, Any]]:
        """Entries in order, each checked for form (not the chain: use :meth:`verify` for that);
        :class:`InputError` naming the file and line at the first one that is not an entry."""
        for name, lineno, raw in self.lines():
            try:
                yield parse_entry(raw)
            except EntryError as exc:
                where = str(self.path.with_name(name))
                raise InputError(f"line {lineno} is not a valid audit entry: {exc}", path=where) from None

    def entries_backward(self) -> Iterator[Dict[str, Any]]:
        """Entries from the newest back (across rotated files), a chunk at a time: bounded memory."""
        check_not_folder(self.path)
        for p in reversed(all_files(self.path)):
            try:
                f = open(p, "rb")  # noqa: SIM115 - closed by the with below
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise InputError(f"cannot read the audit log: {exc.strerror}", path=str(p)) from None
            with f:
                for raw in lines_backward(f):
                    try:
                        yield parse_entry(raw)
                    except EntryError as exc:
                        raise InputError(f"an entry is not valid: {exc}", path=str(p)) from None


def _field(raw: bytes, name: str) -> Any:
    try:
        return parse_entry(raw.rstrip(b"\n"))[name]
    except EntryError:
        return None


def _head_from(raw: bytes) -> Optional[Head]:
    try:
        e = parse_entry(raw)
    except EntryError:
        return None
    return int(e["seq"]), str(e["hash"])


def _last_entry(f: BinaryIO, path: Path, end: Optional[int] = None) -> Dict[str, Any]:
    try:
        return parse_entry(next(lines_backward(f, end), b""))
    except EntryError:
        # Never extend a chain whose end is unreadable: that would bury the damage under new entries.
        raise InputError("the audit log's last entry is unreadable; run 'appliance audit verify'", path=str(path)) \
            from None


def _last_head(f: BinaryIO, path: Path) -> Head:
    last = _last_entry(f, path)
    return int(last["seq"]), str(last["hash"])
