"""Home Assistant MQTT discovery: the retained config messages that make one appliance a device there.

Pure builders, no I/O. The caller (the publisher, on every connect) publishes what
:func:`discovery_messages` returns, retained, and the empty retained payloads of
:func:`removal_messages` for entities that no longer exist (a zone or line removed from the site
config), which is how Home Assistant deletes a discovered entity.

What Home Assistant gets, all read from the topics the appliance already publishes (nothing new
goes on the wire but these config messages):

* sensors: people in view (``counts.total.last``), per zone people (``last``) and density
  (``density_per_m2``), per line crossings in and out per window, health state and fps;
* binary sensors, one per anomaly type (per zone for the zone-scoped types: overcrowding where the
  zone has a limit, counterflow where it has a flow direction), ``on`` while raised, read from the
  retained ``anomaly_state`` (the flags active now);
* availability from the retained ``status`` topic (``online``/``offline``).

No camera, image or any other component: only ``sensor`` and ``binary_sensor`` can be produced,
and the payload classes below reject keys Home Assistant does not document for them.

Keys follow https://www.home-assistant.io/integrations/mqtt/ (discovery) and the
``sensor.mqtt``/``binary_sensor.mqtt`` pages. Anomaly templates look for their ``type`` (and
``zone``) in the ``active`` list of the retained anomaly state, so every state message sets every
binary sensor ``ON`` or ``OFF``: a Home Assistant that starts late gets the flags active now, and
the empty state a device publishes right after each birth turns the old boot's flags ``OFF``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict, Iterable, List, Literal, NamedTuple, Optional, Sequence, Set, Type, Union

from pydantic import BaseModel, ConfigDict

import appliance
from appliance.config.schema import HomeAssistantConfig, LineConfig, ZoneConfig

log = logging.getLogger(__name__)

ZONE_ANOMALIES = ("overcrowding", "counterflow")
DEVICE_ANOMALIES = ("rapid_change", "abnormal_motion", "camera_tamper")
HEALTH_STATES = ["ok", "degraded", "failed"]
_ANOMALY_DEVICE_CLASS = {
    "overcrowding": "safety",
    "counterflow": "safety",
    "rapid_change": "safety",
    "abnormal_motion": "safety",
    "camera_tamper": "tamper",
}


class DiscoveryMessage(NamedTuple):
    """One MQTT message to publish: unpacks as ``(topic, payload, retain)``."""

    topic: str
    payload: bytes
    retain: bool


# --------------------------------------------------------------------------- payload classes


class _HaPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HaAvailability(_HaPayload):
    topic: str
    payload_available: str = "online"
    payload_not_available: str = "offline"
    value_template: str = "{{ value_json.state }}"


class HaDevice(_HaPayload):
    identifiers: List[str]
    name: str
    manufacturer: str
    model: str
    sw_version: str


class HaOrigin(_HaPayload):
    name: str
    sw_version: str


class _HaEntity(_HaPayload):
    name: str
    unique_id: str
    state_topic: str
    value_template: str
    availability: List[HaAvailability]
    device: HaDevice
    origin: HaOrigin
    qos: Literal[0, 1] = 1
    entity_category: Optional[Literal["diagnostic"]] = None
    icon: Optional[str] = None


class HaSensor(_HaEntity):
    unit_of_measurement: Optional[str] = None
    state_class: Optional[Literal["measurement"]] = None
    device_class: Optional[Literal["enum"]] = None
    options: Optional[List[str]] = None
    suggested_display_precision: Optional[int] = None


class HaBinarySensor(_HaEntity):
    payload_on: str = "ON"
    payload_off: str = "OFF"
    device_class: Optional[Literal["safety", "tamper", "problem"]] = None


HaEntity = Union[HaSensor, HaBinarySensor]
# Home Assistant's component name for each payload class: the topic's second level.
ENTITY_CLASSES: Dict[str, Type[_HaEntity]] = {"sensor": HaSensor, "binary_sensor": HaBinarySensor}
COMPONENTS = tuple(ENTITY_CLASSES)


# --------------------------------------------------------------------------- builders


def _topic(ha: HomeAssistantConfig, component: str, device_id: str, key: str) -> str:
    # <discovery_prefix>/<component>/<node_id>/<object_id>/config; both ids are [A-Za-z0-9_-].
    return f"{ha.discovery_prefix}/{component}/{device_id}/{key}/config"


def _component(entity: HaEntity) -> str:
    return next(name for name, cls in ENTITY_CLASSES.items() if isinstance(entity, cls))


def _flag(kind: str, zone: Optional[str]) -> str:
    """``ON`` while the state's ``active`` list holds a flag of this type (and zone), else ``OFF``."""
    match = f"selectattr('type', 'equalto', '{kind}')"
    if zone is not None:
        match += f" | selectattr('zone', 'equalto', '{zone}')"
    return f"{{{{ 'ON' if value_json.active | {match} | list | length > 0 else 'OFF' }}}}"


def _optional(path: str, guard: str) -> str:
    # A missing zone/line or a null total renders "None", which Home Assistant shows as unknown.
    return f"{{{{ {path} if {guard} else none }}}}"


def build_entities(
    device_id: str, topic_prefix: str, zones: Sequence[ZoneConfig], lines: Sequence[LineConfig]
) -> List[tuple[str, HaEntity]]:
    """``(object_id, entity)`` for every entity of one device, in a stable order."""
    base = f"{topic_prefix}/{device_id}"
    common = {
        "availability": [HaAvailability(topic=f"{base}/status")],
        "device": HaDevice(
            identifiers=[f"crowd-appliance_{device_id}"],
            name=device_id,
            manufacturer="crowd-appliance",
            model="crowd-appliance",
            sw_version=appliance.__version__,
        ),
        "origin": HaOrigin(name="crowd-appliance", sw_version=appliance.__version__),
    }
    people = {"unit_of_measurement": "people", "state_class": "measurement"}
    out: List[tuple[str, HaEntity]] = []

    def sensor(key: str, **fields: object) -> None:
        out.append((key, HaSensor(unique_id=f"crowd-appliance_{device_id}_{key}", **common, **fields)))

    def binary(key: str, **fields: object) -> None:
        out.append((key, HaBinarySensor(unique_id=f"crowd-appliance_{device_id}_{key}", **common, **fields)))

    sensor(
        "people",
        name="People",
        state_topic=f"{base}/counts",
        value_template=_optional("value_json.total.last", "value_json.total is not none"),
        icon="mdi:account-group",
        **people,
    )
    for zone in zones:
        z = zone.name
        guard = f"'{z}' in value_json.zones"
        sensor(
            f"zone_{z}_people",
            name=f"Zone {z} people",
            state_topic=f"{base}/counts",
            value_template=_optional(f"value_json.zones['{z}'].last", guard),
            icon="mdi:account-group",
            **people,
        )
        sensor(
            f"zone_{z}_density",
            name=f"Zone {z} density",
            state_topic=f"{base}/counts",
            value_template=_optional(f"value_json.zones['{z}'].density_per_m2", guard),
            unit_of_measurement="people/m²",
            state_class="measurement",
            suggested_display_precision=2,
        )
    for line in lines:
        n = line.name
        for direction in ("in", "out"):
            # ``in`` is a Jinja keyword: subscript, never attribute access.
            sensor(
                f"line_{n}_{direction}",
                name=f"Line {n} {direction}",
                state_topic=f"{base}/counts",
                value_template=_optional(f"value_json.lines['{n}']['{direction}']", f"'{n}' in value_json.lines"),
                icon="mdi:transit-transfer",
                **people,
            )
    sensor(
        "health",
        name="Health",
        state_topic=f"{base}/health",
        value_template="{{ value_json.state }}",
        device_class="enum",
        options=HEALTH_STATES,
        entity_category="diagnostic",
    )
    sensor(
        "fps",
        name="Frame rate",
        state_topic=f"{base}/health",
        value_template="{{ value_json.fps }}",
        unit_of_measurement="fps",
        state_class="measurement",
        suggested_display_precision=1,
        entity_category="diagnostic",
    )
    for kind in DEVICE_ANOMALIES:
        binary(
            f"anomaly_{kind}",
            name=kind.replace("_", " ").capitalize(),
            state_topic=f"{base}/anomaly_state",
            value_template=_flag(kind, None),
            device_class=_ANOMALY_DEVICE_CLASS[kind],
        )
    for zone in zones:
        applies = {
            "overcrowding": zone.max_people is not None or zone.max_density_per_m2 is not None,
            "counterflow": zone.flow_direction_deg is not None,
        }
        for kind in ZONE_ANOMALIES:
            if not applies[kind]:
                continue
            binary(
                f"anomaly_{kind}_{zone.name}",
                name=f"{kind.capitalize()} {zone.name}",
                state_topic=f"{base}/anomaly_state",
                value_template=_flag(kind, zone.name),
                device_class=_ANOMALY_DEVICE_CLASS[kind],
            )
    return out


def discovery_messages(
    device_id: str,
    topic_prefix: str,
    zones: Sequence[ZoneConfig],
    lines: Sequence[LineConfig],
    ha: HomeAssistantConfig,
) -> List[DiscoveryMessage]:
    """The retained discovery config messages for one device; none when discovery is disabled."""
    if not ha.enabled:
        return []
    return [
        DiscoveryMessage(
            _topic(ha, _component(entity), device_id, key),
            json.dumps(entity.model_dump(mode="json", exclude_none=True), separators=(",", ":")).encode(),
            True,
        )
        for key, entity in build_entities(device_id, topic_prefix, zones, lines)
    ]


def removal_messages(previous_topics: Iterable[str], current: Sequence[DiscoveryMessage]) -> List[DiscoveryMessage]:
    """Empty retained payloads for config topics published before and not any more.

    ``previous_topics`` are the topics of the last set published (the caller keeps them, e.g. next
    to the outbox); an empty retained payload makes the broker drop the retained config and Home
    Assistant delete the entity. With ``current=[]`` (discovery switched off) everything is removed.
    """
    keep = {m.topic for m in current}
    return [DiscoveryMessage(t, b"", True) for t in sorted(set(previous_topics)) if t not in keep]


class AnnouncedTopics:
    """Every discovery config topic this device has ever announced, kept in a small JSON file beside
    the outbox. The device subscribes to nothing, so this is its only memory of what to remove: a
    zone dropped from the config gets an empty retained payload at every connect from then on
    (idempotent, and a removal is never lost to a restart before the broker was reached)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Set[str]:
        try:
            topics = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return set()
        except (OSError, ValueError) as exc:
            log.warning("%s: cannot read the announced discovery topics (%s); none will be removed", self.path, exc)
            return set()
        return {t for t in topics if isinstance(t, str)} if isinstance(topics, list) else set()

    def messages(self, current: Sequence[DiscoveryMessage]) -> List[DiscoveryMessage]:
        """Removals for every topic announced before and not now, then ``current``; remembers both."""
        announced = self.load()
        everything = announced | {m.topic for m in current}
        if everything != announced:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.path.write_text(json.dumps(sorted(everything)) + "\n", encoding="utf-8")
            except OSError as exc:
                log.warning("%s: cannot record the announced discovery topics (%s)", self.path, exc)
        return removal_messages(announced, current) + list(current)
