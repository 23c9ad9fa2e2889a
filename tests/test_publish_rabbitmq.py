"""The MQTT 3.1.1 path against a broker that is not Mosquitto: RabbitMQ's MQTT plugin.

RabbitMQ (Debian's ``rabbitmq-server``) speaks MQTT 3.1.1 only: no message expiry, no reason codes
in PUBACK. The appliance with ``mqtt.protocol: "3.1.1"`` must keep the outbox's guarantees there:
every counts message delivered, in seq order, and a broker restart loses nothing (the outbox
resends what was not acknowledged; the control room's durable session keeps what was routed).

The broker runs as its own Erlang node on loopback only (AMQP, MQTT, distribution and epmd ports
all free ports on 127.0.0.1), with its data in the test's tmp_path. Skipped where
``rabbitmq-server`` is not installed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest
from support.brokers import Broker, Subscriber, free_port
from support.publishing import counts, make_cfg, seqs, started
from support.waiting import wait_until

from appliance.publish import MqttPublisher

RABBITMQ = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not RABBITMQ.exists() or shutil.which("erl") is None,
        reason="rabbitmq-server is not installed (apt-get install -y rabbitmq-server)",
    ),
]


class RabbitMq:
    """One RabbitMQ node with the MQTT plugin, bound to 127.0.0.1; stoppable and restartable."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.mqtt_port = free_port()
        self.log = work / "rabbitmq.out"
        amqp_port, dist_port, epmd_port = free_port(), free_port(), free_port()
        (work / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{amqp_port}\n"
            f"mqtt.listeners.tcp.1 = 127.0.0.1:{self.mqtt_port}\n"
            "mqtt.allow_anonymous = true\n"
            "loopback_users = none\n"
        )
        (work / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        self.env: Dict[str, str] = {
            **os.environ,
            "HOME": str(work),  # the Erlang cookie lives here
            "RABBITMQ_CONFIG_FILE": str(work / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(work / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(work / "mnesia"),
            "RABBITMQ_LOG_BASE": str(work / "log"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(work / "plugins-expand"),
            "RABBITMQ_PID_FILE": str(work / "rabbitmq.pid"),
            "RABBITMQ_NODENAME": f"crowdtest{self.mqtt_port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(amqp_port),
            "RABBITMQ_DIST_PORT": str(dist_port),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(epmd_port),
        }
        self.proc: Optional[subprocess.Popen[bytes]] = None

    @property
    def broker(self) -> Broker:
        """The address as the shared fixtures' Subscriber expects it."""
        return Broker(self.mqtt_port, self.work / "rabbitmq.conf", self.work)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.mqtt_port}"

    def start(self, timeout_s: float = 120.0) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(RABBITMQ)], env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited: {self.log.read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.mqtt_port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)
        tail = self.log.read_text()[-3000:]
        raise RuntimeError(f"RabbitMQ's MQTT listener did not open within {timeout_s} s: {tail}")

    def stop(self) -> None:
        """SIGTERM to the node: an orderly shutdown that keeps durable queues. Then its epmd goes."""
        if self.proc is None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        subprocess.run(["epmd", "-kill"], env=self.env, capture_output=True, check=False)
        self.proc = None


@pytest.fixture
def rabbitmq(tmp_path: Path) -> Iterator[RabbitMq]:
    work = tmp_path / "rabbitmq"
    work.mkdir()
    node = RabbitMq(work)
    node.start()
    yield node
    node.stop()


def counts_seqs(sub: Subscriber) -> List[int]:
    return seqs(sub.snapshot())


def test_the_311_path_keeps_the_outbox_guarantees_through_a_rabbitmq_restart(
    rabbitmq: RabbitMq, tmp_path: Path, publishers: List[MqttPublisher]
) -> None:
    control = Subscriber(rabbitmq.broker, "crowdmon/cam-07/counts", client_id="control-room", persistent=True)
    try:
        cfg = make_cfg(rabbitmq.url, tmp_path, protocol="3.1.1")
        pub = started(cfg, publishers)
        pub.connect(timeout_s=30)
        for i in range(10):
            pub.publish(counts(i))
        control.wait_for(lambda msgs: len(seqs(msgs)) >= 10, timeout_s=30)

        rabbitmq.stop()
        for i in range(10, 20):
            pub.publish(counts(i))  # broker gone: stored in the outbox
        wait_until(lambda: not pub.stats().connected, timeout_s=30)
        rabbitmq.start()
        for i in range(20, 25):
            pub.publish(counts(i))

        control.wait_for(lambda msgs: len(set(seqs(msgs))) >= 25, timeout_s=120)
        wait_until(lambda: pub.stats().pending == 0, timeout_s=60)
        got = counts_seqs(control)
        first = sorted(set(got))
        assert len(first) == 25 and first == list(range(first[0], first[0] + 25)), "a counts message was lost"
        # In order: duplicates (a resend after the restart) may repeat a seq, never go back past a new one.
        order = [s for k, s in enumerate(got) if s not in got[:k]]
        assert order == first
    finally:
        control.close()
