"""The append-only audit log file (JSON lines): append an event, read the head, verify the chain.

One writer at a time per file: ``append`` holds an exclusive ``flock`` while it reads the current
head from the file and writes the next line, so the service and a local command (``blur``) that
both append never fork the chain. Each line is flushed and fsynced before ``append`` returns.
"""

from __future__ import annotations

import fcntl
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

from appliance.audit.chain import GENESIS, ChainReport, Head, canonical, entry_hash, verify_lines
from appliance.audit.entries import AuditEvent
from appliance.audit.signing import Signer
from appliance.config.transport import state_path
from appliance.errors import ApplianceError, InputError

if TYPE_CHECKING:
    from appliance.config import ApplianceConfig

_TAIL_CHUNK = 65536


def audit_log_path(cfg: ApplianceConfig) -> Path:
    """``transparency.audit_log_path``, or ``audit.jsonl`` beside the device's outbox."""
    if cfg.transparency.audit_log_path:
        return state_path(cfg.transparency.audit_log_path, cfg.device_id)
    from appliance.publish.outbox.store import outbox_path

    return outbox_path(cfg.outbox, cfg.device_id).parent / "audit.jsonl"


def _iso(at: datetime) -> str:
    at = at.astimezone(timezone.utc)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


class AuditLog:
    def __init__(self, path: Path, signer: Optional[Signer] = None) -> None:
        self.path = Path(path)
        self.signer = signer

    @classmethod
    def from_config(cls, cfg: ApplianceConfig) -> AuditLog:
        """The device's log; entries are signed with the mTLS key when one is configured."""
        key = cfg.mqtt.tls.key_file
        return cls(audit_log_path(cfg), Signer(key) if key else None)

    # ------------------------------------------------------------------ writing

    def append(self, event: AuditEvent, at: Optional[datetime] = None) -> Head:
        """Append one entry; returns the new head ``(length, hash)``."""
        data = event.model_dump(mode="json")
        stamp = _iso(at or datetime.now(timezone.utc))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a+b") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                try:
                    length, prev = self._head_of(f)
                    seq = length + 1
                    digest = entry_hash(seq, stamp, event.kind, data, prev)
                    entry: Dict[str, Any] = {
                        "seq": seq,
                        "at": stamp,
                        "kind": event.kind,
                        "data": data,
                        "prev": prev,
                        "hash": digest,
                    }
                    if self.signer is not None:
                        entry["sig"] = self.signer.sign(digest)
                    f.seek(0, os.SEEK_END)
                    f.write(canonical(entry) + b"\n")
                    f.flush()
                    os.fsync(f.fileno())
                finally:
                    fcntl.flock(f, fcntl.LOCK_UN)
        except OSError as exc:
            raise ApplianceError(f"{self.path}: cannot append to the audit log: {exc.strerror}") from None
        return seq, digest

    @staticmethod
    def _head_of(f: Any) -> Head:
        """Length and hash of the last entry, reading only the file's tail (the last line names its seq)."""
        end = f.seek(0, os.SEEK_END)
        if end == 0:
            return 0, GENESIS
        chunk = _TAIL_CHUNK
        while True:
            start = max(0, end - chunk)
            f.seek(start)
            tail = f.read(end - start)
            lines = tail.rstrip(b"\n").split(b"\n")
            if len(lines) > 1 or start == 0:
                break
            chunk *= 4
        try:
            last = json.loads(lines[-1])
            return int(last["seq"]), str(last["hash"])
        except (ValueError, KeyError, TypeError):
            # Never extend a chain whose end is unreadable: that would bury the damage under new entries.
            raise ApplianceError("the audit log's last entry is unreadable; run 'appliance audit verify'") from None

    # ------------------------------------------------------------------ reading

    def head(self) -> Head:
        """``(length, hash)`` of the last entry, ``(0, 64 zeros)`` for an empty or absent log.

        Goes into the health and birth messages so the control room holds an external anchor.
        """
        if not self.path.exists():
            return 0, GENESIS
        with open(self.path, "rb") as f:
            return self._head_of(f)

    def _lines(self) -> List[bytes]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            raise InputError("audit log not found", path=str(self.path)) from None
        return [ln for ln in data.split(b"\n") if ln.strip()] if data else []

    def verify(
        self, expected_head: Optional[Head] = None, check_signature: Optional[Callable[[str, str], bool]] = None
    ) -> ChainReport:
        return verify_lines(self._lines(), expected_head, check_signature)

    def entries(self) -> List[Dict[str, Any]]:
        """All entries as parsed (no verification: use :meth:`verify` for that)."""
        out = []
        for raw in self._lines():
            try:
                out.append(json.loads(raw))
            except ValueError:
                out.append({"unparsable": raw.decode("utf-8", "replace")})
        return out
