"""The device's overall state (ok/degraded/failed), decided in one place from what the pipeline
saw and what the capture source and the publisher report, and the health message built from it."""

from __future__ import annotations

import json
from pathlib import Path

from appliance.capture import CaptureStats
from appliance.health.monitor import STAGES, HealthMonitor
from appliance.publish import PublisherStats
from appliance.publish.messages import HealthMessage, message_schema

REPO = Path(__file__).resolve().parent.parent
CAMERA_OK = CaptureStats(state="ok", reconnects=0, frames_read=0, frames_skipped=0)
CAMERA_LOST = CaptureStats(state="lost", reconnects=3, frames_read=0, frames_skipped=0)
DELIVERING = PublisherStats(connected=True, last_error=None, seconds_since_puback=0.5)


def analysed(monitor: HealthMonitor, frames: int) -> HealthMonitor:
    for _ in range(frames):
        monitor.frame_captured()
        monitor.frame_analyzed()
    return monitor


def test_a_quiet_period_is_ok_and_the_message_carries_every_section() -> None:
    monitor = analysed(HealthMonitor(), 5)
    monitor.record_latency("anonymize", 12.0)
    stats = PublisherStats(connected=True, last_error=None, pending=2, oldest_age_s=1.5, dropped={"counts": 1},
                           egress_refused=1, seconds_since_puback=0.4)
    msg = monitor.message(CAMERA_OK, stats)
    assert msg.state == "ok" and msg.fps > 0
    assert (msg.frames.captured, msg.frames.analyzed, msg.frames.dropped) == (5, 5, {})
    assert list(msg.latency_ms) == list(STAGES) and msg.latency_ms["anonymize"].p50 == 12.0
    assert msg.outbox is not None and (msg.outbox.pending, msg.outbox.dropped, msg.outbox.egress_refused) == (
        2, {"counts": 1}, 1)
    assert msg.link is not None and msg.link.connected and msg.link.seconds_since_puback == 0.4


def test_dropped_frames_degrade_the_period_they_happen_in_and_stay_counted() -> None:
    monitor = analysed(HealthMonitor(), 3)
    monitor.frame_captured()
    monitor.frame_dropped("face_timeout")
    assert monitor.message(CAMERA_OK, DELIVERING).state == "degraded"
    later = analysed(monitor, 3).message(CAMERA_OK, DELIVERING)
    assert later.state == "ok" and later.frames.dropped == {"face_timeout": 1}


def test_an_anonymizer_failing_closed_on_every_frame_is_failed() -> None:
    monitor = HealthMonitor(max_consecutive_failures=3)
    for _ in range(3):
        monitor.frame_captured()
        monitor.frame_dropped("face_model_error")
    assert monitor.failing and monitor.message(CAMERA_OK, DELIVERING).state == "failed"


def test_a_camera_lost_for_the_whole_period_is_failed_and_one_lost_during_it_degraded() -> None:
    monitor = analysed(HealthMonitor(), 2)
    during = monitor.message(CAMERA_LOST, DELIVERING)
    assert during.state == "degraded" and (during.camera.state, during.camera.reconnects) == ("lost", 3)
    assert monitor.message(CAMERA_LOST, DELIVERING).state == "failed"


def test_new_decode_errors_degrade_once() -> None:
    corrupt = CaptureStats(state="ok", reconnects=0, frames_read=9, frames_skipped=0, decode_errors=2)
    monitor = analysed(HealthMonitor(), 2)
    first = monitor.message(corrupt, DELIVERING)
    assert first.state == "degraded" and first.camera.decode_errors == 2
    assert analysed(monitor, 2).message(corrupt, DELIVERING).state == "ok"


def test_stuck_delivery_turns_ok_into_degraded_but_never_hides_failed() -> None:
    stuck = {
        "no link": PublisherStats(connected=False, last_error="cannot connect"),
        "broker refuses": PublisherStats(connected=True, last_error="Not authorized", refusing=True),
        "disk refuses": PublisherStats(connected=True, last_error="database is locked", held_in_memory=2),
        "backlog, no PUBACK": PublisherStats(connected=True, last_error=None, pending=5, oldest_age_s=61.0,
                                             seconds_since_puback=61.0),
    }
    for why, stats in stuck.items():
        assert analysed(HealthMonitor(stuck_after_s=60.0), 1).message(CAMERA_OK, stats).state == "degraded", why
    draining = PublisherStats(connected=True, last_error=None, pending=5, oldest_age_s=61.0, seconds_since_puback=1.0)
    assert analysed(HealthMonitor(stuck_after_s=60.0), 1).message(CAMERA_OK, draining).state == "ok"
    failing = HealthMonitor(max_consecutive_failures=1)
    failing.frame_dropped("face_model_error")
    assert failing.message(CAMERA_OK, stuck["no link"]).state == "failed"


def test_a_long_link_error_is_shortened_to_what_the_message_allows() -> None:
    stats = PublisherStats(connected=False, last_error="x" * 500)
    msg = HealthMonitor().message(CAMERA_OK, stats)
    assert msg.link is not None and msg.link.last_error == "x" * 197 + "..."


def test_the_published_stage_names_are_the_ones_health_measures() -> None:
    schema = json.loads((REPO / "docs" / "schemas" / "health.json").read_text())
    assert schema["properties"]["latency_ms"]["propertyNames"]["enum"] == list(STAGES)
    assert message_schema(HealthMessage)["properties"]["latency_ms"]["propertyNames"]["enum"] == list(STAGES)
