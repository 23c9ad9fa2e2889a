"""Broker trouble never ends the device: a server that drops the TLS handshake is an outage
(retried with backoff, the outbox holds), and a broker that refuses us is reported and retried
at ``mqtt.reconnect_max_s``, while ``appliance run`` keeps counting instead of exiting."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator, List

import pytest
from support.brokers import Broker, Pki
from support.publishing import DEVICE, counts, make_cfg, started
from support.repo import REPO
from support.waiting import wait_until

from appliance.config import load_config
from appliance.publish import BrokerRejected, BrokerUnreachable

pytestmark = pytest.mark.mqtt


class DroppingServer:
    """A TCP listener that takes each connection and drops it before any TLS is spoken, as a load
    balancer with no healthy backend does: after reading the ClientHello (the client sees EOF) or
    with a reset."""

    def __init__(self, reset: bool) -> None:
        self.reset = reset
        self.accepted = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            if self.reset:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                conn.settimeout(5)
                with contextlib.suppress(OSError):
                    conn.recv(4096)
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(params=["eof", "reset"])
def dropping_server(request: pytest.FixtureRequest) -> Iterator[DroppingServer]:
    server = DroppingServer(reset=request.param == "reset")
    yield server
    server.close()


def test_a_server_that_drops_the_tls_handshake_is_an_outage_not_a_refusal(
    dropping_server: DroppingServer, tmp_path: Path, pki: Pki, publishers: List[object]
) -> None:
    cfg = load_config(
        overrides={
            "device_id": DEVICE,
            "mqtt": {
                "url": f"mqtts://localhost:{dropping_server.port}",
                "tls": {"ca_file": str(pki.ca)},
                "reconnect_min_s": 0.1,
                "reconnect_max_s": 0.5,
            },
            "outbox": {"path": str(tmp_path / "o.db")},
        }
    )
    pub = started(cfg, publishers)
    with pytest.raises(BrokerUnreachable):
        pub.connect(timeout_s=5)
    pub.publish(counts(0))
    wait_until(lambda: dropping_server.accepted >= 4, timeout_s=30)  # retried with backoff
    stats = pub.stats()
    assert not stats.connected and stats.pending == 3  # the birth, the anomaly state and the counts wait
    assert pub.delivery is not None and not isinstance(pub.delivery.status.last_error, BrokerRejected)
    pub.check()  # delivery has not given up


def connections_in(broker: Broker) -> int:
    return broker.log().count("New connection from")


def test_a_refusing_broker_is_reported_and_retried_at_reconnect_max_s(
    locked_mosquitto: Broker, tmp_path: Path, publishers: List[object]
) -> None:
    cfg = make_cfg(locked_mosquitto.url, tmp_path, reconnect_min_s=0.05, reconnect_max_s=1.0)
    pub = started(cfg, publishers)
    with pytest.raises(BrokerRejected):
        pub.connect(timeout_s=10)
    first = connections_in(locked_mosquitto)
    wait_until(lambda: connections_in(locked_mosquitto) >= first + 2, timeout_s=30)
    stats = pub.stats()
    assert not stats.connected and "Not authorized" in (stats.last_error or "")
    pub.check()  # never a DeliveryFailed: the service stays up


@pytest.mark.slow
def test_run_against_a_refusing_broker_keeps_counting_and_exits_0(locked_mosquitto: Broker, tmp_path: Path) -> None:
    """A refusal is not an exit that systemd restarts a few times and then gives up on."""
    proc = subprocess.run(
        [
            sys.executable, "-m", "appliance", "run",
            "--config", str(REPO / "examples" / "site.yaml"),
            "--source", str(REPO / "appliance" / "data" / "sample_vtest.mp4"),
            "--broker", locked_mosquitto.url,
            "--device-id", "refused-1",
            "--outbox", str(tmp_path / "outbox.sqlite3"),
            "--interval", "5",
            "--max-frames", "30",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Not authorized" in proc.stderr and "Traceback" not in proc.stderr
