"""What the master knows of a section's installed certificate beyond the
file itself, to tell whether it still matches its section.

The names and the key are in the certificate.  What it was ordered with
(`profile`, `preferred-chain`) is not: the master keeps it at installation
in CERTIFICATE.ordered.  A certificate this lacme revoked (`lacme revokeCert
FILE`) is marked in FILE.revoked with its fingerprint.  Both are small JSON
files beside the certificate, replaced or removed when it is.  A
certificate installed without them (by lacme 0.8.2, say) is judged by its
names and key only.

A certificate issued but not installed (it failed verification, or could
not be written) is kept in CERTIFICATE.issued, for the next run to install
before it orders anything: an issued certificate is never thrown away.
Nor is an order: while one is under way and its run fails (cut short, the
client killed or out of time), its URL is kept in CERTIFICATE.order for the
next run to resume, if the section still wants the same names.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from lacme import files
from lacme.certificate import CertificateError, ServiceKey
from lacme.client_contract import ContractError, split_chain
from lacme.config import CertSection

ORDERED_SUFFIX = ".ordered"
REVOKED_SUFFIX = ".revoked"
KEPT_SUFFIX = ".issued"
ORDER_SUFFIX = ".order"
# A chain is a few KiB; a larger file is not one this lacme kept.
MAX_KEPT = 1 << 20


@dataclass(frozen=True)
class Ordered:
    """The settings a certificate was ordered with."""

    profile: str | None
    preferred_chain: str | None


def ordered_path(certificate_path: str) -> str:
    return certificate_path + ORDERED_SUFFIX


def revoked_path(certificate_path: str) -> str:
    return certificate_path + REVOKED_SUFFIX


def kept_path(certificate_path: str) -> str:
    return certificate_path + KEPT_SUFFIX


def save_kept(path: str, chain: Sequence[x509.Certificate]) -> None:
    """Keep CHAIN, issued but not installed, at PATH; OSError if that fails."""
    pem = b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in chain)
    files.replace(path, pem, 0o644)


def load_kept(path: str) -> list[x509.Certificate] | None:
    """The chain kept at PATH, if there is one; CertificateError if PATH
    holds something else."""
    try:
        with open(path, "rb") as f:
            pem = f.read(MAX_KEPT + 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CertificateError(f"can't read {path}: {e.strerror}") from e
    if len(pem) > MAX_KEPT:
        raise CertificateError(f"{path} is over {MAX_KEPT} bytes: no chain lacme kept")
    try:
        return [x509.load_pem_x509_certificate(block) for block in split_chain(pem)]
    except (ContractError, ValueError):
        raise CertificateError(f"{path} holds no chain of PEM certificates") from None


def kept_for(
    section: CertSection, key: ServiceKey, now: datetime.datetime
) -> tuple[list[x509.Certificate] | None, str | None]:
    """The chain kept for SECTION, whose key is KEY, if the next run would
    install it at NOW; else None, and why it discards the file kept (None
    when there is none)."""
    try:
        chain = load_kept(kept_path(section.certificate_paths()[0]))
    except CertificateError as e:
        return None, str(e)
    if chain is None:
        return None, None
    # What the installed certificate was ordered with, or whether it was
    # revoked, says nothing of the kept one: its names and key do.
    reason = not_for(section, chain[0], key)
    if reason is None and chain[0].not_valid_after_utc <= now:
        reason = "it has expired"
    return (None, reason) if reason is not None else (chain, None)


def order_path(certificate_path: str) -> str:
    return certificate_path + ORDER_SUFFIX


def save_order(path: str, url: str, identifiers: Sequence[str]) -> None:
    """Record at PATH the order at URL for IDENTIFIERS; OSError if that fails."""
    data = {"url": url, "identifiers": list(identifiers)}
    files.replace(path, json.dumps(data).encode() + b"\n", 0o644)


def load_order(path: str, identifiers: Sequence[str]) -> str | None:
    """The URL of the order recorded at PATH, if it is for IDENTIFIERS."""
    data = files.read_json_object(path)
    if data is None or sorted(map(str, data.get("identifiers") or ())) != sorted(identifiers):
        return None
    url = data.get("url")
    return url if isinstance(url, str) and url.startswith(("https://", "http://")) else None


def _optional_text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def save_ordered(certificate_path: str, section: CertSection) -> None:
    """Record what SECTION's certificate at CERTIFICATE_PATH was ordered
    with; OSError if that fails."""
    data = {"profile": section.profile, "preferredChain": section.preferred_chain}
    files.replace(ordered_path(certificate_path), json.dumps(data).encode() + b"\n", 0o644)


def load_ordered(certificate_path: str) -> Ordered | None:
    """What the certificate at CERTIFICATE_PATH was ordered with, if known."""
    data = files.read_json_object(ordered_path(certificate_path))
    if data is None:
        return None
    return Ordered(_optional_text(data, "profile"), _optional_text(data, "preferredChain"))


def _digest(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def save_revoked(certificate_path: str, cert: x509.Certificate, now: datetime.datetime) -> None:
    """Mark CERT, read from CERTIFICATE_PATH, as revoked by this lacme at NOW;
    OSError if that fails."""
    data = {"sha256": _digest(cert), "revoked": now.isoformat()}
    files.replace(revoked_path(certificate_path), json.dumps(data).encode() + b"\n", 0o644)


def revoked(certificate_path: str, cert: x509.Certificate) -> str | None:
    """When this lacme revoked CERT, installed at CERTIFICATE_PATH, as
    recorded; None if it did not."""
    data = files.read_json_object(revoked_path(certificate_path))
    if data is None or data.get("sha256") != _digest(cert):
        return None
    try:
        when = datetime.datetime.fromisoformat(str(data.get("revoked")))
    except ValueError:
        return "at a time not recorded"
    return f"on {when:%Y-%m-%d %H:%M:%S} UTC"


def certificate_names(cert: x509.Certificate) -> set[str]:
    """The identifiers CERT is for, as a CertSection spells them: DNS names
    in lower case, IP addresses in RFC 5952 form."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return set()
    return {name.lower() for name in san.get_values_for_type(x509.DNSName)} | {
        str(address) for address in san.get_values_for_type(x509.IPAddress)
    }


def _spki(key: x509.Certificate | ServiceKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def not_for(section: CertSection, cert: x509.Certificate, key: ServiceKey) -> str | None:
    """Why CERT is not a certificate for SECTION's names and key KEY; None
    if it is."""
    have = certificate_names(cert)
    want = set(section.identifiers)
    if have != want:
        added = [f"+ {name}" for name in section.identifiers if name not in have]
        removed = [f"- {name}" for name in sorted(have - want)]
        return f"names changed: {', '.join(added + removed)}"
    if _spki(cert) != _spki(key):
        return f"certificate-key {section.certificate_key} is not the certificate's key"
    return None


def mismatch(section: CertSection, cert: x509.Certificate, key: ServiceKey) -> str | None:
    """Why CERT, the certificate installed for SECTION, whose key is KEY,
    no longer matches the section; None if it does."""
    reason = not_for(section, cert, key)
    if reason is not None:
        return reason
    paths = section.certificate_paths()
    ordered = load_ordered(paths[0])
    if ordered is not None:
        for option, was, now in (
            ("profile", ordered.profile, section.profile),
            ("preferred-chain", ordered.preferred_chain, section.preferred_chain),
        ):
            if was != now:
                return f"{option} changed: {was or '(none)'} -> {now or '(none)'}"
    for path in paths:
        when = revoked(path, cert)
        if when is not None:
            return f"revoked with `lacme revokeCert {path}` {when}"
    return None
