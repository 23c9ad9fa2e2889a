"""``mqtt.url`` as a list: the device stays on one broker while it works, moves to the next when it
is unreachable, says which one it uses in health, and never hops away from a refusal.

Real Mosquitto brokers on loopback; the second one is started here the way conftest starts the first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, List

import pytest
from support.brokers import Broker, free_port, require_mosquitto, run_user_line
from support.publishing import DEVICE, counts, health_of, make_cfg, seqs, started
from support.waiting import wait_until

from appliance.config import load_config
from appliance.config.broker_identity import parse_url
from appliance.errors import InputError
from appliance.publish import BrokerRejected, MqttPublisher
from appliance.publish.brokers import BrokerList

pytestmark = pytest.mark.mqtt


@pytest.fixture
def other_mosquitto(tmp_path: Path) -> Iterator[Broker]:
    """A second open broker: another node the device may be sent to."""
    require_mosquitto()
    work = tmp_path / "other"
    work.mkdir()
    port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(f"{run_user_line()}listener {port} 127.0.0.1\nallow_anonymous true\n")
    broker = Broker(port, conf, work)
    broker.start()
    yield broker
    broker.stop()


def test_the_list_is_walked_in_order_and_a_single_broker_stays_put() -> None:
    brokers = BrokerList([parse_url(u) for u in ("mqtt://a:1883", "mqtt://b:1883", "mqtt://c:1883")])
    seen = [str(brokers.current)]
    for _ in range(3):
        brokers.unreachable()
        seen.append(str(brokers.current))
    assert seen == ["mqtt://a:1883", "mqtt://b:1883", "mqtt://c:1883", "mqtt://a:1883"]
    single = BrokerList([parse_url("mqtt://a:1883")])
    single.unreachable()
    assert (str(single.current), single.hops) == ("mqtt://a:1883", 0)


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ([], "empty list"),
        (["mqtt://a:1883", "mqtts://b:8883"], "mixes mqtt:// and mqtts://"),
        (["mqtt://a:1883", "mqtt://a"], "names one broker twice"),
        (["mqtt://a:1883", "http://b"], r"\[1\] 'http://b' must start with mqtt://"),
        ([f"mqtt://n{i}" for i in range(9)], "at most 8"),
    ],
)
def test_config_refuses_a_list_the_device_could_not_use(url: List[str], error: str) -> None:
    with pytest.raises(InputError, match=error) as info:
        load_config(overrides={"mqtt": {"url": url}})
    assert "mqtt.url" in str(info.value) and "\n" not in str(info.value)


def test_config_takes_one_url_or_a_list() -> None:
    assert load_config(overrides={"mqtt": {"url": "mqtt://a"}}).mqtt.urls == ["mqtt://a"]
    assert load_config(overrides={"mqtt": {"url": ["mqtts://a", "mqtts://b"]}}).mqtt.urls == ["mqtts://a", "mqtts://b"]
    assert load_config().mqtt.urls == []


@pytest.mark.slow
def test_a_device_moves_to_the_next_broker_when_its_broker_dies_and_stays_there(
    mosquitto: Broker, other_mosquitto: Broker, tmp_path: Path, subscribe, publishers: List[MqttPublisher]
) -> None:
    first = subscribe(mosquitto, f"crowdmon/{DEVICE}/counts")
    second = subscribe(other_mosquitto, f"crowdmon/{DEVICE}/#")
    pub = started(make_cfg([mosquitto.url, other_mosquitto.url], tmp_path), publishers)
    pub.connect(timeout_s=10)
    assert health_of(pub).link is not None and health_of(pub).link.broker == mosquitto.url  # type: ignore[union-attr]
    for i in range(3):
        pub.publish(counts(i))
    first.wait_for(lambda ms: len(seqs(ms)) == 3)

    mosquitto.stop()
    for i in range(3, 6):
        pub.publish(counts(i))
    # The rest goes to the second broker, and its late subscribers find the birth and the anomaly state retained.
    second.wait_for(lambda ms: len(set(seqs(ms))) >= 3, timeout_s=30)
    wait_until(lambda: pub.stats().pending == 0, timeout_s=30)
    late = subscribe(other_mosquitto, f"crowdmon/{DEVICE}/+")
    kept = {"status", "anomaly_state"}
    retained = late.wait_for(lambda ms: {m.topic.rsplit("/", 1)[1] for m in ms if m.retain} >= kept)
    assert [m.payload["state"] for m in retained if m.topic.endswith("/status")] == ["online"]
    link = health_of(pub).link
    assert link is not None and link.connected and link.broker == other_mosquitto.url

    # The first broker is back: the device stays where it works.
    mosquitto.start()
    pub.publish(counts(6))
    second.wait_for(lambda ms: len(set(seqs(ms))) >= 4, timeout_s=30)
    assert pub.stats().broker == other_mosquitto.url


@pytest.mark.slow
def test_a_refusal_is_reported_and_not_a_reason_to_hop(
    locked_mosquitto: Broker, other_mosquitto: Broker, tmp_path: Path, subscribe, publishers: List[MqttPublisher]
) -> None:
    open_side = subscribe(other_mosquitto, "crowdmon/#")
    pub = started(make_cfg([locked_mosquitto.url, other_mosquitto.url], tmp_path), publishers)
    with pytest.raises(BrokerRejected, match=r"refused the connection"):
        pub.connect(timeout_s=10)
    pub.publish(counts(0))
    wait_until(lambda: pub.delivery is not None and pub.delivery.link.address == parse_url(locked_mosquitto.url))
    # Several attempts later it is still on the broker that refuses it, saying so; nothing went elsewhere.
    wait_until(lambda: locked_mosquitto.log().count("New connection from") >= 3, timeout_s=30)
    stats = pub.stats()
    assert stats.broker == locked_mosquitto.url and not stats.connected
    assert "refused" in (stats.last_error or "")
    assert open_side.snapshot() == []


@pytest.mark.slow
def test_the_monitor_takes_a_list_and_reads_the_broker_that_answers(
    other_mosquitto: Broker, tmp_path: Path, publishers: List[MqttPublisher]
) -> None:
    import json
    import subprocess
    import sys

    from support.repo import REPO

    pub = started(make_cfg(other_mosquitto.url, tmp_path), publishers)
    pub.connect(timeout_s=10)
    pub.publish(counts(0))
    wait_until(lambda: pub.stats().pending == 0)
    dead = f"mqtt://127.0.0.1:{free_port()}"
    proc = subprocess.run(
        [sys.executable, "-m", "appliance", "monitor", "--broker", dead, "--broker", other_mosquitto.url,
         "--json", "--once"],
        capture_output=True, text=True, timeout=60, cwd=str(REPO),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["device_id"] for line in proc.stdout.splitlines()] == [DEVICE]
    assert f"{dead}: cannot connect" in proc.stderr and "trying the next broker" in proc.stderr


def test_selftest_checks_the_broker_the_device_would_use(other_mosquitto: Broker) -> None:
    from appliance.publish import check_broker

    dead = f"mqtt://127.0.0.1:{free_port()}"
    cfg = load_config(overrides={"device_id": DEVICE, "mqtt": {"url": [dead, other_mosquitto.url]}})
    assert check_broker(cfg.mqtt, DEVICE, timeout_s=10).startswith(f"{other_mosquitto.url}: connected")
