"""Home Assistant MQTT discovery: what a Home Assistant subscribed to ``homeassistant/#`` receives.

The builder's messages go through a real Mosquitto (published retained by a real paho client) and
are read back by a real subscriber, then checked against Home Assistant's documented discovery keys.
The value templates are rendered with Jinja2's sandbox (the engine Home Assistant uses) against the
payloads of the appliance's own message classes.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Tuple

import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment
from support.home_assistant import RawSubscriber, ha_binary_state

from appliance.config.schema import HomeAssistantConfig, LineConfig, ZoneConfig
from appliance.publish import AnomalyMessage, CountsMessage, CountStats, HealthMessage, LineCounts, ZoneStats
from appliance.publish.anomaly_state import ActiveAnomalies
from appliance.publish.discovery import DiscoveryMessage, discovery_messages, removal_messages
from appliance.publish.messages import CameraHealth, Message

# Keys Home Assistant documents for MQTT discovery of these two components (plus the discovery-only
# ``device`` and ``origin`` blocks): https://www.home-assistant.io/integrations/sensor.mqtt/ ,
# https://www.home-assistant.io/integrations/binary_sensor.mqtt/ and
# https://www.home-assistant.io/integrations/mqtt/#discovery-payload
_COMMON = {
    "availability", "availability_mode", "availability_template", "availability_topic", "default_entity_id",
    "device", "device_class", "enabled_by_default", "encoding", "entity_category", "entity_picture", "expire_after",
    "force_update", "icon", "json_attributes_template", "json_attributes_topic", "name", "object_id", "origin",
    "payload_available", "payload_not_available", "platform", "qos", "state_topic", "unique_id", "value_template",
}  # fmt: skip
HA_KEYS = {
    "sensor": _COMMON
    | {"last_reset_value_template", "options", "state_class", "suggested_display_precision", "unit_of_measurement"},
    "binary_sensor": _COMMON | {"off_delay", "payload_off", "payload_on"},
}
HA_AVAILABILITY_KEYS = {"topic", "payload_available", "payload_not_available", "value_template"}
HA_DEVICE_KEYS = {
    "configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model", "model_id", "name",
    "serial_number", "suggested_area", "sw_version", "via_device",
}  # fmt: skip
HA_ORIGIN_KEYS = {"name", "sw_version", "support_url"}
HA_SENSOR_STATE_CLASSES = {"measurement", "measurement_angle", "total", "total_increasing"}
HA_BINARY_DEVICE_CLASSES = {"problem", "safety", "tamper", "occupancy", "motion", "running"}  # subset we may use
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
_TRIANGLE = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0)]


def _zones(*names: str) -> List[ZoneConfig]:
    specs = {
        "entrance": ZoneConfig(name="entrance", polygon=_TRIANGLE, max_people=10, area_m2=20.0),
        "hall": ZoneConfig(name="hall", polygon=_TRIANGLE, flow_direction_deg=90.0),
        "kiosk": ZoneConfig(name="kiosk", polygon=_TRIANGLE),
    }
    return [specs[n] for n in names]


LINES = [LineConfig(name="gate", start=(0.0, 0.5), end=(1.0, 0.5))]
HA_ON = HomeAssistantConfig(enabled=True)


# --------------------------------------------------------------------------- real MQTT helpers


def publish_all(broker: Any, messages: List[DiscoveryMessage]) -> None:
    """A small real publisher: QoS 1, waits for every PUBACK."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.connect(broker.host, broker.port, keepalive=30)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1, retain=retain) for topic, payload, retain in messages]
        for info in infos:
            info.wait_for_publish(timeout=10)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.fixture
def raw_subscribers() -> Any:
    made: List[RawSubscriber] = []

    def factory(broker: Any, topic: str = "homeassistant/#") -> RawSubscriber:
        sub = RawSubscriber(broker, topic)
        made.append(sub)
        return sub

    yield factory
    for sub in made:
        sub.close()


# --------------------------------------------------------------------------- over a real broker


@pytest.mark.mqtt
def test_home_assistant_reads_retained_discovery_configs_with_only_documented_keys(
    mosquitto: Any, raw_subscribers: Any
) -> None:
    messages = discovery_messages("cam-0001", "crowdmon", _zones("entrance", "hall"), LINES, HA_ON)
    publish_all(mosquitto, messages)
    # Home Assistant connecting afterwards still gets everything: the configs are retained.
    ha = raw_subscribers(mosquitto)
    ha.wait_for(lambda log: len(log) == len(messages))
    assert all(retain for _, _, retain in ha.log)
    configs = ha.configs()
    assert set(configs) == {m.topic for m in messages}

    unique_ids = set()
    for topic, config in configs.items():
        prefix, component, node_id, _object_id, tail = topic.split("/")
        assert (prefix, node_id, tail) == ("homeassistant", "cam-0001", "config")
        assert component in HA_KEYS, f"{topic}: only sensors and binary sensors, never a camera or image"
        assert set(config) <= HA_KEYS[component], f"{topic}: undocumented keys {set(config) - HA_KEYS[component]}"
        assert {"name", "unique_id", "state_topic", "value_template", "availability", "device"} <= set(config)
        assert config["state_topic"].startswith("crowdmon/cam-0001/")
        assert config["availability"] == [
            {
                "topic": "crowdmon/cam-0001/status",
                "payload_available": "online",
                "payload_not_available": "offline",
                "value_template": "{{ value_json.state }}",
            }
        ]
        assert set(config["availability"][0]) <= HA_AVAILABILITY_KEYS
        assert set(config["device"]) <= HA_DEVICE_KEYS
        assert config["device"]["identifiers"] == ["crowd-appliance_cam-0001"]
        assert set(config["origin"]) <= HA_ORIGIN_KEYS
        assert config.get("state_class", "measurement") in HA_SENSOR_STATE_CLASSES
        if component == "binary_sensor":
            assert (config["payload_on"], config["payload_off"]) == ("ON", "OFF")
            assert config["state_topic"] == "crowdmon/cam-0001/anomaly_state"
            assert config["device_class"] in HA_BINARY_DEVICE_CLASSES
        unique_ids.add(config["unique_id"])
    assert len(unique_ids) == len(configs)

    objects = {t.split("/")[3] for t in configs}
    assert {
        "people", "zone_entrance_people", "zone_entrance_density", "zone_hall_people", "zone_hall_density",
        "line_gate_in", "line_gate_out", "health", "fps",
        "anomaly_rapid_change", "anomaly_abnormal_motion", "anomaly_camera_tamper",
        "anomaly_overcrowding_entrance", "anomaly_counterflow_hall",
    } == objects  # fmt: skip
    # Flags only where the zone can raise them: no overcrowding limit on hall, no flow direction on entrance.


@pytest.mark.mqtt
def test_a_removed_zone_disappears_from_home_assistant(mosquitto: Any, raw_subscribers: Any) -> None:
    before = discovery_messages("cam-0001", "crowdmon", _zones("entrance", "hall"), LINES, HA_ON)
    publish_all(mosquitto, before)
    ha = raw_subscribers(mosquitto)
    ha.wait_for(lambda log: len(log) == len(before))

    after = discovery_messages("cam-0001", "crowdmon", _zones("entrance"), LINES, HA_ON)
    removals = removal_messages([m.topic for m in before], after)
    removed = {m.topic.split("/")[3] for m in removals}
    assert removed == {"zone_hall_people", "zone_hall_density", "anomaly_counterflow_hall"}
    assert all(m.payload == b"" and m.retain for m in removals)
    publish_all(mosquitto, after + removals)
    ha.wait_for(lambda log: len(log) == len(before) + len(after) + len(removals))
    assert set(ha.configs()) == {m.topic for m in after}

    # A Home Assistant starting now finds no trace of the zone: the broker dropped the retained configs.
    late = raw_subscribers(mosquitto)
    # Retained messages are queued at subscribe time, so once a marker published afterwards arrives
    # (in-order delivery to one client), every retained config has been seen.
    publish_all(mosquitto, [DiscoveryMessage("homeassistant/marker", b"{}", False)])
    late.wait_for(lambda log: any(t == "homeassistant/marker" for t, _, _ in log))
    assert {t for t, _, _ in late.log} - {"homeassistant/marker"} == {m.topic for m in after}


def test_discovery_is_opt_in_and_switching_it_off_removes_everything() -> None:
    assert HomeAssistantConfig().enabled is False
    assert discovery_messages("cam-0001", "crowdmon", _zones("entrance"), LINES, HomeAssistantConfig()) == []
    published = discovery_messages("cam-0001", "crowdmon", _zones("entrance"), LINES, HA_ON)
    assert len(removal_messages([m.topic for m in published], [])) == len(published)


def test_discovery_prefix_is_configurable() -> None:
    messages = discovery_messages(
        "cam-0001", "site7", _zones(), [], HomeAssistantConfig(enabled=True, discovery_prefix="ha-disc")
    )
    assert messages and all(m.topic.startswith("ha-disc/") for m in messages)
    assert all(json.loads(m.payload)["state_topic"].startswith("site7/cam-0001/") for m in messages)


# --------------------------------------------------------------------------- templates vs our payloads


def _render(config: Dict[str, Any], message: Message) -> str:
    env = ImmutableSandboxedEnvironment()
    payload = message.to_json_bytes().decode()
    return env.from_string(config["value_template"]).render(value_json=json.loads(payload), value=payload)


def _configs() -> Dict[str, Dict[str, Any]]:
    messages = discovery_messages("cam-0001", "crowdmon", _zones("entrance", "hall"), LINES, HA_ON)
    return {m.topic.split("/")[3]: json.loads(m.payload) for m in messages}


def _stamp(message: Message, seq: int) -> Message:
    return message.stamp(device_id="cam-0001", boot_id=1, seq=seq, sent_at=T0)


def test_sensor_templates_read_the_appliance_payloads() -> None:
    configs = _configs()
    counts = _stamp(
        CountsMessage(
            window_start=T0,
            window_end=T0,
            frames_analyzed=50,
            total=CountStats(min=1, mean=4.0, max=7, last=6),
            zones={"entrance": ZoneStats(min=0, mean=2.0, max=3, last=3, density_per_m2=0.125)},
            lines={"gate": LineCounts(**{"in": 4, "out": 2})},
        ),
        3,
    )
    assert _render(configs["people"], counts) == "6"
    assert _render(configs["zone_entrance_people"], counts) == "3"
    assert _render(configs["zone_entrance_density"], counts) == "0.125"
    assert _render(configs["line_gate_in"], counts) == "4"
    assert _render(configs["line_gate_out"], counts) == "2"
    # Home Assistant shows "None" as unknown: a zone missing from a window, or no frame analysed.
    assert _render(configs["zone_hall_people"], counts) == "None"
    blind = _stamp(CountsMessage(window_start=T0, window_end=T0, frames_analyzed=0, camera_ok=False), 4)
    assert _render(configs["people"], blind) == "None"

    health = _stamp(HealthMessage(state="degraded", fps=4.5, camera=CameraHealth(state="ok"), uptime_s=10.0), 5)
    assert _render(configs["health"], health) == "degraded"
    assert _render(configs["health"], health) in configs["health"]["options"]
    assert _render(configs["fps"], health) == "4.5"


def _state(*raised: Tuple[str, Optional[str]], seq: int = 7) -> bytes:
    tracker = ActiveAnomalies()
    tracker.reset()
    state = tracker.state()
    for n, (kind, zone) in enumerate(raised):
        event = AnomalyMessage(type=kind, event_id=f"{n:032x}", zone=zone, state="raised", value=12.0, since=T0)  # type: ignore[arg-type]
        state = tracker.apply(event)
    return _stamp(state, seq).to_json_bytes()


def test_anomaly_binary_sensors_follow_their_own_type_and_zone_only() -> None:
    configs = _configs()
    crowd, tamper = configs["anomaly_overcrowding_entrance"], configs["anomaly_camera_tamper"]
    assert ha_binary_state(crowd, _state(("overcrowding", "entrance"))) == "on"
    assert ha_binary_state(crowd, _state(("overcrowding", "hall"), ("camera_tamper", None))) == "off"
    assert ha_binary_state(tamper, _state(("overcrowding", "hall"), ("camera_tamper", None))) == "on"
    assert ha_binary_state(tamper, _state(("rapid_change", None))) == "off"
    # Every state sets every sensor: the empty state after a birth turns a flag left on by the old boot off.
    assert ha_binary_state(crowd, _state(), previous="on") == "off"


@pytest.mark.mqtt
@pytest.mark.slow
def test_the_appliance_announces_its_entities_and_removes_a_dropped_zone_on_its_next_start(
    mosquitto: Any, raw_subscribers: Any, tmp_path: Any
) -> None:
    import subprocess
    import sys

    def run_with(zones: str) -> None:
        site = tmp_path / "site.yaml"
        site.write_text(
            "device_id: cam-ha\nhome_assistant: {enabled: true}\n"
            f"zones: [{zones}]\n"
            f"mqtt: {{url: '{mosquitto.url}'}}\noutbox: {{path: '{tmp_path}/outbox.sqlite3'}}\n"
        )
        proc = subprocess.run(
            [sys.executable, "-m", "appliance", "run", "--config", str(site), "--max-frames", "3"],
            capture_output=True, text=True, timeout=300,
        )
        assert proc.returncode == 0, proc.stderr

    hall = "{name: hall, polygon: [[0.5, 0], [1, 0], [1, 1]], max_people: 9}"
    entrance = "{name: entrance, polygon: [[0, 0], [0.5, 0], [0.5, 1]], max_people: 9}"
    run_with(f"{entrance}, {hall}")
    run_with(entrance)  # the hall zone is gone from the config
    # A Home Assistant starting now sees exactly the second run's entities.
    late = raw_subscribers(mosquitto)
    publish_all(mosquitto, [DiscoveryMessage("homeassistant/marker", b"{}", False)])
    late.wait_for(lambda log: any(t == "homeassistant/marker" for t, _, _ in log))
    configs = set(late.configs()) - {"homeassistant/marker"}
    assert any("zone_entrance_people" in t for t in configs)
    assert not any("hall" in t for t in configs)
    assert all("/cam-ha/" in t for t in configs)
