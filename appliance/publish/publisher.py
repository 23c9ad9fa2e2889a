"""The publish stage as the pipeline sees it. Usage, exactly::

    from appliance.publish import make_publisher, CountsMessage, ModelInfo

    pub = make_publisher(cfg, software_models=[ModelInfo(name="centerface-int8", sha256="...")])
    pub.start()                       # or pub.start(birth) with a StatusMessage you built
    try:
        pub.connect(timeout_s=10)     # optional: raises BrokerRejected / BrokerUnreachable (see below)
    except BrokerUnreachable as exc:
        log.warning("%s; buffering to the outbox", exc)   # keep running: store-and-forward
    ...
    pub.publish(CountsMessage(window_start=..., window_end=..., frames_analyzed=..., total=...))
    pub.publish(AnomalyMessage(...)); pub.publish(HealthMessage(...))   # content fields only
    ...
    pub.close(clean=True)             # publishes the retained 'offline' status and disconnects

``publish`` never blocks on the network: it stamps the envelope (``device_id``, ``boot_id``,
``seq``, ``sent_at``), runs the egress check (raising :class:`EgressError` on a violation), and
commits the message to the outbox. A delivery thread drains the outbox to the broker and deletes
each message after its PUBACK. ``HealthMessage.outbox`` is filled in here when left as None.

With no broker configured (``mqtt.url`` is None) :class:`StdoutPublisher` prints each message as
one JSON line ``{"topic": ..., "payload": {...}}`` instead, through the same egress check.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Dict, Iterable, List, Optional, Protocol, Sequence, TextIO

from paho.mqtt.enums import MQTTProtocolVersion

from appliance.config.loader import config_hash
from appliance.config.schema import ApplianceConfig
from appliance.errors import ApplianceError, BrokerError, InputError
from appliance.publish.egress import ApprovedPayload, EgressError, EgressPolicy
from appliance.publish.messages import (
    HealthMessage,
    Message,
    ModelInfo,
    OutboxHealth,
    StatusMessage,
    utcnow,
)
from appliance.publish.mqtt_client import BrokerUnreachable, MqttLink
from appliance.publish.outbox import Outbox, OutboxStats, Sealed

log = logging.getLogger(__name__)

# Messages handed to paho and not yet acknowledged. Bounded so that a long backlog is streamed from
# SQLite rather than copied into memory.
DELIVERY_WINDOW = 64
# Acknowledged messages are deleted in batches (one transaction each): bounded SD-card writes.
ACK_BATCH = 256
ACK_FLUSH_S = 0.5


@dataclass(frozen=True)
class PublisherStats:
    """State of the publish stage, for the health message and for the CLI."""

    connected: bool
    last_error: Optional[str]
    pending: int = 0
    pending_bytes: int = 0
    oldest_age_s: Optional[float] = None
    dropped: Dict[str, int] = field(default_factory=dict)
    rejected: int = 0
    egress_refused: int = 0

    def to_health(self) -> OutboxHealth:
        return OutboxHealth(
            pending=self.pending,
            dropped=dict(self.dropped),
            rejected=self.rejected,
            egress_refused=self.egress_refused,
            oldest_age_s=self.oldest_age_s,
        )


class Publisher(Protocol):
    def start(self, birth: Optional[StatusMessage] = None) -> None: ...

    def connect(self, timeout_s: float) -> None: ...

    def publish(self, msg: Message) -> None: ...

    def stats(self) -> PublisherStats: ...

    def close(self, clean: bool = True) -> None: ...


def make_birth(
    cfg: ApplianceConfig, models: Iterable[ModelInfo] = (), started_at: Optional[datetime] = None
) -> StatusMessage:
    """The ``online`` status for this configuration (envelope left for the publisher to stamp)."""
    return StatusMessage(
        state="online",
        models=list(models),
        config_hash=config_hash(cfg),
        board=cfg.profile.name,
        started_at=started_at or utcnow(),
    )


class _BasePublisher:
    """Envelope stamping and the egress policy, shared by both implementations."""

    def __init__(self, cfg: ApplianceConfig, software_models: Sequence[ModelInfo] = ()) -> None:
        self.cfg = cfg
        self.device_id = cfg.device_id
        self.software_models = list(software_models)
        self.policy = EgressPolicy(
            topic_prefix=cfg.mqtt.topic_prefix,
            device_id=cfg.device_id,
            max_payload_bytes=cfg.publish.max_payload_bytes,
        )
        self.boot_id = 0
        self._birth: Optional[StatusMessage] = None
        self._death: Optional[StatusMessage] = None
        self._closed = False

    def _stamp(self, msg: Message, seq: int, sent_at: Optional[datetime] = None) -> Message:
        return msg.stamp(device_id=self.device_id, boot_id=self.boot_id, seq=seq, sent_at=sent_at)

    def _prepare(self, msg: Message) -> Message:
        if self._birth is None:
            raise RuntimeError("publish() before start()")
        if self._closed:
            raise RuntimeError("publish() after close()")
        if isinstance(msg, StatusMessage):
            # Birth and death are the publisher's: one per boot, with seqs reserved at start.
            raise EgressError("status_managed", "status is published by start() and close() only")
        if isinstance(msg, HealthMessage) and msg.outbox is None:
            data = msg.model_dump()
            data["outbox"] = self.stats().to_health().model_dump()
            msg = HealthMessage.model_validate(data)
        return msg

    def _begin(self, birth: Optional[StatusMessage], first_seq: int) -> None:
        birth = birth or make_birth(self.cfg, self.software_models)
        if birth.state != "online":
            raise ValueError("the birth message must be 'online'")
        self._birth = self._stamp(birth, first_seq)  # type: ignore[assignment]
        self._death = self._stamp(birth.as_offline(), first_seq + 1)  # type: ignore[assignment]

    def stats(self) -> PublisherStats:  # pragma: no cover - overridden
        raise NotImplementedError


class StdoutPublisher(_BasePublisher):
    """No broker configured: one JSON line per message on ``stream`` (stdout by default).

    Seqs count from 1 for each run (nothing is stored); boot_id is always 1.
    """

    def __init__(
        self, cfg: ApplianceConfig, software_models: Sequence[ModelInfo] = (), stream: Optional[TextIO] = None
    ) -> None:
        super().__init__(cfg, software_models)
        self.stream = stream if stream is not None else sys.stdout
        self._seq = 0
        self._lock = threading.Lock()

    def start(self, birth: Optional[StatusMessage] = None) -> None:
        self.boot_id = 1
        self._seq = 2  # 1: birth, 2: death
        self._begin(birth, 1)
        assert self._birth is not None
        self._emit(self.policy.approve(self._birth))

    def connect(self, timeout_s: float) -> None:
        """Nothing to connect to."""

    def publish(self, msg: Message) -> None:
        msg = self._prepare(msg)
        with self._lock:
            approved = self.policy.approve(self._stamp(msg, self._seq + 1))
            self._seq += 1
            self._emit(approved)

    def _emit(self, approved: ApprovedPayload) -> None:
        line = json.dumps({"topic": approved.topic, "payload": json.loads(approved.payload)}, separators=(",", ":"))
        self.stream.write(line + "\n")
        self.stream.flush()

    def stats(self) -> PublisherStats:
        return PublisherStats(connected=True, last_error=None, egress_refused=self.policy.refused_total)

    def close(self, clean: bool = True) -> None:
        if self._closed or self._death is None:
            self._closed = True
            return
        self._closed = True
        if clean:
            self._emit(self.policy.approve(self._stamp(self._death, self._death.seq, utcnow())))


class MqttPublisher(_BasePublisher):
    """Outbox -> MQTT. ``publish`` commits to SQLite; one delivery thread owns the MQTT link."""

    def __init__(
        self, cfg: ApplianceConfig, software_models: Sequence[ModelInfo] = (), outbox: Optional[Outbox] = None
    ) -> None:
        super().__init__(cfg, software_models)
        if outbox is None:
            try:
                outbox = Outbox(cfg.outbox.path, max_bytes=cfg.outbox.max_bytes, max_age_s=cfg.outbox.max_age_s)
            except (OSError, sqlite3.Error) as exc:
                raise InputError(f"cannot open the outbox: {exc}", path=cfg.outbox.path, field="outbox.path") from None
        self.outbox = outbox
        self.link = MqttLink(cfg.mqtt, client_id=cfg.mqtt.client_id or cfg.device_id, on_ack=self._on_ack)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._clean_stop = True
        self._thread: Optional[threading.Thread] = None
        self._state_lock = threading.Lock()
        self._connected_event = threading.Event()
        self._error_event = threading.Event()
        self._last_error: Optional[BrokerError] = None
        # Delivery-thread state (touched by that thread only).
        self._inflight: Dict[int, int] = {}  # mid -> seq (0: the status message)
        self._last_sent = 0
        self._acked: List[int] = []
        self._last_flush = time.monotonic()
        self._status_acked = threading.Event()

    # ------------------------------------------------------------------ pipeline side

    def start(self, birth: Optional[StatusMessage] = None) -> None:
        boot_id, first = self.outbox.start_boot(reserve=2)
        self.boot_id = boot_id
        self._begin(birth, first)
        assert self._birth is not None and self._death is not None
        approved = self.policy.approve(self._birth)
        # The latest status replaces any stale one (e.g. an 'offline' a clean stop could not send).
        self.outbox.put_status(approved.seq, approved.topic, approved.payload)
        self.link.set_will(self.policy.approve(self._death))
        self._thread = threading.Thread(target=self._run, name="mqtt-delivery", daemon=True)
        self._thread.start()

    def connect(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for the first connection.

        Raises :class:`BrokerRejected` as soon as the broker or TLS refuses us (it will not fix
        itself) and :class:`BrokerUnreachable` if no connection was made in time. Either way the
        publisher keeps running, buffering and retrying; the caller decides whether to exit.
        """
        deadline = time.monotonic() + timeout_s
        while not self._connected_event.is_set():
            err = self._last_error
            if err is not None and getattr(err, "fatal", False):
                raise err
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise err or BrokerUnreachable(f"{self.link.address}: not connected after {timeout_s:g} s")
            self._error_event.wait(min(remaining, 0.1))
            self._error_event.clear()

    def publish(self, msg: Message) -> None:
        msg = self._prepare(msg)

        def seal(seq: int) -> Sealed:
            approved = self.policy.approve(self._stamp(msg, seq))
            return Sealed(approved.kind, approved.topic, approved.payload)

        try:
            self.outbox.enqueue(seal)
        except sqlite3.Error as exc:
            raise ApplianceError(f"{self.outbox.path}: outbox write failed: {exc}") from None
        self._wake.set()

    def stats(self) -> PublisherStats:
        ob: OutboxStats = self.outbox.stats()
        err = self._last_error
        return PublisherStats(
            connected=self.link.connected,
            last_error=str(err) if err else None,
            pending=ob.pending,
            pending_bytes=ob.pending_bytes,
            oldest_age_s=ob.oldest_age_s,
            dropped=ob.dropped,
            rejected=ob.rejected,
            egress_refused=self.policy.refused_total,
        )

    def close(self, clean: bool = True) -> None:
        """Stop delivering. ``clean``: flush the backlog (up to ``publish.close_timeout_s``), publish
        ``offline`` and DISCONNECT. Not clean: drop the connection so the broker sends the will."""
        if self._closed:
            return
        self._closed = True
        self._clean_stop = clean
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.cfg.publish.close_timeout_s + self.cfg.mqtt.connect_timeout_s + 5)
        if clean and self._death is not None:
            # Latest status, kept in the outbox file: 'offline' until the next start() replaces it.
            death = self.policy.approve(self._stamp(self._death, self._death.seq, utcnow()))
            self.outbox.put_status(death.seq, death.topic, death.payload)
        self.outbox.close()

    # ------------------------------------------------------------------ delivery thread

    def _report(self, exc: BrokerError) -> None:
        previous = self._last_error
        self._last_error = exc
        self._error_event.set()
        # Once per distinct error, not once per retry: a clear line, not a log flood.
        if previous is None or str(previous) != str(exc):
            level = logging.ERROR if getattr(exc, "fatal", False) else logging.WARNING
            log.log(level, "%s%s", exc, "" if getattr(exc, "fatal", False) else " (buffering to the outbox)")

    def _run(self) -> None:
        backoff = self.cfg.mqtt.reconnect_min_s
        try:
            while not self._stop.is_set():
                if not self.link.connected:
                    self._inflight.clear()
                    try:
                        self.link.connect()
                    except BrokerError as exc:
                        self._report(exc)
                        self._stop.wait(backoff)
                        backoff = min(backoff * 2, self.cfg.mqtt.reconnect_max_s)
                        continue
                    backoff = self.cfg.mqtt.reconnect_min_s
                    try:
                        self._on_connected()
                    except BrokerError as exc:
                        self._report(exc)
                        continue
                self._pump()
                self._wake.clear()
                if not self.link.loop(0.02 if self._inflight else 0.1) and self.link.last_error is not None:
                    self._report(self.link.last_error)
                self._flush_acks()
            if self._clean_stop:
                self._finish_clean()
            else:
                self.link.disconnect(send_will=True)
        except Exception:  # pragma: no cover - a bug here must not kill the pipeline silently
            log.exception("mqtt delivery thread failed")
            self.link.close_socket()
        finally:
            self._flush_acks(force=True)

    def _on_connected(self) -> None:
        version = "5" if self.link.protocol == MQTTProtocolVersion.MQTTv5 else "3.1.1"
        log.info("connected to %s (MQTT %s)", self.link.address, version)
        self._last_error = None
        self._connected_event.set()
        self._error_event.set()
        # Resend everything not yet acknowledged, in seq order (duplicates are deduplicated by seq).
        self._last_sent = 0
        status = self.outbox.status()
        if status is not None:
            approved = self.policy.approve_stored("status", status.topic, status.payload)
            self._inflight[self.link.publish(approved)] = 0

    def _pump(self) -> None:
        while self.link.connected and len(self._inflight) < DELIVERY_WINDOW:
            rows = self.outbox.pending(after_seq=self._last_sent, limit=DELIVERY_WINDOW - len(self._inflight))
            if not rows:
                return
            for row in rows:
                self._last_sent = row.seq
                try:
                    approved = self.policy.approve_stored(row.kind, row.topic, row.payload)
                except EgressError as exc:
                    log.error("outbox seq %d dropped: %s", row.seq, exc)
                    self.outbox.discard_invalid(row.seq)
                    continue
                expiry = None
                if row.kind == "counts" and self.cfg.mqtt.counts_expiry_s is not None:
                    # Expiry counts from when the window was queued, not from this (late) send.
                    expiry = int(self.cfg.mqtt.counts_expiry_s - (time.time() - row.created))
                try:
                    mid = self.link.publish(approved, expiry_s=expiry)
                except BrokerError:
                    return
                self._inflight[mid] = row.seq

    def _on_ack(self, mid: int, refused: Optional[str]) -> None:
        seq = self._inflight.pop(mid, None)
        if seq is None:
            return
        if seq == 0:
            if refused:
                log.error("broker refused the status message: %s", refused)
            self._status_acked.set()
            return
        if refused:
            log.error("broker refused seq %d: %s (discarded; check the broker ACL)", seq, refused)
            self.outbox.reject(seq)
        else:
            self._acked.append(seq)

    def _flush_acks(self, force: bool = False) -> None:
        if not self._acked:
            return
        now = time.monotonic()
        if force or len(self._acked) >= ACK_BATCH or now - self._last_flush >= ACK_FLUSH_S:
            self.outbox.ack(self._acked)
            self._acked = []
            self._last_flush = now

    def _finish_clean(self) -> None:
        deadline = time.monotonic() + self.cfg.publish.close_timeout_s
        # Give the backlog a bounded chance to drain, then say goodbye.
        while self.link.connected and time.monotonic() < deadline:
            self._pump()
            if not self._inflight and not self.outbox.pending(after_seq=self._last_sent, limit=1):
                break
            self.link.loop(0.02)
        self._flush_acks(force=True)
        if self.link.connected and self._death is not None:
            death = self.policy.approve(self._stamp(self._death, self._death.seq, utcnow()))
            self._status_acked.clear()
            self._inflight[self.link.publish(death)] = 0
            until = max(deadline, time.monotonic() + 1.0)
            while self.link.connected and not self._status_acked.is_set() and time.monotonic() < until:
                self.link.loop(0.02)
        self.link.disconnect(send_will=False)


def make_publisher(
    cfg: ApplianceConfig,
    *,
    software_models: Sequence[ModelInfo] = (),
    stream: Optional[TextIO] = None,
) -> Publisher:
    """:class:`MqttPublisher` when ``mqtt.url`` is set, else :class:`StdoutPublisher`."""
    if cfg.mqtt.url is None:
        return StdoutPublisher(cfg, software_models, stream=stream)
    return MqttPublisher(cfg, software_models)
