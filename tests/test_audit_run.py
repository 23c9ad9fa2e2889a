"""``appliance run`` and its audit log: fail closed on evidence, never on counting. An alert whose
audit entry cannot be written is still published; a torn or missing log never stops a start."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Dict, List

import pytest
from support.analysis import config, detections, person_at
from support.publishing import printing_publisher

from appliance.anonymize import Anonymizer
from appliance.anonymize.testing import KnownDetections
from appliance.app import build_pipeline
from appliance.audit import AuditLog
from appliance.capture import open_source
from appliance.cli import main

SIZE = (320, 240)


def _crowded_run(tmp_path: Path, break_log: Any) -> List[Dict[str, Any]]:
    """A run of the sample clip in which the whole frame holds three people and its limit is one."""
    cfg = config(
        zones=[{"name": "all", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]], "max_people": 1, "hold_s": 0}],
        transparency={"audit_log_path": str(tmp_path / "audit.jsonl")},
        publish={"interval_s": 0.5, "health_interval_s": 0.5},
    )
    out = io.StringIO()
    source = open_source("sample", cfg.capture, SIZE)
    pipeline = build_pipeline(cfg, source=source, publisher=printing_publisher(cfg, out))
    people = detections([person_at(60, 200, 80), person_at(160, 200, 80), person_at(260, 200, 80)])
    pipeline.anonymizer = Anonymizer(KnownDetections(), KnownDetections(people), cfg.anonymize, concurrent=False)
    break_log(tmp_path / "audit.jsonl")
    pipeline.run(max_frames=12)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def _disk_full(path: Path) -> None:
    path.rename(path.with_name("kept.jsonl"))
    path.symlink_to("/dev/full")


def _folder(path: Path) -> None:
    path.rename(path.with_name("kept.jsonl"))
    path.mkdir()


@pytest.mark.slow
@pytest.mark.parametrize("break_log", [_disk_full, _folder], ids=["disk full", "folder in its place"])
def test_an_alert_whose_audit_entry_cannot_be_written_is_still_published(tmp_path: Path, break_log: Any) -> None:
    messages = _crowded_run(tmp_path, break_log)
    raised = [m["payload"] for m in messages if m["topic"].endswith("/anomalies")]
    assert raised and raised[0]["type"] == "overcrowding" and raised[0]["state"] == "raised"
    health = [m["payload"] for m in messages if m["topic"].endswith("/health")]
    assert health and all(h["audit"]["problem"] for h in health) and health[-1]["state"] == "degraded"


@pytest.mark.slow
def test_run_starts_on_a_torn_log_and_says_so_in_health(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "audit.jsonl"
    site = tmp_path / "site.yaml"
    site.write_text(f"transparency: {{audit_log_path: '{log}'}}\npublish: {{health_interval_s: 1}}\n")
    assert main(["run", "--config", str(site), "--max-frames", "2"]) == 0
    with open(log, "ab") as f:
        f.write(b'{"at":"2026-12-07T0')  # a power cut mid-write
    capsys.readouterr()
    assert main(["run", "--config", str(site), "--max-frames", "2"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    health = [m["payload"] for m in printed if m["topic"].endswith("/health")][-1]
    assert health["state"] == "degraded" and health["audit"]["unacknowledged"] == 1
    assert AuditLog(log).verify().ok
    assert [e["kind"] for e in AuditLog(log).entries()][-3:] == ["recovered", "start", "stop"]


def test_a_folder_or_unwritable_log_is_not_a_config_error_that_keeps_the_service_down(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Exit 2 is the unit's RestartPreventExitStatus: refusing to start over the log's state would
    # leave the device dark for good. run reports it in health instead (the tests above).
    (tmp_path / "audit.jsonl").mkdir()
    site = tmp_path / "site.yaml"
    site.write_text(
        "mqtt: {url: 'mqtt://127.0.0.1:1'}\n"
        f"outbox: {{path: '{tmp_path}/outbox.sqlite3'}}\n"
        f"transparency: {{audit_log_path: '{tmp_path}/audit.jsonl'}}\n"
    )
    assert main(["config", "validate", str(site)]) == 0
    # A path that can never be a file (under a regular file) is still a config error.
    (tmp_path / "plain").write_text("x")
    site.write_text(site.read_text().replace(f"{tmp_path}/audit.jsonl", f"{tmp_path}/plain/audit.jsonl"))
    assert main(["config", "validate", str(site)]) == 2
    assert "transparency.audit_log_path" in capsys.readouterr().err
