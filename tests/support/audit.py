"""A site whose device signs its audit log with its TLS client key (the site PKI's device-a)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def signed_site(tmp_path: Path, pki: Any) -> Path:
    device = pki.clients["device-a"]
    site = tmp_path / "site.yaml"
    site.write_text(
        "device_id: device-a\n"
        f"mqtt: {{tls: {{ca_file: '{pki.ca}', cert_file: '{device['cert']}', key_file: '{device['key']}'}}}}\n"
        f"transparency: {{audit_log_path: '{tmp_path}/audit.jsonl'}}\n"
    )
    return site
