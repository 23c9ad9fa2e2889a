"""The MQTT 3.1.1 path against a broker that is not Mosquitto: RabbitMQ's MQTT plugin.

RabbitMQ (Debian's ``rabbitmq-server``) speaks MQTT 3.1.1 only: no message expiry, no reason codes
in PUBACK. The appliance with ``mqtt.protocol: "3.1.1"`` must keep the outbox's guarantees there:
every counts message delivered, in seq order, and a broker restart loses nothing (the outbox
resends what was not acknowledged; the control room's durable session keeps what was routed).

The broker runs as its own Erlang node on loopback only (AMQP, MQTT, distribution and epmd ports
all free ports on 127.0.0.1), with its data in the test's tmp_path, started by the same helper as
the three-node cluster (scripts/rabbitmq_nodes.py). Skipped where
``rabbitmq-server`` is not installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, List

import pytest
from support.brokers import Broker, Subscriber
from support.publishing import counts, make_cfg, seqs, started
from support.repo import load_script
from support.waiting import wait_until

from appliance.publish import MqttPublisher

nodes = load_script("rabbitmq_nodes")
MISSING = nodes.rabbitmq_missing()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(MISSING is not None, reason=str(MISSING))]


class RabbitMq:
    """One RabbitMQ node (scripts/rabbitmq_nodes.py) as the shared fixtures' helpers expect it."""

    def __init__(self, work: Path) -> None:
        self.cluster = nodes.RabbitCluster(work, size=1)
        self.node = self.cluster.nodes[0]

    @property
    def broker(self) -> Broker:
        return Broker(self.node.mqtt_port, self.node.work / "rabbitmq.conf", self.node.work)

    @property
    def url(self) -> str:
        return str(self.node.url)

    def start(self) -> None:
        self.node.start()

    def stop(self) -> None:
        self.node.stop()


@pytest.fixture
def rabbitmq(tmp_path: Path) -> Iterator[RabbitMq]:
    work = tmp_path / "rabbitmq"
    work.mkdir()
    node = RabbitMq(work)
    node.cluster.start()
    yield node
    node.cluster.stop()


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


def test_a_late_monitor_reads_retained_state_on_rabbitmq_only_on_exact_topics(
    rabbitmq: RabbitMq, tmp_path: Path, publishers: List[MqttPublisher]
) -> None:
    """RabbitMQ (3.10) hands retained messages only to subscriptions without a wildcard: a monitor on
    ``{prefix}/+/#`` started after the device went quiet sees nothing of it; with ``--device`` it
    subscribes to the device's exact topics and gets its birth and the flags active now."""
    import json
    import subprocess
    import sys

    from support.repo import REPO

    from appliance.publish import AnomalyMessage, utcnow

    pub = started(make_cfg(rabbitmq.url, tmp_path, protocol="3.1.1"), publishers)
    pub.connect(timeout_s=30)
    pub.publish(AnomalyMessage(type="overcrowding", event_id="e" * 32, zone="hall", state="raised", value=31,
                               threshold=30, since=utcnow()))  # fmt: skip
    wait_until(lambda: pub.stats().pending == 0, timeout_s=30)

    def monitor(*extra: str) -> List[dict]:
        proc = subprocess.run(
            [sys.executable, "-m", "appliance", "monitor", "--broker", rabbitmq.url, "--json", "--once", *extra],
            capture_output=True, text=True, timeout=60, cwd=str(REPO),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return [json.loads(line) for line in proc.stdout.splitlines()]

    assert monitor() == [], "a wildcard subscription gets no retained message from RabbitMQ"
    (seen,) = monitor("--device", "cam-07")
    assert seen["online"] is True and [(a["type"], a["zone"]) for a in seen["anomalies"]] == [("overcrowding", "hall")]
