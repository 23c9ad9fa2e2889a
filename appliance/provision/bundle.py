"""One ``.tar.gz`` per device: everything a technician copies onto a bare board.

    <id>/install.sh        installs the appliance, config, keys and unit, then runs the self-test
    <id>/site.yaml         the device's validated site config
    <id>/tls/ca.crt        the site CA (to check the broker)
    <id>/tls/<id>.crt      the device's client certificate (CN = device id = MQTT user name)
    <id>/tls/<id>.key      its private key (0600)
    <id>/appliance.service the systemd unit, copied from systemd/ when the bundle is built
    <id>/broker.acl        this device's lines for the control room's Mosquitto ACL

The PKI folder keeps each device's key and certificate under ``devices/<id>/`` (see identity.py);
an existing key is never replaced without ``force``, and ``rebundle`` builds a new bundle (new
zones, new notice text) around the key and certificate the device already has.
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from appliance import __version__
from appliance.errors import InputError
from appliance.provision.crl import ensure_crl
from appliance.provision.identity import bundled_identity, key_path
from appliance.provision.pki import check_id, load_ca, mint_client
from appliance.provision.site import acl_lines, device_site_config, render_site_yaml
from appliance.resources import systemd_dir

INSTALL_TEMPLATE = Path(__file__).resolve().parent / "install.sh"


@dataclass(frozen=True)
class DeviceSpec:
    """One device to provision (a CLI call or a row of the batch CSV)."""

    device_id: str
    board: str
    source: Optional[str]  # the camera: part of the device's identity, never a default
    zones_file: Optional[Path] = None


def render_install_script(device_id: str) -> str:
    text = INSTALL_TEMPLATE.read_text(encoding="utf-8")
    return text.replace("@DEVICE_ID@", device_id).replace("@APPLIANCE_VERSION@", __version__)


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, int(time.time())
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    tar.addfile(info, io.BytesIO(data))


def check_device(pki_dir: Path, spec: DeviceSpec, *, force: bool, broker_url: str, topic_prefix: str,
                 transparency_file: Optional[Path] = None, rebundle: bool = False) -> str:
    """Everything that can be wrong with ``spec``, checked before any key is minted; returns the site YAML."""
    check_id(spec.device_id)
    load_ca(pki_dir)
    key = key_path(pki_dir, spec.device_id)
    if rebundle and force:
        raise InputError("--rebundle keeps the device's key, --force replaces it: give one")
    if rebundle:
        bundled_identity(pki_dir, spec.device_id)  # exists, belongs together, not revoked or expired
    elif key.exists() and not force:
        raise InputError("exists; refusing to replace this device's key (--rebundle: a new bundle with this key "
                         "and certificate; --force: re-key the device)", path=str(key))
    site = device_site_config(spec.device_id, spec.board, broker_url, zones_file=spec.zones_file, source=spec.source,
                              topic_prefix=topic_prefix, transparency_file=transparency_file)
    return render_site_yaml(site)


def build_bundle(
    pki_dir: Path,
    spec: DeviceSpec,
    out_dir: Path,
    *,
    broker_url: str,
    topic_prefix: str = "crowdmon",
    force: bool = False,
    rebundle: bool = False,
    transparency_file: Optional[Path] = None,
) -> Path:
    """Mint the device's key and certificate (or, with ``rebundle``, take the ones it has) and write
    ``out_dir/<id>.tar.gz`` (mode 0600: it holds the key)."""
    site_yaml = check_device(pki_dir, spec, force=force, rebundle=rebundle, broker_url=broker_url,
                             topic_prefix=topic_prefix, transparency_file=transparency_file)
    unit = systemd_dir() / "appliance.service"
    if not unit.is_file():
        raise InputError("systemd unit not found", path=str(unit))
    dev = spec.device_id
    ca_key, ca_cert = load_ca(pki_dir)
    ensure_crl(pki_dir, ca_key, ca_cert)  # the broker config names it; a site made before it had none
    if rebundle:
        crt, key = bundled_identity(pki_dir, dev)
    else:
        crt, key = mint_client(pki_dir, dev, out=pki_dir / "devices" / dev, force=force)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{dev}.tar.gz"
    members: List[tuple] = [
        ("install.sh", render_install_script(dev).encode(), 0o755),
        ("site.yaml", site_yaml.encode(), 0o640),
        ("tls/ca.crt", (pki_dir / "ca.crt").read_bytes(), 0o644),
        (f"tls/{dev}.crt", crt.read_bytes(), 0o644),
        (f"tls/{dev}.key", key.read_bytes(), 0o600),
        ("appliance.service", unit.read_bytes(), 0o644),
        ("broker.acl", acl_lines(dev, topic_prefix).encode(), 0o644),
    ]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), 0o600)
        with tarfile.open(fileobj=fh, mode="w:gz") as tar:
            for name, data, mode in members:
                _add(tar, f"{dev}/{name}", data, mode)
    return path
