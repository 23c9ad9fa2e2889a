"""A camera's password never leaves the device: not in a log line, an error, the audit log, the
outbox, an MQTT payload, self-test output or the published config hash.

The camera is GStreamer's RTSP server on loopback asking for a user and password (Basic auth, as IP
cameras do). The device runs, self-tests, fails to open a camera that is not there, and shows its
audit log and notice, once with the password in the URL and once from ``capture.password_file``;
then every output and every file it wrote is searched for the password.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List

import pytest
from support.brokers import Broker, Subscriber, free_port
from support.cameras import RtspCamera
from support.repo import REPO

from appliance.config import config_hash, load_config
from appliance.redaction import redact_url

SECRET = "Pw7-k3Q9zTq2"  # URL-safe, so the URL form needs no quoting
USER = "viewer"


def test_a_password_in_a_url_is_shown_as_stars() -> None:
    assert redact_url(f"error: rtsp://{USER}:{SECRET}@cam.local:554/stream: cannot open") == (
        f"error: rtsp://{USER}:***@cam.local:554/stream: cannot open"
    )
    assert redact_url("rtsp://cam.local/stream and rtsp://viewer@cam/s") == "rtsp://cam.local/stream and rtsp://viewer@cam/s"
    assert redact_url("http://a:p@ss@word@host/x") == "http://a:***@host/x"  # an unencoded '@' in it too


def test_the_published_config_hash_does_not_depend_on_the_camera_password() -> None:
    """The hash goes out in the birth message: a hash over the password would let a guess be confirmed."""
    def hashed(password: str) -> str:
        return config_hash(load_config(overrides={"capture": {"source": f"rtsp://{USER}:{password}@cam/s"}}))

    assert hashed(SECRET) == hashed("another-password")
    assert hashed(SECRET) != config_hash(load_config(overrides={"capture": {"source": "rtsp://other-cam/s"}}))


def appliance(*args: str, env: Dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "appliance", *args], capture_output=True, text=True, cwd=REPO, timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def write_site(path: Path, tmp_path: Path, broker: Broker, capture: Dict[str, object]) -> Path:
    path.write_text(json.dumps({
        "device_id": "secret-1",
        "capture": {"read_timeout_s": 3, "reconnect_initial_s": 0.2, "reconnect_max_s": 1, **capture},
        "mqtt": {"url": broker.url},
        "outbox": {"path": str(tmp_path / "state" / "outbox.sqlite3")},
        "publish": {"interval_s": 2, "health_interval_s": 1},
        "transparency": {"operator_name": "City of Example", "contact_email": "privacy@example.org"},
    }))
    return path


@pytest.mark.slow
@pytest.mark.mqtt
def test_the_camera_password_is_in_no_output_file_or_message(
    tmp_path: Path, mosquitto: Broker, subscribe: Callable[..., Subscriber],
    rtsp_camera_factory: Callable[..., RtspCamera],
) -> None:
    camera = rtsp_camera_factory(user=USER, password=SECRET)
    camera.start()
    host = camera.url.removeprefix("rtsp://")
    in_url = write_site(tmp_path / "in-url.yaml", tmp_path, mosquitto, {"source": f"rtsp://{USER}:{SECRET}@{host}"})
    (tmp_path / "camera.pw").write_text(SECRET + "\n")
    in_file = write_site(tmp_path / "in-file.yaml", tmp_path, mosquitto,
                         {"source": f"rtsp://{USER}@{host}", "password_file": str(tmp_path / "camera.pw")})
    nobody = f"rtsp://{USER}:{SECRET}@127.0.0.1:{free_port()}/cam"  # nothing listens there
    absent = write_site(tmp_path / "absent.yaml", tmp_path, mosquitto, {"source": nobody})
    sub = subscribe(mosquitto, "crowdmon/secret-1/#")

    outputs: List[subprocess.CompletedProcess] = []
    for site in (in_url, in_file):
        outputs.append(appliance("config", "validate", str(site)))
        run = appliance("run", "--config", str(site), "--max-frames", "25")
        assert run.returncode == 0, run.stderr
        outputs.append(run)
        selftest = appliance("selftest", "--config", str(site), "--skip", "time", "--timeout", "20")
        assert "[PASS] camera" in selftest.stdout and f"rtsp://{USER}" in selftest.stdout, selftest.stdout
        outputs.append(selftest)
    failed_open = appliance("preview", "--config", str(absent), "-o", str(tmp_path / "p.jpg"))
    assert failed_open.returncode == 1 and "cannot open camera or stream" in failed_open.stderr, failed_open.stderr
    assert f"rtsp://{USER}:***@" in failed_open.stderr
    failed_selftest = appliance("selftest", "--config", str(absent), "--skip", "time", "--timeout", "5")
    assert "[FAIL] camera" in failed_selftest.stdout
    outputs += [failed_open, failed_selftest]
    for site in (in_url, in_file):
        outputs += [appliance("audit", "show", "--config", str(site))]
        outputs += [appliance("notice", "manifest", "--config", str(site))]

    counts = sub.wait_for(lambda ms: sum(m.topic.endswith("/counts") for m in ms) >= 2, timeout_s=30)
    assert any(m.payload.get("frames_analyzed", 0) > 0 for m in counts if m.topic.endswith("/counts"))
    state = tmp_path / "state"
    entries = [json.loads(line) for line in (state / "audit.jsonl").read_text().splitlines()]
    sources = [e["data"]["config"]["capture"]["source"] for e in entries if e["kind"] == "start"]
    assert sources[0] == f"rtsp://{USER}:***@{host}"  # the audit keeps which camera, not its password

    leaks = [" ".join(p.args[3:5]) for p in outputs if SECRET in p.stdout or SECRET in p.stderr]
    leaks += [m.topic for m in sub.snapshot() if SECRET in json.dumps(m.payload)]
    leaks += [str(f) for f in state.rglob("*") if f.is_file() and SECRET.encode() in f.read_bytes()]
    leaks += ["broker log"] if SECRET in mosquitto.log() else []
    assert leaks == []
    assert {"audit.jsonl", "outbox.sqlite3"} <= {f.name for f in state.iterdir()}  # the files searched exist
