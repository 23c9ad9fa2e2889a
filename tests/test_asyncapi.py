"""docs/asyncapi.yaml: generated from the payload classes, in sync, valid AsyncAPI 3.0.0, and complete:
every topic the device writes (messages, notice, selftest probe, Home Assistant configs) is a channel
whose payload schema is the generated JSON Schema of that payload."""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Set

import jsonschema
import pytest
import yaml

from appliance.config import load_config
from appliance.config.schema import HomeAssistantConfig
from appliance.publish import AnomalyMessage, CountsMessage, CountStats, LineCounts, ZoneStats
from appliance.publish.asyncapi import build_document, render
from appliance.publish.discovery import HaBinarySensor, HaSensor, discovery_messages
from appliance.publish.egress import EgressPolicy
from appliance.publish.messages import MESSAGE_TYPES
from appliance.transparency import build_notice, notice_payload

REPO = Path(__file__).resolve().parent.parent
SPEC_SCHEMA = REPO / "tests" / "data" / "asyncapi" / "asyncapi-3.0.0.schema.json.gz"
# sha256 of schemas/3.0.0.json in @asyncapi/specs 6.11.1 (see tests/data/asyncapi/README.md).
SPEC_SHA256 = "d4571a420e6ffb7fcc7066c95a6db1202f299a3c51daa103d0706bf30f95e626"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def spec_validator() -> jsonschema.Draft7Validator:
    raw = gzip.decompress(SPEC_SCHEMA.read_bytes())
    assert hashlib.sha256(raw).hexdigest() == SPEC_SHA256, "vendored AsyncAPI schema is not the official file"
    schema = json.loads(raw)
    assert schema["properties"]["asyncapi"]["const"] == "3.0.0"
    return jsonschema.Draft7Validator(schema)


def test_committed_asyncapi_yaml_is_generated_from_the_message_classes() -> None:
    committed = (REPO / "docs" / "asyncapi.yaml").read_text(encoding="utf-8")
    assert committed == render(), "regenerate: python -m appliance.publish.asyncapi > docs/asyncapi.yaml"


def test_document_is_valid_against_the_asyncapi_3_specification_schema(spec_validator: Any) -> None:
    document = yaml.safe_load((REPO / "docs" / "asyncapi.yaml").read_text(encoding="utf-8"))
    errors = [f"{e.json_path}: {e.message[:200]}" for e in spec_validator.iter_errors(document)]
    assert errors == []


def test_the_specification_schema_refuses_a_broken_document(spec_validator: Any) -> None:
    # Proves the validation has teeth: an AsyncAPI 2.x verb and a missing info.version are refused.
    document = build_document()
    broken = copy.deepcopy(document)
    broken["operations"]["send_counts"]["action"] = "publish"
    assert not spec_validator.is_valid(broken)
    broken = copy.deepcopy(document)
    del broken["info"]["version"]
    assert not spec_validator.is_valid(broken)


DOCUMENTS = {"notice": True, "selftest": False, "discovery_sensor": True, "discovery_binary_sensor": True}


def test_one_channel_and_one_send_operation_per_message_kind_with_its_retain_flag() -> None:
    document = build_document()
    assert set(document["channels"]) == set(MESSAGE_TYPES) | set(DOCUMENTS)
    for kind, cls in MESSAGE_TYPES.items():
        assert document["channels"][kind]["address"] == f"{{prefix}}/{{device_id}}/{kind}"
        op = document["operations"][f"send_{kind}"]
        assert op["action"] == "send"
        assert op["bindings"]["mqtt"]["retain"] is cls.retain
        assert op["bindings"]["mqtt"]["qos"] == 1
    assert document["operations"]["send_status"]["bindings"]["mqtt"]["retain"] is True
    assert document["operations"]["send_counts"]["bindings"]["mqtt"]["messageExpiryInterval"] == 3600
    assert not any(op["action"] == "receive" for op in document["operations"].values()), "the device takes no input"


def test_the_notice_the_selftest_probe_and_home_assistant_configs_are_channels_too() -> None:
    document = build_document()
    for key, retained in DOCUMENTS.items():
        op = document["operations"][f"send_{key}"]
        assert op["action"] == "send"
        assert op["bindings"]["mqtt"] == {"qos": 1, "retain": retained, "bindingVersion": "0.2.0"}
    channels = document["channels"]
    assert channels["notice"]["address"] == "{prefix}/{device_id}/notice"
    assert channels["selftest"]["address"] == "{prefix}/{device_id}/selftest"
    assert "ignores it" in channels["selftest"]["description"], "described as what it is: a test publish"
    for component in ("sensor", "binary_sensor"):
        channel = channels[f"discovery_{component}"]
        assert channel["address"] == f"{{discovery_prefix}}/{component}/{{device_id}}/{{object_id}}/config"
        assert set(channel["parameters"]) == {"discovery_prefix", "device_id", "object_id"}
    assert document["components"]["parameters"]["discovery_prefix"]["default"] == "homeassistant"


def test_every_topic_the_notice_lists_is_a_channel() -> None:
    notice = build_notice(load_config(REPO / "examples" / "site.yaml"))
    assert {t.kind for t in notice.topics} <= set(build_document()["channels"])


def _inlined(document: Dict[str, Any], key: str) -> Dict[str, Any]:
    """A channel's payload as a standalone JSON Schema again: references back to ``#/$defs/X``, with
    exactly the component schemas it reaches (pydantic's own layout)."""
    components = document["components"]["schemas"]

    def back(node: Any, reached: Set[str]) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                name = ref.rsplit("/", 1)[-1]
                if name not in reached:
                    reached.add(name)
                    back(components[name], reached)
                return {**node, "$ref": f"#/$defs/{name}"}
            return {k: back(v, reached) for k, v in node.items()}
        if isinstance(node, list):
            return [back(v, reached) for v in node]
        return node

    reached: Set[str] = set()
    schema = back(document["components"]["messages"][key]["payload"], reached)
    if reached:
        schema["$defs"] = {name: back(components[name], set()) for name in sorted(reached)}
    return schema


def _standalone(schema: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in schema.items() if k not in ("$schema", "$id")}


def test_payload_schemas_are_the_generated_json_schemas() -> None:
    document = yaml.safe_load(render())
    # The committed docs/schemas/ copies (kept equal to export_schemas and export_notice_schema by
    # their own tests): the messages' and the notice's.
    for kind in [*MESSAGE_TYPES, "notice"]:
        committed = json.loads((REPO / "docs" / "schemas" / f"{kind}.json").read_text(encoding="utf-8"))
        assert _inlined(document, kind) == _standalone(committed), kind
    for component, cls in (("sensor", HaSensor), ("binary_sensor", HaBinarySensor)):
        assert _inlined(document, f"discovery_{component}") == cls.model_json_schema(mode="serialization")


def _payload_validator(document: Dict[str, Any], kind: str) -> jsonschema.Draft202012Validator:
    # The payload's references point into the document's components: validate with them in place.
    payload = document["components"]["messages"][kind]["payload"]
    return jsonschema.Draft202012Validator({**payload, "components": document["components"]})


def test_payload_schemas_accept_real_messages_and_refuse_extra_fields() -> None:
    document = yaml.safe_load(render())
    counts = CountsMessage(
        window_start=T0,
        window_end=T0,
        frames_analyzed=50,
        total=CountStats(min=1, mean=2.0, max=3, last=2),
        zones={"entrance": ZoneStats(min=0, mean=1.0, max=2, last=1, density_per_m2=0.1)},
        lines={"gate": LineCounts(**{"in": 3, "out": 1})},
    ).stamp(device_id="cam-1", boot_id=1, seq=3, sent_at=T0)
    anomaly = AnomalyMessage(
        type="overcrowding", event_id="a" * 32, zone="entrance", state="raised", value=9.0, since=T0
    ).stamp(
        device_id="cam-1", boot_id=1, seq=4, sent_at=T0
    )
    for kind, message in (("counts", counts), ("anomalies", anomaly)):
        validator = _payload_validator(document, kind)
        wire = json.loads(message.to_json_bytes())
        assert list(validator.iter_errors(wire)) == []
        assert not validator.is_valid({**wire, "image": "..."})
    zones = json.loads(counts.to_json_bytes())
    zones["zones"]["entrance"]["last"] = -1
    assert not _payload_validator(document, "counts").is_valid(zones), "refs into components must resolve"


def test_real_notice_probe_and_discovery_payloads_match_their_channels() -> None:
    document = yaml.safe_load(render())
    cfg = load_config(REPO / "examples" / "site.yaml")
    notice = json.loads(notice_payload(build_notice(cfg)))
    assert list(_payload_validator(document, "notice").iter_errors(notice)) == []
    assert not _payload_validator(document, "notice").is_valid({**notice, "image": "..."})

    probe = EgressPolicy(topic_prefix="crowdmon", device_id="cam-1", max_payload_bytes=1024).probe()
    assert probe.topic == "crowdmon/cam-1/selftest"
    assert _payload_validator(document, "selftest").is_valid(json.loads(probe.payload))
    assert not _payload_validator(document, "selftest").is_valid({"hello": 1})

    configs = discovery_messages(cfg.device_id, "crowdmon", cfg.zones, cfg.lines, HomeAssistantConfig(enabled=True))
    assert {m.topic.split("/")[1] for m in configs} == {"sensor", "binary_sensor"}
    for m in configs:
        validator = _payload_validator(document, f"discovery_{m.topic.split('/')[1]}")
        assert list(validator.iter_errors(json.loads(m.payload))) == [], m.topic
