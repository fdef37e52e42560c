"""The lacme master's X.509 work, with `cryptography` only (never openssl(1)).

It loads service keys and makes CSRs from a checked certificate section
(lacme.config.CertSection), decides from an installed certificate's expiry
whether to renew, checks the chain the unprivileged client brings back from
the network before anything is written (it must be PEM certificates and
nothing else, the leaf must carry the CSR's public key, and unless `CAfile` is
empty it must verify as a TLS server certificate for every identifier
against the roots in `CAfile`), and installs certificates atomically.

Every refusal is a CertificateError whose message is one line.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from collections.abc import Sequence
from typing import TypeAlias

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from lacme import files, private_keys, renewal
from lacme.accountd_protocol import b64url_encode
from lacme.client_contract import ContractError, split_chain
from lacme.config import CertSection, Percent, resolve_owner
from lacme.errors import CertificateError as CertificateError
from lacme.parsing import is_ip_address

ServiceKey: TypeAlias = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
    | dsa.DSAPrivateKey
)
_SERVICE_KEY_TYPES = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
    dsa.DSAPrivateKey,
)
_HASHES: dict[str, hashes.SHA256 | hashes.SHA384 | hashes.SHA512] = {
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}
# OpenSSL's short and long names of every attribute type NameOID has, as
# `openssl req -subj` takes them; matched case-insensitively.
_ATTRIBUTE_TYPES: dict[str, x509.ObjectIdentifier] = {
    name.lower(): oid
    for oid, names in (
        (NameOID.COMMON_NAME, ("CN", "commonName")),
        (NameOID.COUNTRY_NAME, ("C", "countryName")),
        (NameOID.LOCALITY_NAME, ("L", "localityName")),
        (NameOID.STATE_OR_PROVINCE_NAME, ("ST", "stateOrProvinceName")),
        (NameOID.STREET_ADDRESS, ("street", "streetAddress")),
        (NameOID.ORGANIZATION_NAME, ("O", "organizationName")),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, ("OU", "organizationalUnitName")),
        (NameOID.ORGANIZATION_IDENTIFIER, ("organizationIdentifier",)),
        (NameOID.SERIAL_NUMBER, ("serialNumber",)),
        (NameOID.SURNAME, ("SN", "surname")),
        (NameOID.GIVEN_NAME, ("GN", "givenName")),
        (NameOID.INITIALS, ("initials",)),
        (NameOID.TITLE, ("title",)),
        (NameOID.GENERATION_QUALIFIER, ("generationQualifier",)),
        (NameOID.X500_UNIQUE_IDENTIFIER, ("x500UniqueIdentifier",)),
        (NameOID.DN_QUALIFIER, ("dnQualifier",)),
        (NameOID.PSEUDONYM, ("pseudonym",)),
        (NameOID.USER_ID, ("UID", "userId")),
        (NameOID.DOMAIN_COMPONENT, ("DC", "domainComponent")),
        (NameOID.EMAIL_ADDRESS, ("emailAddress",)),
        (NameOID.JURISDICTION_COUNTRY_NAME, ("jurisdictionC", "jurisdictionCountryName")),
        (NameOID.JURISDICTION_LOCALITY_NAME, ("jurisdictionL", "jurisdictionLocalityName")),
        (
            NameOID.JURISDICTION_STATE_OR_PROVINCE_NAME,
            ("jurisdictionST", "jurisdictionStateOrProvinceName"),
        ),
        (NameOID.BUSINESS_CATEGORY, ("businessCategory",)),
        (NameOID.POSTAL_ADDRESS, ("postalAddress",)),
        (NameOID.POSTAL_CODE, ("postalCode",)),
        (NameOID.UNSTRUCTURED_NAME, ("unstructuredName",)),
        (NameOID.INN, ("INN",)),
        (NameOID.OGRN, ("OGRN",)),
        (NameOID.SNILS, ("SNILS",)),
    )
    for name in names
}
_KEY_USAGE_ARGUMENTS = {
    "digitalSignature": "digital_signature",
    "nonRepudiation": "content_commitment",
    "keyEncipherment": "key_encipherment",
    "dataEncipherment": "data_encipherment",
    "keyAgreement": "key_agreement",
    "keyCertSign": "key_cert_sign",
    "cRLSign": "crl_sign",
    "encipherOnly": "encipher_only",
    "decipherOnly": "decipher_only",
}
# FIPS 186 names, which CAs use, of the curves cryptography names after SEC 2.
_NIST_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
_DOTTED_OID = re.compile(r"[0-2](?:\.[0-9]+)+", re.ASCII)
# The verifier takes host names, not wildcards: a wildcard identifier is
# verified for the name with this label in its place, which a certificate
# only covers through the wildcard (no order names it).
_WILDCARD_PROBE = "lacme-wildcard-probe"


def load_key(path: str) -> ServiceKey:
    """The unencrypted service key at PATH (PEM or DER), of a type CSRs can be signed with."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CertificateError(f"can't read certificate-key {path}: {e.strerror}") from e
    try:
        if data.lstrip().startswith(b"-----"):
            key = private_keys.load_pem(data, None)
        else:
            key = private_keys.load_der(data)
    except TypeError:
        raise CertificateError(f"certificate-key {path} is encrypted") from None
    except private_keys.MismatchedKeyError:
        raise CertificateError(
            f"certificate-key {path}: its private half does not sign for its public half"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise CertificateError(f"certificate-key {path} is not a private key") from None
    if not isinstance(key, _SERVICE_KEY_TYPES):
        raise CertificateError(
            f"certificate-key {path}: {type(key).__name__} keys can't sign a CSR"
        )
    return key


def der(item: x509.Certificate | x509.CertificateSigningRequest) -> bytes:
    return item.public_bytes(serialization.Encoding.DER)


def key_type(key: ServiceKey) -> str:
    """KEY's algorithm and size or curve, as CAs' key policies name them:
    `RSA 2048`, `ECDSA P-256`, `Ed25519`..."""
    if isinstance(key, rsa.RSAPrivateKey):
        return f"RSA {key.key_size}"
    if isinstance(key, dsa.DSAPrivateKey):
        return f"DSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"ECDSA {_NIST_CURVES.get(key.curve.name, key.curve.name)}"
    return "Ed25519" if isinstance(key, ed25519.Ed25519PrivateKey) else "Ed448"


def subject_name(rdns: Sequence[Sequence[tuple[str, str]]]) -> x509.Name:
    """The Name of a parsed `subject` (lacme.config.parse_subject)."""
    names: list[x509.RelativeDistinguishedName] = []
    for rdn in rdns:
        attributes: list[x509.NameAttribute[str]] = []
        for attr_type, value in rdn:
            oid = _ATTRIBUTE_TYPES.get(attr_type.lower())
            try:
                if oid is None and _DOTTED_OID.fullmatch(attr_type):
                    oid = x509.ObjectIdentifier(attr_type)
                if oid is None:
                    raise CertificateError(f"subject: unknown attribute type {attr_type!r}")
                attributes.append(x509.NameAttribute(oid, value))
            except ValueError as e:
                raise CertificateError(f"subject: {attr_type}={value}: {e}") from e
        try:
            names.append(x509.RelativeDistinguishedName(attributes))
        except ValueError as e:
            raise CertificateError(f"subject: {e}") from e
    return x509.Name(names)


def build_csr(section: CertSection, key: ServiceKey) -> x509.CertificateSigningRequest:
    """The CSR of SECTION, signed with KEY, with the extensions lacme 0.8.2 asks for."""
    subject = subject_name(section.subject)
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if section.key_usage:
        usages = {_KEY_USAGE_ARGUMENTS[name] for name in section.key_usage}
        flags = {argument: argument in usages for argument in _KEY_USAGE_ARGUMENTS.values()}
        builder = builder.add_extension(x509.KeyUsage(**flags), critical=True)
    # Every identifier, the CN too: CAs match the order's identifiers against
    # these names (the CA/Browser Forum wants the CN among them), and RFC 5280
    # 4.2.1.6 makes the extension critical when the subject is empty.
    builder = builder.add_extension(
        x509.SubjectAlternativeName([general_name(name) for name in section.identifiers]),
        critical=len(subject) == 0,
    )
    algorithm: hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        if section.hash is not None:
            raise CertificateError(f"hash = {section.hash}: Ed25519 and Ed448 keys take no hash")
        algorithm = None
    else:
        algorithm = _HASHES[section.hash or "sha256"]
    try:
        return builder.sign(key, algorithm)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise CertificateError(f"can't sign the CSR: {e}") from e


def general_name(identifier: str) -> x509.DNSName | x509.IPAddress:
    """An identifier of a CertSection as a subjectAltName entry."""
    if is_ip_address(identifier):
        return x509.IPAddress(ipaddress.ip_address(identifier))
    return x509.DNSName(identifier)


def _validity(path: str) -> tuple[datetime.datetime, datetime.datetime] | None:
    try:
        with open(path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
    except (OSError, ValueError):
        return None
    return cert.not_valid_before_utc, cert.not_valid_after_utc


def valid_until(
    path: str, min_days: int | Percent, now: datetime.datetime
) -> datetime.datetime | None:
    """The expiry of the certificate at PATH when MIN_DAYS does not renew
    it at NOW yet (lacme.renewal), so that renewal can wait; else None."""
    validity = _validity(path)
    if validity is None:
        return None
    not_before, expiry = validity
    if renewal.by_min_days(not_before, expiry, min_days).due(now, datetime.timedelta(0)):
        return None
    return expiry


def parse_chain(pem: bytes) -> list[x509.Certificate]:
    """The certificates of the PEM chain the client returned, leaf first;
    anything but PEM certificates (and whitespace between them) is refused."""
    try:
        blocks = split_chain(pem)
    except ContractError:
        raise CertificateError("the ACME server's answer is not a PEM certificate chain") from None
    try:
        return [x509.load_pem_x509_certificate(block) for block in blocks]
    except ValueError as e:
        raise CertificateError(f"the ACME server's chain holds a broken certificate: {e}") from e


def _spki(key: x509.Certificate | x509.CertificateSigningRequest | ServiceKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_roots(cafile: str) -> list[x509.Certificate]:
    try:
        with open(cafile, "rb") as f:
            roots = x509.load_pem_x509_certificates(f.read())
    except OSError as e:
        raise CertificateError(f"can't read CAfile {cafile}: {e.strerror}") from e
    except ValueError:
        raise CertificateError(f"CAfile {cafile} holds no PEM certificate") from None
    return roots


def installation_problems(section: CertSection) -> list[str]:
    """What would stop SECTION's certificate from being verified and
    installed once issued, each in a line naming the setting: checked before
    ordering, so that the CA's work (and rate limits) is not spent on a
    certificate that would be thrown away."""
    problems: list[str] = []
    if section.cafile is not None:
        try:
            load_roots(section.cafile)
        except CertificateError as e:
            problems.append(str(e))
    for option, path in (
        ("certificate", section.certificate),
        ("certificate-chain", section.certificate_chain),
    ):
        if path is None:
            continue
        directory = os.path.dirname(path) or "."
        if not os.path.isdir(directory):
            problems.append(f"{option} {path}: no directory {directory}")
        elif not os.access(directory, os.W_OK | os.X_OK):
            problems.append(f"{option} {path}: can't write in {directory}")
        elif os.path.isdir(path):
            problems.append(f"{option} {path} is a directory")
    return problems


def check_chain(
    chain: Sequence[x509.Certificate],
    key: x509.CertificateSigningRequest | ServiceKey,
    section: CertSection,
    now: datetime.datetime,
) -> list[x509.Certificate]:
    """What of CHAIN to install: refuse it unless its leaf holds the public
    key of KEY (the CSR, or the section's key) and, unless `CAfile` is
    empty, it verifies for TLS server use and every identifier, with the
    rest of CHAIN as untrusted intermediates.  Only the path the verifier
    built is installed, without its trust anchor: whatever else came (other
    certificates, copies) is not the CA's chain.  Without CAfile, CHAIN
    without copies."""
    leaf = chain[0]
    if _spki(leaf) != _spki(key):
        raise CertificateError("the issued certificate is not for the section's key")
    if section.cafile is None:
        unique = {cert.public_bytes(serialization.Encoding.DER): cert for cert in chain}
        return list(unique.values())
    verifier_builder = PolicyBuilder().store(Store(load_roots(section.cafile))).time(now)
    path: list[x509.Certificate] = []
    for identifier in section.identifiers:
        name = identifier.replace("*", _WILDCARD_PROBE, 1)
        verifier = verifier_builder.build_server_verifier(general_name(name))
        try:
            path = verifier.verify(leaf, list(chain[1:]))
        except VerificationError as e:
            message = " ".join(str(e).split())
            raise CertificateError(
                f"the issued certificate does not verify for {identifier} "
                f"against {section.cafile}: {message}"
            ) from e
    return path[:-1] if len(path) > 1 else path


def pem(certificates: Sequence[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def _umask() -> int:
    # The only way to read it is to set it; the master is single-threaded.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def install(written: Sequence[tuple[str, bytes]], mode: int | None, owner: str | None) -> None:
    """Write each (path, content) of FILES atomically.  Every temporary file
    is complete (content, mode, owner, fsync) before the first rename, so a
    failure leaves the old files as they were and no temporary file behind;
    only a rename, in the directory where its temporary file already is,
    can still fail after another one."""
    if mode is None:
        mode = 0o644 & ~_umask()
    try:
        uid, gid = resolve_owner(owner) if owner is not None else (-1, -1)
    except ValueError as e:
        raise CertificateError(f"owner = {owner}: {e}") from e
    staged: list[tuple[str, str]] = []
    try:
        for path, data in written:
            if os.path.isdir(path):
                raise CertificateError(f"can't write {path}: it is a directory")
            try:
                staged.append((files.stage(path, data, mode, uid, gid), path))
            except OSError as e:
                raise CertificateError(f"can't write {path}: {e.strerror or e}") from e
        while staged:
            temporary, path = staged[0]
            try:
                os.rename(temporary, path)
            except OSError as e:
                raise CertificateError(f"can't install {path}: {e.strerror or e}") from e
            staged.pop(0)
    finally:
        for temporary, _ in staged:
            os.unlink(temporary)
    files.sync_directories(path for path, _ in written)


def sha256_hex(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex()


def fingerprint(certificate: x509.Certificate) -> str:
    """As `openssl x509 -fingerprint -sha256` prints it."""
    digest = sha256_hex(certificate).upper()
    return "SHA256 Fingerprint=" + ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def summary(certificate: x509.Certificate) -> str:
    """Subject, names, issuer, serial and validity, on one line."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = ", ".join(
            [
                *san.get_values_for_type(x509.DNSName),
                *map(str, san.get_values_for_type(x509.IPAddress)),
            ]
        )
    except (x509.ExtensionNotFound, ValueError):
        names = ""
    when = "%Y-%m-%d %H:%M:%S UTC"
    return (
        f"subject {certificate.subject.rfc4514_string() or '(empty)'}"
        f"{f' ({names})' if names else ''}, issuer {certificate.issuer.rfc4514_string()}, "
        f"serial {certificate.serial_number:x}, "
        f"valid {certificate.not_valid_before_utc.strftime(when)}"
        f" to {certificate.not_valid_after_utc.strftime(when)}"
    )


def read_certificate(path: str) -> x509.Certificate:
    """The first PEM certificate in PATH (a certificate or chain file)."""
    try:
        with open(path, "rb") as f:
            return x509.load_pem_x509_certificate(f.read())
    except OSError as e:
        raise CertificateError(f"can't read {path}: {e.strerror}") from e
    except ValueError:
        raise CertificateError(f"{path} holds no PEM certificate") from None


def ari_cert_id(certificate: x509.Certificate) -> str | None:
    """The certificate's ARI certID (RFC 9773 section 4.1): the base64url
    keyIdentifier of its Authority Key Identifier, a dot, and the base64url
    content octets of its DER serial number (with the leading zero a high
    bit calls for); None without a keyIdentifier, which ARI cannot name."""
    try:
        aki = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except (x509.ExtensionNotFound, ValueError):
        return None
    if not aki.key_identifier:
        return None
    serial = certificate.serial_number
    serial_octets = serial.to_bytes(serial.bit_length() // 8 + 1, "big", signed=True)
    return f"{b64url_encode(aki.key_identifier).decode()}.{b64url_encode(serial_octets).decode()}"
