#!/usr/bin/env python3
"""Site PKI for the MQTT broker and devices: a site CA, the broker's server certificate, and one
client certificate per device (its common name is the device id, which the broker uses as the
MQTT user name, so the ACL ``pattern write crowdmon/%u/#`` confines each device to its own topics).

    # once per site: CA + broker certificate (SANs: every name/IP devices use to reach the broker)
    python scripts/provision_device.py init --dir pki --broker-name broker.example.org --broker-ip 10.0.0.5
    # once per device: cert + key + a site-config snippet to copy onto the device
    python scripts/provision_device.py device cam-0001 --dir pki --broker-url mqtts://broker.example.org:8883
    # the control room's client certificate (CN "control-room": read access in the example ACL)
    python scripts/provision_device.py client control-room --dir pki

Keys are written with mode 0600. Keep ``ca.key`` offline after provisioning.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import re
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Key = ec.EllipticCurvePrivateKey
# P-256: small certificates and fast handshakes on a Pi, supported by every TLS stack in use.
_CURVE = ec.SECP256R1()
_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _name(cn: str, org: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)  # tolerate small clock skew


def make_ca(
    cn: str = "crowd-appliance site CA", org: str = "crowd-appliance", days: int = 3650
) -> Tuple[Key, x509.Certificate]:
    key = ec.generate_private_key(_CURVE)
    name = _name(cn, org)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now())
        .not_valid_after(_now() + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_leaf(
    ca_key: Key,
    ca_cert: x509.Certificate,
    cn: str,
    *,
    server: bool,
    dns: Sequence[str] = (),
    ips: Sequence[str] = (),
    org: str = "crowd-appliance",
    days: int = 825,
) -> Tuple[Key, x509.Certificate]:
    """A server (broker) or client (device, control room) certificate signed by the site CA."""
    key = ec.generate_private_key(_CURVE)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, org))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now())
        .not_valid_after(_now() + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    sans: List[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def write_pem(path: Path, obj: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(obj, x509.Certificate):
        path.write_bytes(obj.public_bytes(serialization.Encoding.PEM))
    else:
        data = obj.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        # Created with 0600 from the start: never world-readable, not even for a moment.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    return path


def load_ca(directory: Path) -> Tuple[Key, x509.Certificate]:
    key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), password=None)
    cert = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SystemExit(f"{directory / 'ca.key'}: expected an EC key")
    return key, cert


def init_site(directory: Path, broker_names: Sequence[str], broker_ips: Sequence[str]) -> List[Path]:
    if (directory / "ca.key").exists():
        raise SystemExit(f"{directory / 'ca.key'} exists; refusing to replace the site CA")
    ca_key, ca_cert = make_ca()
    key, cert = make_leaf(ca_key, ca_cert, (list(broker_names) or ["broker"])[0], server=True,
                          dns=broker_names, ips=broker_ips)
    return [
        write_pem(directory / "ca.key", ca_key),
        write_pem(directory / "ca.crt", ca_cert),
        write_pem(directory / "server.key", key),
        write_pem(directory / "server.crt", cert),
    ]


def site_snippet(device_id: str, broker_url: str, install_dir: str, topic_prefix: str) -> str:
    return (
        f"# Site config snippet for {device_id}: merge into the device's site.yaml\n"
        f"device_id: {device_id}\n"
        "mqtt:\n"
        f"  url: {broker_url}\n"
        f"  topic_prefix: {topic_prefix}\n"
        "  tls:\n"
        f"    ca_file: {install_dir}/ca.crt\n"
        f"    cert_file: {install_dir}/{device_id}.crt\n"
        f"    key_file: {install_dir}/{device_id}.key\n"
    )


def mint_client(directory: Path, cn: str, *, out: Optional[Path] = None) -> Tuple[Path, Path]:
    """Certificate + key for a client whose MQTT user name (certificate CN) is ``cn``."""
    if not _ID_PATTERN.match(cn):
        raise SystemExit(f"{cn!r}: a device id is 1-64 of A-Z a-z 0-9 _ -")
    ca_key, ca_cert = load_ca(directory)
    key, cert = make_leaf(ca_key, ca_cert, cn, server=False)
    out = out or directory / "clients"
    return write_pem(out / f"{cn}.crt", cert), write_pem(out / f"{cn}.key", key)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_init = sub.add_parser("init", help="create the site CA and the broker's certificate")
    p_init.add_argument("--dir", type=Path, required=True)
    p_init.add_argument("--broker-name", action="append", default=[], help="DNS name (repeatable)")
    p_init.add_argument("--broker-ip", action="append", default=[], help="IP address (repeatable)")
    for name, help_ in (("device", "mint a device certificate + site snippet"), ("client", "mint a client cert")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("cn", help="device id (or client name); becomes the MQTT user name")
        p.add_argument("--dir", type=Path, required=True)
        if name == "device":
            p.add_argument("--broker-url", default="mqtts://broker:8883")
            p.add_argument("--topic-prefix", default="crowdmon")
            p.add_argument("--install-dir", default="/etc/crowd-appliance/tls", help="where the files go on the device")
    args = ap.parse_args(argv)

    if args.cmd == "init":
        for path in init_site(args.dir, args.broker_name, args.broker_ip):
            print(path)
        return 0
    out = args.dir / ("devices" if args.cmd == "device" else "clients") / args.cn
    crt, key = mint_client(args.dir, args.cn, out=out)
    print(crt)
    print(key)
    if args.cmd == "device":
        (out / "ca.crt").write_bytes((args.dir / "ca.crt").read_bytes())
        snippet = out / "site-snippet.yaml"
        snippet.write_text(site_snippet(args.cn, args.broker_url, args.install_dir, args.topic_prefix))
        print(out / "ca.crt")
        print(snippet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
