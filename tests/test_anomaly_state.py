"""One anomaly state, retained: every late subscriber sees the flags active now, and a restart clears
the old boot's flags everywhere.

Against a real Mosquitto, the device is the publisher in its own process (``tests/publish_driver.py``,
wired as ``appliance run`` wires it, Home Assistant discovery on) and the late subscribers are
``appliance monitor --json --once`` and Home Assistant's MQTT binary sensor, whose state is computed
from its retained discovery config as the integration computes it (value template, then
``payload_on``/``payload_off``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
from support.home_assistant import RawSubscriber, ha_binary_state
from support.publishing import start_driver
from support.repo import REPO

DEVICE = "cam-state"
STATE_TOPIC = f"crowdmon/{DEVICE}/anomaly_state"
SENSOR_CONFIG = f"homeassistant/binary_sensor/{DEVICE}/anomaly_overcrowding_entrance/config"

pytestmark = [pytest.mark.mqtt, pytest.mark.slow]


def wait_line(proc: subprocess.Popen, word: str) -> int:
    """The number after ``word`` on the driver's next line starting with it."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(word + " "):
            return int(line.split()[1])
    raise AssertionError(f"driver ended before '{word}': {proc.stderr.read() if proc.stderr else ''}")


def monitor_once(broker: Any) -> Dict[str, Any]:
    """What ``appliance monitor --json --once``, started now, says about the device."""
    proc = subprocess.run(
        [sys.executable, "-m", "appliance", "monitor", "--broker", broker.url, "--json", "--once"],
        capture_output=True, text=True, timeout=60, cwd=str(REPO),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    return next(line for line in lines if line["device_id"] == DEVICE)


def retained(broker: Any, *topics: str) -> Dict[str, bytes]:
    """The retained payload of each topic, as a subscriber connecting now receives it."""
    seen: Dict[str, bytes] = {}
    subs = [RawSubscriber(broker, topic) for topic in topics]
    try:
        for sub, topic in zip(subs, topics):
            sub.wait_for(lambda log, t=topic: any(name == t and keep for name, _, keep in log))
            seen[topic] = next(payload for name, payload, keep in sub.log if name == topic and keep)
    finally:
        for sub in subs:
            sub.close()
    return seen


def state_of_boot(boot_id: int, active: Optional[List[str]] = None) -> Any:
    def matches(log: List[Any]) -> bool:
        for topic, payload, _ in log:
            if topic == STATE_TOPIC and payload:
                state = json.loads(payload)
                kinds = [a["type"] for a in state["active"]]
                if state["boot_id"] == boot_id and (active is None or kinds == active):
                    return True
        return False

    return matches


def test_a_late_subscriber_sees_the_flags_active_now_and_a_restart_clears_them_everywhere(
    mosquitto: Any, tmp_path: Path
) -> None:
    outbox = str(tmp_path / "outbox.sqlite3")
    args = ["--broker", mosquitto.url, "--device-id", DEVICE, "--outbox", outbox, "--zone-limit", "--period", "0.2"]
    watch = RawSubscriber(mosquitto, STATE_TOPIC)
    device = start_driver(*args, "--raise-overcrowding")
    try:
        assert wait_line(device, "ready") == 1
        wait_line(device, "raised")
        watch.wait_for(state_of_boot(1, ["overcrowding"]), timeout_s=30)

        # Raised before the monitor started: the retained state shows it.
        seen = monitor_once(mosquitto)
        assert seen["online"] is True and seen["boot_id"] == 1
        assert [(a["type"], a["zone"], a["severity"], a["value"], a["threshold"]) for a in seen["anomalies"]] == [
            ("overcrowding", "entrance", "critical", 14.0, 10.0)
        ]
        docs = retained(mosquitto, SENSOR_CONFIG, STATE_TOPIC)
        config = json.loads(docs[SENSOR_CONFIG])
        assert config["state_topic"] == STATE_TOPIC
        assert ha_binary_state(config, docs[STATE_TOPIC]) == "on"

        device.kill()  # kill -9: no clean stop, the broker publishes the last will
        device.wait(timeout=30)
        assert json.loads(retained(mosquitto, f"crowdmon/{DEVICE}/status")[f"crowdmon/{DEVICE}/status"])["state"] == (
            "offline"
        )

        # Restarted without the condition: nothing raised in boot 2.
        device = start_driver(*args)
        assert wait_line(device, "ready") == 2
        watch.wait_for(state_of_boot(2, []), timeout_s=30)

        seen = monitor_once(mosquitto)
        assert seen["online"] is True and seen["boot_id"] == 2
        assert seen["anomalies"] == []
        docs = retained(mosquitto, SENSOR_CONFIG, STATE_TOPIC)
        # Home Assistant had the sensor on from the old boot; the new boot's state turns it off.
        assert ha_binary_state(json.loads(docs[SENSOR_CONFIG]), docs[STATE_TOPIC], previous="on") == "off"
        assert json.loads(docs[STATE_TOPIC])["boot_id"] == 2
    finally:
        watch.close()
        if device.poll() is None:
            device.kill()
        device.wait(timeout=30)
