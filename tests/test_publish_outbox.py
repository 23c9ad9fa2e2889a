"""The SQLite outbox: seq/boot counters, bounds and drop order, durability of what was committed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

import pytest
from conftest import free_port
from test_publish_mqtt import counts

from appliance.config import load_config
from appliance.publish import CameraHealth, HealthMessage, MqttPublisher, Outbox, make_publisher
from appliance.publish.egress import EgressError
from appliance.publish.outbox import Sealed


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def put(box: Outbox, kind: str, size: int = 100) -> int:
    return box.enqueue(lambda seq: Sealed(kind, f"p/d/{kind}", json.dumps({"seq": seq, "pad": "x" * size}).encode()))


def kinds_left(box: Outbox) -> List[str]:
    return [row.kind for row in box.pending(limit=10_000)]


def test_seq_and_boot_id_persist_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    box = Outbox(path, max_bytes=1 << 20, max_age_s=3600)
    assert box.start_boot() == (1, 1)  # birth 1, death 2 reserved
    assert [put(box, "counts") for _ in range(3)] == [3, 4, 5]
    box.close()

    box = Outbox(path, max_bytes=1 << 20, max_age_s=3600)
    assert box.start_boot() == (2, 6)
    assert put(box, "counts") == 8
    assert box.reserved_seqs() == [1, 2, 6, 7]
    assert [r.seq for r in box.pending()] == [3, 4, 5, 8], "undelivered messages survive a restart"
    box.close()


def test_refused_payload_consumes_no_seq_and_stores_nothing(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 20, max_age_s=3600)

    def refuse(seq: int) -> Sealed:
        raise EgressError("too_large", "no")

    with pytest.raises(EgressError):
        box.enqueue(refuse)
    assert put(box, "counts") == 1
    assert box.stats().pending == 1 and box.stats().pending_bytes == len(box.pending()[0].payload)


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
    clock = Clock()
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 20, max_age_s=3600, clock=clock)
    for kind in ("health", "counts", "anomalies"):
        put(box, kind)
    clock.now += 3601
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


def test_status_is_latest_only(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 20, max_age_s=3600)
    box.put_status(1, "p/d/status", b'{"state":"online"}')
    box.put_status(2, "p/d/status", b'{"state":"offline"}')
    status = box.status()
    assert status is not None and (status.seq, status.payload) == (2, b'{"state":"offline"}')
    assert box.stats().pending == 0, "status is state, not part of the backlog"


def test_a_long_outage_reaches_the_cap_and_health_reports_the_drops(tmp_path: Path) -> None:
    """End to end without a broker: the publisher buffers, the cap bites, health says so."""
    cfg = load_config(
        overrides={
            "device_id": "cam-09",
            "mqtt": {"url": f"mqtt://127.0.0.1:{free_port()}", "reconnect_min_s": 5},
            "outbox": {"path": str(tmp_path / "o.db"), "max_bytes": 4096},
        }
    )
    pub = make_publisher(cfg)
    assert isinstance(pub, MqttPublisher)
    pub.start()
    try:
        for i in range(30):
            pub.publish(counts(i))
            if i % 10 == 0:
                pub.publish(HealthMessage(state="ok", fps=5, camera=CameraHealth(state="ok"), uptime_s=i))
        stats = pub.stats()
        assert stats.pending_bytes <= 4096 and stats.dropped.get("health", 0) >= 2
        assert stats.dropped.get("counts", 0) > 0
        # The next health message carries the drop counters to the control room.
        pub.publish(HealthMessage(state="ok", fps=5, camera=CameraHealth(state="ok"), uptime_s=99))
        last = pub.outbox.pending(limit=1000)[-1]
        reported: Dict[str, int] = json.loads(last.payload)["outbox"]["dropped"]
        assert last.kind == "health" and reported["counts"] == stats.dropped["counts"]
    finally:
        pub.close(clean=False)
