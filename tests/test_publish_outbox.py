"""The SQLite outbox: seq/boot counters, bounds and drop order, durability of what was committed."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Dict, List

import pytest
from support.brokers import free_port
from support.clocks import SteppedClock
from support.publishing import counts, health_of, publisher_for

from appliance.config import load_config
from appliance.publish import MqttPublisher, Outbox
from appliance.publish.egress import EgressError
from appliance.publish.outbox.rows import Sealed
from appliance.publish.outbox.writer import OutboxWriter
from appliance.publish.seqs import SeqAllocator


def sealed(seq: int, kind: str, size: int = 100) -> Sealed:
    return Sealed(seq, kind, f"p/d/{kind}", json.dumps({"seq": seq, "pad": "x" * size}).encode())


def put(box: Outbox, kind: str, size: int = 100) -> int:
    seq = box.last_seq + 1
    box.append(sealed(seq, kind, size))
    return seq


def start_boot(box: Outbox) -> tuple:
    boot_id, first = SeqAllocator(last_seq=box.last_seq, last_boot_id=box.boot_id).boot()
    box.begin_boot(sealed(first, "status"), sealed(first + 1, "status"), boot_id)
    return boot_id, first


def kinds_left(box: Outbox) -> List[str]:
    return [row.kind for row in box.pending(limit=10_000)]


def test_seq_and_boot_id_persist_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    box = Outbox(path, max_bytes=1 << 20, max_age_s=3600)
    assert start_boot(box) == (1, 1)  # birth 1, death 2 reserved
    assert [put(box, "counts") for _ in range(3)] == [3, 4, 5]
    box.close()

    box = Outbox(path, max_bytes=1 << 20, max_age_s=3600)
    assert start_boot(box) == (2, 6)
    assert put(box, "counts") == 8
    assert box.reserved_seqs() == [1, 2, 6, 7]
    # Undelivered messages survive a restart; boot 1 never closed, so its death (2) is queued.
    assert [r.seq for r in box.pending()] == [1, 2, 3, 4, 5, 6, 8]
    box.close()


def test_refused_payload_consumes_no_seq_and_stores_nothing(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 20, max_age_s=3600)
    writer = OutboxWriter(box, seqs=SeqAllocator(last_seq=box.last_seq, last_boot_id=box.boot_id), max_queued=10)

    def refuse(seq: int) -> Sealed:
        raise EgressError("too_large", "no")

    with pytest.raises(EgressError):
        writer.submit(refuse)
    assert writer.submit(lambda seq: sealed(seq, "counts")) == 1
    assert box.stats().pending == 1 and box.stats().pending_bytes == len(box.pending()[0].payload)


def test_append_checks_continuity_and_records_declared_losses(tmp_path: Path) -> None:
    from appliance.publish.outbox.store import OutboxConflict

    box = Outbox(tmp_path / "o.db", max_bytes=1 << 20, max_age_s=3600)
    put(box, "counts")
    with pytest.raises(OutboxConflict):
        box.append(sealed(3, "counts"))  # 2 skipped without being declared lost
    box.append(sealed(4, "counts"), lost_before=2)
    assert [r.seq for r in box.pending()] == [1, 4] and box.last_seq == 4
    assert box.stats().lost == 2, "the gap is recorded as a loss, never rolled back"


def test_ack_deletes_only_the_acknowledged(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 20, max_age_s=3600)
    seqs = [put(box, "counts") for _ in range(5)]
    box.ack(seqs[:2] + seqs[3:4])
    assert [r.seq for r in box.pending()] == [seqs[2], seqs[4]]
    assert [r.seq for r in box.pending(after_seq=seqs[2])] == [seqs[4]]


def test_cap_drops_health_then_counts_then_anomalies(tmp_path: Path) -> None:
    """The documented order: oldest health first, then oldest counts; anomalies only when nothing
    else is left. Every drop is counted per kind."""
    one = len(json.dumps({"seq": 10, "pad": "x" * 100}))
    box = Outbox(tmp_path / "o.db", max_bytes=6 * one + 10, max_age_s=3600)
    for kind in ("anomalies", "counts", "health", "counts", "health", "anomalies"):
        put(box, kind)
    assert box.stats().dropped == {}

    put(box, "counts")  # 7 > 6: the oldest health goes
    assert kinds_left(box) == ["anomalies", "counts", "counts", "health", "anomalies", "counts"]
    put(box, "counts")  # the other health goes
    assert kinds_left(box) == ["anomalies", "counts", "counts", "anomalies", "counts", "counts"]
    put(box, "anomalies")  # no health left: the oldest counts goes, never an anomaly
    assert kinds_left(box) == ["anomalies", "counts", "anomalies", "counts", "counts", "anomalies"]
    for _ in range(3):
        put(box, "anomalies")
    assert kinds_left(box) == ["anomalies"] * 6
    put(box, "anomalies")  # only now, anomalies: oldest first
    assert kinds_left(box) == ["anomalies"] * 6
    assert box.stats().dropped == {"health": 2, "counts": 4, "anomalies": 1}


def test_age_limit_drops_old_health_and_counts_but_keeps_anomalies(tmp_path: Path) -> None:
    clock = SteppedClock()
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 20, max_age_s=3600, clock=clock)
    for kind in ("health", "counts", "anomalies"):
        put(box, kind)
    clock.advance(3601)
    put(box, "counts")
    assert kinds_left(box) == ["anomalies", "counts"]
    assert box.stats().dropped == {"health": 1, "counts": 1}
    assert box.stats().oldest_age_s == pytest.approx(3601)


def test_drop_counters_survive_a_restart(tmp_path: Path) -> None:
    one = len(json.dumps({"seq": 10, "pad": "x" * 100}))
    box = Outbox(tmp_path / "o.db", max_bytes=2 * one + 10, max_age_s=3600)
    for kind in ("health", "counts", "counts"):
        put(box, kind)
    box.close()
    assert Outbox(tmp_path / "o.db", max_bytes=1 << 20, max_age_s=3600).stats().dropped == {"health": 1}


def test_every_boot_queues_its_birth_and_an_unclosed_boot_its_death(tmp_path: Path) -> None:
    """Birth and death are part of the backlog at their reserved seqs: a boot that lived entirely
    inside an outage still reaches the control room, in seq order."""
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 20, max_age_s=3600)
    start_boot(box)  # boot 1: 1, 2
    put(box, "counts")  # 3
    box.close_boot(1, undelivered_death=None)  # its 'offline' was acknowledged
    start_boot(box)  # boot 2: 4, 5 (killed: never closed)
    put(box, "counts")  # 6
    start_boot(box)  # boot 3: 7, 8; queues boot 2's death (5) from the will it registered
    assert [(r.seq, r.kind) for r in box.pending()] == [
        (1, "status"), (3, "counts"), (4, "status"), (5, "status"), (6, "counts"), (7, "status"),
    ]
    assert box.pending()[3].payload == sealed(5, "status").payload


def test_status_is_never_dropped_by_the_cap(tmp_path: Path) -> None:
    one = len(json.dumps({"seq": 10, "pad": "x" * 100}))
    box = Outbox(tmp_path / "o.db", max_bytes=3 * one, max_age_s=3600)
    start_boot(box)
    for _ in range(5):
        put(box, "counts")
    assert [r.kind for r in box.pending()] == ["status", "counts", "counts"]


def test_a_second_process_on_the_same_outbox_is_refused(tmp_path: Path) -> None:
    from appliance.errors import AlreadyRunning

    first = Outbox(tmp_path / "o.db", max_bytes=1 << 20, max_age_s=3600)
    with pytest.raises(AlreadyRunning, match=r"o.db is in use by another appliance process \(pid \d+\)") as info:
        Outbox(tmp_path / "o.db", max_bytes=1 << 20, max_age_s=3600)
    assert info.value.exit_code == 3 and "\n" not in str(info.value)
    first.close()
    Outbox(tmp_path / "o.db", max_bytes=1 << 20, max_age_s=3600).close()  # free again once closed


def test_another_devices_outbox_is_refused_and_left_intact(tmp_path: Path) -> None:
    from appliance.errors import InputError

    box = Outbox(tmp_path / "o.db", max_bytes=1 << 20, max_age_s=3600, owner="cam-01")
    put(box, "counts")
    box.close()
    with pytest.raises(InputError, match="belongs to device 'cam-01', not 'cam-02'") as info:
        Outbox(tmp_path / "o.db", max_bytes=1 << 20, max_age_s=3600, owner="cam-02")
    assert info.value.exit_code == 2
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 20, max_age_s=3600, owner="cam-01")
    assert [r.seq for r in box.pending()] == [1], "cam-01's backlog is still there"


def test_the_default_outbox_path_is_per_device_in_the_service_state_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from appliance.publish import outbox_path

    cfg = load_config(overrides={"device_id": "cam-42"})
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    assert str(outbox_path(cfg.outbox, "cam-42")) == "/var/lib/crowd-appliance/cam-42/outbox.sqlite3"
    assert outbox_path(cfg.outbox, "cam-42") != outbox_path(cfg.outbox, "cam-43")
    # What systemd sets from the unit's StateDirectory= (a list when the unit names several).
    monkeypatch.setenv("STATE_DIRECTORY", "/srv/appliance-state:/var/lib/other")
    assert str(outbox_path(cfg.outbox, "cam-42")) == "/srv/appliance-state/cam-42/outbox.sqlite3"


def test_a_long_outage_reaches_the_cap_and_health_reports_the_drops(tmp_path: Path) -> None:
    """End to end without a broker: the publisher buffers, the cap bites, health says so."""
    cfg = load_config(
        overrides={
            "device_id": "cam-09",
            "mqtt": {"url": f"mqtt://127.0.0.1:{free_port()}", "reconnect_min_s": 5},
            "outbox": {"path": str(tmp_path / "o.db"), "max_bytes": 4096},
        }
    )
    pub = publisher_for(cfg)
    assert isinstance(pub, MqttPublisher)
    pub.start()
    try:
        for i in range(30):
            pub.publish(counts(i))
            if i % 10 == 0:
                pub.publish(health_of(pub))
        stats = pub.stats()
        assert stats.pending_bytes <= 4096 and stats.dropped.get("health", 0) >= 2
        assert stats.dropped.get("counts", 0) > 0
        # The next health message carries the drop counters to the control room.
        pub.publish(health_of(pub))
        last = pub.outbox.pending(limit=1000)[-1]
        reported: Dict[str, int] = json.loads(last.payload)["outbox"]["dropped"]
        assert last.kind == "health" and reported["counts"] == stats.dropped["counts"]
    finally:
        pub.close(clean=False)


def test_a_file_from_before_row_checksums_and_stamps_opens_and_its_rows_are_read(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(str(path))
    db.executescript(
        "CREATE TABLE messages (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, topic TEXT NOT NULL,"
        " payload BLOB NOT NULL, created REAL NOT NULL, vouched BLOB);"
        "INSERT INTO messages VALUES (1, 'counts', 'p/d/counts', X'7B7D', strftime('%s', 'now'), NULL);"
    )
    db.commit()
    db.close()
    box = Outbox(path, max_bytes=1 << 20, max_age_s=1e9)
    try:
        assert [r.seq for r in box.pending()] == [1]
        box.append(Sealed(2, "counts", "p/d/counts", b"{}"), lost_before=1)
        assert [r.seq for r in box.pending()] == [1, 2]
        assert box.stats().quarantined == 0
    finally:
        box.close()


# --------------------------------------------------------------------------- damage on disk


def flip_in_file(path: Path, old: bytes, new: bytes) -> None:
    """Change bytes of a closed SQLite file in place, as a worn SD card would."""
    data = path.read_bytes()
    assert data.count(old) == 1, f"{old!r} must occur once in the file"
    assert len(old) == len(new)
    path.write_bytes(data.replace(old, new))


def box_with_rows(path: Path, n: int = 4) -> Outbox:
    box = Outbox(path, max_bytes=1 << 20, max_age_s=1e9)
    for seq in range(1, n + 1):
        payload = json.dumps({"seq": seq, "row": f"R{seq:03d}"}).encode()
        box.append(Sealed(seq, "counts", f"p/d/counts-{seq:03d}", payload))
    return box


def quarantined_seqs(path: Path) -> List[int]:
    db = sqlite3.connect(str(path))
    try:
        return [int(r[0]) for r in db.execute("SELECT seq FROM quarantine ORDER BY id")]
    finally:
        db.close()


def test_a_damaged_byte_in_a_payload_quarantines_that_row_and_reading_goes_on(tmp_path: Path) -> None:
    box_with_rows(tmp_path / "o.db").close()
    flip_in_file(tmp_path / "o.db", b"R002", b"R992")
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 20, max_age_s=1e9)
    try:
        assert [r.seq for r in box.pending()] == [1, 3, 4]
        assert box.stats().quarantined == 1 and box.stats().pending == 3
    finally:
        box.close()
    assert quarantined_seqs(tmp_path / "o.db") == [2]


def test_a_topic_that_no_longer_decodes_quarantines_that_row_not_the_whole_outbox(tmp_path: Path) -> None:
    box_with_rows(tmp_path / "o.db").close()
    flip_in_file(tmp_path / "o.db", b"counts-002", b"counts-\xff02")
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 20, max_age_s=1e9)
    try:
        assert [r.seq for r in box.pending()] == [1, 3, 4]
        assert box.stats().quarantined == 1
    finally:
        box.close()


def test_a_changed_seq_is_not_delivered_as_valid_data(tmp_path: Path) -> None:
    box_with_rows(tmp_path / "o.db").close()
    db = sqlite3.connect(str(tmp_path / "o.db"))
    db.execute("UPDATE messages SET seq = 7 WHERE seq = 3")  # one digit of the stored key changed
    db.commit()
    db.close()
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 20, max_age_s=1e9)
    try:
        assert [r.seq for r in box.pending()] == [1, 2, 4]
        assert box.stats().quarantined == 1
    finally:
        box.close()
    assert quarantined_seqs(tmp_path / "o.db") == [7]


def test_a_seq_changed_beyond_the_counter_is_quarantined_before_a_new_message_needs_it(tmp_path: Path) -> None:
    box_with_rows(tmp_path / "o.db").close()
    db = sqlite3.connect(str(tmp_path / "o.db"))
    db.execute("UPDATE messages SET seq = 6 WHERE seq = 3")
    db.commit()
    db.close()
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 20, max_age_s=1e9)
    try:
        assert box.stats().quarantined == 1
        assert [put(box, "counts") for _ in range(3)] == [5, 6, 7]
        assert [r.seq for r in box.pending()] == [1, 2, 4, 5, 6, 7]
    finally:
        box.close()


@pytest.mark.parametrize("where", ["header", "b-tree page"])
def test_a_file_sqlite_cannot_use_is_set_aside_and_a_fresh_one_continues_the_seq(tmp_path: Path, where: str) -> None:
    path = tmp_path / "o.db"
    box = box_with_rows(path, n=300)
    boot_id, _ = start_boot(box)
    last_seq = box.last_seq
    box.close()
    data = bytearray(path.read_bytes())
    assert len(data) > 3 * 4096
    start = 0 if where == "header" else 2 * 4096  # the third page: part of the messages table
    data[start : start + 100] = b"\x5a" * 100
    path.write_bytes(bytes(data))

    box = Outbox(path, max_bytes=1 << 20, max_age_s=1e9)
    try:
        assert box.last_seq > last_seq, "the seq goes on above anything the damaged file held"
        assert box.boot_id == boot_id
        assert box.stats().files_set_aside == 1 and box.stats().pending == 0
        put(box, "counts")
    finally:
        box.close()
    aside = [p.name for p in tmp_path.iterdir() if ".damaged-" in p.name]
    assert len(aside) == 1 and aside[0].startswith("o.db.damaged-")


# --------------------------------------------------------------------------- the clock


def test_a_backlog_stored_before_ntp_stepped_the_clock_forward_is_not_aged_out(tmp_path: Path) -> None:
    """A board without RTC boots in 1970; the broker is down; NTP then steps the clock 56 years
    forward. The backlog is seconds old and must stay."""
    clock = SteppedClock(wall_s=60.0)
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 20, max_age_s=7 * 86400, clock=clock)
    for kind in ("health", "counts", "counts"):
        put(box, kind)
    clock.advance(30)
    clock.wall_s = 1_765_000_000.0  # NTP
    put(box, "counts")
    assert kinds_left(box) == ["health", "counts", "counts", "counts"]
    assert box.stats().dropped == {}
    assert box.stats().oldest_age_s == pytest.approx(30)


def test_after_a_reboot_ages_use_the_wall_clock_only_where_it_was_set(tmp_path: Path) -> None:
    before = SteppedClock(wall_s=60.0, boot_id="boot-a")  # unset clock
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 20, max_age_s=3600, clock=before)
    put(box, "counts")
    before.wall_s = 1_765_000_000.0
    put(box, "counts")  # stored with a set clock
    box.close()
    after = SteppedClock(wall_s=1_765_000_000.0 + 7200, boot_id="boot-b")
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 20, max_age_s=3600, clock=after)
    try:
        put(box, "counts")
        # The 1970 row has no age any clock vouches for: kept (the byte cap still bounds it);
        # the row stored with a set clock is two hours old by the wall clock: dropped.
        assert [r.seq for r in box.pending()] == [1, 3]
        assert box.stats().dropped == {"counts": 1}
    finally:
        box.close()
