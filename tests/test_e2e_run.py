"""End to end: ``appliance run`` on real footage to a real Mosquitto, seen by a real subscriber."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, List

import jsonschema
import pytest
from support.brokers import Broker, Received, Subscriber
from support.repo import REPO

from appliance.publish.egress import DOCUMENT_MAX_BYTES

SCHEMAS = REPO / "docs" / "schemas"
pytestmark = [pytest.mark.mqtt, pytest.mark.slow]

# Anything that looks like image data: JPEG/PNG magic, base64 of them, or long runs of numbers.
IMAGE_MARKERS = ("/9j/", "iVBORw0KGgo", "\\xff\\xd8", "data:image")


def start_run(broker: Broker, tmp_path: Path, max_frames: int) -> subprocess.Popen:
    """``appliance run`` on the sample clip with the example site's zone and line."""
    return subprocess.Popen(
        [
            sys.executable, "-m", "appliance", "run",
            "--config", str(REPO / "examples" / "site.yaml"),
            "--source", str(REPO / "appliance" / "data" / "sample_vtest.mp4"),
            "--broker", broker.url,
            "--device-id", "e2e-1",
            "--outbox", str(tmp_path / "outbox.sqlite3"),
            "--interval", "5",
            "--max-frames", str(max_frames),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def assert_valid_and_anonymous(messages: List[Received]) -> None:
    for m in messages:
        kind = m.topic.rsplit("/", 1)[1]
        jsonschema.validate(m.payload, json.loads((SCHEMAS / f"{kind}.json").read_text()))
        text = json.dumps(m.payload)
        # The retained notice lists every published field with its meaning: it has its own, larger cap.
        assert len(text) < (DOCUMENT_MAX_BYTES if kind == "notice" else 16384)
        assert not any(marker in text for marker in IMAGE_MARKERS), m.topic


def test_counts_and_status_reach_a_subscriber_and_a_clean_stop_leaves_offline(
    mosquitto: Broker, subscribe: Callable[..., Subscriber], tmp_path: Path
) -> None:
    sub = subscribe(mosquitto, "crowdmon/e2e-1/#")
    proc = start_run(mosquitto, tmp_path, max_frames=150)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert out == ""  # with a broker, nothing is printed on stdout
    messages = sub.wait_for(lambda ms: any(m.payload.get("state") == "offline" for m in ms), timeout_s=20)

    status = [m for m in messages if m.topic == "crowdmon/e2e-1/status"]
    assert status[0].payload["state"] == "online" and status[-1].payload["state"] == "offline"
    counts = [m.payload for m in messages if m.topic == "crowdmon/e2e-1/counts"]
    assert [c["frames_analyzed"] for c in counts] == [50, 50, 50]  # 15 s of video in 5 s windows
    assert max(c["total"]["max"] for c in counts) >= 3
    assert "walkway" in counts[0]["zones"] and "centre" in counts[0]["lines"]
    assert any(m.topic.endswith("/health") for m in messages)
    assert_valid_and_anonymous(messages)

    # A control room connecting later gets the retained status: offline, from this boot.
    late = subscribe(mosquitto, "crowdmon/e2e-1/status")
    retained = late.wait_for(lambda ms: len(ms) >= 1)[0]
    assert retained.retain and retained.payload["state"] == "offline"
    assert retained.payload["boot_id"] == status[0].payload["boot_id"]


def test_the_notice_is_retained_on_the_broker_and_the_audit_head_is_published(
    mosquitto: Broker, subscribe: Callable[..., Subscriber], tmp_path: Path
) -> None:
    room = subscribe(mosquitto, "crowdmon/e2e-1/health")
    proc = start_run(mosquitto, tmp_path, max_frames=60)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    last_health = room.wait_for(lambda ms: len(ms) >= 1)[-1].payload
    # A control room connecting after the run still finds the notice: it is retained.
    late = subscribe(mosquitto, "crowdmon/e2e-1/#")
    retained = late.wait_for(lambda ms: {m.topic for m in ms} >= {"crowdmon/e2e-1/notice", "crowdmon/e2e-1/status"})
    notice = next(m for m in retained if m.topic.endswith("/notice"))
    status = next(m for m in retained if m.topic.endswith("/status"))
    assert notice.retain and notice.payload["device_id"] == "e2e-1"
    jsonschema.validate(notice.payload, json.loads((SCHEMAS / "notice.json").read_text()))
    # The birth (and its death) carry the hash of exactly the bytes published as the notice.
    assert status.payload["notice_hash"] == hashlib.sha256(notice.raw).hexdigest()

    # The audit log beside the outbox is intact, and its head is the one the last health published:
    # the control room's anchor against a later rewrite or truncation on the device.
    head = f"{last_health['audit']['length']}:{last_health['audit']['sha256']}"
    verify = subprocess.run(
        [sys.executable, "-m", "appliance", "audit", "verify", "--log", str(tmp_path / "audit.jsonl"),
         "--expect-head", head, "--json"],
        capture_output=True, text=True, cwd=REPO,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    report = json.loads(verify.stdout)
    assert report["ok"] is True
    assert status.payload["audit"]["length"] >= 1


def test_kill_9_is_reported_offline_by_the_last_will(
    mosquitto: Broker, subscribe: Callable[..., Subscriber], tmp_path: Path
) -> None:
    sub = subscribe(mosquitto, "crowdmon/e2e-1/status")
    proc = start_run(mosquitto, tmp_path, max_frames=100000)
    try:
        sub.wait_for(lambda ms: any(m.payload["state"] == "online" for m in ms), timeout_s=60)
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    # Keepalive is not needed: the broker sees the TCP connection drop and publishes the will.
    sub.wait_for(lambda ms: ms[-1].payload["state"] == "offline", timeout_s=20)
    late = subscribe(mosquitto, "crowdmon/e2e-1/status")
    assert late.wait_for(lambda ms: len(ms) >= 1)[0].payload["state"] == "offline"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_stops_cleanly_with_a_final_window_a_stop_entry_and_offline(
    mosquitto: Broker, subscribe: Callable[..., Subscriber], tmp_path: Path, signum: signal.Signals
) -> None:
    # SIGHUP too: a closed SSH session or a terminal hang-up must not lose the partial window.
    sub = subscribe(mosquitto, "crowdmon/e2e-1/#")
    proc = start_run(mosquitto, tmp_path, max_frames=100000)
    sub.wait_for(lambda ms: any(m.topic.endswith("/counts") for m in ms), timeout_s=120)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    messages = sub.wait_for(lambda ms: ms[-1].payload.get("state") == "offline", timeout_s=20)
    kinds = [m.topic.rsplit("/", 1)[1] for m in messages]
    assert kinds[-1] == "status" and "counts" in kinds[:-1]
    assert_valid_and_anonymous(messages)
    entries = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert entries[-1]["kind"] == "stop" and entries[-1]["data"]["reason"] == "signal"
