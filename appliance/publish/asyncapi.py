"""AsyncAPI 3.0 description of the MQTT interface, generated from the classes that make the payloads.

Like the JSON Schemas in ``docs/schemas/``, ``docs/asyncapi.yaml`` is never written by hand: every
channel, operation and payload comes from :data:`MESSAGE_TYPES` (topic kind, retain flag) and
:func:`message_schema` (the wire form), the notice from :func:`notice_schema` (what
``export_notice_schema`` writes), the Home Assistant configs from their payload classes, and the
MQTT 5 expiry on counts from the config schema's default. A test keeps the committed copy equal to
:func:`render` and validates it against the AsyncAPI 3.0.0 specification's own JSON Schema.
Regenerate with ``python -m appliance.publish.asyncapi > docs/asyncapi.yaml``.

The document describes the appliance as the application: it *sends* on the five message channels
``{prefix}/{device_id}/{kind}``, its retained ``notice``, the ``selftest`` probe and, when enabled,
the Home Assistant discovery configs (everything a broker ACL must let it write), and receives nothing.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import yaml

import appliance
from appliance.config.schema import HomeAssistantConfig, MqttConfig, PublishConfig
from appliance.publish.discovery import ENTITY_CLASSES
from appliance.publish.egress import DOCUMENT_MAX_BYTES, PROBE_KIND
from appliance.publish.messages import MESSAGE_TYPES, SCHEMA_VERSION, Message, message_schema
from appliance.transparency.notice import NOTICE_KIND, NOTICE_VERSION, notice_schema

ASYNCAPI_VERSION = "3.0.0"
MQTT_BINDING_VERSION = "0.2.0"
# The probe's payload, ``{}`` (EgressPolicy.probe): an object with nothing in it.
PROBE_SCHEMA: Dict[str, Any] = {
    "type": "object",
    "maxProperties": 0,
    "description": "Always the empty object `{}`: the probe carries nothing.",
}


@dataclass(frozen=True)
class _Channel:
    """One topic the appliance writes: its channel, message and send operation share ``key``."""

    key: str
    address: str
    title: str
    description: str
    message_title: str
    summary: str
    schema: Dict[str, Any]  # the payload's JSON Schema, pydantic's ``$defs`` included
    retain: bool
    parameters: Tuple[str, ...] = ("prefix", "device_id")
    expiry_s: Optional[int] = None


def _when(kind: str) -> str:
    # Defaults read from the config schema, so the document follows them.
    publish = PublishConfig.model_fields
    return {
        "status": "Birth (`online`) on every connect and death (`offline`) on a clean stop or as the last will.",
        "counts": f"Every `publish.interval_s` (default {publish['interval_s'].default:g} s): "
        "aggregated counts over one window.",
        "anomalies": "When an anomaly flag is raised or cleared.",
        "anomaly_state": "After every raise and clear, and (empty) right after every birth: the flags active now, "
        "for late subscribers; replaces the last one.",
        "health": f"Every `publish.health_interval_s` (default {publish['health_interval_s'].default:g} s).",
    }[kind]


def _summary(cls: type[Message]) -> str:
    doc = (cls.__doc__ or cls.kind).strip()
    return doc.split("\n\n")[0].replace("\n", " ")


def _rewrite_refs(node: Any) -> Any:
    """Point pydantic's local ``#/$defs/X`` references at ``#/components/schemas/X``.

    Inside the AsyncAPI document a ``#/...`` reference resolves against the document root, so the
    payload schemas' shared parts move to ``components.schemas``.
    """
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
                out[key] = "#/components/schemas/" + value[len("#/$defs/") :]
            else:
                out[key] = _rewrite_refs(value)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    return node


def _message_channels(counts_expiry_s: Optional[int]) -> List[_Channel]:
    return [
        _Channel(
            key=kind,
            address=f"{{prefix}}/{{device_id}}/{kind}",
            title=f"{kind} of one device",
            description=_when(kind) + (" Retained." if cls.retain else ""),
            message_title=f"{kind} message v{SCHEMA_VERSION}",
            summary=_summary(cls),
            schema=message_schema(cls),
            retain=cls.retain,
            expiry_s=counts_expiry_s if cls.expires else None,
        )
        for kind, cls in MESSAGE_TYPES.items()
    ]


def _other_channels() -> List[_Channel]:
    """What the device writes besides its messages: no envelope, no seq, outside the outbox."""
    channels = [
        _Channel(
            key=NOTICE_KIND,
            address=f"{{prefix}}/{{device_id}}/{NOTICE_KIND}",
            title="public notice of one device",
            description=(
                "Who runs the device and why, what it processes, every topic and field it publishes, its models: "
                "published retained on every connect (and so again after a broker restart). The birth's "
                "`notice_hash` is the sha256 of exactly this payload (canonical JSON). Not a message: no "
                f"`boot_id`/`seq`/`sent_at`, not part of the seq count; at most {DOCUMENT_MAX_BYTES} bytes. Retained."
            ),
            message_title=f"notice v{NOTICE_VERSION}",
            summary="The device's public notice, generated from its config and models (see docs/transparency.md).",
            schema=notice_schema(),
            retain=True,
        ),
        _Channel(
            key=PROBE_KIND,
            address=f"{{prefix}}/{{device_id}}/{PROBE_KIND}",
            title="broker check of `appliance selftest`",
            description=(
                "A test publish, not data: only when a technician runs `appliance selftest`, the empty object `{}` "
                "at QoS 1, to learn from the PUBACK whether the broker lets this identity publish as `device_id`. "
                "The broker ACL must allow it (it lies under the device's own `{prefix}/{device_id}/#`); a control "
                "room ignores it. Not retained."
            ),
            message_title="selftest probe",
            summary="An empty test publish; ignore it.",
            schema=PROBE_SCHEMA,
            retain=False,
        ),
    ]
    for component, cls in ENTITY_CLASSES.items():
        channels.append(
            _Channel(
                key=f"discovery_{component}",
                address=f"{{discovery_prefix}}/{component}/{{device_id}}/{{object_id}}/config",
                title=f"Home Assistant discovery config of one {component.replace('_', ' ')}",
                description=(
                    "Only with `home_assistant.enabled`: the config that makes one entity of the device appear in "
                    "Home Assistant (MQTT discovery), published retained on every connect. An empty retained "
                    "payload (no JSON) removes an entity gone from the site config. The broker ACL must let the "
                    "device write `{discovery_prefix}/+/{device_id}/#`. Retained."
                ),
                message_title=f"Home Assistant {component} config",
                summary=f"A Home Assistant MQTT {component} reading one of the device's own topics.",
                schema=cls.model_json_schema(mode="serialization"),
                retain=True,
                parameters=("discovery_prefix", "device_id", "object_id"),
            )
        )
    return channels


def build_document(counts_expiry_s: Optional[int] = None) -> Dict[str, Any]:
    """The AsyncAPI document as a dict. ``counts_expiry_s`` defaults to the config schema's default."""
    if counts_expiry_s is None:
        counts_expiry_s = MqttConfig.model_fields["counts_expiry_s"].default
    shared: Dict[str, Any] = {}
    channels: Dict[str, Any] = {}
    operations: Dict[str, Any] = {}
    messages: Dict[str, Any] = {}
    for ch in _message_channels(counts_expiry_s) + _other_channels():
        schema = copy.deepcopy(ch.schema)
        for name, definition in schema.pop("$defs", {}).items():
            definition = _rewrite_refs(definition)
            # The same part (e.g. ModelInfo) appears in several kinds; it must be the same everywhere.
            if name in shared and shared[name] != definition:
                raise ValueError(f"two different schemas named {name} in the payload classes")
            shared[name] = definition
        # The payload lives inside this document: its own $schema/$id would only confuse tools.
        schema.pop("$schema", None)
        schema.pop("$id", None)
        # No MQTT message binding: the device sets no payload format indicator (nor any other
        # per-message property but the counts expiry, which is on the operation).
        messages[ch.key] = {
            "name": ch.key,
            "title": ch.message_title,
            "summary": ch.summary,
            "contentType": "application/json",
            "payload": _rewrite_refs(schema),
        }
        channels[ch.key] = {
            "address": ch.address,
            "title": ch.title,
            "description": ch.description,
            "messages": {ch.key: {"$ref": f"#/components/messages/{ch.key}"}},
            "parameters": {p: {"$ref": f"#/components/parameters/{p}"} for p in ch.parameters},
        }
        binding: Dict[str, Any] = {"qos": 1, "retain": ch.retain, "bindingVersion": MQTT_BINDING_VERSION}
        if ch.expiry_s is not None:
            binding["messageExpiryInterval"] = ch.expiry_s
        operations[f"send_{ch.key}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{ch.key}"},
            "summary": f"The appliance publishes its {ch.title.split(' of ')[0]}.",
            "messages": [{"$ref": f"#/channels/{ch.key}/messages/{ch.key}"}],
            "bindings": {"mqtt": binding},
        }
    prefix_default = MqttConfig.model_fields["topic_prefix"].default
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "crowd-appliance MQTT interface",
            "version": appliance.__version__,
            "description": (
                "What a crowd-appliance publishes: anonymized aggregates only (counts, anomaly flags, health, "
                "status, the anomaly flags active now), as JSON over MQTT at QoS 1. Every message of these five "
                "kinds carries the envelope "
                "`device_id`, `boot_id`, `seq`, `sent_at`; deduplicate by `(device_id, boot_id, seq)`. Besides "
                "them the device writes its retained public notice, the empty probe of `appliance selftest` and, "
                "when enabled, Home Assistant discovery configs. The appliance subscribes to nothing. Generated "
                "from `appliance/publish/messages.py` and the notice and discovery classes; see "
                "docs/control-room.md."
            ),
            "license": {"name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "site-broker": {
                "host": "{broker}:8883",
                "protocol": "secure-mqtt",
                "protocolVersion": "5",
                "description": (
                    "The site's broker, mutual TLS (see deploy/mosquitto/). Devices fall back to MQTT 3.1.1 "
                    "when the broker does not speak 5 (no message expiry then)."
                ),
                "variables": {"broker": {"description": "Host name of the site broker", "default": "localhost"}},
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": dict(sorted(shared.items())),
            "messages": messages,
            "parameters": {
                "prefix": {"description": "`mqtt.topic_prefix` of the device's config", "default": prefix_default},
                "device_id": {"description": "`device_id` of the device's config ([A-Za-z0-9_-]{1,64})"},
                "discovery_prefix": {
                    "description": "`home_assistant.discovery_prefix` of the device's config",
                    "default": HomeAssistantConfig.model_fields["discovery_prefix"].default,
                },
                "object_id": {
                    "description": "The entity: `people`, `zone_{zone}_people`, `line_{line}_in`, `health`, "
                    "`anomaly_{type}[_{zone}]`, ... (see docs/control-room.md, Home Assistant)"
                },
            },
        },
    }


def render(counts_expiry_s: Optional[int] = None) -> str:
    header = (
        "# Generated from appliance/publish/messages.py by `python -m appliance.publish.asyncapi`;\n"
        "# do not edit by hand (a test keeps this file in sync).\n"
    )
    return header + yaml.safe_dump(build_document(counts_expiry_s), sort_keys=False, width=110, allow_unicode=True)


if __name__ == "__main__":
    sys.stdout.write(render())
