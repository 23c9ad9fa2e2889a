"""The MQTT link on paho's own network loop, against a real Mosquitto: the delivery guarantees.

Keepalive pings on an idle link (also at a pace the broker imposes), a broker frozen or killed with
our publishes unread (everything sent again, in order, with its expiry), big backlogs cut mid-drain,
the DISCONNECT of a clean stop (the will discarded) and the will of an unclean one, a session taken
over by our own client id."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from support.brokers import Broker, free_port, require_mosquitto, run_user_line
from support.publishing import DEVICE, counts, first_occurrences, make_cfg, record_deletes, seqs, started
from support.waiting import wait_until

from appliance.publish import (
    CountsMessage,
    CountStats,
    MqttPublisher,
    Outbox,
    check_broker,
    utcnow,
)
from appliance.publish.delivery import StoredRow
from appliance.vocabulary import Heatmap, LineCounts, ZoneStats

pytestmark = pytest.mark.mqtt

COUNTS_EXPIRY_S = 3600  # the config default


# --------------------------------------------------------------------------- helpers


def start_chatty_broker(tmp_path: Path, extra_conf: str = "") -> Broker:
    """A plain broker that logs every packet (PINGREQ, DISCONNECT, keepalive timeouts)."""
    require_mosquitto()
    work = tmp_path / "chatty"
    work.mkdir()
    port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(f"{run_user_line()}listener {port} 127.0.0.1\nallow_anonymous true\nlog_type all\n{extra_conf}")
    broker = Broker(port, conf, work)
    broker.start()
    return broker


@pytest.fixture
def chatty_mosquitto(tmp_path: Path) -> Iterator[Broker]:
    broker = start_chatty_broker(tmp_path)
    yield broker
    broker.stop()


@pytest.fixture
def strict_keepalive_mosquitto(tmp_path: Path) -> Iterator[Broker]:
    """A chatty broker that allows at most a 10 s keepalive (MQTT 5 tells the client so in CONNACK)."""
    broker = start_chatty_broker(tmp_path, "max_keepalive 10\n")
    yield broker
    broker.stop()


def log_lines(broker: Broker, text: str) -> List[str]:
    return [line for line in broker.log().splitlines() if text in line]


def big_counts(i: int) -> CountsMessage:
    """A counts window with every zone and line the schema allows, long names: about 13 KB of JSON,
    near the default ``publish.max_payload_bytes`` (16 KiB)."""
    end = utcnow()
    return CountsMessage(
        window_start=end - timedelta(seconds=1),
        window_end=end,
        frames_analyzed=5,
        total=CountStats(min=0, mean=i % 5, max=4, last=i % 5),
        zones={
            f"zone-{z:02d}-" + "z" * 56: ZoneStats(
                min=1000, mean=1234.567891, max=99999, last=5000 + i % 100, density_per_m2=1.23456789,
                dwell_mean_s=123.456789, dwell_p90_s=234.567891,
            )
            for z in range(32)
        },
        lines={f"line-{n:02d}-" + "l" * 56: LineCounts(**{"in": 123456, "out": 654321}) for n in range(32)},
        heatmap=Heatmap(rows=16, cols=16, cells=[[123456] * 16 for _ in range(16)]),
    )


def queued(pub: MqttPublisher, kind: str) -> List[int]:
    return [row.seq for row in pub.outbox.pending(limit=100_000) if row.kind == kind]


def queued_counts(pub: MqttPublisher) -> List[int]:
    return queued(pub, "counts")


def paho_client(pub: MqttPublisher) -> Optional[paho.Client]:
    """The delivery thread's current paho client (read only, to observe its write queue)."""
    assert pub.delivery is not None
    return pub.delivery.link._client


def in_flight(pub: MqttPublisher) -> set:
    """Seqs of the outbox rows handed to paho and not yet acknowledged."""
    assert pub.delivery is not None
    items = pub.delivery._inflight.copy().values()  # dict.copy() is atomic under the GIL
    return {item.seq for item in items if isinstance(item, StoredRow)}


class V5Subscriber:
    """A real MQTT 5 subscriber that keeps each message's properties (the conftest one is 3.1.1)."""

    def __init__(self, broker: Broker, topic: str, *, client_id: str, persistent: bool = False) -> None:
        self.messages: List[Dict[str, Any]] = []
        self.connects = 0
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5
        )
        self.client.on_connect = lambda c, u, f, rc, p: (self._connected(), c.subscribe(topic, qos=1))
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 0.5)
        props = None
        if persistent:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
        self.client.connect(broker.host, broker.port, keepalive=30, clean_start=not persistent, properties=props)
        self.client.loop_start()
        assert self._subscribed.wait(10), "subscriber could not subscribe"

    def _connected(self) -> None:
        with self._lock:
            self.connects += 1

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        expiry = getattr(msg.properties, "MessageExpiryInterval", None) if msg.properties else None
        with self._lock:
            self.messages.append({"topic": msg.topic, "payload": json.loads(msg.payload), "expiry": expiry})

    def counts(self) -> List[Dict[str, Any]]:
        with self._lock:
            return [m for m in self.messages if m["topic"].endswith("/counts")]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscribe5() -> Iterator[Any]:
    made: List[V5Subscriber] = []

    def factory(broker: Broker, topic: str, **kwargs: Any) -> V5Subscriber:
        sub = V5Subscriber(broker, topic, **kwargs)
        made.append(sub)
        return sub

    yield factory
    for sub in made:
        sub.close()


def counts_seqs(sub: V5Subscriber) -> List[int]:
    return [m["payload"]["seq"] for m in sub.counts()]


# --------------------------------------------------------------------------- message expiry


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_counts_reach_an_mqtt5_subscriber_with_their_expiry_only_over_mqtt5(
    mosquitto: Broker, tmp_path: Path, subscribe5, publishers, protocol: str
) -> None:
    sub = subscribe5(mosquitto, f"crowdmon/{DEVICE}/counts", client_id="room-5")
    pub = started(make_cfg(mosquitto.url, tmp_path, protocol=protocol), publishers)
    pub.connect(timeout_s=10)
    for i in range(3):
        pub.publish(counts(i))
    wait_until(lambda: len(sub.counts()) >= 3, timeout_s=20)
    expiries = [m["expiry"] for m in sub.counts()]
    if protocol == "5":
        assert all(e is not None and 0 < e <= COUNTS_EXPIRY_S for e in expiries), expiries
    else:
        assert expiries == [None, None, None], "MQTT 3.1.1 has no properties"


def test_a_counts_expiry_beyond_mqtts_four_byte_limit_goes_out_as_the_longest_expiry(
    mosquitto: Broker, tmp_path: Path, subscribe5, publishers
) -> None:
    """The config accepts any counts_expiry_s >= 1, MQTT 5 carries at most 2**32-1 s (136 years):
    a longer one must not kill the delivery thread (exit 1, restarted into the same crash)."""
    sub = subscribe5(mosquitto, f"crowdmon/{DEVICE}/counts", client_id="room-5")
    pub = started(make_cfg(mosquitto.url, tmp_path, counts_expiry_s=2**32 + 3600), publishers)
    pub.connect(timeout_s=10)
    pub.publish(counts(0))
    delivery = pub.delivery
    assert delivery is not None
    wait_until(lambda: bool(sub.counts()) or delivery.status.failure is not None, 20)
    pub.check()
    (got,) = sub.counts()
    assert got["expiry"] is not None and 2**32 - 3600 < got["expiry"] <= 2**32 - 1


def test_publishes_stuck_in_a_killed_broker_are_sent_again_in_order_with_their_expiry(
    mosquitto: Broker, tmp_path: Path, subscribe5, publishers
) -> None:
    """The broker stops reading (SIGSTOP) while our publishes sit written in its socket, then dies
    (SIGKILL) without ever reading them: after a restart every one is sent again by the outbox, in
    seq order, and the resend still carries the message expiry."""
    sub = subscribe5(mosquitto, f"crowdmon/{DEVICE}/counts", client_id="room-5", persistent=True)
    # A graceful restart saves the control room's session, so it outlives the SIGKILL below.
    mosquitto.stop()
    mosquitto.start()
    wait_until(lambda: sub.connects >= 2, timeout_s=20)
    pub = started(make_cfg(mosquitto.url, tmp_path), publishers)
    pub.connect(timeout_s=10)
    wait_until(lambda: pub.stats().pending == 0, timeout_s=20)  # the birth is acknowledged

    assert mosquitto.proc is not None
    os.kill(mosquitto.proc.pid, signal.SIGSTOP)
    try:
        for i in range(20):
            pub.publish(counts(i))
        wait_until(lambda: len(queued_counts(pub)) == 20, timeout_s=20)
        sent = queued_counts(pub)
        # Every one handed to paho and written to the socket: what follows is a resend, not a first send.
        wait_until(lambda: in_flight(pub) >= set(sent), timeout_s=20)
        wait_until(lambda: (c := paho_client(pub)) is not None and not c.want_write(), timeout_s=20)
    finally:
        os.kill(mosquitto.proc.pid, signal.SIGKILL)
        os.kill(mosquitto.proc.pid, signal.SIGCONT)
    mosquitto.proc.wait(10)
    assert not sub.counts(), "the killed broker never read them"
    mosquitto.start()

    wait_until(lambda: len(set(counts_seqs(sub))) == 20, timeout_s=60)
    assert first_occurrences(counts_seqs(sub)) == sent, "every seq, in order"
    expiries = [m["expiry"] for m in sub.counts()]
    assert all(e is not None and 0 < e <= COUNTS_EXPIRY_S for e in expiries), expiries
    wait_until(lambda: pub.stats().pending == 0, timeout_s=30)


# --------------------------------------------------------------------------- keepalive


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_an_idle_link_pings_and_keeps_its_connection_through_several_keepalive_periods(
    chatty_mosquitto: Broker, tmp_path: Path, publishers, protocol: str
) -> None:
    """Nothing to send for three keepalive periods: the PINGREQs paho queues must be written, or
    the broker drops us after 1.5 keepalives and we reconnect."""
    broker = chatty_mosquitto
    pub = started(make_cfg(broker.url, tmp_path, keepalive_s=5, protocol=protocol), publishers)
    pub.connect(timeout_s=10)
    wait_until(lambda: pub.stats().pending == 0, timeout_s=20)

    def settled() -> bool:
        dropped = log_lines(broker, "exceeded timeout") or len(log_lines(broker, f"as {DEVICE} ")) > 1
        return bool(dropped) or len(log_lines(broker, f"Sending PINGRESP to {DEVICE}")) >= 3

    wait_until(settled, timeout_s=90)
    assert len(log_lines(broker, f"Sending PINGRESP to {DEVICE}")) >= 3
    assert len(log_lines(broker, f"Received PINGREQ from {DEVICE}")) >= 3
    assert not log_lines(broker, "exceeded timeout"), "the broker never timed us out"
    assert len(log_lines(broker, f"as {DEVICE} ")) == 1, "one connection, no reconnect"
    stats = pub.stats()
    assert stats.connected and stats.last_error is None


@pytest.mark.slow
def test_an_mqtt5_broker_that_shortens_our_keepalive_gets_pinged_at_its_pace(
    strict_keepalive_mosquitto: Broker, tmp_path: Path, publishers
) -> None:
    """keepalive_s is 30, the broker allows 10 (CONNACK's ServerKeepAlive): paho adopts it and
    paho's loop must ping at that pace, or the broker drops us after 15 s."""
    broker = strict_keepalive_mosquitto
    pub = started(make_cfg(broker.url, tmp_path, keepalive_s=30, protocol="5"), publishers)
    pub.connect(timeout_s=10)

    def settled() -> bool:
        dropped = log_lines(broker, "exceeded timeout") or len(log_lines(broker, f"as {DEVICE} ")) > 1
        return bool(dropped) or len(log_lines(broker, f"Sending PINGRESP to {DEVICE}")) >= 2

    wait_until(settled, timeout_s=90)
    assert len(log_lines(broker, f"Sending PINGRESP to {DEVICE}")) >= 2
    assert not log_lines(broker, "exceeded timeout") and len(log_lines(broker, f"as {DEVICE} ")) == 1
    assert pub.stats().connected


# --------------------------------------------------------------------------- clean stop and will


def online_with_will(
    broker: Broker, tmp_path: Path, publishers: List[Any], protocol: str, status: Any
) -> Tuple[MqttPublisher, bytes]:
    """A publisher connected and announced online (seen by the ``status`` subscriber), and its will."""
    pub = started(make_cfg(broker.url, tmp_path, protocol=protocol), publishers)
    pub.connect(timeout_s=10)
    status.wait_for(lambda ms: any(m.payload["state"] == "online" for m in ms))
    assert pub.boot is not None
    return pub, pub.boot.death.payload


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_clean_close_sends_disconnect_and_the_broker_discards_the_will(
    chatty_mosquitto: Broker, tmp_path: Path, subscribe, publishers, protocol: str
) -> None:
    broker = chatty_mosquitto
    sub = subscribe(broker, f"crowdmon/{DEVICE}/status")
    pub, will = online_with_will(broker, tmp_path, publishers, protocol, sub)
    pub.close(clean=True)

    gone = (f"Client {DEVICE} disconnected.", f"Client {DEVICE} closed its connection.", f"client {DEVICE}")
    wait_until(lambda: any(log_lines(broker, line) for line in gone), timeout_s=20)
    assert log_lines(broker, f"Received DISCONNECT from {DEVICE}"), "a DISCONNECT, not a dropped socket"
    assert not log_lines(broker, f"Client {DEVICE} closed its connection.")
    got = sub.wait_for(lambda ms: ms[-1].payload["state"] == "offline")
    offline = [m for m in got if m.payload["state"] == "offline"]
    assert len(offline) == 1 and offline[0].raw != will, "our stamped offline, not the will"
    # The broker publishes nothing more for us: a late subscriber sees our retained offline.
    late = subscribe(broker, f"crowdmon/{DEVICE}/status")
    (status,) = late.wait_for(lambda ms: len(ms) == 1)
    assert status.retain and status.raw == offline[0].raw
    assert len(sub.snapshot()) == len(got), "no will after the clean DISCONNECT"


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_an_unclean_close_leaves_the_will(
    chatty_mosquitto: Broker, tmp_path: Path, subscribe, publishers, protocol: str
) -> None:
    broker = chatty_mosquitto
    sub = subscribe(broker, f"crowdmon/{DEVICE}/status")
    pub, will = online_with_will(broker, tmp_path, publishers, protocol, sub)
    pub.close(clean=False)

    got = sub.wait_for(lambda ms: ms[-1].payload["state"] == "offline")
    assert got[-1].raw == will and got[-1].payload["seq"] == got[0].payload["seq"] + 1


# --------------------------------------------------------------------------- big backlogs


@pytest.mark.slow
def test_a_broker_stopped_mid_drain_of_big_payloads_and_restarted_loses_nothing(
    mosquitto: Broker, tmp_path: Path, subscribe, publishers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker goes away while paho has a big backlog partly written; the next connection
    (a fresh paho client) starts again from the oldest unacknowledged row."""
    sub = subscribe(mosquitto, f"crowdmon/{DEVICE}/counts", client_id="control-room", persistent=True)
    mosquitto.stop()
    n = 1000
    pub = started(make_cfg(mosquitto.url, tmp_path), publishers)
    for i in range(n):
        pub.publish(big_counts(i))
    wait_until(lambda: len(queued_counts(pub)) == n, timeout_s=60)
    queued = [row.seq for row in pub.outbox.pending(limit=100_000)]
    deletes = record_deletes(pub, monkeypatch)
    mosquitto.start()

    wait_until(lambda: pub.delivery is not None and pub.delivery.status.last_puback is not None, timeout_s=60)
    mosquitto.stop()  # graceful: the broker keeps what it acknowledged for the control room
    left = pub.stats().pending
    mosquitto.start()

    got = sub.wait_for(lambda ms: len(set(seqs(ms))) == n, timeout_s=120)
    assert first_occurrences(seqs(got)) == queued[2:], "every seq, in order"  # after the birth and the anomaly state
    wait_until(lambda: pub.stats().pending == 0, timeout_s=60)
    deleted = Counter(seq for batch in deletes for seq in batch)
    assert sorted(deleted) == queued and max(deleted.values()) == 1
    assert left > 0, "the broker went away mid-drain (else this test proved less than it claims)"


@pytest.mark.slow
def test_a_frozen_broker_is_declared_dead_by_keepalive_and_nothing_is_lost_when_it_thaws(
    mosquitto: Broker, tmp_path: Path, subscribe, publishers
) -> None:
    """The broker freezes (SIGSTOP) with our publishes and PINGREQ written but unread: paho's
    keepalive, run by paho's loop, must notice the missing PINGRESP and drop the link; reconnects fail
    while it is frozen; after SIGCONT every seq arrives in order and the device is online."""
    sub = subscribe(mosquitto, f"crowdmon/{DEVICE}/#")
    pub = started(make_cfg(mosquitto.url, tmp_path, keepalive_s=5, connect_timeout_s=2), publishers)
    pub.connect(timeout_s=10)
    wait_until(lambda: pub.stats().pending == 0, timeout_s=20)

    assert mosquitto.proc is not None
    os.kill(mosquitto.proc.pid, signal.SIGSTOP)
    try:
        for i in range(10):
            pub.publish(counts(i))
        wait_until(lambda: not pub.stats().connected, timeout_s=60)  # only our keepalive can tell
        for i in range(10, 20):
            pub.publish(counts(i))
        wait_until(lambda: len(queued_counts(pub)) == 20, timeout_s=20)
        sent = queued_counts(pub)
        wait_until(lambda: "CONNACK" in (pub.stats().last_error or ""), timeout_s=60)  # a reconnect failed
    finally:
        os.kill(mosquitto.proc.pid, signal.SIGCONT)

    got = sub.wait_for(lambda ms: len(set(seqs(ms))) == 20, timeout_s=60)
    assert first_occurrences(seqs(got)) == sent, "every seq, in order"
    wait_until(lambda: pub.stats().pending == 0 and pub.stats().connected, timeout_s=60)
    # Our reconnect attempts to the frozen broker each left a CONNECT (with our will) in its accept
    # queue; thawed, it may publish those wills. The last word is ours: the device is online.
    late = subscribe(mosquitto, f"crowdmon/{DEVICE}/status")
    late.wait_for(lambda ms: bool(ms) and ms[-1].payload["state"] == "online", timeout_s=30)


# --------------------------------------------------------------------------- shutdown with work in flight


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_clean_close_right_after_a_big_backlog_drains_it_then_disconnects(
    chatty_mosquitto: Broker, tmp_path: Path, subscribe, publishers, protocol: str
) -> None:
    """close(clean=True) with a backlog of big payloads still queued in paho and the socket: the
    backlog, our 'offline' and the DISCONNECT are all written, in that order."""
    broker = chatty_mosquitto
    sub = subscribe(broker, f"crowdmon/{DEVICE}/#")
    cfg = make_cfg(broker.url, tmp_path, protocol=protocol)
    cfg.publish.close_timeout_s = 60
    pub = started(cfg, publishers)
    pub.connect(timeout_s=10)
    n = 150
    for i in range(n):
        pub.publish(big_counts(i))
    assert pub.writer is not None and pub.boot is not None
    will = pub.boot.death.payload
    pub.close(clean=True)

    assert log_lines(broker, f"Received DISCONNECT from {DEVICE}"), "the DISCONNECT went out"
    got = sub.wait_for(lambda ms: len(set(seqs(ms))) == n and ms[-1].payload.get("state") == "offline", 60)
    data = first_occurrences(seqs(got))
    assert data == sorted(data) and len(data) == n, "every seq, in order"
    statuses = [m for m in got if m.topic.endswith("/status")]
    assert [m.payload["state"] for m in statuses] == ["online", "offline"] and statuses[-1].raw != will
    box = Outbox(tmp_path / "outbox.sqlite3", max_bytes=1 << 30, max_age_s=1e9)
    try:
        assert [row.seq for row in box.pending(limit=100_000)] == [], "all acknowledged and deleted"
    finally:
        box.close()


def test_the_selftest_probe_ends_with_a_disconnect(chatty_mosquitto: Broker, tmp_path: Path) -> None:
    broker = chatty_mosquitto
    line = check_broker(make_cfg(broker.url, tmp_path).mqtt, DEVICE, timeout_s=10)
    assert "may publish as" in line
    wait_until(lambda: bool(log_lines(broker, f"Client {DEVICE}-selftest ")), timeout_s=20)
    assert log_lines(broker, f"Received DISCONNECT from {DEVICE}-selftest")
    assert not log_lines(broker, f"Client {DEVICE}-selftest closed its connection.")


@pytest.mark.slow
def test_a_clean_close_against_a_frozen_broker_deletes_nothing_unacknowledged_and_the_next_boot_sends_it(
    mosquitto: Broker, tmp_path: Path, subscribe, publishers
) -> None:
    """close(clean=True) while the broker does not read gives up after close_timeout_s and deletes
    nothing without its PUBACK. What it wrote may never be read: thawed, the broker acks into our
    closed socket, gets a reset and drops the rest (the will goes out). The next boot sends it all."""
    sub = subscribe(mosquitto, f"crowdmon/{DEVICE}/counts", client_id="control-room", persistent=True)
    cfg = make_cfg(mosquitto.url, tmp_path)
    cfg.publish.close_timeout_s = 1
    pub = started(cfg, publishers)
    pub.connect(timeout_s=10)
    wait_until(lambda: pub.stats().pending == 0, timeout_s=20)
    assert mosquitto.proc is not None

    os.kill(mosquitto.proc.pid, signal.SIGSTOP)
    try:
        for i in range(5):
            pub.publish(counts(i))
        wait_until(lambda: len(queued_counts(pub)) == 5, timeout_s=20)
        sent = queued_counts(pub)
        pub.close(clean=True)
    finally:
        os.kill(mosquitto.proc.pid, signal.SIGCONT)
    box = Outbox(tmp_path / "outbox.sqlite3", max_bytes=1 << 30, max_age_s=1e9)
    try:
        kept = [row.seq for row in box.pending(limit=100_000) if row.kind == "counts"]
    finally:
        box.close()
    assert kept == sent, "nothing deleted without its PUBACK"

    again = started(cfg, publishers)
    got = sub.wait_for(lambda ms: set(sent) <= set(seqs(ms)), timeout_s=30)
    assert [s for s in first_occurrences(seqs(got)) if s in sent] == sent, "every seq, in order"
    wait_until(lambda: again.stats().pending == 0, timeout_s=30)


# --------------------------------------------------------------------------- a stolen session


def test_a_session_taken_over_by_our_client_id_is_taken_back_and_delivery_goes_on(
    chatty_mosquitto: Broker, tmp_path: Path, subscribe, publishers
) -> None:
    """Another client connects with our id: the broker closes our connection ("already connected,
    closing old connection"), the link must be reported lost, and it reconnects; nothing is lost."""
    broker = chatty_mosquitto
    sub = subscribe(broker, f"crowdmon/{DEVICE}/counts")
    pub = started(make_cfg(broker.url, tmp_path), publishers)
    pub.connect(timeout_s=10)
    impostor = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=DEVICE, protocol=paho.MQTTv5)
    impostor.connect(broker.host, broker.port)
    try:

        def impostor_in() -> bool:
            impostor.loop(0.05)
            return len(log_lines(broker, f"as {DEVICE} ")) >= 2

        wait_until(impostor_in, timeout_s=20)
        pub.publish(counts(0))
        wait_until(lambda: len(log_lines(broker, f"as {DEVICE} ")) >= 3, timeout_s=30)  # we took it back
    finally:
        impostor.disconnect()
    pub.publish(counts(1))
    got = sub.wait_for(lambda ms: len(set(seqs(ms))) == 2, timeout_s=30)
    data = first_occurrences(seqs(got))
    assert data == sorted(data)
    wait_until(lambda: pub.stats().pending == 0 and pub.stats().connected, timeout_s=30)
