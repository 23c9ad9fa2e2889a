"""The audit log: append-only, hash-chained, and any change, deletion or truncation is named."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import List

import pytest

from appliance.audit import (
    AnomalyChanged,
    AuditLog,
    ImageWritten,
    ModelVerificationFailed,
    Stopped,
    record_start,
    verify_lines,
)
from appliance.audit.chain import GENESIS, canonical, entry_hash
from appliance.audit.signing import Signer, Verifier
from appliance.cli import main
from appliance.config import config_hash, load_config

ROOT = Path(__file__).resolve().parent.parent


def _real_log(path: Path) -> AuditLog:
    """A log as a day of running writes it: start, a flag raised and cleared, a blur, a config change, stop."""
    log = AuditLog(path)
    record_start(log, load_config())
    log.append(AnomalyChanged(type="overcrowding", state="raised", zone="walkway", value=13, threshold=12))
    log.append(AnomalyChanged(type="overcrowding", state="cleared", zone="walkway", value=8, threshold=12))
    log.append(ImageWritten(command="blur", output_path="/tmp/out.mp4", frames=120))
    log.append(Stopped(reason="signal SIGTERM", frames_analyzed=1000))
    record_start(log, load_config(ROOT / "examples" / "site.yaml"))
    log.append(ModelVerificationFailed(detail="centerface-int8.onnx: sha256 mismatch"))
    return log


def _lines(path: Path) -> List[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_a_real_log_verifies_and_its_head_is_the_last_entry(tmp_path: Path) -> None:
    log = _real_log(tmp_path / "audit.jsonl")
    report = log.verify()
    assert report.ok and report.length == 8
    last = json.loads(_lines(log.path)[-1])
    assert log.head() == (8, last["hash"]) == (report.length, report.head_hash)
    assert [e["kind"] for e in log.entries()] == [
        "start", "anomaly", "anomaly", "image_written", "stop", "config_change", "start",
        "model_verification_failed",
    ]


def test_a_config_change_records_old_and_new_hash_and_the_changed_fields(tmp_path: Path) -> None:
    log = _real_log(tmp_path / "audit.jsonl")
    change = next(e for e in log.entries() if e["kind"] == "config_change")["data"]
    assert change["old_hash"] == config_hash(load_config())
    assert change["new_hash"] == config_hash(load_config(ROOT / "examples" / "site.yaml"))
    fields = {c["field"] for c in change["changes"]}
    assert {"device_id", "zones", "lines", "transparency.operator_name"} <= fields
    assert next(c for c in change["changes"] if c["field"] == "device_id") == {
        "field": "device_id", "old": "demo-0001", "new": "campus-square-01"}
    start = list(log.entries())[-2]["data"]
    assert {m["name"] for m in start["models"]} == {"centerface-int8", "ssdlite-person-int8"}


def test_an_unchanged_config_logs_no_change(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    record_start(log, load_config())
    record_start(log, load_config())
    assert [e["kind"] for e in log.entries()] == ["start", "start"]


@pytest.mark.parametrize("entry", [1, 4, 8])
def test_one_changed_byte_is_named(tmp_path: Path, entry: int) -> None:
    log = _real_log(tmp_path / "audit.jsonl")
    lines = _lines(log.path)
    line = lines[entry - 1]
    i = line.index(b'"at":"') + 8  # a digit of the timestamp's year
    lines[entry - 1] = line[:i] + (b"1" if line[i:i + 1] != b"1" else b"2") + line[i + 1:]
    log.path.write_bytes(b"".join(lines))
    report = log.verify()
    assert not report.ok and report.first_bad == entry and "changed" in (report.problem or "")


def test_a_byte_that_breaks_the_json_is_named(tmp_path: Path) -> None:
    log = _real_log(tmp_path / "audit.jsonl")
    lines = _lines(log.path)
    lines[2] = lines[2][:10] + b"\x00" + lines[2][11:]
    log.path.write_bytes(b"".join(lines))
    report = log.verify()
    assert not report.ok and report.first_bad == 3


def test_a_deleted_entry_is_named(tmp_path: Path) -> None:
    log = _real_log(tmp_path / "audit.jsonl")
    lines = _lines(log.path)
    del lines[4]  # the stop entry
    log.path.write_bytes(b"".join(lines))
    report = log.verify()
    assert not report.ok and report.first_bad == 5 and "deleted" in (report.problem or "")


def test_truncation_is_detected_from_the_published_head(tmp_path: Path) -> None:
    log = _real_log(tmp_path / "audit.jsonl")
    published = log.head()  # what the control room received in a health message
    log.path.write_bytes(b"".join(_lines(log.path)[:6]))
    assert log.verify().ok, "a cut-off chain is consistent by itself: that is why the head is published"
    report = log.verify(expected_head=published)
    assert not report.ok and report.first_bad == 7 and "truncated" in (report.problem or "")


def test_a_rewritten_and_rehashed_log_is_detected_from_the_published_head(tmp_path: Path) -> None:
    log = _real_log(tmp_path / "audit.jsonl")
    published = log.head()
    # The attacker edits entry 2 and recomputes every hash after it: the chain is self-consistent again.
    entries = [json.loads(x) for x in _lines(log.path)]
    entries[1]["data"]["value"] = 3
    prev = GENESIS
    for e in entries:
        e["prev"] = prev
        e["hash"] = prev = entry_hash(e["seq"], e["at"], e["kind"], e["data"], prev)
    log.path.write_bytes(b"".join(canonical(e) + b"\n" for e in entries))
    assert log.verify().ok
    report = log.verify(expected_head=published)
    assert not report.ok and report.first_bad == published[0] and "rewritten" in (report.problem or "")


def test_an_extended_log_still_matches_an_older_published_head(tmp_path: Path) -> None:
    log = _real_log(tmp_path / "audit.jsonl")
    published = log.head()
    log.append(Stopped(reason="end of source"))
    assert log.verify(expected_head=published).ok


def test_concurrent_writers_never_fork_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"

    def write(command: str) -> None:
        log = AuditLog(path)  # each writer opens the file itself, like the service and a local command
        for i in range(40):
            log.append(ImageWritten(command=command, output_path=f"/tmp/{command}-{i}.jpg"))  # type: ignore[arg-type]

    threads = [threading.Thread(target=write, args=(c,)) for c in ("blur", "preview")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    report = AuditLog(path).verify()
    assert report.ok and report.length == 80


def test_entries_signed_with_the_device_key_verify_with_its_certificate(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    device = pki.clients["device-a"]
    log = AuditLog(tmp_path / "audit.jsonl", Signer(str(device["key"])))
    record_start(log, load_config())
    log.append(Stopped(reason="test"))
    good = Verifier(str(device["cert"]))
    report = log.verify(check_signature=good)
    assert report.ok and report.signed == 2
    other = Verifier(str(pki.clients["device-b"]["cert"]))
    report = log.verify(check_signature=other)
    assert not report.ok and report.first_bad == 1 and "signature" in (report.problem or "")
    # The appliance itself never appends unsigned to a signed log (a config that lost its key).
    from appliance.errors import InputError

    with pytest.raises(InputError, match="the log is signed but no device key"):
        AuditLog(log.path).append(Stopped(reason="forged"))
    # Someone without the key appends a correctly chained entry: the missing signature gives it away.
    _, prev = log.head()
    forged = {"seq": 3, "at": "2026-12-01T00:00:00.000Z", "kind": "stop", "data": {"reason": "forged"}, "prev": prev}
    forged["hash"] = entry_hash(3, forged["at"], "stop", forged["data"], prev)
    with open(log.path, "ab") as f:
        f.write(canonical(forged) + b"\n")
    report = log.verify(check_signature=good)
    assert not report.ok and report.first_bad == 3 and "not signed" in (report.problem or "")


def test_audit_verify_cli_exit_codes_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = _real_log(tmp_path / "audit.jsonl")
    length, digest = log.head()
    assert main(["audit", "verify", "--log", str(log.path)]) == 0
    assert "intact, 8 entries" in capsys.readouterr().out
    log.path.write_bytes(b"".join(_lines(log.path)[:-1]))
    assert main(["audit", "verify", "--log", str(log.path), "--json"]) == 0
    capsys.readouterr()
    assert main(["audit", "verify", "--log", str(log.path), "--json", "--expect-head", f"{length}:{digest}"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and out["first_bad"] == 8 and out["length"] == 7
    assert main(["audit", "verify", "--log", str(log.path), "--expect-head", "nonsense"]) == 2


def test_audit_show_and_head(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = _real_log(tmp_path / "audit.jsonl")
    assert main(["audit", "show", "--log", str(log.path), "--json"]) == 0
    shown = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [e["seq"] for e in shown] == list(range(1, 9))
    assert main(["audit", "show", "--log", str(log.path), "--since", "2999-01-01"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["audit", "show", "--log", str(log.path)]) == 0
    assert "config_change" in capsys.readouterr().out
    assert main(["audit", "head", "--log", str(log.path)]) == 0
    length, digest = log.head()
    assert capsys.readouterr().out.strip() == f"{length}:{digest}"


def test_verify_lines_on_an_empty_log_is_intact_and_matches_an_empty_head() -> None:
    report = verify_lines([], expected_head=(0, GENESIS))
    assert report.ok and report.length == 0 and report.head_hash == GENESIS


def test_the_log_refuses_to_extend_a_chain_whose_last_entry_is_unreadable(tmp_path: Path) -> None:
    from appliance.errors import ApplianceError

    log = _real_log(tmp_path / "audit.jsonl")
    with open(log.path, "ab") as f:
        f.write(b'{"seq": 10, "trunc\n')
    with pytest.raises(ApplianceError, match="unreadable"):
        log.append(Stopped(reason="x"))


def test_from_config_signs_with_the_mtls_key_and_the_cli_checks_with_its_certificate(
    tmp_path: Path, pki, capsys: pytest.CaptureFixture[str]  # type: ignore[no-untyped-def]
) -> None:
    device = pki.clients["device-a"]
    site = tmp_path / "site.yaml"
    site.write_text(
        "device_id: device-a\n"
        f"mqtt: {{tls: {{ca_file: '{pki.ca}', cert_file: '{device['cert']}', key_file: '{device['key']}'}}}}\n"
        f"transparency: {{audit_log_path: '{tmp_path}/audit-{{device_id}}.jsonl'}}\n"
    )
    cfg = load_config(site)
    log = AuditLog.from_config(cfg)
    assert log.path == tmp_path / "audit-device-a.jsonl"
    record_start(log, cfg)
    log.append(Stopped(reason="test"))
    assert main(["audit", "verify", "--config", str(site)]) == 0
    out = capsys.readouterr().out
    assert "intact, 2 entries" in out and "(2 signed)" in out
    lines = _lines(log.path)
    entry = json.loads(lines[1])
    entry["sig"] = json.loads(lines[0])["sig"]  # a signature moved from another entry
    log.path.write_bytes(lines[0] + canonical(entry) + b"\n")
    assert main(["audit", "verify", "--config", str(site), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["first_bad"] == 2
