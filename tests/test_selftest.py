"""``appliance selftest``: what a technician sees on site, green only for a real deployment.

The camera is the sample clip served over HTTP on loopback (read like an IP camera's stream),
the broker a real Mosquitto: the shipped mTLS + ACL example for the identity checks.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, Iterator

import cv2
import numpy as np
import pytest

from appliance.config import load_config
from appliance.health.clock import STA_UNSYNC, TIME_ERROR, clock_state, judge_kernel_clock
from appliance.resources import sample_clip
from appliance.selftest import Check, CheckFailed, SelftestReport, judge_frames, run_selftest

ROOT = Path(__file__).resolve().parent.parent


def selftest(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "appliance", "selftest", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=os.environ.copy(),
    )


def statuses(report: dict) -> Dict[str, str]:
    return {c["name"]: c["status"] for c in report["checks"]}


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def camera_url() -> Iterator[str]:
    """An IP camera stand-in: the sample clip over HTTP on loopback."""
    handler = functools.partial(QuietHandler, directory=str(sample_clip().parent))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{sample_clip().name}"
    server.shutdown()
    server.server_close()


# --------------------------------------------------------------------------- never green for a demo


@pytest.mark.slow
def test_without_a_config_it_is_red_and_says_why_with_advice() -> None:
    proc = selftest("--json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 1 and report["ok"] is False and report["result"] == "red"
    got = statuses(report)
    assert got["config"] == got["notice"] == got["camera"] == got["broker"] == "fail"
    # The install itself is fine: models and anonymizer still pass on a demo setup.
    assert got["models"] == got["anonymizer"] == "pass"
    assert all(c["advice"] for c in report["checks"] if c["status"] == "fail")
    camera = next(c for c in report["checks"] if c["name"] == "camera")
    assert "sample clip" in camera["detail"]


@pytest.mark.slow
def test_an_empty_config_is_not_ready_to_deploy(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("")
    proc = selftest("--config", str(site))
    assert proc.returncode == 1
    assert "ready to deploy" not in proc.stdout.replace("before deploying", "")
    assert "RED" in proc.stdout.splitlines()[-1]
    assert "demo default" in proc.stdout and "-> set device_id" in proc.stdout


@pytest.mark.slow
def test_a_file_or_a_frozen_camera_fails_the_camera_check(tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    cap = cv2.VideoCapture(str(sample_clip()))
    ok, image = cap.read()
    cap.release()
    assert ok
    for i in range(10):  # one still image, repeated: a frozen camera
        cv2.imwrite(str(frames / f"{i:03d}.png"), image)
    report = run_selftest(load_config(overrides={"capture": {"source": str(frames)}}), skip=("time", "broker"))
    camera = next(c for c in report.checks if c.name == "camera")
    assert camera.status == "fail" and "frozen" in camera.detail and camera.advice

    clip = load_config(overrides={"capture": {"source": str(sample_clip())}})
    camera = next(c for c in run_selftest(clip, skip=("time", "broker")).checks if c.name == "camera")
    assert camera.status == "fail" and "is a file, not a camera" in camera.detail


def test_black_uniform_and_frozen_frames_are_told_apart() -> None:
    rng = np.random.default_rng(0)
    moving = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(4)]
    assert "changing" in judge_frames(moving)
    with pytest.raises(CheckFailed, match="black"):
        judge_frames([np.full((48, 64, 3), 3, np.uint8) + rng.integers(0, 4, (48, 64, 3), dtype=np.uint8)] * 4)
    with pytest.raises(CheckFailed, match="uniform"):
        judge_frames([np.full((48, 64, 3), 128, np.uint8)] * 4)
    with pytest.raises(CheckFailed, match="frozen"):
        judge_frames([moving[0]] * 4)


def test_the_notice_check_fails_until_the_notice_says_who_runs_the_device_and_how_to_reach_them() -> None:
    def notice(**transparency: str) -> Check:
        cfg = load_config(overrides={"transparency": transparency})
        report = run_selftest(cfg, skip=("camera", "time", "outbox", "broker"))
        return next(c for c in report.checks if c.name == "notice")

    nobody = notice()
    assert nobody.status == "fail" and "who runs it or how to reach them" in nobody.detail
    assert "transparency.operator_name" in nobody.advice and "--transparency FILE" in nobody.advice
    unreachable = notice(operator_name="City of Example")
    assert unreachable.status == "fail" and "how to reach them" in unreachable.detail
    assert "who runs it" not in unreachable.detail
    named = notice(operator_name="City of Example", contact_url="https://example.org/cameras")
    assert named.status == "pass" and "City of Example" in named.detail and "example.org" in named.detail


# --------------------------------------------------------------------------- verdict and clock


def test_ready_to_deploy_only_when_every_check_passed() -> None:
    passed = SelftestReport([Check("config", "pass", "ok"), Check("time", "pass", "ok")])
    assert passed.ok and passed.ready_to_deploy and passed.text().endswith("GREEN: ready to deploy")
    unknown = SelftestReport([Check("config", "pass", "ok"), Check("time", "skip", "cannot tell", advice="check")])
    assert unknown.ok and not unknown.ready_to_deploy
    assert "ready to deploy" not in unknown.text() and "-> check" in unknown.text()
    failed = SelftestReport([Check("config", "fail", "no", advice="fix")])
    assert failed.to_dict()["result"] == "red" and failed.text().endswith("before deploying")


def test_the_kernel_clock_status_decides_synchronised() -> None:
    assert judge_kernel_clock(0, 0x2001, 12000).synced is True
    assert judge_kernel_clock(0, STA_UNSYNC, 16_000_000).synced is False
    assert judge_kernel_clock(TIME_ERROR, 0, 16_000_000).synced is False
    assert clock_state().synced in (True, False, None)  # the real call works here


# --------------------------------------------------------------------------- a real site


def site_config(tmp_path: Path, broker, camera: str, device: str, tls: Dict[str, str]) -> Path:
    site = tmp_path / "site.yaml"
    site.write_text(
        json.dumps(
            {
                "device_id": device,
                "capture": {"source": camera},
                "mqtt": {"url": broker.url, "tls": tls},
                "outbox": {"path": str(tmp_path / "outbox.sqlite3")},
                "transparency": {"operator_name": "City of Example", "contact_email": "privacy@example.org"},
            }
        )
    )
    return site


@pytest.mark.slow
@pytest.mark.mqtt
def test_a_deployed_device_with_mutual_tls_is_green(tmp_path: Path, tls_mosquitto, pki, camera_url: str) -> None:
    tls = {
        "ca_file": str(pki.ca),
        "cert_file": str(pki.clients["device-a"]["cert"]),
        "key_file": str(pki.clients["device-a"]["key"]),
    }
    site = site_config(tmp_path, tls_mosquitto, camera_url, "device-a", tls)
    proc = selftest("--config", str(site), "--json", "--timeout", "30")
    report = json.loads(proc.stdout)
    got = statuses(report)
    assert {k: v for k, v in got.items() if k != "time"} == dict.fromkeys(
        ["config", "notice", "models", "anonymizer", "camera", "outbox", "broker", "certificate"], "pass"
    ), report
    broker = next(c for c in report["checks"] if c["name"] == "broker")
    assert "PUBACK" in broker["detail"] and "crowdmon/device-a/selftest" in broker["detail"]
    # The clock is this machine's: green and ready to deploy exactly when it is NTP-synchronised.
    assert report["ok"] is (got["time"] != "fail") and report["ready_to_deploy"] is (got["time"] == "pass")


@pytest.mark.slow
@pytest.mark.mqtt
def test_the_broker_check_fails_when_the_acl_refuses_this_identity_its_topic(
    tmp_path: Path, tls_mosquitto, pki, camera_url: str
) -> None:
    # device-a's certificate, but the config claims to be device-b: the ACL lets a certificate
    # write only under its own name, so the connection succeeds and the publish is refused.
    tls = {
        "ca_file": str(pki.ca),
        "cert_file": str(pki.clients["device-a"]["cert"]),
        "key_file": str(pki.clients["device-a"]["key"]),
    }
    site = site_config(tmp_path, tls_mosquitto, camera_url, "device-b", tls)
    proc = selftest("--config", str(site), "--skip", "camera", "--skip", "time")
    assert proc.returncode == 1
    line = next(line for line in proc.stdout.splitlines() if line.startswith("[FAIL] broker"))
    assert "refused" in line and "crowdmon/device-b/selftest" in line
    assert "ACL" in proc.stdout
    assert "[SKIP] camera" in proc.stdout and "skipped on request" in proc.stdout
