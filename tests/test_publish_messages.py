"""Message classes, the egress policy and the stdout publisher: what may leave the device."""

from __future__ import annotations

import base64
import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional

import jsonschema
import pytest
from pydantic import ValidationError
from support.publishing import health_of, publisher_for

from appliance.config import load_config
from appliance.config.schema import ApplianceConfig
from appliance.publish import (
    AnomalyMessage,
    CameraHealth,
    CountsMessage,
    CountStats,
    EgressError,
    EgressPolicy,
    HealthMessage,
    Heatmap,
    LatencyStats,
    LineCounts,
    ModelInfo,
    StatusMessage,
    StdoutPublisher,
    ZoneStats,
    export_schemas,
)
from appliance.publish.egress import ApprovedPayload, check_json_payload
from appliance.publish.messages import MESSAGE_TYPES, AnomalyStateMessage, message_schema

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
SHA = "0123456789abcdef" * 4


def sample_counts() -> CountsMessage:
    return CountsMessage(
        window_start=NOW - timedelta(seconds=10),
        window_end=NOW,
        frames_analyzed=50,
        frames_dropped=1,
        total=CountStats(min=2, mean=3.5, max=6, last=4),
        zones={"entrance": ZoneStats(min=0, mean=1.2, max=3, last=1, density_per_m2=0.1, dwell_mean_s=4.0)},
        lines={"gate": LineCounts(**{"in": 7, "out": 2})},
        heatmap=Heatmap(rows=2, cols=3, cells=[[0, 1, 2], [3, 4, 5]]),
    )


def sample_messages() -> List[Any]:
    return [
        StatusMessage(config_hash="abcdef0123456789", board="x86-generic", started_at=NOW,
                      models=[ModelInfo(name="ssdlite-person-int8", sha256=SHA)]),
        sample_counts(),
        AnomalyMessage(type="overcrowding", event_id="0" * 32, zone="entrance", state="raised", value=42,
                       threshold=30, since=NOW,
                       severity="critical", reason="42 people > 30 for 5 s"),
        HealthMessage(state="ok", fps=4.9, latency_ms={"capture": LatencyStats(p50=3, p95=5)},
                      camera=CameraHealth(state="ok"), models=[ModelInfo(name="centerface-int8", sha256=SHA)],
                      uptime_s=12.5),
    ]


@pytest.fixture
def cfg() -> ApplianceConfig:
    return load_config(overrides={"device_id": "cam-01", "mqtt": {"topic_prefix": "site/a"}})


def policy(max_payload_bytes: int = 16384) -> EgressPolicy:
    return EgressPolicy(topic_prefix="site/a", device_id="cam-01", max_payload_bytes=max_payload_bytes)


# --------------------------------------------------------------------------- schemas


def test_committed_schemas_equal_the_export(tmp_path: Path) -> None:
    export_schemas(tmp_path)
    for kind in MESSAGE_TYPES:
        committed = REPO / "docs" / "schemas" / f"{kind}.json"
        assert committed.is_file(), f"missing {committed}; run export_schemas('docs/schemas')"
        assert committed.read_text() == (tmp_path / f"{kind}.json").read_text(), (
            f"{committed} is stale; regenerate with export_schemas('docs/schemas')"
        )


@pytest.mark.parametrize("index", range(4))
def test_every_stamped_payload_validates_against_its_schema(index: int) -> None:
    msg = sample_messages()[index].stamp(device_id="cam-01", boot_id=3, seq=17)
    doc = json.loads(msg.to_json_bytes())
    jsonschema.Draft202012Validator(message_schema(type(msg))).validate(doc)
    assert doc["v"] == 1 and doc["seq"] == 17 and doc["boot_id"] == 3
    assert doc["sent_at"].endswith("Z")


def test_schema_rejects_an_unstamped_payload() -> None:
    doc = json.loads(sample_counts().to_json_bytes())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, message_schema(CountsMessage))


def test_lines_use_in_and_out_on_the_wire() -> None:
    doc = json.loads(sample_counts().stamp(device_id="d", boot_id=1, seq=1).to_json_bytes())
    assert doc["lines"] == {"gate": {"in": 7, "out": 2, "suppressed": False}}


# --------------------------------------------------------------------------- message classes


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError):
        CountsMessage(window_start=NOW, window_end=NOW, frames_analyzed=1, image=b"\xff\xd8")  # type: ignore[call-arg]


def test_naive_timestamps_are_rejected() -> None:
    with pytest.raises(ValidationError, match="timezone-aware"):
        CountsMessage(window_start=datetime(2024, 1, 1), window_end=NOW, frames_analyzed=1)


def test_nan_is_rejected_at_build_time() -> None:
    with pytest.raises(ValidationError):
        CountStats(min=0, mean=float("nan"), max=1, last=0)


def test_heatmap_is_at_most_16_by_16() -> None:
    with pytest.raises(ValidationError):
        Heatmap(rows=17, cols=1, cells=[[0]] * 17)
    with pytest.raises(ValidationError, match="cells must be"):
        Heatmap(rows=2, cols=2, cells=[[0, 0]])


def test_timestamps_round_trip_at_millisecond_precision() -> None:
    msg = sample_counts().stamp(device_id="d", boot_id=1, seq=1, sent_at=NOW + timedelta(microseconds=123456))
    assert type(msg).model_validate_json(msg.to_json_bytes()) == msg
    assert json.loads(msg.to_json_bytes())["sent_at"] == "2024-05-01T12:00:00.123Z"


# --------------------------------------------------------------------------- egress


def test_egress_approves_a_stamped_message_on_its_own_topic() -> None:
    approved = policy().approve(sample_counts().stamp(device_id="cam-01", boot_id=1, seq=5))
    assert approved.topic == "site/a/cam-01/counts"
    assert json.loads(approved.payload)["seq"] == 5


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda: sample_counts(), "unstamped"),
        (lambda: sample_counts().stamp(device_id="cam-02", boot_id=1, seq=5), "wrong_device"),
        (lambda: {"seq": 1, "counts": 3}, "not_a_message"),
    ],
)
def test_egress_refuses_and_counts(build: Any, reason: str) -> None:
    pol = policy()
    with pytest.raises(EgressError) as info:
        pol.approve(build())
    assert info.value.reason == reason
    assert pol.refused == {reason: 1}


def test_egress_refuses_another_devices_topic() -> None:
    pol = policy()
    msg = sample_counts().stamp(device_id="cam-01", boot_id=1, seq=5)
    with pytest.raises(EgressError, match="wrong_topic"):
        pol.approve(msg, topic="site/a/cam-02/counts")
    with pytest.raises(EgressError, match="wrong_topic"):
        pol.approve(msg, topic="other/cam-01/counts")


def test_egress_refuses_oversized_payloads() -> None:
    zones = {f"zone-{i}": ZoneStats(min=0, mean=0, max=0, last=0) for i in range(32)}
    msg = CountsMessage(window_start=NOW, window_end=NOW, frames_analyzed=0, zones=zones)
    with pytest.raises(EgressError, match="too_large"):
        policy(max_payload_bytes=512).approve(msg.stamp(device_id="cam-01", boot_id=1, seq=1))


def test_a_subclass_smuggling_pixels_is_refused() -> None:
    # A future "harmless" extension that widens a message must still be stopped at the gate.
    class CountsWithThumbnail(CountsMessage):
        thumbnail: List[int] = []

    pixels = CountsWithThumbnail(window_start=NOW, window_end=NOW, frames_analyzed=1, thumbnail=[128] * 64 * 48)
    with pytest.raises(EgressError, match="not_a_message"):
        policy().approve(pixels.stamp(device_id="cam-01", boot_id=1, seq=1))


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"pixels": list(range(33))}, "long_array"),
        ({"rows": [[1] * 32 for _ in range(32)] + [[1] * 32]}, "long_array"),
        ({"grid": [[1] * 32 for _ in range(32)], "more": [1]}, "too_many_numbers"),
        ({"jpeg": "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAMCAgICAgMCAgIDAwMDBAYEBAQEBAgGBgUGCQgKCgkICQkKDA8M"},
         "encoded_blob"),
        ({"hex": "ff" * 40}, "encoded_blob"),
        ({"ff" * 40: 1}, "encoded_blob"),
        ({"deep": [{"key": ["ok", "ab" * 33]}]}, "encoded_blob"),
        ({"note": "x" * 201}, "long_string"),
        ({"floats": [[0.5] * 32 for _ in range(32)], "and": {"one": 1.0}}, "too_many_numbers"),
    ],
)
def test_json_structure_checks(doc: Dict[str, Any], reason: str) -> None:
    with pytest.raises(EgressError) as info:
        check_json_payload(json.dumps(doc).encode())
    assert info.value.reason == reason


def test_what_passes_the_structure_checks() -> None:
    # At the limits: 1024 numbers (booleans are not numbers), 32-item arrays, a long plain sentence.
    doc = {"grid": [[1] * 32 for _ in range(32)], "flags": [True, False] * 16, "none": None,
           "note": "a plain sentence of words, long enough to be looked at closely, but no blob " * 2}
    check_json_payload(json.dumps(doc).encode())


def test_a_refusal_names_the_offending_value() -> None:
    with pytest.raises(EgressError, match=r"\$\.deep\[0\]\.key\[1\] looks like hex/base64"):
        check_json_payload(json.dumps({"deep": [{"key": ["ok", "ab" * 33]}]}).encode())


def test_the_audit_heads_signature_is_the_one_encoded_value_allowed_and_it_is_bounded() -> None:
    signature = base64.b64encode(bytes(range(72))).decode()  # an ECDSA P-256 signature's size
    check_json_payload(json.dumps({"audit": {"sha256": SHA, "sig": signature}}).encode())
    for elsewhere in ({"sig": signature}, {"audit": {"note": signature}}, {"health": {"audit": {"sig": signature}}}):
        with pytest.raises(EgressError, match="encoded_blob"):
            check_json_payload(json.dumps(elsewhere).encode())
    with pytest.raises(EgressError, match="at most 512"):
        check_json_payload(json.dumps({"audit": {"sig": "A" * 600}}).encode())
    with pytest.raises(EgressError, match="base64 signature"):
        check_json_payload(json.dumps({"audit": {"sig": "not a signature"}}).encode())


def test_a_sha256_is_not_mistaken_for_a_blob() -> None:
    check_json_payload(json.dumps({"sha256": SHA, "reason": "42 people > 30 for 5 s"}).encode())


def test_stored_payloads_are_rechecked() -> None:
    pol = policy()
    good = pol.approve(sample_counts().stamp(device_id="cam-01", boot_id=1, seq=9))
    assert pol.approve_stored("counts", good.topic, good.payload, seq=9).payload == good.payload
    tampered = good.payload.replace(b'"camera_ok":true', b'"camera_ok":true,"frame":"AAAA"')
    with pytest.raises(EgressError, match="invalid"):
        pol.approve_stored("counts", good.topic, tampered, seq=9)
    with pytest.raises(EgressError, match="unknown_kind"):
        pol.approve_stored("frames", good.topic, good.payload, seq=9)
    with pytest.raises(EgressError, match="wrong_topic"):
        pol.approve_stored("counts", "site/a/cam-02/counts", good.payload, seq=9)


def test_a_refused_stored_row_is_named_in_one_line_without_quoting_its_content() -> None:
    # The refusal is logged on the device: it must not copy what a tampered row smuggled in.
    pol = policy()
    good = pol.approve(sample_counts().stamp(device_id="cam-01", boot_id=1, seq=9))
    blob = "QUJD" * 300
    for tampered in (
        good.payload.replace(b'"camera_ok":true', f'"camera_ok":"{blob}"'.encode()),
        f'{{"v":1,"image":"{blob}"}}'.encode(),
        f"not json {blob}".encode(),
    ):
        with pytest.raises(EgressError, match="invalid") as refused:
            pol.approve_stored("counts", good.topic, tampered, seq=9)
        text = str(refused.value)
        assert "QUJD" not in text and "\n" not in text


def test_a_stored_payload_whose_seq_differs_from_its_row_is_refused() -> None:
    """A damaged digit in the payload's seq (or in the row's) must not reach the control room as a
    valid message at another seq."""
    pol = policy()
    good = pol.approve(sample_counts().stamp(device_id="cam-01", boot_id=1, seq=9))
    with pytest.raises(EgressError, match="carries seq 9, stored at 19"):
        pol.approve_stored("counts", good.topic, good.payload, seq=19)
    with pytest.raises(EgressError, match="carries seq 8, stored at 9"):
        pol.approve_stored("counts", good.topic, good.payload.replace(b'"seq":9', b'"seq":8'), seq=9)


def test_approved_payloads_come_only_from_the_policy() -> None:
    with pytest.raises(TypeError):
        ApprovedPayload("site/a/cam-01/counts", b"{}", "counts", 1, False, object())


# --------------------------------------------------------------------------- stdout publisher


def test_stdout_publisher_prints_one_json_line_per_message(cfg: ApplianceConfig) -> None:
    out = io.StringIO()
    pub = publisher_for(cfg, [ModelInfo(name="centerface-int8", sha256=SHA)], stream=out)
    assert isinstance(pub, StdoutPublisher)
    pub.start()
    pub.publish(sample_counts())
    pub.publish(health_of(pub))
    pub.close(clean=True)

    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["topic"] for line in lines] == [
        "site/a/cam-01/status", "site/a/cam-01/anomaly_state", "site/a/cam-01/counts", "site/a/cam-01/health",
        "site/a/cam-01/status",
    ]  # fmt: skip
    birth, state, counts, health, death = (line["payload"] for line in lines)
    assert (birth["state"], death["state"]) == ("online", "offline")
    assert birth["models"] == [{"name": "centerface-int8", "sha256": SHA}]
    # Birth and death take the two seqs reserved at start; the boot's empty anomaly state and data follow.
    assert [birth["seq"], death["seq"], state["seq"], counts["seq"], health["seq"]] == [1, 2, 3, 4, 5]
    assert (state["active"], state["not_listed"]) == ([], 0)
    assert health["outbox"]["pending"] == 0 and health["state"] == "ok", "nothing waits: printed at once"
    for line in lines:
        kind = line["topic"].rsplit("/", 1)[1]
        jsonschema.validate(line["payload"], message_schema(MESSAGE_TYPES[kind]))


def test_stdout_publisher_refuses_status_from_the_pipeline(cfg: ApplianceConfig) -> None:
    pub = publisher_for(cfg, stream=io.StringIO())
    pub.start()
    with pytest.raises(EgressError, match="status_managed"):
        pub.publish(StatusMessage(config_hash="abcdef01", board="x", started_at=NOW, state="offline"))
    with pytest.raises(EgressError, match="state_managed"):
        pub.publish(AnomalyStateMessage())
    assert pub.stats().egress_refused == 0  # a programming error, caught before the policy


def test_publish_before_start_is_an_error(cfg: ApplianceConfig) -> None:
    with pytest.raises(RuntimeError, match="before start"):
        publisher_for(cfg, stream=io.StringIO()).publish(sample_counts())


def test_each_raise_and_clear_is_followed_by_the_flags_active_now(cfg: ApplianceConfig) -> None:
    out = io.StringIO()
    pub = publisher_for(cfg, stream=out)
    pub.start()

    def event(kind: str, zone: Optional[str], state: str, event_id: str) -> AnomalyMessage:
        return AnomalyMessage(
            type=kind, event_id=event_id * 32, zone=zone, state=state, value=12.0, threshold=10.0, since=NOW  # type: ignore[arg-type]
        )

    pub.publish(event("overcrowding", "entrance", "raised", "a"))
    pub.publish(event("camera_tamper", None, "raised", "b"))
    pub.publish(event("overcrowding", "entrance", "cleared", "a"))
    pub.close(clean=True)
    states = [json.loads(line)["payload"] for line in out.getvalue().splitlines() if "anomaly_state" in line]
    for state in states:
        jsonschema.validate(state, message_schema(AnomalyStateMessage))
    active = [[(a["type"], a["zone"], a["event_id"][0]) for a in s["active"]] for s in states]
    assert active == [
        [],  # right after the birth: a new boot has nothing raised
        [("overcrowding", "entrance", "a")],
        [("overcrowding", "entrance", "a"), ("camera_tamper", None, "b")],
        [("camera_tamper", None, "b")],
    ]
    assert states[1]["active"][0] | {"event_id": "", "since": ""} == {
        "type": "overcrowding", "event_id": "", "zone": "entrance", "since": "", "severity": "warning",
        "value": 12.0, "threshold": 10.0, "baseline": None, "reason": "",
    }  # fmt: skip
    # Each state directly follows the event it reflects.
    seqs = [json.loads(line)["payload"]["seq"] for line in out.getvalue().splitlines()]
    assert seqs == [1, 3, 4, 5, 6, 7, 8, 9, 2]  # birth, state, (event, state) x 3, death at its reserved seq
