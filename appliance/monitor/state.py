"""What the control room knows about each device, from the messages it has received. Pure, no I/O.

Feed every parsed message with :meth:`FleetState.observe` (in arrival order) and read
:meth:`FleetState.snapshot`. The ``seq`` bookkeeping follows docs/control-room.md:

* ``seq`` is one counter per device, monotonic across boots; ``(device_id, boot_id, seq)`` is unique.
* Every boot reserves ``n`` (its birth) and ``n + 1`` (its death, the last will): ``n + 1`` is never
  a gap, whether or not the ``offline`` status has arrived yet.
* The birth is republished with the same seq on every reconnect: counted as a reconnect, not a
  duplicate.
* A seq above ``highest + 1`` opens a gap; the seqs in between are *missing* until they arrive,
  which makes them *late* deliveries (a backlog resent after a reconnect). A seq seen before is a
  *duplicate* (QoS 1 redelivery).
* A ``boot_id`` lower than the last one seen means the device lost its outbox (both counters start
  again): its seq history is reset.
* Retained messages (the broker's stored ``status``) are old news: they give the device's state
  and reserve its death seq, but do not start the seq baseline, or a monitor started mid-stream
  would report everything between the stored birth and the first live message as a gap.

Anomaly flags: the retained ``anomaly_state`` (every flag active now) replaces what the monitor
holds for the device, so flags raised before the monitor started are shown; ``anomalies`` events
newer than the last state update it in between (and are all there is from older devices). States
and events of an older boot than the device's newest birth are old news.

The retained public notice has no envelope and no seq: :meth:`FleetState.observe_notice` keeps who
runs the device, why, and the sha256 of the payload, which the birth's ``notice_hash`` must name.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Deque, Dict, List, Optional, Tuple

from appliance.monitor.audit_heads import AuditHeadTracker, AuditSeen
from appliance.monitor.seq_ranges import MissingRanges
from appliance.publish.messages import (
    Stamped,
    StampedAnomalyMessage,
    StampedAnomalyStateMessage,
    StampedCountsMessage,
    StampedHealthMessage,
    StampedStatusMessage,
)
from appliance.transparency.notice import Notice

# Ranges of missing seqs remembered per device: the memory per device is bounded whatever seq a
# message carries (a forged 10^12 is one range). A device with more separate gaps open at once
# still shows the right gap count; the oldest gaps' missing seqs are forgotten.
MAX_MISSING_RANGES = 1_000
# Births (and their reserved death seqs) remembered per device: a reconnect republishes the
# current birth, never one from many boots ago.
MAX_BIRTHS = 64


def _iso(t: datetime) -> str:
    # The wire format of the payloads: UTC, millisecond precision, "Z".
    return t.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class FlagSeen:
    """An anomaly flag the monitor holds as raised (from an event or the retained state)."""

    type: str
    zone: Optional[str]
    since: datetime
    severity: str
    value: float
    boot_id: int
    event_id: Optional[str] = None
    threshold: Optional[float] = None

    def raised_for_s(self, now: datetime) -> float:
        return max(0.0, (now - self.since).total_seconds())


@dataclass(frozen=True)
class SeqStats:
    highest: Optional[int]
    gaps: int  # times a seq jumped past highest + 1 (reserved death seqs excluded)
    missing: int  # seqs skipped and not (yet) received
    late: int  # seqs that arrived after a higher one (filled a gap)
    duplicates: int  # (boot_id, seq) received again
    reconnects: int  # births received again with the same seq
    resets: int  # boot_id went backwards: outbox lost, counters restarted


@dataclass(frozen=True)
class NoticeSeen:
    """The device's retained public notice as last received (schema: docs/schemas/notice.json)."""

    sha256: str  # of the payload bytes as received: what the birth's notice_hash names
    operator: Optional[str]  # controller.name; None: not configured on the device
    purpose: str  # purpose.code
    received_at: datetime


@dataclass(frozen=True)
class DeviceSnapshot:
    """One device as the control room sees it at ``now``."""

    device_id: str
    online: Optional[bool]  # None: no status seen yet
    status_since: Optional[datetime]
    boot_id: Optional[int]
    software_version: Optional[str]
    board: Optional[str]
    last_seen: Optional[datetime]
    window_end: Optional[datetime]
    total: Optional[int]  # people in view at the end of the last counts window
    zones: Dict[str, Optional[int]]  # zone -> people at the end of the last counts window (None: suppressed)
    camera_ok: Optional[bool]
    health: Optional[str]
    fps: Optional[float]
    anomalies: List[FlagSeen]
    seq: SeqStats
    notice: Optional[NoticeSeen] = None
    # False: the birth names another notice than the one received (for an instant after a restart
    # with a new config, until the new notice arrives); None: one of the two is not known.
    notice_matches_birth: Optional[bool] = None
    audit: Optional[AuditSeen] = None  # the device's audit head, and flags when it went backwards

    def to_dict(self, now: datetime) -> Dict[str, object]:
        """The JSON-lines form (``appliance monitor --json``)."""

        def iso(t: Optional[datetime]) -> Optional[str]:
            return None if t is None else _iso(t)

        return {
            "device_id": self.device_id,
            "online": self.online,
            "status_since": iso(self.status_since),
            "boot_id": self.boot_id,
            "software_version": self.software_version,
            "board": self.board,
            "last_seen": iso(self.last_seen),
            "window_end": iso(self.window_end),
            "total": self.total,
            "zones": dict(self.zones),
            "camera_ok": self.camera_ok,
            "health": self.health,
            "fps": self.fps,
            "anomalies": [
                {
                    "type": a.type,
                    "zone": a.zone,
                    "since": iso(a.since),
                    "raised_for_s": round(a.raised_for_s(now), 1),
                    "severity": a.severity,
                    "value": a.value,
                    "threshold": a.threshold,
                    "event_id": a.event_id,
                }
                for a in self.anomalies
            ],
            "seq": {
                "highest": self.seq.highest,
                "gaps": self.seq.gaps,
                "missing": self.seq.missing,
                "late": self.seq.late,
                "duplicates": self.seq.duplicates,
                "reconnects": self.seq.reconnects,
                "resets": self.seq.resets,
            },
            "notice": None
            if self.notice is None
            else {
                "sha256": self.notice.sha256,
                "operator": self.notice.operator,
                "purpose": self.notice.purpose,
                "matches_birth": self.notice_matches_birth,
            },
            "audit": None if self.audit is None else self.audit.to_dict(),
        }


@dataclass
class _SeqTracker:
    # No set of every seq seen: seq is unique per device and monotonic, so a seq at or below
    # ``highest`` that is neither missing nor a reserved death seq has been seen. Memory stays
    # bounded on a monitor left running for months, and whatever seq a message claims.
    highest: Optional[int] = None
    last_boot: Optional[int] = None
    missing: MissingRanges = field(default_factory=lambda: MissingRanges(MAX_MISSING_RANGES))
    # Death seqs and (boot_id, seq) of the births seen, newest last.
    reserved: Deque[int] = field(default_factory=lambda: deque(maxlen=MAX_BIRTHS))
    births: Deque[Tuple[int, int]] = field(default_factory=lambda: deque(maxlen=MAX_BIRTHS))
    gaps: int = 0
    late: int = 0
    duplicates: int = 0
    reconnects: int = 0
    resets: int = 0

    def observe(self, msg: Stamped, retained: bool) -> None:
        self.last_boot = max(self.last_boot or 0, msg.boot_id)
        if isinstance(msg, StampedStatusMessage) and msg.state == "online":
            if msg.seq + 1 not in self.reserved:
                self.reserved.append(msg.seq + 1)
            self.missing.discard(msg.seq + 1)
            birth = (msg.boot_id, msg.seq)
            if birth in self.births:
                if not retained:
                    self.reconnects += 1
                return
            self.births.append(birth)
        if self.highest is None:
            if not retained:
                self.highest = msg.seq
            return
        if msg.seq > self.highest:
            if self.missing.add_above(self.highest + 1, msg.seq - 1, except_=self.reserved):
                self.gaps += 1
            self.highest = msg.seq
        elif self.missing.discard(msg.seq):
            self.late += 1
        elif msg.seq not in self.reserved and not retained:
            # Retained copies are the broker's stored message, not a redelivery.
            self.duplicates += 1

    def stats(self) -> SeqStats:
        return SeqStats(
            highest=self.highest,
            gaps=self.gaps,
            missing=len(self.missing),
            late=self.late,
            duplicates=self.duplicates,
            reconnects=self.reconnects,
            resets=self.resets,
        )


@dataclass
class _Device:
    device_id: str
    seq: _SeqTracker = field(default_factory=_SeqTracker)
    status: Optional[StampedStatusMessage] = None
    counts: Optional[StampedCountsMessage] = None
    health: Optional[StampedHealthMessage] = None
    last_seen: Optional[datetime] = None
    anomalies: Dict[Tuple[str, Optional[str]], FlagSeen] = field(default_factory=dict)
    state_at: Tuple[int, int] = (0, 0)  # (boot_id, seq) of the anomaly state the flags were last set from
    notice: Optional[NoticeSeen] = None
    audit: AuditHeadTracker = field(default_factory=AuditHeadTracker)


def _newest_birth(dev: _Device) -> int:
    status = dev.status
    return 0 if status is None or status.state != "online" else status.boot_id


class FleetState:
    """Every device seen, keyed by ``device_id``. Not thread-safe: one consumer thread feeds it."""

    def __init__(self) -> None:
        self._devices: Dict[str, _Device] = {}

    def observe(self, msg: Stamped, *, retained: bool, received_at: datetime) -> str:
        """Take one received message into account; returns its device id."""
        dev = self._devices.setdefault(msg.device_id, _Device(msg.device_id))
        if dev.seq.last_boot is not None and msg.boot_id < dev.seq.last_boot:
            # The device lost its outbox (SD card replaced): both counters restarted. Start afresh.
            # The notice is not part of the seq history: it stays.
            dev = self._devices[msg.device_id] = _Device(
                msg.device_id, _SeqTracker(resets=dev.seq.resets + 1), notice=dev.notice, audit=dev.audit
            )
            dev.audit.forget_order()  # the audit head is evidence: it outlives an outbox loss
        dev.seq.observe(msg, retained)
        head = getattr(msg, "audit", None)
        if head is not None:
            dev.audit.observe(head, msg.boot_id, msg.seq)
        if not retained:
            dev.last_seen = received_at
        if isinstance(msg, StampedStatusMessage):
            # A late-delivered status of an older boot must not overwrite the current one.
            if dev.status is None or (msg.boot_id, msg.seq) >= (dev.status.boot_id, dev.status.seq):
                dev.status = msg
            if msg.state == "online":
                # A new boot starts with no flag raised (anomaly state lives in memory on the device),
                # and the old boot can no longer clear its own.
                dev.anomalies = {k: a for k, a in dev.anomalies.items() if a.boot_id >= msg.boot_id}
        elif isinstance(msg, StampedCountsMessage):
            if dev.counts is None or msg.window_end >= dev.counts.window_end:
                dev.counts = msg
        elif isinstance(msg, StampedHealthMessage):
            if dev.health is None or (msg.boot_id, msg.seq) >= (dev.health.boot_id, dev.health.seq):
                dev.health = msg
        elif isinstance(msg, StampedAnomalyStateMessage):
            if (msg.boot_id, msg.seq) > dev.state_at and msg.boot_id >= _newest_birth(dev):
                dev.state_at = (msg.boot_id, msg.seq)
                dev.anomalies = {
                    ("event_id", a.event_id): FlagSeen(
                        a.type, a.zone, a.since, a.severity, a.value, msg.boot_id, a.event_id, a.threshold
                    )
                    for a in msg.active
                }
        elif isinstance(msg, StampedAnomalyMessage) and (msg.boot_id, msg.seq) > dev.state_at:
            # Paired by event_id. An event older than the state already applied is in that state.
            key: Tuple[str, Optional[str]] = ("event_id", msg.event_id)
            if msg.state == "raised":
                dev.anomalies[key] = FlagSeen(
                    msg.type, msg.zone, msg.since, msg.severity, msg.value, msg.boot_id, msg.event_id, msg.threshold
                )
            else:
                dev.anomalies.pop(key, None)
        return msg.device_id

    def observe_notice(self, notice: Notice, *, sha256: str, received_at: datetime) -> str:
        """Take a received notice (``sha256``: of its payload bytes) into account; returns its device id."""
        dev = self._devices.setdefault(notice.device_id, _Device(notice.device_id))
        dev.notice = NoticeSeen(sha256, notice.controller.name, notice.purpose.code, received_at)
        return notice.device_id

    def notice_of(self, device_id: str) -> Optional[NoticeSeen]:
        dev = self._devices.get(device_id)
        return None if dev is None else dev.notice

    def device_ids(self) -> List[str]:
        return sorted(self._devices)

    def snapshot(self, device_id: str) -> DeviceSnapshot:
        dev = self._devices[device_id]
        status, counts, health = dev.status, dev.counts, dev.health
        named = None if status is None else status.notice_hash  # what the birth says the notice is
        matches = None if dev.notice is None or named is None else dev.notice.sha256 == named
        return DeviceSnapshot(
            device_id=device_id,
            online=None if status is None else status.state == "online",
            status_since=None if status is None else status.sent_at,
            boot_id=dev.seq.last_boot,
            software_version=None if status is None else status.software_version,
            board=None if status is None else status.board,
            last_seen=dev.last_seen,
            window_end=None if counts is None else counts.window_end,
            total=None if counts is None or counts.total is None else counts.total.last,
            zones={} if counts is None else {name: z.last for name, z in counts.zones.items()},
            camera_ok=None if counts is None else counts.camera_ok,
            health=None if health is None else health.state,
            fps=None if health is None else health.fps,
            anomalies=sorted(dev.anomalies.values(), key=lambda a: (a.since, a.type, a.zone or "")),
            seq=dev.seq.stats(),
            notice=dev.notice,
            notice_matches_birth=matches,
            audit=dev.audit.seen(),
        )

    def snapshots(self) -> List[DeviceSnapshot]:
        return [self.snapshot(d) for d in self.device_ids()]
