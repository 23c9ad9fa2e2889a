"""The audit log on a device left alone: a power cut, a deleted or unwritable log, a log that grows
for years. Evidence is never silently lost and counting never stops because of it."""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import List

import pytest

from appliance.audit import AnomalyChanged, AuditLog, AuditRecorder, Rotation, Stopped, record_start
from appliance.audit.lifecycle import tail_state
from appliance.cli import main
from appliance.config import load_config
from appliance.report import audit_head


def _kinds(log: AuditLog) -> List[str]:
    return [e["kind"] for e in log.entries()]


def _flag(state: str = "raised") -> AnomalyChanged:
    return AnomalyChanged(type="overcrowding", state=state, zone="walkway", value=13, threshold=12)  # type: ignore[arg-type]


def _started(path: Path) -> AuditRecorder:
    cfg = load_config()
    recorder = AuditRecorder(AuditLog(path), cfg.device_id)
    recorder.start(cfg)
    return recorder


# ------------------------------------------------------------------------------------ torn last line


def test_a_torn_last_line_is_cut_back_and_recorded_and_health_stays_degraded_until_acknowledged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    _started(path).record(Stopped(reason="signal SIGTERM"))
    torn = b'{"at":"2026-12-07T03:00:00.000Z","data":{"reason":"sig'  # what a power cut mid-write leaves
    with open(path, "ab") as f:
        f.write(torn)

    recorder = _started(path)  # the next start: no exception, no crash loop
    log = AuditLog(path)
    assert log.verify().ok
    assert _kinds(log) == ["start", "stop", "recovered", "start"]
    recovered = list(log.entries())[2]["data"]
    assert recovered == {"cut_bytes": len(torn), "cut_sha256": hashlib.sha256(torn).hexdigest(), "file": path.name}
    head = audit_head(recorder.published_head())
    assert head.unacknowledged == 1 and head.problem is None

    # A restart does not forget an unacknowledged recovery.
    assert _started(path).published_head().unacknowledged == 1

    assert main(["audit", "ack", "--log", str(path), "--note", "checked after the power cut"]) == 0
    assert "acknowledged 1 recovered/reset entry" in capsys.readouterr().err
    assert recorder.published_head().unacknowledged == 0, "the running service sees the ack"
    assert _started(path).published_head().unacknowledged == 0
    assert main(["audit", "ack", "--log", str(path)]) == 0
    assert "nothing to acknowledge" in capsys.readouterr().err
    assert AuditLog(path).verify().ok


def test_a_line_torn_while_running_is_recovered_at_the_next_health_message(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    recorder = _started(path)
    with open(path, "ab") as f:
        f.write(b'{"at":"2026')
    head = recorder.published_head()  # was: the health message ended the run
    assert head.problem is None and head.unacknowledged == 1
    recorder.record(_flag())
    assert _kinds(AuditLog(path)) == ["start", "recovered", "anomaly"] and AuditLog(path).verify().ok


def test_a_degraded_audit_log_makes_health_degraded() -> None:
    from appliance.audit import PublishedHead
    from appliance.capture import CaptureStats
    from appliance.health.monitor import HealthMonitor
    from appliance.publish import PublisherStats

    camera = CaptureStats(state="ok", reconnects=0, frames_read=0, frames_skipped=0)
    delivering = PublisherStats(connected=True, last_error=None, seconds_since_puback=0.5)
    fine = audit_head(PublishedHead(3, "a" * 64))
    assert HealthMonitor().message(camera, delivering, audit=fine).state == "ok"
    for head in (PublishedHead(3, "a" * 64, unacknowledged=1), PublishedHead(3, "a" * 64, problem="disk full")):
        assert HealthMonitor().message(camera, delivering, audit=audit_head(head)).state == "degraded"


# ------------------------------------------------------------------------------------ deleted while running


def test_a_log_deleted_while_running_is_noticed_and_a_new_chain_starts_with_a_reset(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "audit.jsonl"
    recorder = _started(path)
    recorder.record(_flag())
    lost = AuditLog(path).head()
    path.unlink()
    with caplog.at_level(logging.ERROR):
        head = recorder.published_head()  # the next health message
    assert "lost entries while running" in caplog.text
    assert head.length == 1 and head.unacknowledged == 1 and head.reset_from == lost
    recorder.record(_flag("cleared"))
    log = AuditLog(path)
    assert _kinds(log) == ["reset", "anomaly"]
    first = next(iter(log.entries()))["data"]
    assert (first["previous_length"], first["previous_sha256"]) == lost
    report = log.verify()
    assert report.ok and f"chain RESET at entry 1 (the audit log was deleted or cut while running; the lost " \
        f"chain's head was {lost[0]}:{lost[1]})" in report.line("log")
    payload = audit_head(recorder.published_head())
    assert payload.reset is not None and (payload.reset.length, payload.reset.sha256) == lost


def test_a_missing_active_file_with_rotated_files_left_restarts_the_chain_at_start(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, rotation=Rotation(max_bytes=4096))
    for i in range(30):
        log.append(Stopped(reason=f"run {i}"))
    assert len(list(tmp_path.glob("audit.jsonl.*"))) >= 1
    older = AuditLog(path).head()
    path.unlink()
    assert AuditLog(path).head() < older
    recorder = _started(path)
    assert recorder.published_head().reset_from is not None
    assert _kinds(AuditLog(path))[-3:] == ["stop", "reset", "start"]
    assert AuditLog(path).verify().ok


# ------------------------------------------------------------------------------------ unwritable log


def test_an_unwritable_log_holds_entries_in_order_reports_it_and_writes_them_when_it_can(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "audit.jsonl"
    recorder = _started(path)
    path.rename(tmp_path / "kept.jsonl")
    path.symlink_to("/dev/full")  # every write: ENOSPC, as root too
    with caplog.at_level(logging.ERROR):
        recorder.record(_flag())  # never raises: the alert is published whatever the log does
        recorder.record(_flag("cleared"))
    head = recorder.published_head()
    assert head.problem is not None and "No space left on device" in head.problem
    assert audit_head(head).problem == head.problem
    assert "held in memory and retried" in caplog.text
    path.unlink()
    (tmp_path / "kept.jsonl").rename(path)
    head = recorder.published_head()  # the retry at the next health message
    assert head.problem is None
    entries = list(AuditLog(path).entries())
    held = [(e["kind"], e["data"].get("state")) for e in entries[-2:]]
    assert held == [("anomaly", "raised"), ("anomaly", "cleared")]
    assert entries[-2]["at"] <= entries[-1]["at"]
    assert AuditLog(path).verify().ok


def test_a_folder_in_place_of_the_log_at_start_is_reported_and_the_start_is_held(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.mkdir()
    recorder = _started(path)
    assert "is a folder" in (recorder.published_head().problem or "")
    path.rmdir()
    head = recorder.published_head()
    assert head.problem is None and _kinds(AuditLog(path)) == ["start"]


# ------------------------------------------------------------------------------------ rotation


def test_rotation_by_size_keeps_one_chain_across_files_and_verify_reads_them_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, rotation=Rotation(max_bytes=4096))
    record_start(log, load_config())  # a start entry holds the whole config: several KB
    for i in range(60):
        log.append(Stopped(reason=f"run {i}"))
    rotated = sorted(tmp_path.glob("audit.jsonl.*"))
    assert len(rotated) >= 2 and all(p.stat().st_size <= 4096 for p in rotated[1:])
    report = AuditLog(path).verify()
    assert report.ok and report.length == 61 and report.entries_read == 61
    assert main(["audit", "verify", "--log", str(path)]) == 0
    assert "intact, 61 entries" in capsys.readouterr().out
    rotated[1].unlink()  # a whole file removed from the middle
    report = AuditLog(path).verify()
    assert not report.ok and "deleted" in (report.problem or "")


def test_retention_deletes_old_files_records_it_and_the_rest_still_verifies(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    long_ago = datetime.now(timezone.utc) - timedelta(days=40)
    log = AuditLog(path, rotation=Rotation(max_bytes=4096))
    for i in range(40):
        log.append(Stopped(reason=f"old run {i}"), at=long_ago + timedelta(minutes=i))
    log = AuditLog(path, rotation=Rotation(max_bytes=4096, retention_days=30))
    log.append(Stopped(reason="today"))
    kinds = _kinds(log)
    assert "pruned" in kinds and len(kinds) < 42
    pruned = next(e for e in log.entries() if e["kind"] == "pruned")["data"]
    report = log.verify()
    assert report.ok, report.problem
    assert next(iter(log.entries()))["seq"] == pruned["through_seq"] + 1
    # Recent files are kept; the oldest kept file removed by hand: no pruned entry accounts for it.
    for i in range(40):
        log.append(Stopped(reason=f"recent run {i}"))
    assert "pruned" in _kinds(log) and log.verify().ok
    kept = sorted(tmp_path.glob("audit.jsonl.*"))
    assert kept
    kept[0].unlink()
    report = AuditLog(path).verify()
    assert not report.ok and "no 'pruned' entry accounts" in (report.problem or "")


def test_rotation_settings_are_in_the_audit_config_section() -> None:
    cfg = load_config(overrides={"audit": {"max_bytes": 1_000_000, "retention_days": 365}})
    log = AuditLog.from_config(cfg)
    assert log.rotation == Rotation(1_000_000, 365)
    with pytest.raises(Exception, match=r"audit\.max_bytes"):
        load_config(overrides={"audit": {"max_bytes": 10}})


# ------------------------------------------------------------------------------------ start reads the tail


def test_a_start_reads_back_only_to_the_last_start_entry(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    record_start(log, load_config())
    # Damage far back: a start that read the whole log would stumble on it; the tail scan never reaches it.
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"5\n" + b"".join(lines))
    for _ in range(3):
        log.append(Stopped(reason="x"))
    record_start(log, load_config(overrides={"device_id": "other-01"}))
    state = tail_state(log)
    assert state.last_start is not None and state.last_start["config"]["device_id"] == "other-01"
    change = next(e for e in log.entries_backward() if e["kind"] == "config_change")
    assert change["data"]["changes"][0]["field"] == "device_id"


def test_concurrent_writers_across_a_rotation_never_fork_the_chain(tmp_path: Path) -> None:
    import threading

    path = tmp_path / "audit.jsonl"

    def write(n: int) -> None:
        log = AuditLog(path, rotation=Rotation(max_bytes=4096))
        for i in range(40):
            log.append(Stopped(reason=f"writer {n} entry {i}"))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    report = AuditLog(path).verify()
    assert report.ok and report.length == 120, report.problem
