"""The delivery thread: drains the outbox to the broker in seq order, deletes what the broker acked.

It owns the MQTT link; paho's own network thread does the socket work (reads, writes, keepalive
pings), so this thread only reads the outbox, re-checks each row, hands it to paho and deletes
what was acknowledged. It survives what it can:

* **broker gone**: reconnect with full-jitter exponential backoff (:mod:`backoff`; also after a
  lost connection, and reset only by a connection that lasted ``STABLE_S``), resend every
  unacknowledged message in seq order after each reconnect (duplicates are dropped by seq);
* **broker refuses us** (TLS identity, credentials, ACL at connect): reported in health and the
  log, retried every ``mqtt.reconnect_max_s``; the outbox keeps everything meanwhile;
* **broker refuses a message** (an MQTT 5 PUBACK failure, e.g. an ACL that does not match the
  certificate): the message is *kept*, the refusal counted and logged loudly, the connection closed
  and retried with backoff; nothing is discarded until someone fixes the broker or the identity;
* **a damaged row** (checksum, encoding, or the egress re-check): moved to the outbox's quarantine
  by the outbox, counted, and delivery goes on with the next row;
* **storage errors** (``database is locked``, ``database or disk is full``): retried with backoff
  and reported in health; only when they last ``storage_give_up_s``, or the file is unusable
  (not transient), does the loop give up with :class:`DeliveryFailed`, which
  ``Publisher.check()`` raises so the process exits 1 and the service manager restarts it (a
  damaged file is set aside at the next start).

Other threads see this thread's state only as :class:`DeliveryStatus`, an immutable snapshot it
replaces under one lock.

Order: the current boot's birth is a row of the backlog at its own seq, so it never overtakes an
older backlog; once delivered it is republished (retained) first on every later reconnect, and so
is the last acknowledged anomaly state (:mod:`anomaly_state`). Earlier boots' status rows are history.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, TypeVar, Union

from paho.mqtt.enums import MQTTProtocolVersion

from appliance.config.schema import MqttConfig
from appliance.errors import BrokerError, DeliveryFailed
from appliance.publish.anomaly_state import LatestState
from appliance.publish.backoff import FullJitterBackoff
from appliance.publish.client import BrokerRejected, MqttLink
from appliance.publish.clock import Clock
from appliance.publish.egress import ApprovedPayload, EgressError, EgressPolicy
from appliance.publish.lifecycle import Boot
from appliance.publish.messages import MESSAGE_TYPES
from appliance.publish.outbox.rows import OutboxRow
from appliance.publish.outbox.store import Outbox, is_transient
from appliance.publish.outbox.writer import OutboxWriter

log = logging.getLogger(__name__)

T = TypeVar("T")

# Messages handed to paho and not yet acknowledged, and rows read from the outbox per query. paho
# keeps its own window in flight at the broker and sends the next as each PUBACK arrives; bounded
# so that a long backlog is streamed from SQLite rather than copied into memory.
WINDOW = 256
# Acknowledged messages are deleted in batches (one transaction each): bounded SD-card writes. A
# batch is written when it is full, when ACK_FLUSH_S have passed, or when nothing is in flight.
ACK_BATCH = 512
ACK_FLUSH_S = 0.5
# How often the delivery thread retries storing what the writer holds in memory (the disk refused it).
WRITER_RETRY_S = 0.5
# Storage retries: short first, a few seconds at most.
STORAGE_RETRY_MIN_S = 0.05
STORAGE_RETRY_MAX_S = 2.0
# A connection must last this long before the reconnect backoff starts again from its minimum.
STABLE_S = 10.0
# How long the thread waits for the broker when it has nothing to send (new rows are polled).
IDLE_WAIT_S = 0.1


# What a message handed to paho is, for when its PUBACK comes back.
@dataclass(frozen=True)
class StoredRow:
    """A row of the outbox: deleted once acknowledged."""

    seq: int


@dataclass(frozen=True)
class RepublishedBirth:
    """This boot's birth, sent again (retained) at a reconnect after it was delivered."""


@dataclass(frozen=True)
class Death:
    """The clean stop's ``offline``."""


@dataclass(frozen=True)
class Document:
    """A retained document (the notice, a discovery config), republished at every connect."""

    kind: str


InFlight = Union[StoredRow, RepublishedBirth, Death, Document]


@dataclass(frozen=True)
class DeliveryStatus:
    """What the delivery thread shows other threads: replaced whole, never changed in place."""

    connected: bool = False
    last_error: Optional[BrokerError] = None
    storage_error: Optional[str] = None
    storage_errors: int = 0
    refused_total: int = 0
    refusing: bool = False  # the broker refused the last message it was offered
    last_puback: Optional[float] = None  # time.monotonic() of the last PUBACK
    birth_delivered: bool = False
    death_delivered: bool = False
    failure: Optional[DeliveryFailed] = None


class _GiveUp(Exception):
    pass


class DeliveryLoop:
    def __init__(
        self,
        *,
        outbox: Outbox,
        writer: OutboxWriter,
        link: MqttLink,
        policy: EgressPolicy,
        boot: Boot,
        mqtt: MqttConfig,
        close_timeout_s: float,
        storage_give_up_s: float,
        backoff: FullJitterBackoff,
        clock: Clock,
        documents: Sequence[ApprovedPayload] = (),
    ) -> None:
        self.outbox = outbox
        self.documents = list(documents)
        self.writer = writer
        self.link = link
        self.policy = policy
        self.boot = boot
        self.mqtt = mqtt
        self.clock = clock
        self.close_timeout_s = close_timeout_s
        self.storage_give_up_s = storage_give_up_s
        self.backoff = backoff
        self._storage_backoff = FullJitterBackoff(STORAGE_RETRY_MIN_S, STORAGE_RETRY_MAX_S)
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._clean = True
        self._death: Optional[ApprovedPayload] = None
        self._status_lock = threading.Lock()
        self._status = DeliveryStatus()
        self.connected_event = threading.Event()
        self.error_event = threading.Event()
        link.on_lost = self._lost
        # Delivery-thread state.
        self._inflight: Dict[int, InFlight] = {}  # mid -> what it is
        self._ready: Deque[OutboxRow] = deque()  # rows read from the outbox, not yet handed to paho
        self._last_read = 0  # the highest seq read into _ready on this connection
        self._acked: List[int] = []  # acknowledged, not yet deleted
        self._last_flush = time.monotonic()
        self._last_writer_retry = time.monotonic()
        self._storage_failing_since: Optional[float] = None
        self._refused_now = False
        self._connected_at: Optional[float] = None
        self._state = LatestState()

    # ------------------------------------------------------------------ status (any thread)

    @property
    def status(self) -> DeliveryStatus:
        with self._status_lock:
            return self._status

    def _update(self, **changes: Any) -> DeliveryStatus:
        with self._status_lock:
            self._status = replace(self._status, **changes)
            return self._status

    def _lost(self, exc: BrokerError) -> None:
        """The link went down (called in paho's thread): the snapshot says so, with the reason."""
        self._update(connected=False, last_error=exc)
        self.error_event.set()

    # ------------------------------------------------------------------ control (other threads)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mqtt-delivery", daemon=True)
        self._thread.start()

    def stop(self, *, clean: bool, death: Optional[ApprovedPayload], timeout_s: float) -> None:
        self._clean = clean
        self._death = death
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._flush_writer()
                if not self.link.connected:
                    self._inflight.clear()
                    if not self._connect():
                        self._stop.wait(self._reconnect_delay())
                        continue
                self._pump()
                if not self.link.wait_for_acks(IDLE_WAIT_S):
                    if self.link.last_error is not None:
                        self._report(self.link.last_error)
                    # Wait before reconnecting even after a lost connection: two clients with one
                    # client id (or a broker that drops us at once) must not reconnect in a tight loop.
                    self._stop.wait(self.backoff.next_delay())
                elif self._connected_at is not None and time.monotonic() - self._connected_at >= STABLE_S:
                    self.backoff.reset()  # only a connection that lasted resets the backoff
                    self._connected_at = None
                # Idle (nothing in flight): delete what was acknowledged now rather than in ACK_FLUSH_S.
                self._flush_acks(force=not self._inflight and self._storage_failing_since is None)
                if self._refused_now:
                    # Reconnect later and resend from the oldest kept message; a tight resend loop
                    # would only flood the broker's log.
                    self.link.disconnect(send_will=False)
                    self._update(connected=False)
                    self._stop.wait(self.backoff.next_delay())
            if self._clean:
                self._finish_clean()
            else:
                self.link.disconnect(send_will=True)
        except _GiveUp:
            self.link.close_socket()  # the broker publishes our will
        except Exception as exc:  # a bug here must not leave a half-dead device
            log.exception("mqtt delivery thread failed")
            self._update(failure=DeliveryFailed(f"delivery thread failed: {type(exc).__name__}: {exc}"))
            self.link.close_socket()
        finally:
            self._update(connected=False)
            if self.status.failure is None:
                with contextlib.suppress(_GiveUp):
                    self._flush_acks(force=True)

    def _reconnect_delay(self) -> float:
        # A refusal (TLS identity, credentials, not authorised) will not clear in seconds: retry at
        # the slowest pace, never give up (someone may fix the broker tomorrow).
        if isinstance(self.status.last_error, BrokerRejected):
            return self.mqtt.reconnect_max_s
        return self.backoff.next_delay()

    def _connect(self) -> bool:
        # Delete what the last connection got acknowledged before reading the backlog again, so that
        # only messages without a PUBACK are sent twice.
        self._flush_acks(force=True)
        try:
            self.link.connect()
        except BrokerError as exc:
            self._report(exc)
            return False
        version = "5" if self.link.protocol == MQTTProtocolVersion.MQTTv5 else "3.1.1"
        log.info("connected to %s (MQTT %s)", self.link.address, version)
        status = self.status
        self._update(connected=True, last_error=status.last_error if status.refusing else None)
        self._connected_at = time.monotonic()
        self.connected_event.set()
        self.error_event.set()
        # Resend everything not yet acknowledged, in seq order.
        self._ready.clear()
        self._last_read = 0
        self._refused_now = False
        republish: List[tuple[ApprovedPayload, InFlight]] = []
        if status.birth_delivered:
            republish.append((self.boot.birth, RepublishedBirth()))
        # Retained state (notice, discovery configs, anomaly state) is re-published at every connect: a
        # broker restarted without persistence, or another node of a cluster, would otherwise not have it.
        republish += [(document, Document(document.kind)) for document in [*self.documents, *self._state.republish()]]
        for payload, item in republish:
            try:
                self._inflight[self.link.publish(payload)] = item
            except BrokerError as exc:
                self._report(exc)
        return True

    def _report(self, exc: BrokerError) -> None:
        previous = self.status.last_error
        self._update(last_error=exc, connected=self.link.connected)
        self.error_event.set()
        # Once per distinct error, not once per retry: a clear line, not a log flood.
        if previous is None or str(previous) != str(exc):
            fatal = getattr(exc, "fatal", False)
            if fatal:
                log.error("%s (retrying every %g s; the outbox keeps every message)", exc, self.mqtt.reconnect_max_s)
            else:
                log.warning("%s (buffering to the outbox)", exc)

    # ------------------------------------------------------------------ storage

    def _store(self, op: Callable[[], T], *, write: bool = True) -> Optional[T]:
        """Run one outbox operation; on a transient error back off and return None, so the caller
        tries again on its next turn. Only a successful write ends a run of errors (reads work
        while another process holds the write lock)."""
        try:
            result = op()
        except sqlite3.Error as exc:
            self._storage_failed(exc)
            return None
        if write and self._storage_failing_since is not None:
            log.warning("outbox storage works again")
            self._storage_failing_since = None
            self._update(storage_error=None)
            self._storage_backoff.reset()
        return result

    def _storage_failed(self, exc: sqlite3.Error) -> None:
        now = time.monotonic()
        status = self.status
        if status.storage_error != str(exc):
            log.error("outbox storage error: %s (retrying)", exc)
        self._update(storage_error=str(exc), storage_errors=status.storage_errors + 1)
        if self._storage_failing_since is None:
            self._storage_failing_since = now
        if not is_transient(exc):
            self._give_up(f"{self.outbox.path}: outbox unusable: {exc}")
        if now - self._storage_failing_since > self.storage_give_up_s:
            self._give_up(f"{self.outbox.path}: outbox storage failing for {self.storage_give_up_s:g} s: {exc}")
        # paho's thread keeps the connection alive meanwhile.
        self._stop.wait(self._storage_backoff.next_delay())

    def _give_up(self, reason: str) -> None:
        log.error("%s; giving up (the appliance exits 1 to be restarted)", reason)
        self._update(failure=DeliveryFailed(reason))
        raise _GiveUp

    def _flush_writer(self) -> None:
        if self.writer.status().queued and time.monotonic() - self._last_writer_retry >= WRITER_RETRY_S:
            self._last_writer_retry = time.monotonic()
            self.writer.flush()
        fatal = self.writer.status().fatal
        if fatal is not None:
            self._give_up(f"{self.outbox.path}: outbox unusable: {fatal}")

    # ------------------------------------------------------------------ sending

    def _pump(self) -> None:
        """Hand paho the next messages in seq order until WINDOW are unacknowledged."""
        while self.link.connected and not self._refused_now and len(self._inflight) < WINDOW:
            row = self._next_row()
            if row is None:
                return
            try:
                approved = self.policy.approve_stored(row.kind, row.topic, row.payload, seq=row.seq)
            except EgressError as exc:
                log.error("outbox seq %d quarantined: %s", row.seq, exc)
                self._store(partial(self.outbox.quarantine, row.seq, str(exc)))
                continue
            expiry = None
            if MESSAGE_TYPES[row.kind].expires and self.mqtt.counts_expiry_s is not None:
                # Expiry counts from when the window was queued, not from this (late) send; an age
                # the clock cannot vouch for (stored before a clock step) gives the full expiry.
                age = self.clock.age_s(row.stamp) or 0.0
                expiry = int(self.mqtt.counts_expiry_s - age)
            # Only this boot's birth is the device's state; earlier boots' status rows are history.
            retain = self._state.retain(approved) or (approved.retain and row.seq == self.boot.birth_seq)
            try:
                mid = self.link.publish(approved, expiry_s=expiry, retain=retain)
            except BrokerError:
                return  # the link is down: the next connection starts again from the oldest row
            self._inflight[mid] = StoredRow(row.seq)

    def _next_row(self) -> Optional[OutboxRow]:
        """The next row to send on this connection, read from the outbox a page at a time."""
        if not self._ready:
            rows = self._store(partial(self.outbox.pending, self._last_read, WINDOW), write=False)
            if not rows:
                return None
            self._ready.extend(rows)
            self._last_read = rows[-1].seq
        return self._ready.popleft()

    def on_ack(self, mid: int, refused: Optional[str]) -> None:
        """PUBACK callback (runs in this thread, inside ``link.wait_for_acks``)."""
        item = self._inflight.pop(mid, None)
        if item is None:
            return
        if refused:
            self._refused(item, refused)
            return
        status = self.status
        changes: Dict[str, Any] = {"last_puback": time.monotonic()}
        if status.refusing and isinstance(item, StoredRow):
            changes.update(refusing=False, last_error=None)
            log.warning("the broker accepts our messages again")
        if isinstance(item, Death):
            changes["death_delivered"] = True
        elif isinstance(item, StoredRow):
            self._acked.append(item.seq)
            self._state.acked(item.seq)
            if item.seq == self.boot.birth_seq:
                changes["birth_delivered"] = True
        self._update(**changes)

    def _refused(self, item: InFlight, reason: str) -> None:
        self._update(refused_total=self.status.refused_total + 1, refusing=True)
        self._refused_now = True
        if isinstance(item, Document):
            what = "a retained document"
        elif isinstance(item, StoredRow) and item.seq != self.boot.birth_seq:
            what = f"seq {item.seq}"
        else:
            what = "our status"
        exc = BrokerRejected(
            f"{self.link.address}: broker refused {what} on {self.policy.topic_for('')}: {reason}; "
            f"kept in the outbox and retried after reconnecting (check the broker ACL and that the "
            f"certificate's CN is {self.policy.device_id!r})"
        )
        self._report(exc)

    def _flush_acks(self, force: bool = False) -> None:
        if not self._acked:
            return
        now = time.monotonic()
        if force or len(self._acked) >= ACK_BATCH or now - self._last_flush >= ACK_FLUSH_S:
            acked = self._acked
            if self._store(partial(_ack, self.outbox, acked)):
                self._acked = []
            self._last_flush = now

    def _finish_clean(self) -> None:
        deadline = time.monotonic() + self.close_timeout_s
        # Give the backlog a bounded chance to drain, then say goodbye.
        while self.link.connected and time.monotonic() < deadline and not self._refused_now:
            self._pump()
            if not self._inflight and not self._ready:
                left = self._store(partial(self.outbox.pending, self._last_read, 1), write=False)
                if left == []:
                    break
            self.link.wait_for_acks(0.05)
            self._flush_acks()
        self._flush_acks(force=True)
        # The death goes out directly only once the birth is out (so only newer rows can remain,
        # and the death's seq is below theirs). Otherwise it is queued at its seq by the caller.
        if self.link.connected and self.status.birth_delivered and self._death is not None:
            with contextlib.suppress(BrokerError):
                self._inflight[self.link.publish(self._death)] = Death()
            until = max(deadline, time.monotonic() + 1.0)
            while self.link.connected and not self.status.death_delivered and time.monotonic() < until:
                if Death() not in self._inflight.values():
                    break  # refused
                self.link.wait_for_acks(0.02)
        self.link.disconnect(send_will=False)


def _ack(outbox: Outbox, seqs: List[int]) -> bool:
    outbox.ack(seqs)
    return True
