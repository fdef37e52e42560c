"""Private keys for tests: account keys, service keys, listener keys."""

import base64
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

_CURVES: dict[str, ec.EllipticCurve] = {
    "p256": ec.SECP256R1(),
    "p384": ec.SECP384R1(),
    "p521": ec.SECP521R1(),
}


def generate_key(kind: str) -> Any:
    """A fresh private key: rsa2048 (any rsaBITS), p256, p384, p521 or ed25519."""
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(_CURVES[kind])


def write_key(path: Path, key: Any, passphrase: bytes | None = None) -> None:
    """KEY as PKCS#8 PEM, in a file created with mode 0600."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    path.touch(mode=0o600)
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )


def new_key_file(path: Path, kind: str, passphrase: bytes | None = None) -> Any:
    key = generate_key(kind)
    write_key(path, key, passphrase)
    return key


def _b64url_uint(value: int, size: int | None = None) -> str:
    length = size if size is not None else (value.bit_length() + 7) // 8
    return base64.urlsafe_b64encode(value.to_bytes(length, "big")).rstrip(b"=").decode()


def public_jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> dict[str, str]:
    """The public JWK (RFC 7518) of KEY, with only the required members."""
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.public_key().public_numbers()
        return {"kty": "RSA", "n": _b64url_uint(numbers.n), "e": _b64url_uint(numbers.e)}
    point = key.public_key().public_numbers()
    size = (key.curve.key_size + 7) // 8
    crv = {"secp256r1": "P-256", "secp384r1": "P-384"}[key.curve.name]
    return {
        "kty": "EC",
        "crv": crv,
        "x": _b64url_uint(point.x, size),
        "y": _b64url_uint(point.y, size),
    }
