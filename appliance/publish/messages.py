"""The only things the appliance can publish: four typed, anonymized message kinds.

Every payload is one of these classes serialised to JSON. They are deliberately narrow: numbers,
short names and a few enums. There is no field that can hold bytes, an image, a list of boxes or
free-form data, and unknown fields are rejected (``extra="forbid"``), so a change that tries to put
more on the wire has to change this file (and the schemas in ``docs/schemas/``) first.

The pipeline builds a message from its *content* fields only. The :class:`Envelope` (``device_id``,
``boot_id``, ``seq``, ``sent_at``, ``clock_synced``) is stamped by the publisher when the message
enters the outbox, which makes the kind's wire type (:data:`WIRE_TYPES`)::

    CountsMessage(window_start=..., window_end=..., frames_analyzed=..., total=CountStats(...))

Wire format: JSON, all timestamps ISO-8601 UTC with a ``Z`` suffix and millisecond precision,
optional fields present as ``null`` rather than omitted (so every key in the schema is always there).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Literal, Optional, Type, Union

from pydantic import (
    AfterValidator,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from typing_extensions import Annotated

import appliance
from appliance.names import NAME_PATTERN
from appliance.vocabulary import (
    AnomalyState,
    AnomalyType,
    CameraState,
    Count,
    CountStats,
    HealthState,
    Heatmap,
    LineCounts,
    ModelInfo,
    Name,
    NonNegative,
    PrivacyApplied,
    Severity,
    Sha256,
    Stage,
    Value,
    ZoneStats,
)

SCHEMA_VERSION: Literal[1] = 1


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _require_aware_utc(value: datetime) -> datetime:
    # A naive datetime is ambiguous (local time of a device in an unknown zone): refuse it rather
    # than guess. Aware values are normalised to UTC so the wire format is always ``...Z``.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must be timezone-aware (use datetime.now(timezone.utc))")
    # Truncated to milliseconds, the wire precision, so a message equals its own parsed payload.
    return value.astimezone(timezone.utc).replace(microsecond=value.microsecond // 1000 * 1000)


def _iso_utc(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


UtcDatetime = Annotated[
    datetime,
    AfterValidator(_require_aware_utc),
    PlainSerializer(_iso_utc, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": r"Z$"}),
]




# --------------------------------------------------------------------------- health parts


class LatencyStats(Value):
    p50: NonNegative = Field(description="median latency of the stage over the interval (ms)")
    p95: NonNegative = Field(description="95th percentile latency of the stage (ms)")


class FrameCounters(Value):
    captured: Count = Field(0, description="frames read from the camera since start")
    analyzed: Count = Field(0, description="frames anonymized and analysed since start")
    dropped: Dict[Name, Count] = Field(default_factory=dict, description="reason -> frames dropped")


class CameraHealth(Value):
    state: CameraState = Field(description="ok, lost or reconnecting")
    reconnects: Count = Field(0, description="camera reconnections since start")
    decode_errors: Count = Field(0, description="frames of a file source its decoder could not decode (corrupt media)")


class OutboxHealth(Value):
    """Store-and-forward state. Filled in by the publisher, not the pipeline."""

    pending: Count = Field(0, description="messages waiting on the device for the broker")
    dropped: Dict[Name, Count] = Field(default_factory=dict, description="kind -> messages dropped (cap/age)")
    rejected: Count = Field(
        0, description="broker refusals (e.g. ACL) since start; refused messages are kept and retried"
    )
    egress_refused: Count = Field(0, description="messages the egress policy refused to publish")
    oldest_age_s: Optional[NonNegative] = Field(None, description="age of the oldest waiting message (s)")
    write_errors: Count = Field(
        0, description="outbox writes that failed since start (disk full, locked); held in memory meanwhile"
    )
    lost: Count = Field(
        0, description="messages lost: the disk refused them and the memory queue overflowed; their seqs are gaps"
    )
    quarantined: Count = Field(
        0,
        description="stored messages set aside undelivered: damaged on disk (checksum, encoding) or refused by the "
        "egress re-check; their seqs are gaps",
    )
    files_set_aside: Count = Field(
        0,
        description="outbox files SQLite could not use, renamed *.damaged-<time> and replaced by a fresh one; "
        "their undelivered messages are gaps in seq",
    )


class LostChain(Value):
    """The head of an audit chain the device lost (as it last knew it), named by the reset that replaced it."""

    length: Optional[Count] = Field(None, description="entries the lost chain had; null: the device did not know")
    sha256: Optional[Sha256] = Field(None, description="hash of the lost chain's last entry; null: unknown")


class AuditHead(Value):
    """The head of the device's hash-chained audit log: an anchor kept outside the device."""

    length: Count = Field(description="entries in the log's current chain (the last entry's seq)")
    sha256: Sha256 = Field(description="hash of the last entry (which covers every entry before it)")
    sig: Optional[str] = Field(
        None,
        max_length=514,
        pattern=r"^[A-Za-z0-9+/]+={0,2}$",
        description="base64 signature by the device key over the UTF-8 text 'crowd-appliance-audit-head/1 "
        "{device_id} {length} {sha256}'; null without a device key (docs/control-room.md)",
    )
    problem: Optional[str] = Field(
        None,
        max_length=200,
        description="why the log cannot be written or read now (entries are held in memory and retried; "
        "counting and alerts go on); null when fine",
    )
    unacknowledged: Count = Field(
        0,
        description="recovered (torn end cut) and reset (log lost) entries not yet acknowledged with "
        "'appliance audit ack' on the device; health is degraded while above 0",
    )
    reset: Optional[LostChain] = Field(
        None,
        description="present when the current chain began with a reset entry: the head of the chain lost. "
        "A length going down without it: a log cut behind the device's back",
    )


class LinkHealth(Value):
    """The broker link as the publisher sees it. Filled in by the publisher, not the pipeline."""

    connected: bool = Field(description="true: the broker connection is up")
    last_error: Optional[str] = Field(None, max_length=200, description="the last connection or delivery error")
    seconds_since_puback: Optional[NonNegative] = Field(
        None, description="since the broker last acknowledged a message; null before the first"
    )
    broker: Optional[str] = Field(None, max_length=300, description="the broker of mqtt.url in use, or tried next")


# --------------------------------------------------------------------------- messages


class Envelope(Value):
    """What the publisher stamps on every message when it enters the outbox.

    ``seq`` is one counter per device across all kinds, persisted in the outbox, so a subscriber to
    ``{prefix}/{device_id}/#`` can detect gaps and drop QoS 1 redeliveries by
    ``(device_id, boot_id, seq)``.
    """

    v: Literal[1] = Field(SCHEMA_VERSION, description="payload format version")
    device_id: str = Field(pattern=NAME_PATTERN, description="the device that sent the message")
    boot_id: int = Field(ge=1, description="incremented every time the appliance starts")
    seq: int = Field(ge=1, description="per-device sequence number, monotonic across restarts")
    sent_at: UtcDatetime = Field(description="when the device queued this message")
    clock_synced: bool = Field(
        True,
        description="false when the device's wall clock had not been set yet (a board without a real-time "
        "clock before NTP): sent_at and the other timestamps in this message are then not real time",
    )


class Message(Value):
    """The content of one kind of message, as the pipeline builds it. Content classes below add
    their fields; :meth:`stamp` makes the wire form (the content and its :class:`Envelope`).

    Per-kind policy is declared here, as class attributes, not as string keys elsewhere:
    ``retain`` (the broker keeps the last one), ``drop_rank`` (the outbox cap drops lower ranks
    first; None: never dropped), ``age_limited`` (dropped past ``outbox.max_age_s``) and
    ``expires`` (carries the MQTT 5 message expiry ``mqtt.counts_expiry_s``).
    """

    kind: ClassVar[str]
    retain: ClassVar[bool] = False
    drop_rank: ClassVar[Optional[int]] = None
    age_limited: ClassVar[bool] = False
    expires: ClassVar[bool] = False

    def stamp(
        self,
        *,
        device_id: str,
        boot_id: int,
        seq: int,
        sent_at: Optional[datetime] = None,
        clock_synced: bool = True,
    ) -> Stamped:
        """The wire form: a validated instance of this kind's stamped type (``model_copy`` would skip
        validation). It is still an instance of this class, and an :class:`Envelope`."""
        data = self.model_dump()
        data.update(device_id=device_id, boot_id=boot_id, seq=seq, sent_at=sent_at or utcnow())
        data["clock_synced"] = clock_synced
        return wire_type_of(type(self)).model_validate(data)

    def to_json_bytes(self) -> bytes:
        # by_alias: LineCounts.in_ is "in" on the wire. Compact separators: bytes matter on 4G.
        return self.model_dump_json(by_alias=True).encode("utf-8")


class Stamped(Message, Envelope):
    """A message on the wire: its content and its envelope, one flat JSON object (envelope fields
    first). Each kind has its own subclass (:data:`WIRE_TYPES`); nothing else is published."""


class StatusMessage(Message):
    """Birth (``online``, retained, on every connect) and death (``offline``: clean stop or last will)."""

    kind: ClassVar[str] = "status"
    retain: ClassVar[bool] = True  # never dropped (drop_rank None), never aged out

    state: Literal["online", "offline"] = Field("online", description="online: running; offline: stopped or lost")
    software_version: str = Field(
        appliance.__version__, pattern=r"^[0-9A-Za-z.+_-]{1,32}$", description="the appliance software version"
    )
    models: List[ModelInfo] = Field(default_factory=list, max_length=8, description="the models this boot runs")
    config_hash: str = Field(pattern=r"^[0-9a-f]{8,64}$", description="hash of the running configuration")
    board: Name = Field(description="the board profile in use")
    started_at: UtcDatetime = Field(description="when this boot started")
    notice_hash: Optional[Sha256] = Field(
        None, description="sha256 of the retained notice payload this boot publishes; a change is visible here"
    )
    audit: Optional[AuditHead] = Field(None, description="the device's audit log when this boot started")

    def as_offline(self) -> StatusMessage:
        """The death message matching this birth: same content, ``offline``, envelope not yet stamped."""
        data = self.model_dump(exclude=set(Envelope.model_fields))
        data["state"] = "offline"
        return StatusMessage.model_validate(data)


MAX_ZONES = 32
MAX_LINES = 32


class CountsMessage(Message):
    """Aggregated counts over one window ``[window_start, window_end)``."""

    kind: ClassVar[str] = "counts"
    drop_rank: ClassVar[Optional[int]] = 1
    age_limited: ClassVar[bool] = True
    expires: ClassVar[bool] = True

    window_start: UtcDatetime = Field(description="start of the counting window (inclusive)")
    window_end: UtcDatetime = Field(description="end of the counting window (exclusive)")
    frames_analyzed: Count = Field(description="frames analysed in the window")
    frames_dropped: Count = Field(0, description="frames dropped in the window (too slow, anonymization failed)")
    total: Optional[CountStats] = Field(None, description="null when no frame was analysed in the window")
    zones: Dict[Name, ZoneStats] = Field(
        default_factory=dict, max_length=MAX_ZONES, description="figures per configured zone, by zone name"
    )
    lines: Dict[Name, LineCounts] = Field(
        default_factory=dict, max_length=MAX_LINES, description="crossings per configured line, by line name"
    )
    heatmap: Optional[Heatmap] = Field(None, description="coarse occupancy grid; null when not enabled")
    camera_ok: bool = Field(True, description="false: the camera was lost or frozen during the window")
    privacy: PrivacyApplied = Field(
        PrivacyApplied(min_count=0), description="the small-count protection applied to this window's figures"
    )

    @model_validator(mode="after")
    def _window(self) -> CountsMessage:
        if self.window_end < self.window_start:
            raise ValueError("window_end is before window_start")
        return self


class AnomalyMessage(Message):
    """An anomaly flag being raised or cleared. ``since`` is when the condition started."""

    kind: ClassVar[str] = "anomalies"
    drop_rank: ClassVar[Optional[int]] = 2  # only when nothing else is left; never by age

    type: AnomalyType = Field(description="which flag: overcrowding, rapid_change, abnormal_motion, counterflow, "
                              "camera_tamper")
    event_id: str = Field(
        pattern=r"^[0-9a-f]{32}$", description="the same on a raise and its clear, so they can be paired"
    )
    zone: Optional[Name] = Field(None, description="the zone it concerns; null: the whole view")
    state: AnomalyState = Field(description="raised or cleared")
    value: float = Field(description="the measured value that raised or cleared the flag")
    threshold: Optional[float] = Field(None, description="the configured threshold it was compared with")
    baseline: Optional[float] = Field(None, description="the learned normal level, for flags that learn one")
    since: UtcDatetime = Field(description="when the condition started")
    severity: Severity = Field("warning", description="info, warning or critical")
    reason: str = Field("", max_length=160, description="short human-readable explanation")

    @field_validator("reason")
    @classmethod
    def _one_line(cls, v: str) -> str:
        if any(c in v for c in "\r\n\t"):
            raise ValueError("reason must be one line")
        return v


MAX_ACTIVE_LISTED = 32  # flags one state lists (the egress policy's array bound); more are counted


class ActiveAnomaly(Value):
    """One anomaly flag raised and not cleared: its raise, as the ``anomalies`` message carried it."""

    type: AnomalyType = Field(description="what was raised")
    event_id: str = Field(pattern=r"^[0-9a-f]{32}$", description="the event_id of its raise (and of its clear)")
    zone: Optional[Name] = Field(None, description="the zone it concerns; null for a device-wide flag")
    since: UtcDatetime = Field(description="when the condition started")
    severity: Severity = Field("warning", description="severity of the raise")
    value: float = Field(description="the measured value that raised it (people, people/m², a ratio, ...)")
    threshold: Optional[float] = Field(None, description="the configured limit it crossed; null when none applies")
    baseline: Optional[float] = Field(None, description="the learned baseline it was compared with; null when none")
    reason: str = Field("", max_length=160, description="the raise's short human-readable explanation")


class AnomalyStateMessage(Message):
    """The anomaly flags active now on one device, retained: what a late subscriber needs.

    Sent after every raise and clear, and empty right after each birth (a new boot has nothing
    raised), so a restart clears the old boot's flags everywhere. A lower (boot_id, seq) is old news.
    """

    kind: ClassVar[str] = "anomaly_state"
    retain: ClassVar[bool] = True  # never dropped (drop_rank None), never aged out: it is the device's state

    active: List[ActiveAnomaly] = Field(default_factory=list, max_length=MAX_ACTIVE_LISTED,
                                        description="every flag raised and not cleared, oldest first")
    not_listed: Count = Field(0, description=f"active flags beyond the {MAX_ACTIVE_LISTED} listed (the newest ones)")


class HealthMessage(Message):
    kind: ClassVar[str] = "health"
    drop_rank: ClassVar[Optional[int]] = 0  # the first to go: the next health message reports the drops
    age_limited: ClassVar[bool] = True

    state: HealthState = Field(description="ok, degraded or failed")
    fps: NonNegative = Field(description="frames analysed per second over the interval")
    latency_ms: Dict[Stage, LatencyStats] = Field(default_factory=dict, description="latency per pipeline stage")
    frames: FrameCounters = Field(default_factory=FrameCounters, description="frame counters since start")
    camera: CameraHealth = Field(description="the camera as the device sees it")
    models: List[ModelInfo] = Field(default_factory=list, max_length=8, description="the models running")
    outbox: Optional[OutboxHealth] = Field(None, description="filled in by the publisher")
    audit: Optional[AuditHead] = Field(
        None, description="the audit log's head now: keep it, so a later rewrite or truncation on the device shows"
    )
    link: Optional[LinkHealth] = Field(None, description="broker link; filled in by the publisher")
    cert_days_left: Optional[int] = Field(
        None,
        description="whole days until the device's TLS client certificate (its broker identity) expires, negative "
        "once expired; null without a client certificate. Renew it well before 0: appliance provision rotate",
    )
    uptime_s: NonNegative = Field(description="seconds since the appliance started")
    clock_step_s: Optional[float] = Field(
        None,
        description="wall clock step in s (negative: back) since the last health message; windows and durations "
        "are unaffected, labels follow the new time. Null: none",
    )


MESSAGE_TYPES: Dict[str, Type[Message]] = {
    cls.kind: cls for cls in (StatusMessage, CountsMessage, AnomalyMessage, HealthMessage, AnomalyStateMessage)
}


# The wire types: envelope fields first (reversed MRO), then the content's, as on the wire.


class StampedStatusMessage(StatusMessage, Stamped):
    __doc__ = StatusMessage.__doc__


class StampedCountsMessage(CountsMessage, Stamped):
    __doc__ = CountsMessage.__doc__


class StampedAnomalyMessage(AnomalyMessage, Stamped):
    __doc__ = AnomalyMessage.__doc__


class StampedHealthMessage(HealthMessage, Stamped):
    __doc__ = HealthMessage.__doc__


class StampedAnomalyStateMessage(AnomalyStateMessage, Stamped):
    __doc__ = AnomalyStateMessage.__doc__


WIRE_TYPES: Dict[str, Type[Stamped]] = {
    cls.kind: cls
    for cls in (
        StampedStatusMessage, StampedCountsMessage, StampedAnomalyMessage, StampedHealthMessage,
        StampedAnomalyStateMessage,
    )
}  # fmt: skip
"""kind -> the stamped wire type: what is published and what a subscriber parses."""


def _wire_type(cls: Type[Message]) -> Type[Stamped]:
    return type(f"Stamped{cls.__name__}", (cls, Stamped), {"__module__": __name__, "__doc__": cls.__doc__})


def wire_type_of(cls: Type[Message]) -> Type[Stamped]:
    """The stamped type for a content class. A class that is not one of the kinds above gets one
    too, so that the egress policy, not a stamping error, is what refuses it."""
    if issubclass(cls, Stamped):
        return cls
    registered = MESSAGE_TYPES.get(cls.kind)
    return WIRE_TYPES[cls.kind] if registered is cls else _wire_type(cls)


def parse_payload(kind: str, payload: bytes) -> Stamped:
    """Rebuild a message from its wire form (used to re-check what comes out of the outbox)."""
    return WIRE_TYPES[kind].model_validate_json(payload)


# --------------------------------------------------------------------------- JSON Schemas


def message_schema(cls: Type[Message]) -> Dict[str, Any]:
    """JSON Schema of a published payload of this kind: its stamped wire type's."""
    schema = WIRE_TYPES[cls.kind].model_json_schema(mode="serialization", by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://crowd-appliance.invalid/schemas/{cls.kind}.json"
    schema["title"] = f"crowd-appliance {cls.kind} message v{SCHEMA_VERSION}"
    return schema


def export_schemas(directory: Union[str, Path] = "docs/schemas") -> List[Path]:
    """Write ``{kind}.json`` for every message kind; returns the paths written.

    Regenerate the committed copies with
    ``python -c "from appliance.publish import export_schemas; export_schemas('docs/schemas')"``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, cls in MESSAGE_TYPES.items():
        path = directory / f"{kind}.json"
        path.write_text(json.dumps(message_schema(cls), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written

