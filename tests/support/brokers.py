"""Real Mosquitto brokers on free loopback ports, and real MQTT subscribers (no mocks: the point
of the publish tests is what a real broker does with our packets). ``require_mosquitto`` skips a
test with a clear reason where the binary is not installed (``.ci/run`` installs it)."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def require_mosquitto() -> str:
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (apt-get install -y mosquitto mosquitto-clients)")
    return MOSQUITTO


def run_user_line() -> str:
    # Started as root, mosquitto drops to the 'mosquitto' user and could not read files in tmp_path.
    return f"user {getpass.getuser()}\n" if os.geteuid() == 0 else ""


@dataclass
class Pki:
    dir: Path
    ca: Path
    wrong_ca: Path
    clients: Dict[str, Dict[str, Path]] = field(default_factory=dict)


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


def control_room(subscribe: Any, broker: Broker, pki: Pki) -> Any:
    """A control-room subscriber to every device's topics, logged in with its own client certificate."""
    return subscribe(broker, "crowdmon/#", tls=pki.clients["control-room"], ca=pki.ca)
