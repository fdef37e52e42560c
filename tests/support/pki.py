"""Keys and certificate authorities for tests: account, service and listener
keys, a throwaway CA (root, intermediate) issuing leaves, and the TLS
material of the test servers' HTTPS listeners."""

from __future__ import annotations

import base64
import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The instant the test CAs and leaves are built around, so that a test can
# place its own times relative to theirs.
NOW = datetime.datetime.now(datetime.UTC)


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


def write_mismatched_rsa_key(path: Path) -> None:
    """An RSA 2048 key whose private exponents are off by two (they stay odd), so that it
    signs for no public key: what only a full check, or a signature, finds."""
    numbers = generate_key("rsa2048").private_numbers()
    broken = rsa.RSAPrivateNumbers(
        numbers.p,
        numbers.q,
        numbers.d + 2,
        numbers.dmp1 + 2,
        numbers.dmq1,
        numbers.iqmp,
        numbers.public_numbers,
    )
    write_key(path, broken.private_key(unsafe_skip_rsa_key_validation=True))


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


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _general_name(name: str) -> x509.GeneralName:
    """An IP address SAN for an address, a DNS name SAN otherwise."""
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


@dataclass
class IssuingCA:
    root: x509.Certificate
    root_key: ec.EllipticCurvePrivateKey
    intermediate: x509.Certificate
    intermediate_key: ec.EllipticCurvePrivateKey

    def issue(
        self,
        public_key: Any,
        names: list[str],
        *,
        not_before: datetime.datetime | None = None,
        days: float = 90,
        server_auth: bool = True,
    ) -> x509.Certificate:
        """A leaf for NAMES (DNS or IP address SANs) and PUBLIC_KEY, from the
        intermediate."""
        start = not_before or NOW - datetime.timedelta(minutes=5)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server_auth else ExtendedKeyUsageOID.CODE_SIGNING
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0]))
            .issuer_name(self.intermediate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.intermediate_key.public_key()
                ),
                critical=False,
            )
        )
        return builder.sign(self.intermediate_key, hashes.SHA256())

    def root_pem(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.PEM)

    def intermediate_pem(self) -> bytes:
        return self.intermediate.public_bytes(serialization.Encoding.PEM)


def make_ca(label: str = "lacme test") -> IssuingCA:
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name(f"{label} root")
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), False)
        .sign(root_key, hashes.SHA256())
    )
    intermediate_key = ec.generate_private_key(ec.SECP256R1())
    intermediate = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{label} intermediate"))
        .issuer_name(root_name)
        .public_key(intermediate_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(intermediate_key.public_key()), False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), False
        )
        .sign(root_key, hashes.SHA256())
    )
    return IssuingCA(root, root_key, intermediate, intermediate_key)


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def save_ca(ca: IssuingCA, directory: Path) -> None:
    """What tests/fake_client.py needs of CA, readable by the client user."""
    (directory / "root.pem").write_bytes(ca.root_pem())
    (directory / "intermediate.pem").write_bytes(ca.intermediate_pem())
    write_key(directory / "intermediate.key", ca.intermediate_key)
    for path in directory.iterdir():
        path.chmod(0o644)


def load_ca(directory: Path) -> IssuingCA:
    """The CA save_ca() wrote: its intermediate signs, so it stands for the root key too."""
    key = serialization.load_pem_private_key(
        (directory / "intermediate.key").read_bytes(), password=None
    )
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    root = x509.load_pem_x509_certificate((directory / "root.pem").read_bytes())
    intermediate = x509.load_pem_x509_certificate((directory / "intermediate.pem").read_bytes())
    return IssuingCA(root, key, intermediate, key)


def write_tls_material(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a listener certificate for localhost, 127.0.0.1 and ::1.

    Returns the paths of the CA bundle (its root, mode 0644), the listener's
    chain (leaf and intermediate) and the listener's key.
    """
    ca = make_ca("lacme test listener")
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = ca.issue(key.public_key(), ["localhost", "127.0.0.1", "::1"], days=2)
    ca_path = directory / "listener-ca.pem"
    cert_path = directory / "listener-cert.pem"
    key_path = directory / "listener-key.pem"
    ca_path.write_bytes(ca.root_pem())
    ca_path.chmod(0o644)
    cert_path.write_bytes(pem(leaf, ca.intermediate))
    write_key(key_path, key)
    return ca_path, cert_path, key_path
