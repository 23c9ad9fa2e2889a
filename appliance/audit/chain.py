"""The hash chain: the byte-exact form of an entry, its hash, and the check of a whole log.

An entry is one line: the *canonical* JSON of ``{"seq", "at", "kind", "data", "prev", "hash"[,
"key", "sig"]}`` followed by ``\\n``. Canonical means: keys sorted by code point at every level, no
whitespace, UTF-8 (no ``\\u`` escapes but the ones JSON requires), numbers as Python's shortest
round-trip ``repr``, no NaN or infinity. A line is valid only if it *is* the canonical encoding
of what it parses to, so an added key, a duplicate key or a changed space breaks the chain as
surely as a changed value.

``hash`` is the sha256 of the canonical JSON of ``{"seq", "at", "kind", "data", "prev"[, "key"]}``
where ``prev`` is the previous entry's ``hash`` (64 zeros to start a chain). ``key`` (the sha256
fingerprint of the device's public key) is part of what is hashed: an entry written by a device
that signs declares so inside its own hash, and its ``sig`` (base64 signature of the hash bytes)
cannot be stripped without breaking the entry. Once one entry is signed every later one must be.

Changing a byte, deleting or reordering entries breaks the chain at the first affected entry;
cutting entries off the end does not, which is why the (signed) head ``(length, hash)`` is
published and :func:`verify_lines` takes an ``expected_head``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

GENESIS = "0" * 64
Head = Tuple[int, str]
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
KEY_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}$")
HASHED_FIELDS = ("seq", "at", "kind", "data", "prev")
ENTRY_FIELDS = frozenset((*HASHED_FIELDS, "hash"))
SIGNED_FIELDS = frozenset(("key", "sig"))
CHAIN_START_KINDS = ("reset",)  # a kind that may start a new chain after a log was lost


class EntryError(ValueError):
    """A line that is not a valid entry (the message says why, in words)."""


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def entry_hash(seq: int, at: str, kind: str, data: Dict[str, Any], prev: str, key: Optional[str] = None) -> str:
    body: Dict[str, Any] = {"seq": seq, "at": at, "kind": kind, "data": data, "prev": prev}
    if key is not None:
        body["key"] = key
    return hashlib.sha256(canonical(body)).hexdigest()


def _no_duplicates(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise EntryError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise EntryError(f"{name} is not a JSON number")


def parse_entry(raw: bytes) -> Dict[str, Any]:
    """One stored line (without its newline) as an entry, or :class:`EntryError` saying what is wrong.

    Checks the form only (fields, types, canonical bytes), not the hash or the link."""
    try:
        e = json.loads(raw, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except EntryError:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise EntryError("not JSON (unparsable)") from None
    if not isinstance(e, dict):
        raise EntryError(f"not an entry object but a JSON {type(e).__name__}")
    keys = set(e)
    if not keys >= ENTRY_FIELDS:
        raise EntryError(f"missing field(s) {', '.join(sorted(ENTRY_FIELDS - keys))}")
    extra = keys - ENTRY_FIELDS - SIGNED_FIELDS
    if extra:
        raise EntryError(f"unexpected field(s) {', '.join(sorted(extra))}")
    if not isinstance(e["seq"], int) or isinstance(e["seq"], bool) or e["seq"] < 1:
        raise EntryError("seq is not a positive integer")
    if not isinstance(e["at"], str) or not isinstance(e["kind"], str):
        raise EntryError("at and kind must be strings")
    if not isinstance(e["data"], dict):
        raise EntryError(f"data is a JSON {type(e['data']).__name__}, not an object")
    for name in ("prev", "hash"):
        if not isinstance(e[name], str) or not _HEX64.match(e[name]):
            raise EntryError(f"{name} is not a sha256 hex digest")
    if "key" in e and (not isinstance(e["key"], str) or not KEY_PATTERN.match(e["key"])):
        raise EntryError("key is not a 'sha256:<hex>' fingerprint")
    if "sig" in e and not is_base64(e["sig"]):
        raise EntryError("signature is malformed (not a base64 string)")
    try:
        exact = canonical(e)
    except ValueError:
        raise EntryError("holds a number JSON cannot carry") from None
    if exact != raw:
        raise EntryError("not in canonical form (a key, a space or an escape was added or changed)")
    return e


def is_base64(value: Any) -> bool:
    if not isinstance(value, str) or not value:
        return False
    try:
        base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return False
    return True


def hash_of(e: Dict[str, Any]) -> str:
    return entry_hash(e["seq"], e["at"], e["kind"], e["data"], e["prev"], e.get("key"))


# ---------------------------------------------------------------------------------------- checking


@dataclass
class Reset:
    """A chain restarted by a ``reset`` entry: the entries before it on the device were lost."""

    at_entry: int  # position of the reset entry in the files read (1-based)
    reason: str
    previous: Optional[Head]


@dataclass
class ChainReport:
    ok: bool
    length: int  # seq of the last entry of the current chain (what the published head says)
    head_hash: str
    first_bad: Optional[int] = None  # 1-based position of the bad entry across the files read
    problem: Optional[str] = None
    signed: int = 0
    signatures_checked: bool = False
    where: Optional[str] = None  # "file:line" of the bad entry
    resets: List[Reset] = field(default_factory=list)
    entries_read: int = 0

    def to_dict(self) -> Dict[str, Any]:
        return {
            "ok": self.ok,
            "length": self.length,
            "head_hash": self.head_hash,
            "first_bad": self.first_bad,
            "where": self.where,
            "problem": self.problem,
            "signed_entries": self.signed,
            "signatures_checked": self.signatures_checked,
            "resets": [
                {"at_entry": r.at_entry, "reason": r.reason, "previous": r.previous and list(r.previous)}
                for r in self.resets
            ],
        }

    def line(self, path: str) -> str:
        if not self.ok:
            where = f" ({self.where})" if self.where else ""
            return f"{path}: BROKEN at entry {self.first_bad}{where}: {self.problem}"
        checked = "" if self.signatures_checked or not self.signed else ", signatures not checked: no certificate"
        text = f"{path}: intact, {self.length} entries, head {self.head_hash} ({self.signed} signed{checked})"
        for r in self.resets:
            lost = "unknown" if r.previous is None else f"{r.previous[0]}:{r.previous[1]}"
            text += f"; chain RESET at entry {r.at_entry} ({r.reason}; the lost chain's head was {lost})"
        return text


Line = Tuple[str, int, bytes]  # (file name, line number, bytes without the newline)


def verify_lines(
    lines: Iterable[Any],
    expected_head: Optional[Head] = None,
    check_signature: Optional[Callable[[str, str], bool]] = None,
    *,
    key_fingerprint: Optional[str] = None,
) -> ChainReport:
    """Check every entry's form, hash, link and signature, streaming (memory does not grow with the log).

    ``lines`` are raw lines (``bytes``) or ``(file, line number, bytes)``. ``check_signature`` (the
    device certificate's verifier) and ``key_fingerprint`` (its public key's fingerprint) say the
    log is expected to be signed: then a log without any signed entry is broken too, as is an entry
    that names another key. With ``expected_head`` (a head published earlier), also check the log
    still holds that entry, so truncation or a rewritten past is detected."""
    prev = GENESIS
    expect_seq: Optional[int] = None  # None: the next entry may start the chain (first line, or a reset)
    last_seq = 0
    signed = 0
    signing = False  # an earlier entry of this chain was signed: every later one must be
    n = 0
    resets: List[Reset] = []
    start_anchor: Optional[Head] = None  # the chain starts past 1: a 'pruned' entry must account for it
    pruned_ok = False
    found_head: Optional[bool] = None
    report_where: Optional[str] = None

    def broken(why: str) -> ChainReport:
        return ChainReport(
            False, last_seq, prev, n, why, signed, check_signature is not None, report_where, resets, n - 1
        )

    for item in lines:
        name, lineno, raw = item if isinstance(item, tuple) else ("", 0, item)
        n += 1
        report_where = f"{name}:{lineno}" if name else None
        try:
            e = parse_entry(raw)
        except EntryError as exc:
            return broken(f"not a valid entry: {exc}")
        seq = e["seq"]
        if e["kind"] in CHAIN_START_KINDS and seq == 1 and e["prev"] == GENESIS:
            data = e["data"]
            length, digest = data.get("previous_length"), data.get("previous_sha256")
            known = (length, digest) if isinstance(length, int) and isinstance(digest, str) else None
            resets.append(Reset(n, str(data.get("reason", "")), known))
            prev, expect_seq, signing = GENESIS, None, False
        if expect_seq is None:
            if seq != 1 or e["prev"] != GENESIS:
                if n == 1:
                    start_anchor = (seq - 1, e["prev"])  # older entries removed by retention, or deleted
                else:
                    return broken(f"sequence number {seq} does not start a chain (expected a reset entry)")
            prev = e["prev"]
        elif seq != expect_seq:
            return broken(f"sequence number {seq}, expected {expect_seq} (an entry was deleted or inserted)")
        if e["prev"] != prev:
            return broken("does not link to the previous entry's hash (an entry was deleted or changed)")
        digest = hash_of(e)
        if digest != e["hash"]:
            return broken("content does not match its hash (the entry was changed)")
        if "key" in e or "sig" in e:
            if "sig" not in e:
                return broken("signature missing (the entry declares the device key: the signature was stripped)")
            if key_fingerprint is not None and "key" in e and e["key"] != key_fingerprint:
                return broken("signed with another key than the device certificate's")
            if check_signature is not None and not check_signature(digest, e["sig"]):
                return broken("signature does not verify with the device certificate")
            signed += 1
            signing = True
        elif signing:
            # Anyone who can write the file can append a correctly chained but unsigned entry;
            # once the device signs, an unsigned entry is a forgery (or the key was removed).
            return broken("not signed, but earlier entries are")
        if e["kind"] == "pruned" and start_anchor is not None:
            data = e["data"]
            if (data.get("through_seq"), data.get("through_sha256")) == start_anchor:
                pruned_ok = True
        if expected_head is not None and seq == expected_head[0]:
            found_head = found_head or digest == expected_head[1]
        prev, last_seq, expect_seq = digest, seq, seq + 1
    n += 1  # positions below name the entry after the last one read
    report_where = None
    if start_anchor is not None and not pruned_ok:
        n = 1
        return broken(
            f"the log starts at entry {start_anchor[0] + 1}: no 'pruned' entry accounts for the "
            f"{start_anchor[0]} before it (deleted)"
        )
    if check_signature is not None and n > 1 and signed == 0:
        n = 1  # the first entry is where a signature should have been
        return broken("no entry is signed although a device key is configured (signatures stripped)")
    if expected_head is not None:
        length, _want = expected_head
        if length >= 1 and found_head is None:
            return broken(f"log has {last_seq} entries but the published head had {length} (truncated)")
        if length >= 1 and not found_head:
            n = length
            return broken("differs from the published head hash (the log was rewritten)")
    return ChainReport(True, last_seq, prev, None, None, signed, check_signature is not None, None, resets, n - 1)
