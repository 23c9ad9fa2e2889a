"""Site PKI for the MQTT broker and devices: a site CA, the broker's server certificate, and one
client certificate per device. A device certificate's common name is the device id, which the
broker uses as the MQTT user name (``use_identity_as_username``), so the ACL confines each device
to its own topics.

Keys are EC P-256 and are written with mode 0600 (fixed even on a file that already exists).
Keep ``ca.key`` offline once devices are provisioned. The site's revocation list is crl.py's; a
device's certificates over its life (renewal, revocation) are identity.py's.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import re
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.errors import InputError
from appliance.provision.crl import write_crl

log = logging.getLogger("appliance.provision")

Key = ec.EllipticCurvePrivateKey
# P-256: small certificates and fast handshakes on a Pi, supported by every TLS stack in use.
_CURVE = ec.SECP256R1()
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
KEY_MODE = 0o600
CERT_MODE = 0o644
LEAF_DAYS = 825  # about 27 months: the longest lifetime TLS clients commonly accept
ISSUED_DIR = "issued"  # beside a client's key: a copy of every certificate it was given, for revocation


def _name(cn: str, org: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)  # tolerate small clock skew


def check_id(cn: str, *, what: str = "device id") -> str:
    if not ID_PATTERN.match(cn):
        raise InputError(f"{cn!r}: a {what} is 1-64 of A-Z a-z 0-9 _ -")
    return cn


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
    days: int = LEAF_DAYS,
    key: Optional[Key] = None,
) -> Tuple[Key, x509.Certificate]:
    """A server (broker) or client (device, control room) certificate signed by the site CA; for
    ``key`` (a renewal keeps the device's key) or a new one."""
    key = key or ec.generate_private_key(_CURVE)
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
    try:
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    except ValueError as exc:
        raise InputError(str(exc), field="--broker-ip") from None
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def write_pem(path: Path, obj: Union[Key, x509.Certificate]) -> Path:
    """Write a certificate (0644) or a private key (0600). The mode is set on the open file
    descriptor, so a key file that already exists with a looser mode is tightened before any
    new key byte is written to it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(obj, x509.Certificate):
        data, mode = obj.public_bytes(serialization.Encoding.PEM), CERT_MODE
    else:
        data = obj.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        mode = KEY_MODE
    # O_CREAT's mode only applies to a new file; fchmod fixes an existing one (re-provisioning).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), mode)
        fh.write(data)
    return path


def load_ca(directory: Path) -> Tuple[Key, x509.Certificate]:
    """The site CA in ``directory``; a missing folder or CA is one clear line (exit 2)."""
    key_path, cert_path = directory / "ca.key", directory / "ca.crt"
    if not directory.is_dir():
        raise InputError(f"no such folder (create the site CA first: appliance provision init --dir {directory})",
                         path=str(directory))
    if not key_path.is_file() or not cert_path.is_file():
        raise InputError(f"no site CA here (ca.key and ca.crt; run: appliance provision init --dir {directory})",
                         path=str(directory))
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (ValueError, TypeError) as exc:
        raise InputError(f"not a PEM key/certificate: {exc}", path=str(directory)) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InputError("expected an EC key", path=str(key_path))
    return key, cert


def init_site(directory: Path, broker_names: Sequence[str], broker_ips: Sequence[str]) -> List[Path]:
    """Create the site CA and the broker's server certificate (once per site)."""
    if (directory / "ca.key").exists():
        raise InputError("exists; refusing to replace the site CA (every device would need new certificates)",
                         path=str(directory / "ca.key"))
    if directory.exists() and not directory.is_dir():
        raise InputError("not a folder", path=str(directory))
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_key, ca_cert = make_ca()
    key, cert = make_leaf(ca_key, ca_cert, (list(broker_names) or ["broker"])[0], server=True,
                          dns=broker_names, ips=broker_ips)
    return [
        write_pem(directory / "ca.key", ca_key),
        write_pem(directory / "ca.crt", ca_cert),
        write_pem(directory / "server.key", key),
        write_pem(directory / "server.crt", cert),
        # Empty at first; the shipped broker config names it (crlfile), and Mosquitto does not
        # start when a configured CRL is missing.
        write_crl(directory, ca_key, ca_cert, []),
    ]


def serial_hex(cert: x509.Certificate) -> str:
    return f"{cert.serial_number:x}"


def write_client_cert(out: Path, cn: str, cert: x509.Certificate) -> Path:
    """``out/<cn>.crt`` (the one in use) and a copy under ``out/issued/`` so that every certificate
    this client was ever given can be revoked, also after a renewal replaced the file in use."""
    write_pem(out / ISSUED_DIR / f"{serial_hex(cert)}.crt", cert)
    return write_pem(out / f"{cn}.crt", cert)


def mint_client(directory: Path, cn: str, *, out: Optional[Path] = None, force: bool = False) -> Tuple[Path, Path]:
    """Certificate + key for a client whose MQTT user name (certificate CN) is ``cn``, written to
    ``out`` (default ``directory/clients``). An existing key is never replaced silently: a device
    re-provisioned by mistake would lose its identity, so replacing it needs ``force``."""
    check_id(cn)
    ca_key, ca_cert = load_ca(directory)
    out = out or directory / "clients"
    key_path = out / f"{cn}.key"
    if key_path.exists():
        if not force:
            raise InputError("exists; refusing to replace this device's key (use --force to re-key it)",
                             path=str(key_path))
        log.warning("replacing the key of %s (%s) on request (--force)", cn, key_path)
    key, cert = make_leaf(ca_key, ca_cert, cn, server=False)
    return write_client_cert(out, cn, cert), write_pem(key_path, key)
