"""Shared fixtures: real Mosquitto brokers on free loopback ports, real MQTT subscribers, site PKI.

Brokers are real ``mosquitto`` processes (no mocks): the point of the publish tests is what a real
broker does with our packets (retained messages, last wills, ACLs, TLS). Tests that need one are
skipped with a clear reason when the ``mosquitto`` binary is not installed (``.ci/run`` installs it).
The helpers behind them, and every helper test modules share, are in ``tests/support/``: a test
module imports from there, never from another test module or from this file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, List

import pytest
from support.brokers import Broker, Pki, Subscriber, free_port, require_mosquitto, run_user_line
from support.cameras import CAMERA_STANDIN, SYSTEM_PYTHON, RtspCamera, StandIn
from support.http_camera import serve_sample_clip
from support.repo import REPO, load_script

# State files that a config leaves at their default place ({state_dir}: the outbox, the audit log)
# go to a folder of this test session, never to the machine's /var/lib/crowd-appliance. Set before
# any test runs, so that every `appliance` subprocess inherits it too.
STATE_DIR = Path(tempfile.mkdtemp(prefix="appliance-test-state-"))
os.environ["STATE_DIRECTORY"] = str(STATE_DIR)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(STATE_DIR, ignore_errors=True)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    """A plain (mqtt://) broker, anonymous access allowed, with persistence so that a control
    room's persistent session and its queued messages survive a broker restart (outage tests)."""
    require_mosquitto()
    work = tmp_path / "broker"
    work.mkdir()
    port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(
        f"{run_user_line()}"
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "persistence true\n"
        f"persistence_location {work}/\n"
        "max_queued_messages 200000\n"
        "max_inflight_messages 100\n"
    )
    broker = Broker(port, conf, work)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def locked_mosquitto(tmp_path: Path) -> Iterator[Broker]:
    """A plain broker that refuses anonymous clients (for the 'refused auth' error)."""
    require_mosquitto()
    work = tmp_path / "locked"
    work.mkdir()
    port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(f"{run_user_line()}listener {port} 127.0.0.1\nallow_anonymous false\n")
    broker = Broker(port, conf, work)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Site CA + broker cert (localhost) + device-a, device-b and control-room certs,
    minted by scripts/provision_device.py, plus an unrelated CA for the wrong-CA test."""
    prov = load_script("provision_device")
    root = tmp_path_factory.mktemp("pki")
    # The broker certificate names "localhost" only, so 127.0.0.1 doubles as a wrong host name.
    prov.init_site(root, ["localhost"], [])
    clients = {}
    for cn in ("device-a", "device-b", "control-room"):
        crt, key = prov.mint_client(root, cn)
        clients[cn] = {"cert": crt, "key": key}
    other = tmp_path_factory.mktemp("other-ca")
    prov.init_site(other, ["localhost"], ["127.0.0.1"])
    return Pki(root, root / "ca.crt", other / "ca.crt", clients)


@pytest.fixture
def tls_mosquitto(tmp_path: Path, pki: Pki) -> Iterator[Broker]:
    """The shipped deploy/mosquitto example, with only paths and the port rewritten."""
    require_mosquitto()
    work = tmp_path / "tls-broker"
    work.mkdir()
    port = free_port()
    shipped = (REPO / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
    conf_text = (
        shipped.replace("listener 8883", f"listener {port} 127.0.0.1")
        .replace("/etc/mosquitto/certs/", f"{pki.dir}/")
        .replace("/etc/mosquitto/crowd-appliance.acl", str(REPO / "deploy" / "mosquitto" / "crowd-appliance.acl"))
        .replace("/var/lib/mosquitto/", f"{work}/")
    )
    assert str(port) in conf_text and str(pki.dir) in conf_text, "deploy example changed shape; update fixture"
    conf = work / "mosquitto.conf"
    conf.write_text(run_user_line() + conf_text)
    # Reached as "localhost": the name in the broker's certificate.
    broker = Broker(port, conf, work, scheme="mqtts", host="localhost")
    broker.start()
    yield broker
    broker.stop()


# --------------------------------------------------------------------------- subscriber


@pytest.fixture
def subscribe() -> Iterator[Callable[..., Subscriber]]:
    made: List[Subscriber] = []

    def factory(broker: Broker, topic: str, **kwargs: Any) -> Subscriber:
        sub = Subscriber(broker, topic, **kwargs)
        made.append(sub)
        return sub

    yield factory
    for sub in made:
        sub.close()


@pytest.fixture
def publishers() -> Iterator[List[Any]]:
    """Publishers a test starts (append them); closed without a clean stop at the end."""
    made: List[Any] = []
    yield made
    for pub in made:
        pub.close(clean=False)


@pytest.fixture
def camera_server() -> Iterator[Any]:
    """The sample clip served over HTTP on loopback, as an IP camera's stream (``support.http_camera``)."""
    server = serve_sample_clip()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def clip_jpegs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample clip's first 60 frames as JPEG files (ffmpeg, from Debian): what the stand-in
    camera programs and the RTSP test camera send. Standard Huffman tables, as RTP/JPEG needs."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.fail("ffmpeg is not installed: run scripts/setup.sh")
    from appliance.resources import sample_clip

    folder = tmp_path_factory.mktemp("clip-jpegs")
    subprocess.run(
        [ffmpeg, "-v", "error", "-i", str(sample_clip()), "-frames:v", "60", "-q:v", "6", "-huffman", "default",
         "-start_number", "0", str(folder / "frame_%03d.jpg")],
        check=True, timeout=120,
    )
    return folder


@pytest.fixture
def rtsp_camera_factory(clip_jpegs: Path, tmp_path: Path) -> Iterator[Callable[..., RtspCamera]]:
    """Make (not start) RTSP cameras; all are stopped at the end of the test."""
    if not Path(SYSTEM_PYTHON).exists() or subprocess.run(
        [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0')"], capture_output=True
    ).returncode:
        pytest.fail("GStreamer's RTSP server is not installed for /usr/bin/python3: run scripts/setup.sh")
    made: List[RtspCamera] = []

    def factory(**kwargs: Any) -> RtspCamera:
        camera = RtspCamera(clip_jpegs, tmp_path, **kwargs)
        made.append(camera)
        return camera

    yield factory
    for camera in made:
        camera.stop()


@pytest.fixture
def rtsp_camera(rtsp_camera_factory: Callable[..., RtspCamera]) -> RtspCamera:
    """A started RTSP camera without a password."""
    camera = rtsp_camera_factory()
    camera.start()
    return camera


@pytest.fixture
def standin(tmp_path: Path, clip_jpegs: Path, monkeypatch: pytest.MonkeyPatch) -> StandIn:
    """``rpicam-vid`` and ``gst-launch-1.0`` stand-ins on PATH, sending the clip's frames."""
    folder = tmp_path / "camera"
    shutil.copytree(clip_jpegs, folder / "frames")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("rpicam-vid", "gst-launch-1.0"):
        wrapper = bin_dir / name
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{CAMERA_STANDIN}" {name} "$@"\n')
        wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STANDIN_DIR", str(folder))
    return StandIn(folder)


@pytest.fixture
def opened() -> Iterator[List[Any]]:
    """Frame sources a test opened, closed at its end whatever happens."""
    sources: List[Any] = []
    yield sources
    for source in sources:
        source.close()
