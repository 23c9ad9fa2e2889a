"""The audit head published in birth and health is signed: a control room checks it with the
device certificate alone, without reaching the device."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from support.audit import signed_site

from appliance.audit import AuditLog, AuditRecorder
from appliance.audit.signing import Verifier, head_statement
from appliance.config import load_config


def test_the_published_head_is_signed_over_device_length_and_hash(tmp_path: Path, pki: Any) -> None:
    cfg = load_config(signed_site(tmp_path, pki))
    recorder = AuditRecorder(AuditLog.from_config(cfg), cfg.device_id)
    recorder.start(cfg)
    head = recorder.published_head()
    assert (head.length, head.sha256) == recorder.log.head() and head.sig is not None
    # What a control room does with the device certificate alone (docs/control-room.md).
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509 import load_pem_x509_certificate

    public = load_pem_x509_certificate(pki.clients["device-a"]["cert"].read_bytes()).public_key()
    statement = f"crowd-appliance-audit-head/1 device-a {head.length} {head.sha256}".encode()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(base64.b64decode(head.sig), statement, ec.ECDSA(hashes.SHA256()))
    verifier = Verifier(str(pki.clients["device-a"]["cert"]))
    assert verifier.verify_head("device-a", head.length, head.sha256, head.sig)
    assert not verifier.verify_head("device-b", head.length, head.sha256, head.sig)
    assert not verifier.verify_head("device-a", head.length - 1, head.sha256, head.sig)
    assert head_statement("device-a", 1, "ab") == b"crowd-appliance-audit-head/1 device-a 1 ab"


def test_a_signed_head_leaves_the_device_in_birth_and_health(tmp_path: Path, pki: Any) -> None:
    """The egress policy refuses encoded data anywhere else; the head's signature must still go out."""
    import io
    import json

    from support.publishing import health_of, printing_publisher

    from appliance.report import audit_head

    cfg = load_config(signed_site(tmp_path, pki))
    recorder = AuditRecorder(AuditLog.from_config(cfg), cfg.device_id)
    recorder.start(cfg)
    head = audit_head(recorder.published_head())
    out = io.StringIO()
    pub = printing_publisher(cfg, out)
    pub.start()
    pub.publish(health_of(pub).model_copy(update={"audit": head}))
    health = [json.loads(line)["payload"] for line in out.getvalue().splitlines() if '/health"' in line]
    assert health[0]["audit"]["sig"] == head.sig
