"""Egress policy: the last gate every payload passes before it can leave the device.

The message classes already make it hard to put anything but aggregates on the wire; this module
checks the *result* independently, so a bug in a message class (a field widened to ``List[float]``,
a debug string holding a JPEG) is still caught. A payload is allowed out only if:

* it was built from one of the message classes in :mod:`appliance.publish.messages` and is stamped;
* its topic is exactly ``{prefix}/{device_id}/{kind}`` for this device's own prefix and id;
* it serialises to JSON (UTF-8) no larger than ``PublishConfig.max_payload_bytes``;
* no array in it is longer than :data:`MAX_ARRAY_ITEMS` and the whole payload holds at most
  :data:`MAX_NUMBERS` numbers (pixels come in long runs of numbers);
* no string in it is longer than :data:`MAX_STRING_CHARS` or looks like a base64/hex blob, and no
  value is ``bytes``.

Anything else raises :class:`EgressError`, and the refusal is counted (``refused``) for health.
The MQTT link only accepts :class:`ApprovedPayload` objects, which only :meth:`EgressPolicy.approve`
creates: there is no other path to the network.

Every stored message is checked again, in full, before it is sent
(:meth:`EgressPolicy.approve_stored`): the outbox file is on an SD card and outlives software
versions. The re-check is cheap next to the device's traffic (one counts message every few seconds;
a week's backlog drains in well under the two minutes it may take).
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, Literal, Optional

from pydantic import ValidationError

from appliance.errors import ApplianceError
from appliance.publish.messages import MESSAGE_TYPES, WIRE_TYPES, Message, Stamped, parse_payload

MAX_ARRAY_ITEMS = 32
MAX_NUMBERS = 1024
MAX_STRING_CHARS = 200
# A sha256 is 64 hex digits and is legitimately published (model identity); anything longer in
# hex, or a long unbroken base64-alphabet run, is treated as an encoded blob.
_HEX_BLOB = re.compile(r"[0-9a-fA-F]{65,}")
_BASE64_BLOB = re.compile(r"[A-Za-z0-9+/_-]{80,}={0,2}")
# No string shorter than this can match either pattern (hex needs 65 digits, base64 80).
_SHORTEST_BLOB = 65
# The audit head's signature is encoded data by nature (an ECDSA P-256 signature is 96 base64
# characters, RSA-3072 512) and is allowed at that one place only, bounded, so the exemption cannot
# carry more than a signature; a control room checks it against the device's certificate.
_SIGNATURE_PATHS = frozenset({"$.audit.sig"})
_SIGNATURE = re.compile(r"[A-Za-z0-9+/]{1,512}={0,2}")

_APPROVAL_TOKEN = object()
# The selftest's empty probe (see EgressPolicy.probe); never a kind of message.
PROBE_KIND = "selftest"


class EgressError(ApplianceError):
    """A payload the egress policy refuses to publish. ``reason`` is a short machine-usable label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"egress refused ({reason}): {detail}")
        self.reason = reason


# The public notice lists every published field and the operator's texts: larger than a message.
DOCUMENT_MAX_BYTES = 40 * 1024  # five message kinds with every field described


@dataclass(frozen=True)
class RetainedDocument:
    """State the device publishes retained at every connect, outside the outbox's history."""

    kind: Literal["notice", "discovery"]
    payload: bytes
    topic: Optional[str] = None  # discovery: the Home Assistant config topic


@dataclass(frozen=True)
class ApprovedPayload:
    """A payload that passed the egress check. Construct only through :meth:`EgressPolicy.approve`."""

    topic: str
    payload: bytes
    kind: str
    seq: int
    retain: bool
    _token: object = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._token is not _APPROVAL_TOKEN:
            raise TypeError("ApprovedPayload is created by EgressPolicy.approve() only")


class EgressPolicy:
    """Checks payloads for one device. Thread-safe; counts refusals by reason."""

    def __init__(
        self, *, topic_prefix: str, device_id: str, max_payload_bytes: int, discovery_prefix: Optional[str] = None
    ) -> None:
        self.topic_prefix = topic_prefix
        self.discovery_prefix = discovery_prefix
        self.device_id = device_id
        self.max_payload_bytes = max_payload_bytes
        self._lock = threading.Lock()
        self._refused: Dict[str, int] = {}

    @property
    def refused(self) -> Dict[str, int]:
        with self._lock:
            return dict(self._refused)

    @property
    def refused_total(self) -> int:
        with self._lock:
            return sum(self._refused.values())

    def topic_for(self, kind: str) -> str:
        return f"{self.topic_prefix}/{self.device_id}/{kind}"

    def approve(self, msg: Message, topic: Optional[str] = None) -> ApprovedPayload:
        """Check ``msg`` (to be sent on ``topic``, by default its own) and return the approved bytes."""
        try:
            return self._check_message(msg, topic)
        except EgressError as exc:
            self._count(exc.reason)
            raise

    def approve_stored(self, kind: str, topic: str, payload: bytes, *, seq: int) -> ApprovedPayload:
        """Re-check a payload read back from the outbox at ``seq``: it must parse as its kind, carry
        that seq, and pass every check again, serialising to the very same bytes."""
        try:
            if kind not in MESSAGE_TYPES:
                raise EgressError("unknown_kind", f"{kind!r} is not a message kind")
            try:
                msg = parse_payload(kind, payload)
            except ValueError as exc:
                raise EgressError("invalid", f"stored {kind} payload does not parse: {_without_input(exc)}") from None
            if msg.seq != seq:
                raise EgressError("invalid", f"stored payload carries seq {msg.seq}, stored at {seq}")
            approved = self._check_message(msg, topic)
            if approved.payload != payload:
                # Same content must serialise to the same bytes; a difference means the stored
                # payload carried something the model would not have produced.
                raise EgressError("invalid", "stored payload is not in canonical form")
            return approved
        except EgressError as exc:
            self._count(exc.reason)
            raise

    def approve_document(self, doc: RetainedDocument) -> ApprovedPayload:
        """Check a retained document that is not a message: the public notice on the device's own
        ``notice`` topic, or a Home Assistant discovery config under ``discovery_prefix`` (an empty
        payload removes one). Same structural checks as every message; the notice may be larger."""
        try:
            if doc.kind == "notice":
                topic, limit = self.topic_for("notice"), DOCUMENT_MAX_BYTES
            elif doc.kind == "discovery" and self.discovery_prefix is not None:
                topic, limit = doc.topic or "", self.max_payload_bytes
                pattern = rf"^{re.escape(self.discovery_prefix)}/(sensor|binary_sensor)/{re.escape(self.device_id)}/"
                if not re.match(pattern + r"[A-Za-z0-9_-]{1,64}/config$", topic):
                    raise EgressError("wrong_topic", f"{topic!r} is not this device's discovery topic")
            else:
                raise EgressError("unknown_kind", f"{doc.kind!r} is not a document this device publishes")
            if doc.topic is not None and doc.topic != topic:
                raise EgressError("wrong_topic", f"topic {doc.topic!r} is not {topic!r}")
            if len(doc.payload) > limit:
                raise EgressError("too_large", f"{len(doc.payload)} bytes > {limit}")
            if doc.payload or doc.kind != "discovery":
                check_json_payload(doc.payload)
            return ApprovedPayload(topic, doc.payload, doc.kind, 0, True, _APPROVAL_TOKEN)
        except EgressError as exc:
            self._count(exc.reason)
            raise

    def probe(self) -> ApprovedPayload:
        """The one payload that is not a message: ``{}`` on ``{prefix}/{device_id}/selftest``,
        sent only by ``appliance selftest`` to learn whether the broker lets us publish as this id.
        It carries nothing."""
        return ApprovedPayload(self.topic_for(PROBE_KIND), b"{}", PROBE_KIND, 0, False, _APPROVAL_TOKEN)

    # ------------------------------------------------------------------ checks

    def _count(self, reason: str) -> None:
        with self._lock:
            self._refused[reason] = self._refused.get(reason, 0) + 1

    def _check_message(self, msg: Message, topic: Optional[str]) -> ApprovedPayload:
        cls = type(msg)
        kind = getattr(cls, "kind", "")
        if not isinstance(msg, Message) or cls not in (MESSAGE_TYPES.get(kind), WIRE_TYPES.get(kind)):
            raise EgressError("not_a_message", f"{cls.__name__} is not a publishable message class")
        if not isinstance(msg, Stamped):
            raise EgressError("unstamped", f"{msg.kind} message has no device_id/boot_id/seq/sent_at")
        if msg.device_id != self.device_id:
            raise EgressError("wrong_device", f"device_id {msg.device_id!r} is not this device")
        expected = self.topic_for(msg.kind)
        if (topic or expected) != expected:
            raise EgressError("wrong_topic", f"topic {topic!r} is not {expected!r}")
        try:
            payload = msg.to_json_bytes()
        except (TypeError, ValueError) as exc:
            raise EgressError("not_json", str(exc)) from None
        if len(payload) > self.max_payload_bytes:
            raise EgressError("too_large", f"{len(payload)} bytes > max_payload_bytes {self.max_payload_bytes}")
        check_json_payload(payload)
        return ApprovedPayload(expected, payload, msg.kind, msg.seq, msg.retain, _APPROVAL_TOKEN)


def check_json_payload(payload: bytes) -> None:
    """Structural checks on serialised JSON, independent of the message classes."""
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise EgressError("not_json", str(exc)) from None
    if not isinstance(doc, dict):
        raise EgressError("not_json", "payload must be a JSON object")
    numbers = _walk(doc, "$")
    if numbers > MAX_NUMBERS:
        raise EgressError("too_many_numbers", f"{numbers} numbers > {MAX_NUMBERS} (could be pixels)")


def _walk(node: Any, path: str) -> int:
    """Returns how many numbers ``node`` holds; raises on the first offending value."""
    if isinstance(node, (bytes, bytearray, memoryview)):
        raise EgressError("binary", f"{path} is binary data")
    if isinstance(node, bool) or node is None:
        return 0
    if isinstance(node, (int, float)):
        return 1
    if isinstance(node, str):
        if path in _SIGNATURE_PATHS:
            if not _SIGNATURE.fullmatch(node):
                raise EgressError("encoded_blob", f"{path} is not a base64 signature of at most 512 characters")
            return 0
        _check_string(node, path)
        return 0
    if isinstance(node, list):
        if len(node) > MAX_ARRAY_ITEMS:
            raise EgressError("long_array", f"{path} has {len(node)} items > {MAX_ARRAY_ITEMS}")
        return sum(_walk(item, f"{path}[{i}]") for i, item in enumerate(node))
    if isinstance(node, dict):
        total = 0
        for key, value in node.items():
            _check_string(key, f"{path} key")
            total += _walk(value, f"{path}.{key}")
        return total
    raise EgressError("not_json", f"{path} has unsupported type {type(node).__name__}")


def _check_string(value: str, path: str) -> None:
    if len(value) > MAX_STRING_CHARS:
        raise EgressError("long_string", f"{path} is {len(value)} chars > {MAX_STRING_CHARS}")
    if len(value) >= _SHORTEST_BLOB and (_HEX_BLOB.search(value) or _BASE64_BLOB.search(value)):
        raise EgressError("encoded_blob", f"{path} looks like hex/base64 encoded data")


def _without_input(exc: ValueError) -> str:
    """A parse error in one line, naming fields but not quoting the payload: pydantic's own text
    repeats (part of) the input, and a stored row that fails is not trusted enough to quote."""
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_input=False, include_url=False)
        first = errors[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        return f"{len(errors)} error(s), first: {where}: {first['msg']}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
