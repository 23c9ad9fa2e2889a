"""The site's certificate revocation list, ``<PKI>/crl.pem``, signed by the site CA.

The shipped broker config names it (``crlfile`` in deploy/mosquitto/mosquitto.conf); Mosquitto
reads it at start and on SIGHUP (``systemctl reload mosquitto``) and then refuses a revoked
certificate at the TLS handshake. Its next update is the CA's own expiry: OpenSSL refuses every
client once a CRL's next update has passed, so a CRL nobody re-signs must not lapse before the CA.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Tuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.errors import InputError
from appliance.publish.certificate import not_valid_after

CRL_FILE = "crl.pem"
CRL_MODE = 0o644  # public: the broker (another user) reads it


@dataclass(frozen=True)
class Revocation:
    serial: int
    when: dt.datetime
    reason: x509.ReasonFlags


def crl_path(pki_dir: Path) -> Path:
    return pki_dir / CRL_FILE


def read_crl(pki_dir: Path, ca_cert: x509.Certificate) -> Tuple[List[Revocation], int]:
    """The revocations in ``pki_dir``'s CRL and its number; none (number 0) before the first."""
    path = crl_path(pki_dir)
    if not path.exists():
        return [], 0
    try:
        crl = x509.load_pem_x509_crl(path.read_bytes())
    except ValueError as exc:
        raise InputError(f"not a PEM CRL: {exc}", path=str(path)) from None
    public_key = ca_cert.public_key()
    if crl.issuer != ca_cert.subject or not (
        isinstance(public_key, ec.EllipticCurvePublicKey) and crl.is_signature_valid(public_key)
    ):
        raise InputError("not signed by this site's CA (ca.crt); restore the site's own crl.pem", path=str(path))
    revoked = []
    for entry in crl:
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        except x509.ExtensionNotFound:
            reason = x509.ReasonFlags.unspecified
        revoked.append(Revocation(entry.serial_number, _revocation_date(entry), reason))
    try:
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        number = 0
    return revoked, number


def _revocation_date(entry: x509.RevokedCertificate) -> dt.datetime:
    when = getattr(entry, "revocation_date_utc", None)  # cryptography >= 42
    return when if when is not None else entry.revocation_date.replace(tzinfo=dt.timezone.utc)


def write_crl(
    pki_dir: Path, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, revoked: Iterable[Revocation],
    number: int = 1,
) -> Path:
    """Sign and write the CRL, replacing the file in one step (a broker reloading meanwhile reads the
    old list or the new one, never half of one)."""
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - dt.timedelta(minutes=5))  # tolerate small clock skew on the broker
        .next_update(max(not_valid_after(ca_cert), now + dt.timedelta(days=1)))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    for r in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(r.serial)
            .revocation_date(r.when)
            .add_extension(x509.CRLReason(r.reason), critical=False)
            .build()
        )
    data = builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    path = crl_path(pki_dir)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, CRL_MODE)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), CRL_MODE)
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def revoke(
    pki_dir: Path, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
    serials: Iterable[int], reason: x509.ReasonFlags,
) -> Tuple[Path, List[int]]:
    """Add ``serials`` to the CRL (those already on it stay as they were); returns the CRL's path
    and the serials newly revoked."""
    existing, number = read_crl(pki_dir, ca_cert)
    by_serial: Dict[int, Revocation] = {r.serial: r for r in existing}
    now = dt.datetime.now(dt.timezone.utc)
    added = [s for s in dict.fromkeys(serials) if s not in by_serial]
    for serial in added:
        by_serial[serial] = Revocation(serial, now, reason)
    return write_crl(pki_dir, ca_key, ca_cert, by_serial.values(), number + 1), added


def ensure_crl(pki_dir: Path, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate) -> None:
    """A site made before the PKI kept a CRL gets an empty one (the broker config names the file)."""
    if not crl_path(pki_dir).exists():
        write_crl(pki_dir, ca_key, ca_cert, [])
