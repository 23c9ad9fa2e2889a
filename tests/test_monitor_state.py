"""The fleet state behind ``appliance monitor``: online/offline, counts, anomalies, health and the
seq rules of docs/control-room.md (reserved birth/death seqs, gaps, late deliveries, duplicates)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Optional, Tuple

from appliance.config import load_config
from appliance.monitor.state import FleetState
from appliance.publish import AnomalyMessage, CountsMessage, CountStats, HealthMessage, StatusMessage, ZoneStats
from appliance.publish.messages import CameraHealth, Message
from appliance.transparency import Notice, build_notice, notice_hash

SITE = Path(__file__).resolve().parent.parent / "examples" / "site.yaml"

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def status(dev: str, boot: int, seq: int, state: str = "online", names_notice: Optional[str] = None) -> Message:
    birth = StatusMessage(config_hash="0" * 16, board="x86-generic", started_at=T0, notice_hash=names_notice)
    msg = birth if state == "online" else birth.as_offline()
    return msg.stamp(device_id=dev, boot_id=boot, seq=seq, sent_at=T0)


def counts(dev: str, boot: int, seq: int, total: int = 3, entrance: Optional[int] = None) -> Message:
    end = T0 + timedelta(seconds=10 * seq)
    zones = {} if entrance is None else {"entrance": ZoneStats(min=0, mean=1.0, max=entrance, last=entrance)}
    return CountsMessage(
        window_start=end - timedelta(seconds=10),
        window_end=end,
        frames_analyzed=50,
        total=CountStats(min=0, mean=1.0, max=total, last=total),
        zones=zones,
    ).stamp(device_id=dev, boot_id=boot, seq=seq, sent_at=end)


def event_id(zone: Optional[str]) -> str:
    """One raise/clear pair per zone, as the device's flags make them."""
    return hashlib.md5(str(zone).encode()).hexdigest()


def anomaly(dev: str, boot: int, seq: int, state: str, zone: Optional[str] = "entrance") -> Message:
    return AnomalyMessage(
        type="overcrowding", event_id=event_id(zone), zone=zone, state=state, value=12.0, threshold=10.0, since=T0  # type: ignore[arg-type]
    ).stamp(device_id=dev, boot_id=boot, seq=seq, sent_at=T0)


def feed(fleet: FleetState, *messages: Message, retained: bool = False) -> None:
    for m in messages:
        fleet.observe(m, retained=retained, received_at=T0 + timedelta(minutes=5))


def test_a_device_is_online_offline_or_unknown_from_its_status() -> None:
    fleet = FleetState()
    feed(fleet, counts("cam-a", 1, 7))
    assert fleet.snapshot("cam-a").online is None
    feed(fleet, status("cam-b", 2, 5), retained=True)
    feed(fleet, status("cam-c", 4, 9, "offline"), retained=True)
    assert fleet.snapshot("cam-b").online is True and fleet.snapshot("cam-b").boot_id == 2
    assert fleet.snapshot("cam-c").online is False
    assert fleet.device_ids() == ["cam-a", "cam-b", "cam-c"]


def test_last_counts_per_zone_and_health_are_kept() -> None:
    fleet = FleetState()
    health = HealthMessage(state="degraded", fps=3.5, camera=CameraHealth(state="ok"), uptime_s=60.0)
    feed(fleet, status("cam-a", 1, 1), counts("cam-a", 1, 3, total=5, entrance=2))
    feed(fleet, health.stamp(device_id="cam-a", boot_id=1, seq=4, sent_at=T0))
    snap = fleet.snapshot("cam-a")
    assert (snap.total, snap.zones, snap.health, snap.fps) == (5, {"entrance": 2}, "degraded", 3.5)


def test_an_anomaly_is_active_from_raised_to_cleared_with_its_duration() -> None:
    fleet = FleetState()
    feed(fleet, status("cam-a", 1, 1), anomaly("cam-a", 1, 3, "raised"))
    [active] = fleet.snapshot("cam-a").anomalies
    assert (active.type, active.zone) == ("overcrowding", "entrance")
    assert active.raised_for_s(T0 + timedelta(seconds=90)) == 90.0
    feed(fleet, anomaly("cam-a", 1, 4, "cleared"))
    assert fleet.snapshot("cam-a").anomalies == []


def test_a_new_boot_drops_flags_the_old_boot_can_no_longer_clear() -> None:
    fleet = FleetState()
    feed(fleet, status("cam-a", 1, 1), anomaly("cam-a", 1, 3, "raised"), status("cam-a", 2, 4))
    assert fleet.snapshot("cam-a").anomalies == []


def test_consecutive_seqs_and_the_reserved_death_seq_are_not_gaps() -> None:
    fleet = FleetState()
    # boot 1: birth 1, death 2 reserved, data from 3; boot 2: birth 5, data from 7 (6 is its death seq).
    feed(fleet, status("cam-a", 1, 1), counts("cam-a", 1, 3), counts("cam-a", 1, 4))
    feed(fleet, status("cam-a", 2, 5), counts("cam-a", 2, 7))
    seq = fleet.snapshot("cam-a").seq
    assert (seq.highest, seq.gaps, seq.missing, seq.late, seq.duplicates) == (7, 0, 0, 0, 0)


def test_a_jump_is_a_gap_and_the_seqs_arriving_later_are_late_not_missing() -> None:
    fleet = FleetState()
    feed(fleet, status("cam-a", 1, 1), counts("cam-a", 1, 3), counts("cam-a", 1, 6))
    seq = fleet.snapshot("cam-a").seq
    assert (seq.gaps, seq.missing, seq.late) == (1, 2, 0)
    feed(fleet, counts("cam-a", 1, 4), counts("cam-a", 1, 5))
    seq = fleet.snapshot("cam-a").seq
    assert (seq.gaps, seq.missing, seq.late) == (1, 0, 2)
    # The later counts window stays the one shown, whatever the arrival order.
    assert fleet.snapshot("cam-a").window_end == T0 + timedelta(seconds=60)


def test_a_redelivery_is_a_duplicate_and_a_republished_birth_a_reconnect() -> None:
    fleet = FleetState()
    feed(fleet, status("cam-a", 1, 1), counts("cam-a", 1, 3), counts("cam-a", 1, 4), counts("cam-a", 1, 4))
    feed(fleet, status("cam-a", 1, 1))
    seq = fleet.snapshot("cam-a").seq
    assert (seq.duplicates, seq.reconnects, seq.gaps) == (1, 1, 0)


def test_a_monitor_started_mid_stream_reports_no_gap_from_the_stored_status() -> None:
    fleet = FleetState()
    feed(fleet, status("cam-a", 3, 40), retained=True)
    feed(fleet, counts("cam-a", 3, 900), counts("cam-a", 3, 901))
    seq = fleet.snapshot("cam-a").seq
    assert (seq.highest, seq.gaps, seq.missing, seq.duplicates) == (901, 0, 0, 0)
    # The broker sending its stored status again (monitor reconnect) is not a duplicate either.
    feed(fleet, status("cam-a", 3, 40), retained=True)
    assert fleet.snapshot("cam-a").seq.duplicates == 0


def test_a_boot_id_going_backwards_means_a_lost_outbox_and_resets_the_history() -> None:
    fleet = FleetState()
    feed(fleet, status("cam-a", 7, 500), counts("cam-a", 7, 502))
    feed(fleet, status("cam-a", 1, 1), counts("cam-a", 1, 3))
    snap = fleet.snapshot("cam-a")
    assert (snap.boot_id, snap.online, snap.seq.highest, snap.seq.resets) == (1, True, 3, 1)
    assert (snap.seq.gaps, snap.seq.duplicates) == (0, 0)


def test_to_dict_is_plain_json_data() -> None:
    fleet = FleetState()
    feed(fleet, status("cam-a", 1, 1), counts("cam-a", 1, 3, entrance=4), anomaly("cam-a", 1, 4, "raised"))
    data = fleet.snapshot("cam-a").to_dict(T0 + timedelta(seconds=30))
    assert data["online"] is True and data["zones"] == {"entrance": 4}
    assert data["anomalies"] == [
        {
            "type": "overcrowding",
            "zone": "entrance",
            "since": "2024-05-01T12:00:00.000Z",
            "raised_for_s": 30.0,
            "severity": "warning",
            "value": 12.0,
            "threshold": 10.0,
            "event_id": data["anomalies"][0]["event_id"],
        }
    ]
    assert data["seq"] == {
        "highest": 4, "gaps": 0, "missing": 0, "late": 0, "duplicates": 0, "reconnects": 0, "resets": 0
    }  # fmt: skip


@cache
def notice(dev: str, operator: Optional[str] = "City of Example") -> Tuple[Notice, str]:
    """The device's real notice, built from the example site file, and its hash."""
    cfg = load_config(SITE, {"device_id": dev, "transparency": {"operator_name": operator}})
    built = build_notice(cfg)
    return built, notice_hash(built)


def test_the_notice_gives_operator_purpose_and_the_hash_the_birth_must_name() -> None:
    fleet = FleetState()
    doc, digest = notice("cam-a")
    feed(fleet, status("cam-a", 1, 1, names_notice=digest), retained=True)
    assert fleet.snapshot("cam-a").notice is None and fleet.snapshot("cam-a").notice_matches_birth is None
    fleet.observe_notice(doc, sha256=digest, received_at=T0)
    snap = fleet.snapshot("cam-a")
    assert snap.notice is not None
    assert (snap.notice.operator, snap.notice.purpose) == ("City of Example", "crowd_safety")
    assert snap.notice.sha256 == digest
    assert snap.notice_matches_birth is True
    assert snap.to_dict(T0)["notice"] == {
        "sha256": digest, "operator": "City of Example", "purpose": "crowd_safety", "matches_birth": True
    }  # fmt: skip
    # A new boot whose birth names another notice than the one retained: visible until the new one arrives.
    new_doc, new_digest = notice("cam-a", operator="City of Example, Parks")
    feed(fleet, status("cam-a", 2, 3, names_notice=new_digest))
    assert fleet.snapshot("cam-a").notice_matches_birth is False
    fleet.observe_notice(new_doc, sha256=new_digest, received_at=T0)
    assert fleet.snapshot("cam-a").notice_matches_birth is True


def test_a_notice_alone_makes_a_device_and_is_not_part_of_the_seq_count() -> None:
    fleet = FleetState()
    doc, digest = notice("cam-z", operator=None)
    assert fleet.observe_notice(doc, sha256=digest, received_at=T0) == "cam-z"
    snap = fleet.snapshot("cam-z")
    assert snap.online is None and snap.seq.highest is None and snap.last_seen is None
    assert snap.notice is not None and snap.notice.operator is None
    assert snap.notice_matches_birth is None, "a device without a birth names no notice"
    # A lost outbox restarts the seq history; the device's notice stays.
    feed(fleet, status("cam-z", 7, 500), status("cam-z", 1, 1))
    assert fleet.snapshot("cam-z").seq.resets == 1 and fleet.snapshot("cam-z").notice == snap.notice


def test_a_device_without_a_notice_shows_none_in_json() -> None:
    fleet = FleetState()
    feed(fleet, status("cam-a", 1, 1))
    assert fleet.snapshot("cam-a").to_dict(T0)["notice"] is None


def forged(dev: str, seq: int) -> Message:
    """A counts message with any seq (its window stays near T0)."""
    return CountsMessage(window_start=T0, window_end=T0 + timedelta(seconds=10), frames_analyzed=1).stamp(
        device_id=dev, boot_id=1, seq=seq, sent_at=T0
    )


def test_a_forged_seq_far_ahead_is_one_gap_counted_exactly_in_constant_memory() -> None:
    import tracemalloc

    fleet = FleetState()
    feed(fleet, status("cam-a", 1, 1), counts("cam-a", 1, 3))
    tracemalloc.start()
    try:
        feed(fleet, counts("cam-a", 1, 10_000_000))
        seq = fleet.snapshot("cam-a").seq
        assert (seq.highest, seq.gaps, seq.missing) == (10_000_000, 1, 10_000_000 - 4)
        # A forged seq of 10^12 (any client that may publish under the prefix can send one) is one
        # more gap, not a list of a trillion missing seqs.
        feed(fleet, forged("cam-a", 10**12))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    seq = fleet.snapshot("cam-a").seq
    assert (seq.highest, seq.gaps, seq.missing) == (10**12, 2, 10**12 - 5)
    assert peak < 1_000_000  # bytes: a few ranges, never the seqs themselves
    # A seq arriving late from inside a huge gap splits it: still exact.
    feed(fleet, forged("cam-a", 5_000_000_000))
    seq = fleet.snapshot("cam-a").seq
    assert (seq.missing, seq.late, seq.duplicates) == (10**12 - 6, 1, 0)


def test_only_the_newest_gaps_are_remembered_and_the_gap_count_stays_exact() -> None:
    from appliance.monitor.state import MAX_MISSING_RANGES

    fleet = FleetState()
    feed(fleet, status("cam-a", 1, 1), counts("cam-a", 1, 3))
    # Every other seq lost: as many separate gaps as the cap, plus ten.
    seqs = [3 + 2 * i for i in range(1, MAX_MISSING_RANGES + 11)]
    feed(fleet, *(counts("cam-a", 1, s) for s in seqs))
    seq = fleet.snapshot("cam-a").seq
    assert seq.gaps == MAX_MISSING_RANGES + 10
    assert seq.missing == MAX_MISSING_RANGES  # the oldest ten gaps are forgotten, not the newest
    feed(fleet, counts("cam-a", 1, seqs[-1] - 1))  # the newest missing one arrives: late
    assert (fleet.snapshot("cam-a").seq.late, fleet.snapshot("cam-a").seq.missing) == (1, MAX_MISSING_RANGES - 1)
