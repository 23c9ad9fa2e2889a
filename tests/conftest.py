"""Shared fixtures: real Mosquitto brokers on free loopback ports, real MQTT subscribers, site PKI.

Brokers are real ``mosquitto`` processes (no mocks): the point of the publish tests is what a real
broker does with our packets (retained messages, last wills, ACLs, TLS). Tests that need one are
skipped with a clear reason when the ``mosquitto`` binary is not installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import getpass
import importlib.util
import io
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

REPO = Path(__file__).resolve().parent.parent

# State files that a config leaves at their default place ({state_dir}: the outbox, the audit log)
# go to a folder of this test session, never to the machine's /var/lib/crowd-appliance. Set before
# any test runs, so that every `appliance` subprocess inherits it too.
STATE_DIR = Path(tempfile.mkdtemp(prefix="appliance-test-state-"))
os.environ["STATE_DIRECTORY"] = str(STATE_DIR)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(STATE_DIR, ignore_errors=True)
MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


def printing_publisher(cfg: Any, stream: Any) -> Any:
    """The publisher ``appliance run`` uses without a broker, printing to ``stream``."""
    from appliance.config import config_hash
    from appliance.publish import StdoutPublisher, make_birth

    birth = make_birth(config_hash=config_hash(cfg), board=cfg.profile.name, models=[])
    return StdoutPublisher(device_id=cfg.device_id, mqtt=cfg.mqtt, publish=cfg.publish, birth=birth, stream=stream)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def load_script(name: str) -> ModuleType:
    """Import a file from scripts/ (they are tools, not a package) so tests use the shipped code."""
    path = REPO / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script runs
    spec.loader.exec_module(module)
    return module


@dataclass
class Broker:
    """A mosquitto process on 127.0.0.1:port; can be stopped and restarted on the same port."""

    port: int
    conf: Path
    workdir: Path
    scheme: str = "mqtt"
    host: str = "127.0.0.1"
    proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> None:
        log = open(self.workdir / "mosquitto.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(self.workdir / 'mosquitto.log').read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not accept connections on port {self.port} within {timeout_s} s")

    def stop(self) -> None:
        """Graceful stop (SIGTERM): a persistent broker saves its sessions and queued messages."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        path = self.workdir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _require_mosquitto() -> str:
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (apt-get install -y mosquitto mosquitto-clients)")
    return MOSQUITTO


def _run_user_line() -> str:
    # Started as root, mosquitto drops to the 'mosquitto' user and could not read files in tmp_path.
    return f"user {getpass.getuser()}\n" if os.geteuid() == 0 else ""


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    """A plain (mqtt://) broker, anonymous access allowed, with persistence so that a control
    room's persistent session and its queued messages survive a broker restart (outage tests)."""
    _require_mosquitto()
    work = tmp_path / "broker"
    work.mkdir()
    port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(
        f"{_run_user_line()}"
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
    _require_mosquitto()
    work = tmp_path / "locked"
    work.mkdir()
    port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(f"{_run_user_line()}listener {port} 127.0.0.1\nallow_anonymous false\n")
    broker = Broker(port, conf, work)
    broker.start()
    yield broker
    broker.stop()


@dataclass
class Pki:
    dir: Path
    ca: Path
    wrong_ca: Path
    clients: Dict[str, Dict[str, Path]] = field(default_factory=dict)


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
    _require_mosquitto()
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
    conf.write_text(_run_user_line() + conf_text)
    # Reached as "localhost": the name in the broker's certificate.
    broker = Broker(port, conf, work, scheme="mqtts", host="localhost")
    broker.start()
    yield broker
    broker.stop()


# --------------------------------------------------------------------------- subscriber


@dataclass
class Received:
    topic: str
    payload: Dict[str, Any]
    retain: bool
    raw: bytes = b""  # the payload's bytes as the broker delivered them


class Subscriber:
    """A real paho subscriber collecting JSON messages. ``session`` = persistent (clean session off),
    like a control room that must not miss a backlog delivered while it reconnects."""

    def __init__(
        self,
        broker: Broker,
        topic: str,
        *,
        client_id: Optional[str] = None,
        persistent: bool = False,
        tls: Optional[Dict[str, Path]] = None,
        ca: Optional[Path] = None,
    ) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: List[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.topic = topic
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-sub-{os.getpid()}-{id(self)}",
            protocol=paho.MQTTv311,
            clean_session=not persistent,
        )
        if tls is not None:
            ctx = ssl.create_default_context(cafile=str(ca))
            ctx.load_cert_chain(str(tls["cert"]), str(tls["key"]))
            self.client.tls_set_context(ctx)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        assert self._subscribed.wait(10), "subscriber could not subscribe"

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.messages.append(Received(msg.topic, json.loads(msg.payload), bool(msg.retain), bytes(msg.payload)))

    def snapshot(self, kind: Optional[str] = None) -> List[Received]:
        with self._lock:
            return [m for m in self.messages if kind is None or m.topic.endswith("/" + kind)]

    def wait_for(self, predicate: Callable[[List[Received]], bool], timeout_s: float = 10.0) -> List[Received]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            snap = self.snapshot()
            if predicate(snap):
                return snap
            time.sleep(0.02)
        raise AssertionError(f"timed out; received {[(m.topic, m.payload.get('seq')) for m in self.snapshot()]}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


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


# --------------------------------------------------------------------------- publisher process


DRIVER = Path(__file__).resolve().parent / "publish_driver.py"


def start_driver(*args: str) -> subprocess.Popen:
    """The publisher in its own process, as the pipeline will run it (for kill -9 tests)."""
    return subprocess.Popen(
        [sys.executable, str(DRIVER), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=str(REPO),
    )


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


# --------------------------------------------------------------------------- an IP camera on loopback

RTSP_CAMERA = Path(__file__).resolve().parent / "rtsp_camera.py"
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, with python3-gi and GStreamer's RTSP server


class RtspCamera:
    """GStreamer's RTSP server (tests/rtsp_camera.py) serving the clip's frames as MJPEG/RTP on a
    loopback port that stays the same across ``kill`` and ``start``, as a camera's address does."""

    def __init__(self, frames: Path, workdir: Path, user: Optional[str] = None, password: Optional[str] = None) -> None:
        self.frames = frames
        self.workdir = workdir
        self.port = free_port()
        self.user = user
        self.password = password
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        """The stream's URL without credentials."""
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def start(self) -> None:
        args = [SYSTEM_PYTHON, str(RTSP_CAMERA), "--port", str(self.port), "--frames", str(self.frames)]
        if self.user:
            args += ["--user", self.user, "--password", self.password or ""]
        with open(self.workdir / "rtsp-camera.log", "ab") as log:
            self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # "ready ..." once it listens (or "" if it died)
        if not line.startswith("ready"):
            self.proc.wait(timeout=10)
            raise AssertionError(f"RTSP camera did not start: {(self.workdir / 'rtsp-camera.log').read_text()}")

    def kill(self) -> None:
        """The camera's power cut: no goodbye on its connections."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stall(self, on: bool = True) -> None:
        """Stop sending frames, leaving the RTSP session and its TCP connection open (or resume)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGUSR1 if on else signal.SIGUSR2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


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


# --------------------------------------------------------------------------- board camera programs

CAMERA_STANDIN = Path(__file__).resolve().parent / "camera_standin.py"


class StandIn:
    """The board camera programs of tests/camera_standin.py, first on PATH: what each run does,
    and what each run was asked to do."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def behave(self, *runs: str) -> None:
        (self.folder / "behaviour").write_text("\n".join(runs) + "\n", encoding="utf-8")

    def runs(self) -> List[Dict[str, Any]]:
        log = self.folder / "runs.log"
        return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()] if log.exists() else []


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


# --------------------------------------------------------------------------- a device running live


class RunningDevice:
    """``build_pipeline(...).run()`` in a thread, printing its messages into a buffer."""

    def __init__(self, source: str, capture: Dict[str, Any], device_id: str = "live-1") -> None:
        from appliance.app import build_pipeline
        from appliance.config import load_config

        cfg = load_config(overrides={"capture": {"source": source, **capture},
                                     "publish": {"health_interval_s": 1.0, "interval_s": 2.0},
                                     "device_id": device_id})
        self.out = io.StringIO()
        self.pipeline = build_pipeline(cfg, publisher=printing_publisher(cfg, self.out))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.pipeline.run, kwargs={"stop": self.stop}, daemon=True)
        self.thread.start()

    def messages(self, kind: str) -> List[Dict[str, Any]]:
        # The pipeline's thread is still writing: only whole lines count.
        lines = [line for line in self.out.getvalue().splitlines(keepends=True) if line.endswith("\n")]
        return [m["payload"] for m in map(json.loads, lines) if m["topic"].endswith("/" + kind)]

    def windows(self) -> List[Dict[str, Any]]:
        return [{"frames_analyzed": c["frames_analyzed"], "camera_ok": c["camera_ok"]} for c in self.messages("counts")]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()
