"""The publisher against a real Mosquitto and real subscribers: delivery, birth/death, outages, crashes."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import time
from pathlib import Path
from typing import List

import jsonschema
import pytest
from support.brokers import Broker, Received, free_port
from support.publishing import (
    DEVICE,
    SHA,
    counts,
    first_occurrences,
    health_of,
    make_cfg,
    seqs,
    start_driver,
    started,
)
from support.waiting import wait_until

from appliance.publish import (
    AnomalyMessage,
    BrokerRejected,
    BrokerUnreachable,
    Outbox,
    check_broker,
    utcnow,
)
from appliance.publish.messages import MESSAGE_TYPES, message_schema

pytestmark = pytest.mark.mqtt

# --------------------------------------------------------------------------- delivery, birth, death


def test_counts_arrive_and_parse_and_status_is_retained_online(
    mosquitto: Broker, tmp_path: Path, subscribe, publishers
) -> None:
    sub = subscribe(mosquitto, f"crowdmon/{DEVICE}/#")
    pub = started(make_cfg(mosquitto.url, tmp_path), publishers)
    pub.connect(timeout_s=5)
    for i in range(3):
        pub.publish(counts(i))
    pub.publish(AnomalyMessage(type="overcrowding", event_id="0" * 32, zone="hall", state="raised", value=31,
                               threshold=30,
                               since=utcnow(), reason="31 > 30 for 5 s"))
    pub.publish(health_of(pub))
    got = sub.wait_for(lambda ms: len(seqs(ms)) == 3 and seqs(ms, "health"))

    for m in got:
        kind = m.topic.rsplit("/", 1)[1]
        jsonschema.validate(m.payload, message_schema(MESSAGE_TYPES[kind]))
        assert m.payload["device_id"] == DEVICE and m.payload["boot_id"] == pub.boot_id
    birth = next(m for m in got if m.topic.endswith("/status")).payload
    assert birth["state"] == "online" and birth["models"] == [{"name": "ssdlite-person-int8", "sha256": SHA}]
    data = first_occurrences([m.payload["seq"] for m in got if not m.topic.endswith("/status")])
    # After the birth and its reserved death seq: the boot's empty anomaly state, 3 counts, the
    # anomaly, the state listing it, health.
    assert data == sorted(data) and data == list(range(birth["seq"] + 2, birth["seq"] + 9))
    assert seqs(got, "health") and got[-1].payload["outbox"]["egress_refused"] == 0

    # A control room connecting later is told the device is online by the retained birth.
    late = subscribe(mosquitto, f"crowdmon/{DEVICE}/status")
    (status,) = late.wait_for(lambda ms: len(ms) == 1)
    assert status.retain and status.payload["state"] == "online"
    # Acknowledged messages are deleted from the outbox (in batches, to spare the SD card).
    wait_until(lambda: pub.stats().pending == 0)


def test_clean_stop_publishes_offline_retained(mosquitto: Broker, tmp_path: Path, subscribe, publishers) -> None:
    pub = started(make_cfg(mosquitto.url, tmp_path), publishers)
    pub.connect(timeout_s=5)
    pub.publish(counts(0))
    birth_seq = seqs_of_status(mosquitto, subscribe, "online")
    pub.close(clean=True)

    late = subscribe(mosquitto, f"crowdmon/{DEVICE}/status")
    (status,) = late.wait_for(lambda ms: len(ms) == 1)
    assert status.retain and status.payload["state"] == "offline"
    assert status.payload["seq"] == birth_seq + 1, "death takes the seq reserved next to the birth"


def seqs_of_status(broker: Broker, subscribe, state: str) -> int:
    sub = subscribe(broker, f"crowdmon/{DEVICE}/status")
    got = sub.wait_for(lambda ms: any(m.payload["state"] == state for m in ms))
    return int([m for m in got if m.payload["state"] == state][-1].payload["seq"])


def test_sigkill_leaves_the_last_will_offline(mosquitto: Broker, tmp_path: Path, subscribe) -> None:
    sub = subscribe(mosquitto, f"crowdmon/{DEVICE}/status")
    proc = start_driver("--broker", mosquitto.url, "--device-id", DEVICE, "--outbox", str(tmp_path / "o.db"))
    try:
        online = sub.wait_for(lambda ms: any(m.payload["state"] == "online" for m in ms), 20)[-1].payload
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        offline = sub.wait_for(lambda ms: ms[-1].payload["state"] == "offline", 10)[-1].payload
    finally:
        proc.kill()
    assert (offline["boot_id"], offline["seq"]) == (online["boot_id"], online["seq"] + 1)
    assert offline["started_at"] == online["started_at"]
    late = subscribe(mosquitto, f"crowdmon/{DEVICE}/status")
    (status,) = late.wait_for(lambda ms: len(ms) == 1)
    assert status.retain and status.payload["state"] == "offline", "the will is retained"


def test_unreachable_broker_keeps_buffering_and_reports_it(tmp_path: Path, publishers) -> None:
    pub = started(make_cfg(f"mqtt://127.0.0.1:{free_port()}", tmp_path), publishers)
    with pytest.raises(BrokerUnreachable, match="cannot connect"):
        pub.connect(timeout_s=1)
    pub.publish(counts(0))
    stats = pub.stats()
    # The birth and the boot's empty anomaly state wait too: the first rows of this boot's backlog.
    assert stats.pending == 3 and not stats.connected and "cannot connect" in (stats.last_error or "")


def test_refused_credentials_give_a_clear_error(locked_mosquitto: Broker, tmp_path: Path, publishers) -> None:
    pub = started(make_cfg(locked_mosquitto.url, tmp_path), publishers)
    t0 = time.monotonic()
    with pytest.raises(BrokerRejected, match="broker refused the connection: Not authorized"):
        pub.connect(timeout_s=10)
    assert time.monotonic() - t0 < 5, "a refusal is reported at once, not after the timeout"
    with pytest.raises(BrokerRejected):
        check_broker(make_cfg(locked_mosquitto.url, tmp_path).mqtt, DEVICE, timeout_s=5)


def test_password_comes_from_a_file_and_is_never_in_errors(
    locked_mosquitto: Broker, tmp_path: Path, publishers, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cret-Pa55word"
    (tmp_path / "pw").write_text(secret + "\n")
    cfg = make_cfg(locked_mosquitto.url, tmp_path, username="cam", password_file=str(tmp_path / "pw"))
    pub = started(cfg, publishers)
    with pytest.raises(BrokerRejected) as info:
        pub.connect(timeout_s=10)
    assert secret not in str(info.value) and secret not in caplog.text


def test_mqtt_311_works_when_pinned(mosquitto: Broker, tmp_path: Path, subscribe, publishers) -> None:
    sub = subscribe(mosquitto, f"crowdmon/{DEVICE}/counts")
    pub = started(make_cfg(mosquitto.url, tmp_path, protocol="3.1.1"), publishers)
    pub.connect(timeout_s=5)
    pub.publish(counts(0))
    sub.wait_for(lambda ms: len(ms) == 1)


# --------------------------------------------------------------------------- store-and-forward


# 30 s: longer than a keepalive and several reconnect attempts; APPLIANCE_TEST_OUTAGE_S shortens
# it for quick local runs.
OUTAGE_S = float(os.environ.get("APPLIANCE_TEST_OUTAGE_S", "30"))


@pytest.mark.slow
@pytest.mark.parametrize("outage_s", [OUTAGE_S])
def test_broker_outage_loses_nothing(
    mosquitto: Broker, tmp_path: Path, subscribe, publishers, outage_s: float
) -> None:
    """Broker stopped mid-stream for ``outage_s`` (30 s), then restarted: every seq arrives,
    exactly once after dedup, in order."""
    # A persistent control-room session: the broker keeps what arrives while it reconnects.
    sub = subscribe(mosquitto, f"crowdmon/{DEVICE}/counts", client_id="control-room", persistent=True)
    pub = started(make_cfg(mosquitto.url, tmp_path), publishers)
    pub.connect(timeout_s=5)

    period = 0.05
    stop_at, restart_at, end_at = 1.0, 1.0 + outage_s, 2.0 + outage_s
    t0 = time.monotonic()
    stopped = restarted = False
    n = 0
    while time.monotonic() - t0 < end_at:
        pub.publish(counts(n))
        n += 1
        elapsed = time.monotonic() - t0
        if not stopped and elapsed >= stop_at:
            mosquitto.stop()
            stopped = True
        elif stopped and not restarted and elapsed >= restart_at:
            assert pub.stats().pending > 0, "messages queue up in the outbox during the outage"
            mosquitto.start()
            restarted = True
        time.sleep(period)

    got = sub.wait_for(lambda ms: len(set(seqs(ms))) >= n, timeout_s=30)
    received = seqs(got)
    first = min(received)
    expected = list(range(first, first + n))
    assert first_occurrences(received) == expected, "every seq, in order, after dedup"
    wait_until(lambda: pub.stats().pending == 0)


@pytest.mark.slow
def test_sigkill_at_random_points_loses_no_seq(mosquitto: Broker, tmp_path: Path, subscribe) -> None:
    """The publisher process is SIGKILLed at seeded random points (during start-up, or after a
    known number of stored messages while publishing and delivering) and restarted; then a final
    run drains. No committed seq is lost, every one arrives, and the SQLite file is intact. Kill
    points are events read from the driver, never sleeps racing a loaded machine's clock."""
    rounds = int(os.environ.get("APPLIANCE_TEST_KILL_ROUNDS", "20"))
    rng = random.Random(1234)
    outbox = tmp_path / "outbox.sqlite3"
    sub = subscribe(mosquitto, f"crowdmon/{DEVICE}/#", client_id="control-room", persistent=True)
    base = ["--broker", mosquitto.url, "--device-id", DEVICE, "--outbox", str(outbox), "--period", "0.01"]
    kills_after_ready = 0
    for _ in range(rounds):
        proc = start_driver(*base, "--announce")
        assert proc.stdout is not None
        if rng.random() < 0.25:
            proc.send_signal(signal.SIGKILL)  # during start-up: wherever the process happens to be
        else:
            assert proc.stdout.readline().startswith("ready")
            for _ in range(rng.randint(0, 40)):
                assert proc.stdout.readline().startswith("published")
            proc.send_signal(signal.SIGKILL)
            kills_after_ready += 1
        proc.communicate(timeout=20)

    final = start_driver(*base, "--drain")
    _, err = final.communicate(timeout=60)
    assert final.returncode == 0, err

    box = Outbox(outbox, max_bytes=1 << 30, max_age_s=1e9)
    try:
        assert box.integrity_check() == "ok"
        assert box.stats().pending == 0
        last_seq = box.last_seq
        reserved = set(box.reserved_seqs())
        boot_id = box.boot_id
    finally:
        box.close()
    data_expected = [s for s in range(1, last_seq + 1) if s not in reserved]  # counts and anomaly states

    def data(ms: List[Received]) -> List[int]:
        return [m.payload["seq"] for m in ms if not m.topic.endswith("/status")]

    got = sub.wait_for(lambda ms: set(data(ms)) >= set(data_expected), timeout_s=30)
    received = data(got)
    assert sorted(set(received)) == data_expected, "no seq lost and none invented"
    assert first_occurrences(received) == data_expected, "delivered in seq order across restarts"
    # Kills before start() leave no boot behind; every boot that started announced itself.
    births = {m.payload["boot_id"] for m in got if m.topic.endswith("/status") and m.payload["state"] == "online"}
    assert max(births) == boot_id and boot_id >= kills_after_ready + 1


def test_outbox_file_is_a_plain_sqlite_database(mosquitto: Broker, tmp_path: Path, publishers) -> None:
    pub = started(make_cfg(mosquitto.url, tmp_path), publishers)
    pub.publish(counts(0))
    with sqlite3.connect(tmp_path / "outbox.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_driver_stops_cleanly_on_sigterm(mosquitto: Broker, tmp_path: Path, subscribe) -> None:
    sub = subscribe(mosquitto, f"crowdmon/{DEVICE}/status")
    proc = start_driver("--broker", mosquitto.url, "--device-id", DEVICE, "--outbox", str(tmp_path / "o.db"))
    sub.wait_for(lambda ms: any(m.payload["state"] == "online" for m in ms), 20)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and "closed" in out, err
    sub.wait_for(lambda ms: ms[-1].payload["state"] == "offline")
