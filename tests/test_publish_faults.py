"""The delivery promises under faults, on real components: a locked or full SQLite file, a second
process, a broker that refuses our identity, boots killed during an outage, health during an outage.

Disk-full tests mount a small tmpfs (root only; skipped with the reason otherwise)."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import sqlite3
import subprocess
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from support.brokers import Broker, Received, free_port, require_mosquitto, run_user_line
from support.clocks import SteppedClock
from support.publishing import (
    DEVICE,
    LockHolder,
    cfg_for,
    counts,
    first_occurrences,
    health_of,
    publisher_for,
    seqs,
    start_driver,
    started,
)
from support.waiting import wait_until

from appliance.config import config_hash
from appliance.errors import ApplianceError, DeliveryFailed, InputError
from appliance.publish import (
    FullJitterBackoff,
    MqttPublisher,
    Outbox,
    make_birth,
    make_publisher,
    utcnow,
)

pytestmark = pytest.mark.mqtt


def stored(pub: MqttPublisher, kind: str) -> List[Dict[str, Any]]:
    return [json.loads(r.payload) for r in pub.outbox.pending(limit=10_000) if r.kind == kind]


# --------------------------------------------------------------------------- 1. storage errors


def test_delivery_survives_a_locked_outbox_and_reports_it(
    mosquitto: Broker, tmp_path: Path, subscribe, publishers
) -> None:
    """``database is locked`` past the busy timeout used to kill the delivery thread for good."""
    sub = subscribe(mosquitto, f"crowdmon/{DEVICE}/#", client_id="control-room", persistent=True)
    mosquitto.stop()
    pub = started(cfg_for(mosquitto.url, tmp_path / "o.db", busy_timeout_s=0.2), publishers)
    for i in range(5):
        pub.publish(counts(i))
    lock = LockHolder(tmp_path / "o.db")
    try:
        mosquitto.start()  # delivered, but the PUBACKs cannot be recorded while the file is locked
        sub.wait_for(lambda ms: len(set(seqs(ms))) == 5, timeout_s=20)
        wait_until(lambda: pub.stats().write_errors > 0, timeout_s=20)
        for i in range(5, 8):
            pub.publish(counts(i))  # held in memory, not lost
        stats = pub.stats()
        assert stats.held_in_memory == 3 and "locked" in (stats.last_error or "")
        pub.publish(health_of(pub))
        pub.check()  # still alive
    finally:
        lock.release()
    got = sub.wait_for(lambda ms: len(set(seqs(ms))) == 8 and seqs(ms, "health"), timeout_s=30)
    data = first_occurrences(seqs(got))
    assert data == sorted(data) and data == list(range(data[0], data[0] + 8)), "every seq, in order"
    reported = [m.payload for m in got if m.topic.endswith("/health")][-1]
    assert reported["state"] == "degraded" and reported["outbox"]["write_errors"] > 0
    wait_until(lambda: pub.stats().pending == 0 and pub.stats().held_in_memory == 0, timeout_s=20)
    pub.check()


def test_storage_that_stays_broken_ends_in_delivery_failed(mosquitto: Broker, tmp_path: Path, publishers) -> None:
    """Never a half-dead device: when storage errors outlast ``storage_give_up_s``, ``check()``
    raises DeliveryFailed (exit 1) so the service manager restarts the appliance."""
    mosquitto.stop()
    pub = started(cfg_for(mosquitto.url, tmp_path / "o.db", busy_timeout_s=0.2, storage_give_up_s=1), publishers)
    pub.publish(counts(0))
    lock = LockHolder(tmp_path / "o.db")
    try:
        mosquitto.start()
        assert pub.delivery is not None
        wait_until(lambda: pub.delivery is not None and pub.delivery.status.failure is not None, timeout_s=30)
        with pytest.raises(DeliveryFailed, match="outbox storage failing for 1 s: database is locked") as info:
            pub.check()
        assert info.value.exit_code == 1
    finally:
        lock.release()


# --------------------------------------------------------------------------- 2. disk full


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs: a real file system that really fills up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (disk-full tests run in CI as root)")
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_holds_messages_in_memory_and_makes_overflow_visible(
    mosquitto: Broker, small_disk: Path, subscribe, publishers
) -> None:
    """A message that cannot be stored never vanishes silently: it waits in memory; past the
    memory bound the oldest is lost, counted in health and left as a gap in the seq stream."""
    sub = subscribe(mosquitto, f"crowdmon/{DEVICE}/#")
    pub = started(cfg_for(mosquitto.url, small_disk / "o.db", memory_queue_max=4), publishers)
    pub.connect(timeout_s=10)
    pub.publish(counts(0))
    first = sub.wait_for(lambda ms: len(seqs(ms)) == 1)
    seq0 = seqs(first)[0]
    filler = fill(small_disk)
    for i in range(1, 7):
        pub.publish(counts(i))  # seqs seq0+1 .. seq0+6: the first two overflow
    stats = pub.stats()
    assert stats.write_errors > 0 and stats.held_in_memory == 4 and stats.lost == 2
    pub.publish(health_of(pub))  # the fifth waiting message: one more of the oldest is lost
    assert pub.stats().lost == 3
    filler.unlink()
    got = sub.wait_for(lambda ms: seqs(ms, "health"), timeout_s=20)
    data = first_occurrences(seqs(got))
    assert data == [seq0, seq0 + 4, seq0 + 5, seq0 + 6], "the lost seqs are a visible gap, never reused"
    reported = [m.payload for m in got if m.topic.endswith("/health")][-1]
    assert reported["seq"] == seq0 + 7
    assert reported["state"] == "degraded" and reported["outbox"]["lost"] == 2
    assert reported["outbox"]["write_errors"] > 0
    wait_until(lambda: pub.stats().held_in_memory == 0)
    assert pub.outbox.stats().lost == 3, "the loss is recorded in the file with the gap"


def test_an_outbox_on_a_full_disk_is_a_runtime_failure_not_a_config_error(small_disk: Path) -> None:
    """Exit 1 (the service restarts and the disk may have room by then), not exit 2 (never restarted)."""
    fill(small_disk)
    cfg = cfg_for(f"mqtt://127.0.0.1:{free_port()}", small_disk / "o.db")
    with pytest.raises(ApplianceError) as info:
        publisher_for(cfg)
    assert not isinstance(info.value, InputError) and info.value.exit_code == 1
    assert "full" in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------- 3. one process per outbox


def test_a_second_instance_is_refused_with_exit_code_3(mosquitto: Broker, tmp_path: Path) -> None:
    args = ["--broker", mosquitto.url, "--device-id", DEVICE, "--outbox", str(tmp_path / "o.db")]
    first = start_driver(*args)
    try:
        assert first.stdout is not None and first.stdout.readline().startswith("ready")
        second = start_driver(*args)
        _, err = second.communicate(timeout=60)
        assert second.returncode == 3, err
        assert err.strip().count("\n") == 0 and "in use by another appliance process (pid" in err
        assert first.poll() is None, "the first instance runs on undisturbed"
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)
    assert first.returncode == 0


# --------------------------------------------------------------------------- 4. broker refusals


@pytest.fixture
def acl_mosquitto(tmp_path: Path) -> Iterator[Broker]:
    """A broker whose ACL the test can change (SIGHUP reloads it), starting with one that lets
    nobody publish anything: the one ACL mistake a site can easily make."""
    require_mosquitto()
    work = tmp_path / "acl-broker"
    work.mkdir()
    acl = work / "acl"
    acl.write_text("topic read crowdmon/#\n")
    port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(f"{run_user_line()}listener {port} 127.0.0.1\nallow_anonymous true\nacl_file {acl}\n")
    broker = Broker(port, conf, work)
    broker.start()
    yield broker
    broker.stop()


def test_refused_messages_are_kept_and_delivered_once_the_broker_allows_them(
    acl_mosquitto: Broker, tmp_path: Path, subscribe, publishers
) -> None:
    sub = subscribe(acl_mosquitto, f"crowdmon/{DEVICE}/#")
    pub = started(cfg_for(acl_mosquitto.url, tmp_path / "o.db"), publishers)
    pub.connect(timeout_s=10)
    for i in range(3):
        pub.publish(counts(i))
    wait_until(lambda: pub.stats().rejected >= 2, timeout_s=20)  # refused, reconnected, refused again
    stats = pub.stats()
    assert stats.pending == 5 and "Not authorized" in (stats.last_error or ""), "kept, and the reason is shown"
    pub.publish(health_of(pub))
    assert stored(pub, "health")[-1]["state"] == "degraded", "health says delivery is stuck"

    (acl_mosquitto.workdir / "acl").write_text("topic readwrite crowdmon/#\n")
    assert acl_mosquitto.proc is not None
    acl_mosquitto.proc.send_signal(signal.SIGHUP)  # the site fixes its ACL
    got = sub.wait_for(lambda ms: len(set(seqs(ms))) == 3 and seqs(ms, "health"), timeout_s=30)
    data = first_occurrences(seqs(got))
    assert data == sorted(data) and len(data) == 3
    wait_until(lambda: pub.stats().pending == 0, timeout_s=20)
    assert pub.stats().last_error is None


# --------------------------------------------------------------------------- 5. boots inside an outage


@pytest.mark.slow
def test_boots_killed_during_an_outage_all_reach_the_control_room_in_seq_order(
    mosquitto: Broker, tmp_path: Path, subscribe
) -> None:
    """Three boots live and die (kill -9) entirely inside a broker outage, then a fourth drains.
    The control room sees every seq, births and deaths included, in seq order: no boot's birth
    overtakes an older backlog, and the retained status ends as the last boot's."""
    outbox = tmp_path / "outbox.sqlite3"
    room = subscribe(mosquitto, f"crowdmon/{DEVICE}/#", client_id="control-room", persistent=True)
    mosquitto.stop()
    base = ["--broker", mosquitto.url, "--device-id", DEVICE, "--outbox", str(outbox), "--period", "0.01"]
    rng = random.Random(7)
    for _ in range(3):
        proc = start_driver(*base, "--announce")
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("ready")
        for _ in range(rng.randint(1, 5)):  # kill after a known number of stored messages
            assert proc.stdout.readline().startswith("published")
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=20)
    mosquitto.start()
    final = start_driver(*base, "--drain")
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err

    box = Outbox(outbox, max_bytes=1 << 30, max_age_s=1e9)
    try:
        last_seq, boot_id, reserved = box.last_seq, box.boot_id, box.reserved_seqs()
        assert box.stats().pending == 0
    finally:
        box.close()
    got = room.wait_for(lambda ms: {m.payload["seq"] for m in ms} >= set(range(1, last_seq + 1)), timeout_s=30)
    order = first_occurrences([m.payload["seq"] for m in got])
    # The draining boot's own death comes last, after its anomaly state (its seq was reserved at its birth).
    final_death = reserved[-1]
    expected = [s for s in range(1, last_seq + 1) if s != final_death] + [final_death]
    assert order == expected, "every seq, reserved ones included, in seq order"
    status = [(m.payload["boot_id"], m.payload["state"]) for m in got if m.topic.endswith("/status")]
    for boot in range(1, boot_id + 1):
        assert (boot, "online") in status and (boot, "offline") in status, f"boot {boot} announced and ended"
    late = subscribe(mosquitto, f"crowdmon/{DEVICE}/status")
    (retained,) = late.wait_for(lambda ms: len(ms) == 1)
    assert (retained.payload["boot_id"], retained.payload["state"]) == (boot_id, "offline")


# --------------------------------------------------------------------------- 6. link health


def test_health_reports_the_broker_link_and_degrades_during_an_outage(
    mosquitto: Broker, tmp_path: Path, subscribe, publishers
) -> None:
    sub = subscribe(mosquitto, f"crowdmon/{DEVICE}/health", client_id="control-room", persistent=True)
    pub = started(cfg_for(mosquitto.url, tmp_path / "o.db"), publishers)
    pub.connect(timeout_s=10)
    pub.publish(counts(0))
    wait_until(lambda: pub.stats().seconds_since_puback is not None)
    pub.publish(health_of(pub))
    mosquitto.stop()
    wait_until(lambda: not pub.stats().connected)
    pub.publish(health_of(pub))
    mosquitto.start()
    got: List[Received] = sub.wait_for(lambda ms: len({m.payload["seq"] for m in ms}) == 2, timeout_s=30)
    wait_until(lambda: pub.stats().pending == 0, timeout_s=20)
    pub.publish(health_of(pub))
    got = sub.wait_for(lambda ms: len({m.payload["seq"] for m in ms}) == 3, timeout_s=30)
    by_seq = {m.payload["seq"]: m.payload for m in got}
    before, during, after = (by_seq[seq] for seq in sorted(by_seq))
    assert before["state"] == "ok" and before["link"]["connected"] is True
    assert before["link"]["seconds_since_puback"] is not None
    assert during["state"] == "degraded" and during["link"]["connected"] is False
    assert "cannot connect" in during["link"]["last_error"] or "lost" in during["link"]["last_error"]
    assert after["state"] == "ok" and after["link"] == {**after["link"], "connected": True, "last_error": None}


def test_a_link_that_just_went_down_is_reported_with_its_reason_in_the_same_snapshot(
    mosquitto: Broker, tmp_path: Path, publishers
) -> None:
    """Health built at any moment never says "disconnected" with no reason: the delivery status is
    one immutable snapshot, replaced with both at once when paho sees the connection end."""
    pub = started(cfg_for(mosquitto.url, tmp_path / "o.db"), publishers)
    pub.connect(timeout_s=10)
    seen: List[Any] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            stats = pub.stats()
            seen.append((stats.connected, stats.last_error))
            if not stats.connected:
                return

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        mosquitto.stop()
        watcher.join(30)
    finally:
        done.set()
        mosquitto.start()
    connected, error = seen[-1]
    assert connected is False
    assert error is not None and "lost" in error
    assert all(e is None for c, e in seen if c), "while connected, no stale error"


# --------------------------------------------------------------------------- reconnect policy


def test_reconnect_backoff_is_full_jitter_exponential_and_capped() -> None:
    backoff = FullJitterBackoff(1.0, 60.0, random.Random(42))
    ceilings, delays = [], []
    for _ in range(10):
        ceilings.append(backoff.ceiling_s)
        delays.append(backoff.next_delay())
    assert ceilings == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60], "doubles, then capped"
    assert all(0 <= d <= c for d, c in zip(delays, ceilings)), "each wait drawn from [0, ceiling]"
    assert len({round(d, 6) for d in delays}) == len(delays), "jittered, not a fixed schedule"
    backoff.reset()
    assert backoff.ceiling_s == 1.0, "a success starts again from min_s"
    # A fleet restarting together spreads out: 1,000 devices' waits at the cap cover it evenly.
    fleet = [FullJitterBackoff(1.0, 60.0, random.Random(seed)) for seed in range(1000)]
    for b in fleet:
        for _ in range(6):
            b.next_delay()
    waits = sorted(b.next_delay() for b in fleet)
    assert waits[0] < 3 and waits[-1] > 57 and 20 < waits[500] < 40


# --------------------------------------------------------------------------- the clock


def test_a_backlog_from_a_1970_boot_survives_ntp_and_says_its_clock_was_unset(
    mosquitto: Broker, tmp_path: Path, subscribe, publishers
) -> None:
    """A board without RTC boots in 1970 with the broker down; NTP steps the clock 56 years forward
    before the broker is back. Nothing is dropped as "older than 7 days", and what was queued
    before NTP says its timestamps are not real time."""
    sub = subscribe(mosquitto, f"crowdmon/{DEVICE}/#", client_id="control-room", persistent=True)
    mosquitto.stop()
    clock = SteppedClock(wall_s=120.0)
    cfg = cfg_for(mosquitto.url, tmp_path / "o.db")
    birth = make_birth(config_hash=config_hash(cfg), board=cfg.profile.name, models=(), started_at=utcnow())
    pub = make_publisher(
        device_id=DEVICE, mqtt=cfg.mqtt, publish=cfg.publish, outbox=cfg.outbox, birth=birth, clock=clock
    )
    assert isinstance(pub, MqttPublisher)
    publishers.append(pub)
    pub.start()
    for i in range(3):
        pub.publish(counts(i))
        clock.advance(10)
    clock.wall_s = 1_765_000_000.0  # NTP
    pub.publish(counts(3))
    pub.publish(health_of(pub))  # every append applies the age limit
    assert pub.stats().dropped == {}
    mosquitto.start()
    got = sub.wait_for(lambda ms: len(set(seqs(ms))) == 4, timeout_s=60)
    synced = {m.payload["seq"]: m.payload["clock_synced"] for m in got if m.topic.endswith("/counts")}
    assert sorted(synced.values()) == [False, False, False, True]
    assert synced[max(synced)] is True


# --------------------------------------------------------------------------- damage on the card


def test_a_damaged_byte_in_one_stored_message_costs_that_message_only(
    mosquitto: Broker, tmp_path: Path, subscribe, publishers
) -> None:
    """A backlog stored during an outage; one byte of one row goes bad on the card before the next
    start (here: the kind, so the row no longer decodes as UTF-8). The next boot delivers its birth
    and every other message in seq order, reports the damaged one in health, and its seq is a gap."""
    room = subscribe(mosquitto, f"crowdmon/{DEVICE}/#", client_id="control-room", persistent=True)
    mosquitto.stop()
    path = tmp_path / "o.db"
    first = started(cfg_for(mosquitto.url, path), publishers)
    for i in range(5):
        first.publish(counts(i))
    stored = [row.seq for row in first.outbox.pending(limit=100)]
    first.close(clean=False)
    db = sqlite3.connect(str(path))
    victim = stored[3]
    db.execute("UPDATE messages SET kind = CAST(X'636f756e74ff' AS TEXT) WHERE seq = ?", (victim,))
    db.commit()
    db.close()

    mosquitto.start()
    second = started(cfg_for(mosquitto.url, path), publishers)
    wait_until(lambda: second.stats().pending == 0 and second.stats().quarantined == 1, timeout_s=60)
    second.publish(health_of(second))
    got = room.wait_for(lambda ms: any(m.topic.endswith("/health") for m in ms), timeout_s=30)
    delivered = first_occurrences([m.payload["seq"] for m in got])
    assert victim not in delivered
    # Boot 1's birth and counts, its death (2, queued by boot 2: it never closed), all but the victim.
    expected = [s for s in range(1, stored[-1] + 1) if s != victim]
    assert [s for s in delivered if s <= stored[-1]] == expected, "the rest, in order"
    births = [m.payload for m in got if m.topic.endswith("/status") and m.payload["state"] == "online"]
    assert {b["boot_id"] for b in births} == {1, 2}, "both boots' births got out"
    (report,) = [m.payload for m in got if m.topic.endswith("/health")]
    assert report["outbox"]["quarantined"] == 1
