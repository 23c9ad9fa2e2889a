"""Optional signatures on audit entries with the device's mTLS key (verifiable with its certificate).

A signature binds an entry's hash to the device key, so someone who can write the log file but not
read the key cannot forge a chain that verifies against the certificate. RSA, EC and Ed25519 keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from pathlib import Path
from typing import Any

from appliance.errors import InputError


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
        from cryptography.x509 import load_pem_x509_certificate
    except ImportError:  # pragma: no cover - cryptography is a runtime dependency
        raise InputError("signing the audit log needs the 'cryptography' package") from None
    return hashes, serialization, ec, ed25519, padding, rsa, load_pem_x509_certificate


class Signer:
    def __init__(self, key_file: str) -> None:
        _, serialization, *_ = _crypto()
        try:
            self._key = serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise InputError(f"cannot load the device key for audit signatures: {exc}", path=key_file) from None

        self.fingerprint = fingerprint(self._key.public_key())

    def sign(self, entry_hash: str) -> str:
        return self.sign_bytes(bytes.fromhex(entry_hash))

    def sign_head(self, device_id: str, length: int, sha256: str) -> str:
        return self.sign_bytes(head_statement(device_id, length, sha256))

    def sign_bytes(self, data: bytes) -> str:
        hashes, _, ec, ed25519, padding, rsa, _ = _crypto()
        key = self._key
        if isinstance(key, ed25519.Ed25519PrivateKey):
            sig = key.sign(data)
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            sig = key.sign(data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPrivateKey):
            sig = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise InputError("unsupported key type for audit signatures (RSA, EC or Ed25519)")
        return base64.b64encode(sig).decode("ascii")


class Verifier:
    """Checks entry signatures against the device certificate (``mqtt.tls.cert_file``)."""

    def __init__(self, cert_file: str) -> None:
        *_, load_cert = _crypto()
        try:
            self._public = load_cert(Path(cert_file).read_bytes()).public_key()
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot load the device certificate: {exc}", path=cert_file) from None
        self.fingerprint = fingerprint(self._public)

    def __call__(self, entry_hash: str, signature: str) -> bool:
        return self.verify_bytes(bytes.fromhex(entry_hash), signature)

    def verify_head(self, device_id: str, length: int, sha256: str, signature: str) -> bool:
        return self.verify_bytes(head_statement(device_id, length, sha256), signature)

    def verify_bytes(self, data: bytes, signature: Any) -> bool:
        """False for a wrong or malformed signature (not base64, not a string): never an exception."""
        from cryptography.exceptions import InvalidSignature

        hashes, _, ec, ed25519, padding, rsa, _ = _crypto()
        pub = self._public
        try:
            sig = base64.b64decode(str(signature).encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            return False
        try:
            if isinstance(pub, ed25519.Ed25519PublicKey):
                pub.verify(sig, data)
            elif isinstance(pub, ec.EllipticCurvePublicKey):
                pub.verify(sig, data, ec.ECDSA(hashes.SHA256()))
            elif isinstance(pub, rsa.RSAPublicKey):
                pub.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
            else:
                return False
        except (InvalidSignature, ValueError):
            return False
        return True


def fingerprint(public_key: Any) -> str:
    """``sha256:<hex>`` of the public key's DER SubjectPublicKeyInfo (what entries name as ``key``)."""
    _, serialization, *_ = _crypto()
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def head_statement(device_id: str, length: int, sha256: str) -> bytes:
    """The bytes a published head's signature covers (docs/control-room.md shows how to check it)."""
    return f"crowd-appliance-audit-head/1 {device_id} {length} {sha256}".encode()
