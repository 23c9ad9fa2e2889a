"""The delivery thread: drains the outbox to the broker in seq order, deletes what the broker acked.

It owns the MQTT link (one thread, so no locking around paho). It survives what it can:

* **broker gone**: reconnect with full-jitter exponential backoff (:mod:`backoff`; also after a
  lost connection, and reset only by a connection that lasted ``STABLE_S``), resend every
  unacknowledged message in seq order after each reconnect (duplicates are dropped by seq);
* **broker refuses a message** (an MQTT 5 PUBACK failure, e.g. an ACL that does not match the
  certificate): the message is *kept*, the refusal counted and logged loudly, the connection closed
  and retried with backoff; nothing is discarded until someone fixes the broker or the identity;
* **storage errors** (``database is locked``, ``database or disk is full``): retried with backoff
  and reported in health; only when they last ``storage_give_up_s``, or the file is unusable
  (not transient), does the loop give up with :class:`DeliveryFailed`, which
  ``Publisher.check()`` raises so the process exits 1 and the service manager restarts it.

Order: the current boot's birth is a row of the backlog at its own seq, so it never overtakes an
older backlog; once delivered it is republished (retained) first on every later reconnect. Status
rows of earlier boots (births and deaths recovered from an outage) are history, sent unretained.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections import deque
from functools import partial
from typing import Callable, Deque, Dict, List, Optional, Sequence, TypeVar

from paho.mqtt.enums import MQTTProtocolVersion

from appliance.config.schema import MqttConfig
from appliance.errors import BrokerError, DeliveryFailed
from appliance.publish.backoff import FullJitterBackoff
from appliance.publish.client import BrokerRejected, MqttLink
from appliance.publish.egress import ApprovedPayload, EgressError, EgressPolicy
from appliance.publish.lifecycle import Boot
from appliance.publish.outbox.rows import OutboxRow
from appliance.publish.outbox.store import Outbox, is_transient
from appliance.publish.outbox.writer import OutboxWriter

log = logging.getLogger(__name__)

T = TypeVar("T")

# Messages handed to paho and not yet acknowledged. paho keeps BROKER_WINDOW of them in flight at
# the broker and queues the rest, sending the next one as each PUBACK arrives: the broker's window
# stays full without waiting for this loop's next turn. Bounded so that a long backlog is streamed
# from SQLite rather than copied into memory.
DELIVERY_WINDOW = 256
# Rows read from the outbox per query while draining (a backlog is read in pages, not per message).
PAGE_ROWS = 256
# Messages prepared (re-checked, handed to paho) per turn of the loop before it reads PUBACKs again:
# while this thread prepares, nobody reads the broker's acks, so paho cannot send the next queued
# messages and the broker's window runs dry. Small turns keep it full.
PUMP_BATCH = 16
# Acknowledged messages are deleted in batches (one transaction each): bounded SD-card writes. A
# batch is written when it is full, when ACK_FLUSH_S have passed, or when nothing is in flight any
# more (the backlog is drained; live traffic then costs one small transaction per message, as before).
ACK_BATCH = 512
ACK_FLUSH_S = 0.5
# How often the delivery thread retries storing what the writer holds in memory (the disk refused it).
WRITER_RETRY_S = 0.5
# Storage retries: short first, a few seconds at most (the link keeps being serviced meanwhile).
STORAGE_RETRY_MIN_S = 0.05
STORAGE_RETRY_MAX_S = 2.0
# A connection must last this long before the reconnect backoff starts again from its minimum.
STABLE_S = 10.0
# Marks in the in-flight table for messages that are not outbox rows.
_REPUBLISHED_BIRTH = 0
_DEATH = -1
_DOCUMENT = -2


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
        documents: Sequence[ApprovedPayload] = (),
    ) -> None:
        self.outbox = outbox
        self.documents = list(documents)
        self.writer = writer
        self.link = link
        self.policy = policy
        self.boot = boot
        self.mqtt = mqtt
        self.close_timeout_s = close_timeout_s
        self.storage_give_up_s = storage_give_up_s
        self.backoff = backoff
        self._storage_backoff = FullJitterBackoff(STORAGE_RETRY_MIN_S, STORAGE_RETRY_MAX_S)
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._clean = True
        self._death: Optional[ApprovedPayload] = None
        # Read by other threads (plain attribute reads are atomic in CPython).
        self.connected_event = threading.Event()
        self.error_event = threading.Event()
        self.last_error: Optional[BrokerError] = None
        self.storage_error: Optional[str] = None
        self.storage_errors = 0
        self.failure: Optional[DeliveryFailed] = None
        self.refused_total = 0
        self.refusing = False
        self.last_puback: Optional[float] = None
        self.birth_delivered = False
        self.death_delivered = False
        # Delivery-thread state.
        self._inflight: Dict[int, int] = {}  # mid -> seq (or a mark above)
        self._ready: Deque[OutboxRow] = deque()  # rows read from the outbox, not yet handed to paho
        self._last_read = 0  # the highest seq read into _ready on this connection
        self._acked: List[int] = []  # acknowledged, not yet deleted
        self._last_flush = time.monotonic()
        self._last_writer_retry = time.monotonic()
        self._storage_failing_since: Optional[float] = None
        self._refused_now = False
        self._connected_at: Optional[float] = None

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
                        self._stop.wait(self.backoff.next_delay())
                        continue
                more = self._pump()
                if not self.link.loop(0.0 if more else 0.02 if self._inflight else 0.1):
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
                    self._stop.wait(self.backoff.next_delay())
            if self._clean:
                self._finish_clean()
            else:
                self.link.disconnect(send_will=True)
        except _GiveUp:
            self.link.close_socket()  # the broker publishes our will
        except Exception as exc:  # a bug here must not leave a half-dead device
            log.exception("mqtt delivery thread failed")
            self.failure = DeliveryFailed(f"delivery thread failed: {type(exc).__name__}: {exc}")
            self.link.close_socket()
        finally:
            if self.failure is None:
                with contextlib.suppress(_GiveUp):
                    self._flush_acks(force=True)

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
        if not self.refusing:
            self.last_error = None
        self._connected_at = time.monotonic()
        self.connected_event.set()
        self.error_event.set()
        # Resend everything not yet acknowledged, in seq order.
        self._ready.clear()
        self._last_read = 0
        self._refused_now = False
        republish = [(self.boot.birth, _REPUBLISHED_BIRTH)] if self.birth_delivered else []
        # Retained state (the notice, discovery configs) is re-published at every connect: a broker
        # restarted without persistence would otherwise have forgotten it.
        republish += [(document, _DOCUMENT) for document in self.documents]
        for payload, mark in republish:
            try:
                self._inflight[self.link.publish(payload)] = mark
            except BrokerError as exc:
                self._report(exc)
        return True

    def _report(self, exc: BrokerError) -> None:
        previous = self.last_error
        self.last_error = exc
        self.error_event.set()
        # Once per distinct error, not once per retry: a clear line, not a log flood.
        if previous is None or str(previous) != str(exc):
            fatal = getattr(exc, "fatal", False)
            level = logging.ERROR if fatal else logging.WARNING
            log.log(level, "%s%s", exc, "" if fatal else " (buffering to the outbox)")

    # ------------------------------------------------------------------ storage

    def _store(self, op: Callable[[], T], *, write: bool = True) -> Optional[T]:
        """Run one outbox operation; on a transient error back off (servicing the link) and
        return None, so the caller tries again on its next turn. Only a successful write ends a
        run of errors (reads work while another process holds the write lock)."""
        try:
            result = op()
        except sqlite3.Error as exc:
            self._storage_failed(exc)
            return None
        if write and self._storage_failing_since is not None:
            log.warning("outbox storage works again")
            self._storage_failing_since = None
            self.storage_error = None
            self._storage_backoff.reset()
        return result

    def _storage_failed(self, exc: sqlite3.Error) -> None:
        now = time.monotonic()
        self.storage_errors += 1
        if self.storage_error != str(exc):
            log.error("outbox storage error: %s (retrying)", exc)
        self.storage_error = str(exc)
        if self._storage_failing_since is None:
            self._storage_failing_since = now
        if not is_transient(exc):
            self._give_up(f"{self.outbox.path}: outbox unusable: {exc}")
        if now - self._storage_failing_since > self.storage_give_up_s:
            self._give_up(f"{self.outbox.path}: outbox storage failing for {self.storage_give_up_s:g} s: {exc}")
        self._service_link_for(self._storage_backoff.next_delay())

    def _give_up(self, reason: str) -> None:
        log.error("%s; giving up (the appliance exits 1 to be restarted)", reason)
        self.failure = DeliveryFailed(reason)
        raise _GiveUp

    def _service_link_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self._stop.is_set():
            if self.link.connected:
                self.link.loop(min(0.05, max(0.0, deadline - time.monotonic())))
            else:
                self._stop.wait(min(0.05, max(0.0, deadline - time.monotonic())))

    def _flush_writer(self) -> None:
        if self.writer.queued and time.monotonic() - self._last_writer_retry >= WRITER_RETRY_S:
            self._last_writer_retry = time.monotonic()
            self.writer.flush()
        if self.writer.fatal is not None:
            self._give_up(f"{self.outbox.path}: outbox unusable: {self.writer.fatal}")

    # ------------------------------------------------------------------ sending

    def _pump(self, batch: int = PUMP_BATCH) -> bool:
        """Hand paho the next messages in seq order until DELIVERY_WINDOW are unacknowledged, at
        most ``batch`` of them; returns whether it stopped at ``batch`` (there may be more to send)."""
        while self.link.connected and not self._refused_now and len(self._inflight) < DELIVERY_WINDOW:
            if batch <= 0:
                return True
            batch -= 1
            row = self._next_row()
            if row is None:
                return False
            try:
                approved = self.policy.approve_stored(
                    row.kind, row.topic, row.payload, seq=row.seq, vouched=row.vouched
                )
            except EgressError as exc:
                log.error("outbox seq %d dropped: %s", row.seq, exc)
                self._store(partial(self.outbox.discard_invalid, row.seq))
                continue
            expiry = None
            if row.kind == "counts" and self.mqtt.counts_expiry_s is not None:
                # Expiry counts from when the window was queued, not from this (late) send.
                expiry = int(self.mqtt.counts_expiry_s - (time.time() - row.created))
            # Only this boot's birth is the device's state; earlier boots' status rows are history.
            retain = approved.retain and row.seq == self.boot.birth_seq
            try:
                mid = self.link.publish(approved, expiry_s=expiry, retain=retain)
            except BrokerError:
                return False  # the link is down: the next connection starts again from the oldest row
            self._inflight[mid] = row.seq
        return False

    def _next_row(self) -> Optional[OutboxRow]:
        """The next row to send on this connection, read from the outbox a page at a time."""
        if not self._ready:
            rows = self._store(partial(self.outbox.pending, self._last_read, PAGE_ROWS), write=False)
            if not rows:
                return None
            self._ready.extend(rows)
            self._last_read = rows[-1].seq
        return self._ready.popleft()

    def on_ack(self, mid: int, refused: Optional[str]) -> None:
        """PUBACK callback (runs in this thread, inside ``link.loop``)."""
        seq = self._inflight.pop(mid, None)
        if seq is None:
            return
        if refused:
            self._refused(seq, refused)
            return
        self.last_puback = time.monotonic()
        if self.refusing and seq > 0:
            self.refusing = False
            self.last_error = None
            log.warning("the broker accepts our messages again")
        if seq == _DEATH:
            self.death_delivered = True
        elif seq > 0:
            self._acked.append(seq)
            if seq == self.boot.birth_seq:
                self.birth_delivered = True

    def _refused(self, seq: int, reason: str) -> None:
        self.refused_total += 1
        self.refusing = True
        self._refused_now = True
        if seq == _DOCUMENT:
            what = "a retained document"
        else:
            what = "our status" if seq <= 0 or seq == self.boot.birth_seq else f"seq {seq}"
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
            more = self._pump()
            if not self._inflight and not self._ready:
                left = self._store(partial(self.outbox.pending, self._last_read, 1), write=False)
                if left == []:
                    break
            self.link.loop(0.0 if more else 0.02)
            self._flush_acks()
        self._flush_acks(force=True)
        # The death goes out directly only once the birth is out (so only newer rows can remain,
        # and the death's seq is below theirs). Otherwise it is queued at its seq by the caller.
        if self.link.connected and self.birth_delivered and self._death is not None:
            with contextlib.suppress(BrokerError):
                self._inflight[self.link.publish(self._death)] = _DEATH
            until = max(deadline, time.monotonic() + 1.0)
            while self.link.connected and not self.death_delivered and time.monotonic() < until:
                if _DEATH not in self._inflight.values():
                    break  # refused
                self.link.loop(0.02)
        self.link.disconnect(send_will=False)


def _ack(outbox: Outbox, seqs: List[int]) -> bool:
    outbox.ack(seqs)
    return True
