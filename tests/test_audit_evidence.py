"""The audit log as evidence: every byte of an entry counts, a signed log stays signed, a malformed
line or a folder gets one line, and the published head can be checked with the certificate alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List

import pytest
from support.audit import signed_site

from appliance.audit import AuditLog, Stopped, record_start
from appliance.audit.chain import GENESIS, canonical, entry_hash
from appliance.audit.signing import Signer
from appliance.cli import main
from appliance.config import load_config


def _signed_log(tmp_path: Path, pki: Any) -> Path:
    cfg = load_config(signed_site(tmp_path, pki))
    log = AuditLog.from_config(cfg)
    record_start(log, cfg)
    log.append(Stopped(reason="test"))
    log.append(Stopped(reason="again"))
    return log.path


def _plain_log(path: Path) -> AuditLog:
    log = AuditLog(path)
    record_start(log, load_config())
    log.append(Stopped(reason="signal SIGTERM", frames_analyzed=10))
    log.append(Stopped(reason="end of source"))
    return log


def _lines(path: Path) -> List[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _one_line(text: str) -> str:
    assert "Traceback" not in text
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


# ------------------------------------------------------------------------------------ canonical form


@pytest.mark.parametrize(
    ("mutate", "why"),
    [
        (lambda line: line.replace(b'{"at"', b'{"injected":"x","at"', 1), "unexpected field(s) injected"),
        (lambda line: line.replace(b'{"at"', b'{"kind":"stop","at"', 1), "duplicate key 'kind'"),
        (lambda line: line.replace(b'","kind"', b'", "kind"', 1), "not in canonical form"),
        (lambda line: line.replace(b'"end of source"', b'"end of \\u0073ource"', 1), "not in canonical form"),
    ],
    ids=["added key", "duplicate key", "space", "escape"],
)
def test_an_added_key_a_duplicate_key_or_a_changed_space_breaks_the_chain_at_that_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mutate: Any, why: str
) -> None:
    log = _plain_log(tmp_path / "audit.jsonl")
    lines = _lines(log.path)
    lines[2] = mutate(lines[2])
    log.path.write_bytes(b"".join(lines))
    report = log.verify()
    assert not report.ok and report.first_bad == 3 and why in (report.problem or ""), report.problem
    assert main(["audit", "verify", "--log", str(log.path)]) == 1
    assert f"BROKEN at entry 3 (audit.jsonl:3): not a valid entry: {why}" in capsys.readouterr().out
    # show never prints what it cannot vouch for: one line naming the file and line, exit 2.
    assert main(["audit", "show", "--log", str(log.path), "--json"]) == 2
    out, err = capsys.readouterr()
    assert "injected" not in out and len(out.splitlines()) == 2
    assert f"{log.path}: line 3 is not a valid audit entry" in _one_line(err)


# ------------------------------------------------------------------------------------ signatures


def test_a_stripped_signature_is_a_break_named_with_its_entry_even_without_the_certificate(
    tmp_path: Path, pki: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _signed_log(tmp_path, pki)
    lines = _lines(path)
    entry = json.loads(lines[1])
    del entry["sig"]
    lines[1] = canonical(entry) + b"\n"
    path.write_bytes(b"".join(lines))
    assert main(["audit", "verify", "--log", str(path)]) == 1
    line = capsys.readouterr().out.strip()
    assert line == (
        f"{path}: BROKEN at entry 2 (audit.jsonl:2): signature missing "
        "(the entry declares the device key: the signature was stripped)"
    )


def test_stripping_every_signature_and_rehashing_the_chain_is_caught_with_the_certificate(
    tmp_path: Path, pki: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _signed_log(tmp_path, pki)
    site = tmp_path / "site.yaml"
    prev = GENESIS
    out = []
    for raw in _lines(path):  # what someone who can write the file but has no key can do
        e = json.loads(raw)
        e.pop("sig"), e.pop("key")
        e["prev"] = prev
        e["hash"] = prev = entry_hash(e["seq"], e["at"], e["kind"], e["data"], prev)
        out.append(canonical(e) + b"\n")
    path.write_bytes(b"".join(out))
    assert AuditLog(path).verify().ok, "by itself the stripped chain is consistent"
    assert main(["audit", "verify", "--config", str(site)]) == 1
    assert "no entry is signed although a device key is configured" in capsys.readouterr().out


@pytest.mark.parametrize("sig", [5, "not base64!", "", None], ids=["integer", "not base64", "empty", "null"])
def test_a_malformed_signature_is_a_break_named_with_its_entry_not_a_traceback(
    tmp_path: Path, pki: Any, capsys: pytest.CaptureFixture[str], sig: Any
) -> None:
    path = _signed_log(tmp_path, pki)
    lines = _lines(path)
    entry = json.loads(lines[1])
    entry["sig"] = sig
    lines[1] = canonical(entry) + b"\n"
    path.write_bytes(b"".join(lines))
    for args in (["--log", str(path)], ["--config", str(tmp_path / "site.yaml")]):
        assert main(["audit", "verify", *args]) == 1
        out = _one_line(capsys.readouterr().out)
        assert "BROKEN at entry 2" in out and "signature is malformed" in out


def test_a_signature_over_another_key_is_named(tmp_path: Path, pki: Any, capsys: pytest.CaptureFixture[str]) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", Signer(str(pki.clients["device-b"]["key"])))
    record_start(log, load_config())
    assert main(["audit", "verify", "--log", str(log.path), "--cert", str(pki.clients["device-a"]["cert"])]) == 1
    assert "BROKEN at entry 1" in capsys.readouterr().out


# ------------------------------------------------------------------------------------ malformed input


@pytest.mark.parametrize(
    "bad", [b"5", b'{"seq":2,"at":"x","kind":"stop","data":[],"prev":"0","hash":"0"}', b"[]", b'"text"'],
    ids=["number", "data a list", "array", "string"],
)
def test_a_malformed_line_gives_one_line_in_verify_show_and_head(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: bytes
) -> None:
    log = _plain_log(tmp_path / "audit.jsonl")
    with open(log.path, "ab") as f:
        f.write(bad + b"\n")
    assert main(["audit", "verify", "--log", str(log.path)]) == 1
    assert "BROKEN at entry 4 (audit.jsonl:4): not a valid entry" in _one_line(capsys.readouterr().out)
    for command in ("show", "head"):
        assert main(["audit", command, "--log", str(log.path)]) == 2
        err = _one_line(capsys.readouterr().err)
        assert str(log.path) in err, err


def test_a_folder_where_the_log_should_be_gives_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "audit.jsonl"
    folder.mkdir()
    for command in ("verify", "show", "head", "ack"):
        assert main(["audit", command, "--log", str(folder)]) == 2
        assert _one_line(capsys.readouterr().err).endswith(f"{folder}: is a folder, not an audit log file "
                                                           "(move it away; the device starts a new log)")


def test_an_unsigned_acknowledgement_is_refused_on_a_signed_log(
    tmp_path: Path, pki: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _signed_log(tmp_path, pki)
    with open(path, "ab") as f:
        f.write(b'{"at":"20')  # torn: something to acknowledge
    assert main(["audit", "ack", "--log", str(path)]) == 2
    assert "the log is signed but no device key is configured" in _one_line(capsys.readouterr().err)
    assert main(["audit", "ack", "--config", str(tmp_path / "site.yaml")]) == 0
    assert main(["audit", "verify", "--config", str(tmp_path / "site.yaml")]) == 0
    assert "intact, 5 entries" in capsys.readouterr().out
