"""A device's certificate over its life, in the site PKI folder ``<PKI>/devices/<id>/``:

    <id>.key          its private key (0600), made once; replaced only by a re-key (--force)
    <id>.crt          the certificate in use, the one a bundle carries
    issued/<serial>.crt  every certificate it was ever given (so a revocation misses none)

A renewal (``rotate``) signs a new certificate for the same key: the old one stays valid until it
expires or is revoked, so the device keeps publishing while the new file travels to it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Dict, List, Tuple

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.errors import InputError
from appliance.provision.crl import ensure_crl, read_crl, revoke
from appliance.provision.pki import (
    ISSUED_DIR,
    LEAF_DAYS,
    Key,
    check_id,
    load_ca,
    make_leaf,
    serial_hex,
    write_client_cert,
)
from appliance.publish.certificate import days_left, not_valid_after


def device_folder(pki_dir: Path, device_id: str) -> Path:
    return pki_dir / "devices" / device_id


def key_path(pki_dir: Path, device_id: str) -> Path:
    return device_folder(pki_dir, device_id) / f"{device_id}.key"


def cert_path(pki_dir: Path, device_id: str) -> Path:
    return device_folder(pki_dir, device_id) / f"{device_id}.crt"


def _spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _date(cert: x509.Certificate) -> str:
    return not_valid_after(cert).strftime("%Y-%m-%d")


def _load(pki_dir: Path, device_id: str) -> Tuple[Key, x509.Certificate, x509.Certificate]:
    """The device's key and certificate in use (checked to belong together and to this site's CA),
    and the CA certificate."""
    check_id(device_id)
    _, ca_cert = load_ca(pki_dir)
    kpath, cpath = key_path(pki_dir, device_id), cert_path(pki_dir, device_id)
    if not kpath.is_file() or not cpath.is_file():
        raise InputError(f"no key and certificate for {device_id} in this PKI (provision the device first: "
                         f"appliance provision device {device_id} ...)", path=str(device_folder(pki_dir, device_id)))
    try:
        key = serialization.load_pem_private_key(kpath.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(cpath.read_bytes())
    except (ValueError, TypeError) as exc:
        raise InputError(f"not a PEM key/certificate: {exc}", path=str(device_folder(pki_dir, device_id))) from None
    public = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(public, ec.EllipticCurvePublicKey):
        raise InputError("expected an EC key and certificate", path=str(kpath))
    if _spki(public) != _spki(key.public_key()):
        raise InputError(f"certificate does not belong to the key {kpath.name}", path=str(cpath))
    if cert.issuer != ca_cert.subject:
        raise InputError("not issued by this site's CA (ca.crt)", path=str(cpath))
    return key, cert, ca_cert


def _refuse_if_revoked(pki_dir: Path, device_id: str, cert: x509.Certificate, ca_cert: x509.Certificate) -> None:
    revoked = {r.serial: r for r in read_crl(pki_dir, ca_cert)[0]}
    if cert.serial_number in revoked:
        when = revoked[cert.serial_number].when.strftime("%Y-%m-%d")
        raise InputError(f"revoked on {when}; a revoked device gets a new key: appliance provision device "
                         f"{device_id} --force ...", path=str(cert_path(pki_dir, device_id)))


def bundled_identity(pki_dir: Path, device_id: str) -> Tuple[Path, Path]:
    """(certificate, key) in use, fit to go into a rebuilt bundle: not revoked, not expired."""
    _, cert, ca_cert = _load(pki_dir, device_id)
    _refuse_if_revoked(pki_dir, device_id, cert, ca_cert)
    if days_left(cert) < 0:
        raise InputError(f"expired on {_date(cert)}; renew it first: appliance provision rotate {device_id} "
                         f"--dir {pki_dir}", path=str(cert_path(pki_dir, device_id)))
    return cert_path(pki_dir, device_id), key_path(pki_dir, device_id)


def rotate(pki_dir: Path, device_id: str, *, days: int = LEAF_DAYS) -> Tuple[Path, x509.Certificate]:
    """Sign a new certificate for the device's key and make it the one in use. The previous one is
    not revoked: the device still holds it until the new file is installed."""
    key, cert, ca_cert = _load(pki_dir, device_id)
    _refuse_if_revoked(pki_dir, device_id, cert, ca_cert)
    ca_key, _ = load_ca(pki_dir)
    ensure_crl(pki_dir, ca_key, ca_cert)
    _, new = make_leaf(ca_key, ca_cert, device_id, server=False, key=key, days=days)
    return write_client_cert(device_folder(pki_dir, device_id), device_id, new), new


def issued_certificates(pki_dir: Path, device_id: str) -> List[x509.Certificate]:
    """Every certificate the device was given (oldest first); a device provisioned before the PKI
    kept copies has only the one in use."""
    found: Dict[int, x509.Certificate] = {}
    issued = sorted((device_folder(pki_dir, device_id) / ISSUED_DIR).glob("*.crt"))
    for path in [*issued, cert_path(pki_dir, device_id)]:
        if path.is_file():
            try:
                cert = x509.load_pem_x509_certificate(path.read_bytes())
            except ValueError as exc:
                raise InputError(f"not a PEM certificate: {exc}", path=str(path)) from None
            found[cert.serial_number] = cert
    return sorted(found.values(), key=lambda c: not_valid_after(c))


def revoke_device(pki_dir: Path, device_id: str, *, superseded_only: bool = False) -> Tuple[Path, List[str]]:
    """Put the device's certificates on the site CRL: all of them (a lost or stolen device), or, with
    ``superseded_only``, all but the one in use (after a renewal or re-key reached the device).
    Returns the CRL's path and the serials (hex) newly revoked."""
    check_id(device_id)
    ca_key, ca_cert = load_ca(pki_dir)
    certs = issued_certificates(pki_dir, device_id)
    if not certs:
        raise InputError(f"no certificate was issued to {device_id} in this PKI",
                         path=str(device_folder(pki_dir, device_id)))
    reason = x509.ReasonFlags.key_compromise
    if superseded_only:
        current = x509.load_pem_x509_certificate(cert_path(pki_dir, device_id).read_bytes()).serial_number
        certs = [c for c in certs if c.serial_number != current]
        reason = x509.ReasonFlags.superseded
    path, added = revoke(pki_dir, ca_key, ca_cert, [c.serial_number for c in certs], reason)
    return path, [serial_hex(c) for c in certs if c.serial_number in added]


def expiry_line(cert: x509.Certificate, now: dt.datetime | None = None) -> str:
    return f"valid until {_date(cert)} ({days_left(cert, now)} days left)"
