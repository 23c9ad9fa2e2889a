"""Optional signatures on audit entries with the device's mTLS key (verifiable with its certificate).

A signature binds an entry's hash to the device key, so someone who can write the log file but not
read the key cannot forge a chain that verifies against the certificate. RSA, EC and Ed25519 keys.
"""

from __future__ import annotations

import base64
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

    def sign(self, entry_hash: str) -> str:
        hashes, _, ec, ed25519, padding, rsa, _ = _crypto()
        data = bytes.fromhex(entry_hash)
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

    def __call__(self, entry_hash: str, signature: str) -> bool:
        from cryptography.exceptions import InvalidSignature

        hashes, _, ec, ed25519, padding, rsa, _ = _crypto()
        data, sig, pub = bytes.fromhex(entry_hash), base64.b64decode(signature), self._public
        try:
            if isinstance(pub, ed25519.Ed25519PublicKey):
                pub.verify(sig, data)
            elif isinstance(pub, ec.EllipticCurvePublicKey):
                pub.verify(sig, data, ec.ECDSA(hashes.SHA256()))
            elif isinstance(pub, rsa.RSAPublicKey):
                pub.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
            else:
                return False
        except InvalidSignature:
            return False
        return True
