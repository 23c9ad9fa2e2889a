"""The hash chain: how an entry's hash is computed, and how a whole log is checked.

Entry ``n`` (1-based) is one JSON line ``{"seq", "at", "kind", "data", "prev", "hash"[, "sig"]}``
where ``prev`` is entry ``n-1``'s ``hash`` (64 zeros for the first) and ``hash`` is the sha256 of
the canonical JSON of the other fields. Changing a byte, deleting or reordering entries breaks the
chain at the first affected entry; cutting entries off the end does not, which is why the head
``(length, hash)`` is published and :func:`verify_lines` takes an ``expected_head``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

GENESIS = "0" * 64
Head = Tuple[int, str]


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_hash(seq: int, at: str, kind: str, data: Dict[str, Any], prev: str) -> str:
    return hashlib.sha256(canonical({"seq": seq, "at": at, "kind": kind, "data": data, "prev": prev})).hexdigest()


@dataclass
class ChainReport:
    ok: bool
    length: int
    head_hash: str
    first_bad: Optional[int] = None  # 1-based entry number
    problem: Optional[str] = None
    signed: int = 0
    entries: List[Dict[str, Any]] = field(default_factory=list, repr=False)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "ok": self.ok,
            "length": self.length,
            "head_hash": self.head_hash,
            "first_bad": self.first_bad,
            "problem": self.problem,
            "signed_entries": self.signed,
        }

    def line(self, path: str) -> str:
        if self.ok:
            return f"{path}: intact, {self.length} entries, head {self.head_hash} ({self.signed} signed)"
        return f"{path}: BROKEN at entry {self.first_bad}: {self.problem}"


def verify_lines(
    lines: Sequence[bytes],
    expected_head: Optional[Head] = None,
    check_signature: Optional[Callable[[str, str], bool]] = None,
) -> ChainReport:
    """Check every entry's hash and link; with ``expected_head`` (a head published earlier), also
    check the log still holds that entry, so truncation or a rewritten past is detected."""
    prev = GENESIS
    entries: List[Dict[str, Any]] = []
    signed = 0

    def broken(n: int, why: str) -> ChainReport:
        return ChainReport(False, len(entries), prev, n, why, signed, entries)

    for n, raw in enumerate(lines, start=1):
        try:
            e = json.loads(raw)
            seq, at, kind, data, link, digest = e["seq"], e["at"], e["kind"], e["data"], e["prev"], e["hash"]
        except (ValueError, KeyError, TypeError):
            return broken(n, "not a valid entry (unparsable or missing fields)")
        if seq != n:
            return broken(n, f"sequence number {seq}, expected {n} (an entry was deleted or inserted)")
        if link != prev:
            return broken(n, "does not link to the previous entry's hash (an entry was deleted or changed)")
        if entry_hash(seq, at, kind, data, link) != digest:
            return broken(n, "content does not match its hash (the entry was changed)")
        if "sig" in e:
            if check_signature is not None and not check_signature(digest, e["sig"]):
                return broken(n, "signature does not verify with the device certificate")
            signed += 1
        elif signed and check_signature is not None:
            # Anyone who can write the file can append a correctly chained but unsigned entry;
            # once the device signs, an unsigned entry is a forgery (or a key removed: check it).
            return broken(n, "not signed, but earlier entries are")
        entries.append(e)
        prev = digest
    report = ChainReport(True, len(entries), prev, signed=signed, entries=entries)
    if expected_head is not None:
        length, digest = expected_head
        if length > len(entries):
            return ChainReport(
                False,
                len(entries),
                prev,
                len(entries) + 1,
                f"log has {len(entries)} entries but the published head had {length} (truncated)",
                signed,
                entries,
            )
        if length >= 1 and entries[length - 1]["hash"] != digest:
            return ChainReport(
                False,
                len(entries),
                prev,
                length,
                "differs from the published head hash (the log was rewritten)",
                signed,
                entries,
            )
    return report
