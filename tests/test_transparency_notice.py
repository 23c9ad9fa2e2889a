"""The public notice: generated from config, models and message classes; schema-valid; follows the config."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Set

import jsonschema
import pytest
import yaml

from appliance.cli import main
from appliance.config import load_config
from appliance.models.manifest import load_manifest
from appliance.publish.egress import DOCUMENT_MAX_BYTES, EgressPolicy, RetainedDocument, check_json_payload
from appliance.publish.messages import (
    MAX_LINES,
    MAX_ZONES,
    MESSAGE_TYPES,
    ActiveAnomaly,
    AnomalyMessage,
    AnomalyStateMessage,
    CameraHealth,
    CountsMessage,
    CountStats,
    FrameCounters,
    HealthMessage,
    Heatmap,
    LatencyStats,
    LineCounts,
    Message,
    ModelInfo,
    OutboxHealth,
    StatusMessage,
    ZoneStats,
)
from appliance.transparency import build_notice, notice_hash, notice_payload, notice_schema

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


def _site(tmp_path: Path, **sections: Any) -> Path:
    data: Dict[str, Any] = yaml.safe_load((ROOT / "examples" / "site.yaml").read_text())
    for key, value in sections.items():
        data[key] = value
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _full_messages() -> Dict[str, Message]:
    """One message of each kind with every optional part filled, as the publisher would send it."""
    stats = CountStats(min=1, mean=2.0, max=3, last=2)
    counts = CountsMessage(
        window_start=NOW,
        window_end=NOW,
        frames_analyzed=5,
        total=stats,
        zones={"walkway": ZoneStats(min=1, mean=2.0, max=3, last=2, density_per_m2=0.1, dwell_mean_s=3.0,
                                    dwell_p90_s=5.0)},
        lines={"centre": LineCounts(**{"in": 1, "out": 0})},
        heatmap=Heatmap(rows=1, cols=2, cells=[[0, 1]]),
    )
    model = ModelInfo(name="m", sha256="0" * 64)
    msgs = {
        "status": StatusMessage(config_hash="abcd1234", board="x86-generic", started_at=NOW, models=[model]),
        "counts": counts,
        "anomalies": AnomalyMessage(type="overcrowding", event_id="d" * 32, zone="walkway", state="raised",
                                    value=13, threshold=12, baseline=4, since=NOW),
        "anomaly_state": AnomalyStateMessage(active=[ActiveAnomaly(
            type="overcrowding", event_id="d" * 32, zone="walkway", since=NOW, value=13, threshold=12, baseline=4,
        )]),
        "health": HealthMessage(
            state="ok", fps=5, latency_ms={"anonymize": LatencyStats(p50=1, p95=2)},
            frames=FrameCounters(captured=3, analyzed=2, dropped={"too_slow": 1}),
            camera=CameraHealth(state="ok"), models=[model],
            outbox=OutboxHealth(pending=1, dropped={"health": 1}, oldest_age_s=1.0), uptime_s=3,
        ),
    }
    assert set(msgs) == set(MESSAGE_TYPES), "a message kind was added: add a full example of it here"
    return {k: m.stamp(device_id="dev-1", boot_id=1, seq=1, sent_at=NOW) for k, m in msgs.items()}


def _paths(value: Any, prefix: str = "") -> Set[str]:
    """Dotted paths of a real payload, with configured names (zones, lines, reasons) written as <name>."""
    out: Set[str] = set()
    if isinstance(value, dict):
        for key, child in value.items():
            name = key if not prefix.endswith(("zones", "lines", "latency_ms", "dropped")) else "<name>"
            path = f"{prefix}.{name}" if prefix else name
            out.add(path)
            out |= _paths(child, path)
    elif isinstance(value, list):
        for child in value:
            out.add(f"{prefix}[]")
            out |= _paths(child, f"{prefix}[]")
    return out


def test_every_field_of_every_published_payload_is_in_the_notice() -> None:
    notice = build_notice(load_config(ROOT / "examples" / "site.yaml"))
    listed = {t.kind: set(t.fields) for t in notice.topics}
    for kind, message in _full_messages().items():
        on_wire = _paths(json.loads(message.to_json_bytes()))
        assert on_wire <= listed[kind], f"{kind}: fields on the wire but not in the notice: {on_wire - listed[kind]}"


def test_topics_are_the_ones_the_device_publishes_plus_the_retained_notice() -> None:
    notice = build_notice(load_config(ROOT / "examples" / "site.yaml"))
    by_kind = {t.kind: t for t in notice.topics}
    assert set(by_kind) == set(MESSAGE_TYPES) | {"notice"}
    assert by_kind["notice"].topic == "crowdmon/campus-square-01/notice" and by_kind["notice"].retained
    assert by_kind["status"].retained and not by_kind["counts"].retained
    assert by_kind["counts"].interval_s == 10 and by_kind["health"].interval_s == 30


def test_models_are_described_as_the_manifest_records_them_with_training_data_terms() -> None:
    notice = build_notice(load_config())
    manifest = load_manifest()
    for m in notice.models:
        entry = manifest.get(m.name)
        assert (m.sha256, m.licence, m.source_package) == (entry.sha256, entry.source.licence, entry.source.package)
    face = next(m for m in notice.models if m.task == "face")
    assert "WIDER FACE" in face.training_data
    assert any("restrict commercial use" in t for t in face.training_data_terms)


def test_the_committed_notice_schema_is_generated_from_the_code() -> None:
    committed = json.loads((ROOT / "docs" / "schemas" / "notice.json").read_text())
    assert committed == notice_schema(), (
        "regenerate: python -c \"from appliance.transparency import export_notice_schema; "
        "export_notice_schema('docs/schemas')\""
    )


def test_the_notice_payload_is_valid_against_its_schema_and_hashed_as_sent() -> None:
    notice = build_notice(load_config(ROOT / "examples" / "site.yaml"))
    payload = notice_payload(notice)
    jsonschema.validate(json.loads(payload), notice_schema())
    assert notice_hash(notice) == hashlib.sha256(payload).hexdigest()
    assert notice_payload(build_notice(load_config(ROOT / "examples" / "site.yaml"))) == payload  # deterministic


def test_the_notice_follows_the_config(tmp_path: Path) -> None:
    base = build_notice(load_config(_site(tmp_path)))
    changed = build_notice(load_config(_site(
        tmp_path,
        transparency={"operator_name": "Bydel Grünerløkka", "contact_email": "personvern@example.no",
                      "purpose": "footfall_statistics", "central_retention_days": 30},
        publish={"interval_s": 60},
        zones=[{"name": "gate", "polygon": [[0, 0], [1, 0], [1, 1]]}],
    )))
    assert changed.controller.name == "Bydel Grünerløkka" and changed.controller.email == "personvern@example.no"
    assert changed.purpose.code == "footfall_statistics" and changed.central_retention_days == 30
    assert changed.on_device.zones == ["gate"]
    assert next(t for t in changed.topics if t.kind == "counts").interval_s == 60
    assert changed.config_hash != base.config_hash and notice_hash(changed) != notice_hash(base)


def test_notice_manifest_json_prints_exactly_the_published_payload(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["notice", "manifest", "--config", str(ROOT / "examples" / "site.yaml"), "--json"]) == 0
    printed = capsys.readouterr().out.rstrip("\n").encode()
    assert printed == notice_payload(build_notice(load_config(ROOT / "examples" / "site.yaml")))


def test_notice_manifest_text_names_the_operator_and_the_wider_face_terms(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = _site(tmp_path, transparency={"operator_name": "City of Example", "contact_email": "dpo@example.org"})
    assert main(["notice", "manifest", "--config", str(site)]) == 0
    out = capsys.readouterr().out
    assert "City of Example" in out and "dpo@example.org" in out
    assert "WIDER FACE" in out and "restrict commercial use" in out


def test_a_bad_transparency_field_is_one_line_naming_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = _site(tmp_path, transparency={"contact_email": "not an address"})
    assert main(["notice", "manifest", "--config", str(site)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(site) in err and "transparency.contact_email" in err


def test_the_largest_notice_the_config_allows_passes_the_egress_checks(tmp_path: Path) -> None:
    """The notice is published like any payload: no string over 200 chars, no long array, under the size cap."""
    longest = "Ab " * 66 + "cd"  # 200 characters, the config's limit
    zones = [{"name": f"zone-{i:02d}-" + "x" * 50, "polygon": [[0, 0], [1, 0], [1, 1]]} for i in range(MAX_ZONES)]
    lines = [{"name": f"line-{i:02d}-" + "y" * 50, "start": [0, 0], "end": [1, 1]} for i in range(MAX_LINES)]
    every = {"en": longest, "fr": longest, "nb": longest}
    site = _site(
        tmp_path,
        transparency={"operator_name": longest, "contact_email": "a" * 60 + "@" + "b" * 60 + ".org",
                      "contact_url": "https://example.org/" + "p.q/" * 45, "purpose_details": every,
                      "legal_basis": every, "dpia_reference": longest, "public_url": "https://e.org/" + "q." * 93,
                      "sign_languages": ["en", "fr", "nb"], "dpo_contact": longest, "covered_area": every,
                      "recipients": [every] * 8, "country": "NO"},
        zones=zones,
        lines=lines,
    )
    cfg = load_config(site)
    payload = notice_payload(build_notice(cfg))
    check_json_payload(payload)
    # The notice has its own cap (it lists every published field); the egress policy enforces it.
    assert len(payload) <= DOCUMENT_MAX_BYTES
    policy = EgressPolicy(topic_prefix="crowdmon", device_id=cfg.device_id, max_payload_bytes=1024)
    approved = policy.approve_document(RetainedDocument("notice", payload))
    assert approved.retain and approved.topic == f"crowdmon/{cfg.device_id}/notice"


def test_config_refuses_a_text_the_egress_policy_would_refuse(tmp_path: Path) -> None:
    from appliance.errors import InputError

    with pytest.raises(InputError, match=r"transparency\.public_url"):
        load_config(_site(tmp_path, transparency={"public_url": "https://example.org/" + "abcd" * 20}))
