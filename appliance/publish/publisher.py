"""The publish stage as the pipeline sees it. Usage, exactly::

    from appliance.publish import make_birth, make_publisher, CountsMessage

    birth = make_birth(config_hash=..., board="rpi4", models=[ModelInfo(name=..., sha256=...)])
    pub = make_publisher(device_id=..., mqtt=cfg.mqtt, publish=cfg.publish, outbox=cfg.outbox, birth=birth)
    pub.start()                       # opens the boot: birth queued, last will registered
    try:
        pub.connect(timeout_s=10)     # optional: raises BrokerRejected / BrokerUnreachable
    except BrokerUnreachable as exc:
        log.warning("%s; buffering to the outbox", exc)   # keep running: store-and-forward
    ...
    pub.publish(CountsMessage(...)); pub.publish(HealthMessage(...))   # content fields only
    pub.check()                       # once per frame: raises DeliveryFailed (exit 1) when delivery is dead
    ...
    pub.close(clean=True)             # drains (bounded), publishes the retained 'offline', disconnects

``publish`` never blocks on the network: it stamps the envelope, runs the egress check (raising
:class:`EgressError` on a violation, consuming no seq) and stores the message (see
:mod:`writer`: held in memory while the disk refuses). The delivery thread (:mod:`delivery`)
drains the outbox to the broker. ``stats()`` says how delivery goes; the health monitor
(``appliance.health.monitor``) builds the health message's ``outbox`` and ``link`` sections from it.

With no broker configured (``mqtt.url`` is None) :class:`StdoutPublisher` prints each message as
one JSON line ``{"topic": ..., "payload": {...}}`` instead, through the same egress check.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
import time
from typing import List, Optional, Protocol, Sequence, TextIO

from typing_extensions import NotRequired, TypedDict, Unpack

from appliance.config.schema import MqttConfig, OutboxConfig, PublishConfig
from appliance.publish.anomaly_state import ActiveAnomalies
from appliance.publish.backoff import FullJitterBackoff
from appliance.publish.certificate import client_cert_days_left
from appliance.publish.client import BrokerUnreachable, MqttLink
from appliance.publish.clock import Clock
from appliance.publish.delivery import DeliveryLoop, DeliveryStatus
from appliance.publish.egress import ApprovedPayload, EgressError, EgressPolicy, RetainedDocument
from appliance.publish.lifecycle import Boot, seal_boot
from appliance.publish.messages import AnomalyMessage, AnomalyStateMessage, Message, StatusMessage
from appliance.publish.outbox.rows import OutboxStats, Sealed
from appliance.publish.outbox.store import Outbox, outbox_path
from appliance.publish.outbox.writer import OutboxWriter, WriterStatus
from appliance.publish.seqs import SeqAllocator
from appliance.publish.stamper import Stamper
from appliance.publish.stats import PublisherStats

log = logging.getLogger(__name__)


class Publisher(Protocol):
    def start(self) -> None: ...

    def connect(self, timeout_s: float) -> None: ...

    def publish(self, msg: Message) -> None: ...

    def check(self) -> None: ...

    def stats(self) -> PublisherStats: ...

    def close(self, clean: bool = True) -> None: ...


class PublisherArgs(TypedDict):
    """What every publisher is built from (the rest is each one's own: a stream, an outbox)."""

    device_id: str
    mqtt: MqttConfig
    publish: PublishConfig
    birth: StatusMessage
    documents: NotRequired[Sequence[RetainedDocument]]
    discovery_prefix: NotRequired[Optional[str]]
    clock: NotRequired[Optional[Clock]]


class _Base:
    """What both publishers share: the envelope, the birth, the checks on what the pipeline sends."""

    def __init__(
        self,
        *,
        device_id: str,
        mqtt: MqttConfig,
        publish: PublishConfig,
        birth: StatusMessage,
        documents: Sequence[RetainedDocument] = (),
        discovery_prefix: Optional[str] = None,
        clock: Optional[Clock] = None,
    ) -> None:
        if birth.state != "online":
            raise ValueError("the birth message must be 'online'")
        self.device_id = device_id
        self.publish_cfg = publish
        self.mqtt = mqtt
        self.policy = EgressPolicy(
            topic_prefix=mqtt.topic_prefix,
            device_id=device_id,
            max_payload_bytes=publish.max_payload_bytes,
            discovery_prefix=discovery_prefix,
        )
        # Checked now: a document the egress policy refuses stops the start, not the first connect.
        self.documents: List[ApprovedPayload] = [self.policy.approve_document(d) for d in documents]
        self.clock = clock or Clock()
        self.stamper = Stamper(self.policy, device_id, self.clock)
        self._birth_content = birth
        self.boot: Optional[Boot] = None
        self._closed = False
        self.anomalies = ActiveAnomalies()

    def publish(self, msg: Message) -> None:
        msg = self._prepare(msg)
        if not isinstance(msg, AnomalyMessage):
            self._submit(msg)
            return
        # The event, then the state it leads to: one lock, so states are stored in the order made.
        with self.anomalies.lock:
            self._submit(msg)
            self._submit(self.anomalies.apply(msg))

    def _begin_anomaly_state(self) -> None:
        """Right after the birth: nothing is raised in a new boot (retained, replacing the last boot's)."""
        with self.anomalies.lock:
            self._submit(self.anomalies.reset())

    def _submit(self, msg: Message) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def boot_id(self) -> int:
        return self.boot.boot_id if self.boot is not None else 0

    def _prepare(self, msg: Message) -> Message:
        if self.boot is None:
            raise RuntimeError("publish() before start()")
        if self._closed:
            raise RuntimeError("publish() after close()")
        if isinstance(msg, StatusMessage):
            # Birth and death are the publisher's: one per boot, with seqs reserved at start.
            raise EgressError("status_managed", "status is published by start() and close() only")
        if isinstance(msg, AnomalyStateMessage):
            raise EgressError("state_managed", "anomaly_state is published by the publisher with each anomaly")
        return msg

    def _fresh_death(self) -> ApprovedPayload:
        """The clean stop's ``offline``: the reserved death seq, stamped now."""
        assert self.boot is not None
        offline = self._birth_content.as_offline()
        return self.stamper.approve(offline, boot_id=self.boot.boot_id, seq=self.boot.death_seq)

    def stats(self) -> PublisherStats:  # pragma: no cover - overridden
        raise NotImplementedError


class StdoutPublisher(_Base):
    """No broker configured: one JSON line per message on ``stream`` (stdout by default).

    Seqs count from 1 for each run (nothing is stored); boot_id is always 1.
    """

    def __init__(self, *, stream: Optional[TextIO] = None, **common: Unpack[PublisherArgs]) -> None:
        super().__init__(**common)
        self.stream = stream if stream is not None else sys.stdout
        self.seqs = SeqAllocator(last_seq=0, last_boot_id=0)  # nothing is stored: every run starts at 1

    def start(self) -> None:
        boot_id, first = self.seqs.boot()
        self.boot = seal_boot(self.stamper, self._birth_content, boot_id=boot_id, first_seq=first)
        self._emit(self.boot.birth)
        for document in self.documents:
            self._emit(document)
        self._begin_anomaly_state()

    def connect(self, timeout_s: float) -> None:
        """Nothing to connect to."""

    def check(self) -> None:
        """Printing cannot fail for good."""

    def _submit(self, msg: Message) -> None:
        with self.seqs.next() as seq:
            self._emit(self.stamper.approve(msg, boot_id=self.boot_id, seq=seq))

    def _emit(self, approved: ApprovedPayload) -> None:
        payload = json.loads(approved.payload) if approved.payload else None  # empty: a removed discovery config
        line = json.dumps({"topic": approved.topic, "payload": payload}, separators=(",", ":"))
        self.stream.write(line + "\n")
        self.stream.flush()

    def stats(self) -> PublisherStats:
        return PublisherStats(connected=True, last_error=None, egress_refused=self.policy.refused_total)

    def close(self, clean: bool = True) -> None:
        if self._closed:
            return
        self._closed = True
        if clean and self.boot is not None:
            self._emit(self._fresh_death())


class MqttPublisher(_Base):
    """Outbox -> MQTT: :class:`OutboxWriter` stores, :class:`DeliveryLoop` delivers."""

    def __init__(self, *, outbox: OutboxConfig, **common: Unpack[PublisherArgs]) -> None:
        super().__init__(**common)
        self.outbox_cfg = outbox
        self.outbox = Outbox(
            outbox_path(outbox, self.device_id),
            max_bytes=outbox.max_bytes,
            max_age_s=outbox.max_age_s,
            owner=self.device_id,
            busy_timeout_s=outbox.busy_timeout_s,
            clock=self.clock,
        )
        self.writer: Optional[OutboxWriter] = None
        self.delivery: Optional[DeliveryLoop] = None
        self._last_outbox_stats = OutboxStats(0, 0, None)

    # ------------------------------------------------------------------ pipeline side

    def start(self) -> None:
        seqs = SeqAllocator(last_seq=self.outbox.last_seq, last_boot_id=self.outbox.boot_id)
        boot_id, first = seqs.boot()
        boot = seal_boot(self.stamper, self._birth_content, boot_id=boot_id, first_seq=first)
        birth, death = boot.sealed()
        self.outbox.begin_boot(birth, death, boot_id)  # a disk-full here is a runtime error: exit 1
        self.boot = boot
        self.writer = OutboxWriter(self.outbox, seqs=seqs, max_queued=self.outbox_cfg.memory_queue_max)
        link = MqttLink(self.mqtt, client_id=self.mqtt.client_id or self.device_id, on_ack=self._on_ack)
        link.set_will(boot.death)
        self.delivery = DeliveryLoop(
            outbox=self.outbox,
            writer=self.writer,
            link=link,
            policy=self.policy,
            boot=boot,
            mqtt=self.mqtt,
            close_timeout_s=self.publish_cfg.close_timeout_s,
            storage_give_up_s=self.outbox_cfg.storage_give_up_s,
            backoff=FullJitterBackoff(self.mqtt.reconnect_min_s, self.mqtt.reconnect_max_s),
            clock=self.clock,
            documents=self.documents,
        )
        self.delivery.start()
        self._begin_anomaly_state()

    def _on_ack(self, mid: int, refused: Optional[str]) -> None:
        if self.delivery is not None:
            self.delivery.on_ack(mid, refused)

    def connect(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for the first connection.

        Raises :class:`BrokerRejected` as soon as the broker or TLS refuses us and
        :class:`BrokerUnreachable` if no connection was made in time. Either way the publisher
        keeps running, buffering and retrying (a refusal every ``mqtt.reconnect_max_s``); the
        caller decides what to tell the user.
        """
        delivery = self._delivery()
        deadline = time.monotonic() + timeout_s
        while not delivery.connected_event.is_set():
            err = delivery.status.last_error
            if err is not None and getattr(err, "fatal", False):
                raise err
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise err or BrokerUnreachable(f"{delivery.link.address}: not connected after {timeout_s:g} s")
            delivery.error_event.wait(min(remaining, 0.1))
            delivery.error_event.clear()

    def _submit(self, msg: Message) -> None:
        boot_id = self.boot_id
        self._writer().submit(lambda seq: self.stamper.seal(msg, boot_id=boot_id, seq=seq))

    def check(self) -> None:
        """Raises :class:`DeliveryFailed` once delivery has failed for good (exit 1, restart)."""
        failure = self.delivery.status.failure if self.delivery is not None else None
        if failure is not None:
            raise failure

    def stats(self) -> PublisherStats:
        try:
            ob = self._last_outbox_stats = self.outbox.stats()
        except sqlite3.Error:
            ob = self._last_outbox_stats  # the file is locked or failing; health still goes out
        writer = self.writer.status() if self.writer is not None else WriterStatus()
        status = self.delivery.status if self.delivery is not None else DeliveryStatus()
        err = status.last_error
        storage = status.storage_error or writer.last_error
        last_puback = status.last_puback
        return PublisherStats(
            connected=status.connected,
            last_error=str(err) if err else (f"outbox: {storage}" if storage else None),
            pending=ob.pending,
            pending_bytes=ob.pending_bytes,
            oldest_age_s=ob.oldest_age_s,
            dropped=ob.dropped,
            rejected=status.refused_total,
            egress_refused=self.policy.refused_total,
            write_errors=writer.write_errors + status.storage_errors,
            lost=ob.lost + writer.lost_unrecorded,
            held_in_memory=writer.queued,
            seconds_since_puback=None if last_puback is None else time.monotonic() - last_puback,
            refusing=status.refusing,
            broker=str(self.delivery.link.address) if self.delivery is not None else None,
            cert_days_left=client_cert_days_left(self.mqtt),
            quarantined=ob.quarantined,
            files_set_aside=ob.files_set_aside,
        )

    def close(self, clean: bool = True) -> None:
        """Stop delivering. ``clean``: flush the backlog (up to ``publish.close_timeout_s``), publish
        ``offline`` and DISCONNECT. Not clean: drop the connection so the broker sends the will."""
        if self._closed:
            return
        self._closed = True
        delivery, writer, boot = self.delivery, self.writer, self.boot
        try:
            if writer is not None and not writer.flush():
                held = writer.status()
                log.error("outbox: %d message(s) held in memory are lost: %s", held.queued, held.last_error)
            if delivery is None or boot is None:
                return
            death = self._fresh_death() if clean else None
            delivery.stop(
                clean=clean, death=death, timeout_s=self.publish_cfg.close_timeout_s + self.mqtt.connect_timeout_s + 5
            )
            status = delivery.status
            if clean and status.failure is None:
                undelivered = None
                if death is not None and not status.death_delivered:
                    undelivered = Sealed(death.seq, "status", death.topic, death.payload)
                try:
                    self.outbox.close_boot(boot.boot_id, undelivered_death=undelivered)
                except Exception as exc:  # the next boot queues this boot's will instead
                    log.error("outbox: could not record the end of boot %d: %s", boot.boot_id, exc)
        finally:
            self.outbox.close()

    def _writer(self) -> OutboxWriter:
        if self.writer is None:
            raise RuntimeError("publish() before start()")
        return self.writer

    def _delivery(self) -> DeliveryLoop:
        if self.delivery is None:
            raise RuntimeError("connect() before start()")
        return self.delivery


def make_publisher(
    *,
    device_id: str,
    mqtt: MqttConfig,
    publish: PublishConfig,
    outbox: OutboxConfig,
    birth: StatusMessage,
    stream: Optional[TextIO] = None,
    documents: Sequence[RetainedDocument] = (),
    discovery_prefix: Optional[str] = None,
    clock: Optional[Clock] = None,
) -> Publisher:
    """:class:`MqttPublisher` when ``mqtt.url`` is set, else :class:`StdoutPublisher`. ``documents``
    (the public notice, Home Assistant discovery configs) are published retained at every connect."""
    common = PublisherArgs(
        device_id=device_id,
        mqtt=mqtt,
        publish=publish,
        birth=birth,
        documents=documents,
        discovery_prefix=discovery_prefix,
        clock=clock,
    )
    if mqtt.url is None:
        return StdoutPublisher(stream=stream, **common)
    return MqttPublisher(outbox=outbox, **common)
