"""AsyncAPI 3.0 description of the MQTT interface, generated from the message classes.

Like the JSON Schemas in ``docs/schemas/``, ``docs/asyncapi.yaml`` is never written by hand: every
channel, operation and payload comes from :data:`MESSAGE_TYPES` (topic kind, retain flag) and
:func:`message_schema` (the wire form), and the MQTT 5 expiry on counts from the config schema's
default. A test keeps the committed copy equal to :func:`render` and validates it against the
AsyncAPI 3.0.0 specification's own JSON Schema. Regenerate with
``python -m appliance.publish.asyncapi > docs/asyncapi.yaml``.

The document describes the appliance as the application: it *sends* on four channels
``{prefix}/{device_id}/{kind}`` and receives nothing.
"""

from __future__ import annotations

import copy
import sys
from typing import Any, Dict, Optional

import yaml

import appliance
from appliance.config.schema import MqttConfig, PublishConfig
from appliance.publish.messages import MESSAGE_TYPES, SCHEMA_VERSION, Message, message_schema

ASYNCAPI_VERSION = "3.0.0"
MQTT_BINDING_VERSION = "0.2.0"


def _when(kind: str) -> str:
    # Defaults read from the config schema, so the document follows them.
    publish = PublishConfig.model_fields
    return {
        "status": "Birth (`online`) on every connect and death (`offline`) on a clean stop or as the last will.",
        "counts": f"Every `publish.interval_s` (default {publish['interval_s'].default:g} s): "
        "aggregated counts over one window.",
        "anomalies": "When an anomaly flag is raised or cleared.",
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


def build_document(counts_expiry_s: Optional[int] = None) -> Dict[str, Any]:
    """The AsyncAPI document as a dict. ``counts_expiry_s`` defaults to the config schema's default."""
    if counts_expiry_s is None:
        counts_expiry_s = MqttConfig.model_fields["counts_expiry_s"].default
    shared: Dict[str, Any] = {}
    channels: Dict[str, Any] = {}
    operations: Dict[str, Any] = {}
    messages: Dict[str, Any] = {}
    for kind, cls in MESSAGE_TYPES.items():
        schema = copy.deepcopy(message_schema(cls))
        for name, definition in schema.pop("$defs", {}).items():
            definition = _rewrite_refs(definition)
            # The same part (e.g. ModelInfo) appears in several kinds; it must be the same everywhere.
            if name in shared and shared[name] != definition:
                raise ValueError(f"two different schemas named {name} in the message classes")
            shared[name] = definition
        # The payload lives inside this document: its own $schema/$id would only confuse tools.
        schema.pop("$schema", None)
        schema.pop("$id", None)
        payload = _rewrite_refs(schema)
        messages[kind] = {
            "name": kind,
            "title": f"{kind} message v{SCHEMA_VERSION}",
            "summary": _summary(cls),
            "contentType": "application/json",
            "payload": payload,
            "bindings": {"mqtt": {"payloadFormatIndicator": 1, "bindingVersion": MQTT_BINDING_VERSION}},
        }
        channels[kind] = {
            "address": f"{{prefix}}/{{device_id}}/{kind}",
            "title": f"{kind} of one device",
            "description": _when(kind) + (" Retained." if cls.retain else ""),
            "messages": {kind: {"$ref": f"#/components/messages/{kind}"}},
            "parameters": {
                "prefix": {"$ref": "#/components/parameters/prefix"},
                "device_id": {"$ref": "#/components/parameters/device_id"},
            },
        }
        binding: Dict[str, Any] = {"qos": 1, "retain": cls.retain, "bindingVersion": MQTT_BINDING_VERSION}
        if kind == "counts" and counts_expiry_s is not None:
            binding["messageExpiryInterval"] = counts_expiry_s
        operations[f"send_{kind}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{kind}"},
            "summary": f"The appliance publishes its {kind}.",
            "messages": [{"$ref": f"#/channels/{kind}/messages/{kind}"}],
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
                "status), as JSON over MQTT at QoS 1. Every message carries the envelope `device_id`, `boot_id`, "
                "`seq`, `sent_at`; deduplicate by `(device_id, boot_id, seq)`. The appliance subscribes to "
                "nothing. Generated from `appliance/publish/messages.py`; see docs/control-room.md."
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
