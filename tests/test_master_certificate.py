"""Unit tests of lacme.certificate: service keys, CSRs, chain checks, installation."""

from __future__ import annotations

import datetime
import grp
import os
import pwd
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, x25519
from cryptography.x509.oid import ExtensionOID, NameOID

from lacme import certificate, config
from lacme.certificate import CertificateError
from support.pki import (
    NOW,
    IssuingCA,
    generate_key,
    make_ca,
    new_key_file,
    pem,
    write_key,
    write_mismatched_rsa_key,
)


def section(**overrides: Any) -> config.CertSection:
    values: dict[str, Any] = {
        "name": "www",
        "filename": "/etc/lacme/lacme-certs.conf",
        "certificate_key": "/k",
        "certificate": "/c",
        "certificate_chain": None,
        "min_days": None,
        "cafile": None,
        "hash": None,
        "key_usage": (),
        "subject": ((("CN", "www.example.org"),),),
        "owner": None,
        "mode": None,
        "notify": None,
        "identifiers": ("www.example.org", "example.org"),
    }
    values.update(overrides)
    return config.CertSection(**values)


# --- service keys --------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize("kind", ["rsa2048", "p256", "p384", "p521", "ed25519"])
def test_load_key_types(tmp_path: Path, kind: str) -> None:
    key = new_key_file(tmp_path / "k.pem", kind)
    loaded = certificate.load_key(str(tmp_path / "k.pem"))
    assert loaded.public_key() == key.public_key()


@pytest.mark.unit
def test_load_key_ed448_dsa_and_der(tmp_path: Path) -> None:
    for key in (ed448.Ed448PrivateKey.generate(), dsa.generate_private_key(2048)):
        write_key(tmp_path / "k.pem", key)
        assert certificate.load_key(str(tmp_path / "k.pem")).public_key() == key.public_key()
    key = generate_key("p256")
    (tmp_path / "k.der").write_bytes(
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    assert certificate.load_key(str(tmp_path / "k.der")).public_key() == key.public_key()


@pytest.mark.unit
def test_load_key_refusals(tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match=r"can't read certificate-key .*/none: No such"):
        certificate.load_key(str(tmp_path / "none"))
    new_key_file(tmp_path / "enc.pem", "p256", passphrase=b"secret")
    with pytest.raises(CertificateError, match=r"certificate-key .*/enc\.pem is encrypted$"):
        certificate.load_key(str(tmp_path / "enc.pem"))
    (tmp_path / "garbage").write_bytes(b"-----BEGIN PRIVATE KEY-----\nnope\n")
    with pytest.raises(CertificateError, match=r"garbage is not a private key$"):
        certificate.load_key(str(tmp_path / "garbage"))
    write_key(tmp_path / "x25519.pem", x25519.X25519PrivateKey.generate())
    with pytest.raises(CertificateError, match=r"X25519PrivateKey keys can't sign a CSR$"):
        certificate.load_key(str(tmp_path / "x25519.pem"))
    write_mismatched_rsa_key(tmp_path / "mismatched.pem")
    with pytest.raises(
        CertificateError,
        match=r"mismatched\.pem: its private half does not sign for its public half$",
    ):
        certificate.load_key(str(tmp_path / "mismatched.pem"))


# --- CSRs --------------------------------------------------------------------------


@pytest.mark.unit
def test_csr_as_lacme_0_8_2_makes_it() -> None:
    key = generate_key("rsa2048")
    csr = certificate.build_csr(
        section(
            subject=(
                (("C", "FR"),),
                (("ST", "Île-de-France"), ("L", "Paris")),
                (("O", "Acme"),),
                (("OU", "Web"),),
                (("emailAddress", "hostmaster@example.org"),),
                (("serialNumber", "42"),),
                (("2.5.4.12", "Dr"),),
                (("commonName", "www.example.org"),),
            ),
            key_usage=("digitalSignature", "keyEncipherment"),
            hash="sha384",
        ),
        key,
    )
    assert csr.is_signature_valid
    assert isinstance(csr.signature_hash_algorithm, hashes.SHA384)
    assert csr.subject.rfc4514_string() == (
        "CN=www.example.org,2.5.4.12=Dr,2.5.4.5=42,1.2.840.113549.1.9.1=hostmaster@example.org,"
        "OU=Web,O=Acme,L=Paris+ST=Île-de-France,C=FR"
    )
    assert csr.public_key() == key.public_key()
    ext = {e.oid: e for e in csr.extensions}
    basic = ext[ExtensionOID.BASIC_CONSTRAINTS]
    assert basic.critical
    assert basic.value == x509.BasicConstraints(ca=False, path_length=None)
    assert ext[ExtensionOID.SUBJECT_KEY_IDENTIFIER].value == (
        x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    )
    usage = ext[ExtensionOID.KEY_USAGE]
    assert usage.critical
    assert usage.value.digital_signature
    assert usage.value.key_encipherment
    assert not usage.value.key_agreement
    san = ext[ExtensionOID.SUBJECT_ALTERNATIVE_NAME]
    assert not san.critical
    assert san.value.get_values_for_type(x509.DNSName) == ["www.example.org", "example.org"]
    assert ExtensionOID.TLS_FEATURE not in ext


@pytest.mark.unit
def test_csr_defaults_and_key_types() -> None:
    for kind in ("p256", "p384", "rsa4096"):
        csr = certificate.build_csr(section(), generate_key(kind))
        assert isinstance(csr.signature_hash_algorithm, hashes.SHA256)
        assert {e.oid for e in csr.extensions} == {
            ExtensionOID.BASIC_CONSTRAINTS,
            ExtensionOID.SUBJECT_KEY_IDENTIFIER,
            ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        }
    csr = certificate.build_csr(section(), generate_key("ed25519"))
    assert csr.is_signature_valid
    assert csr.signature_hash_algorithm is None


@pytest.mark.unit
def test_csr_names_the_cn_in_its_san_too() -> None:
    csr = certificate.build_csr(
        section(subject=((("CN", "Www.Example.org"),),), identifiers=("www.example.org",)),
        generate_key("p256"),
    )
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert not san.critical
    assert san.value.get_values_for_type(x509.DNSName) == ["www.example.org"]


@pytest.mark.unit
def test_csr_with_empty_subject_has_a_critical_san() -> None:
    csr = certificate.build_csr(section(subject=()), generate_key("p256"))
    assert len(csr.subject) == 0
    assert csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical


@pytest.mark.process
@pytest.mark.debian("openssl")
def test_csr_is_what_openssl_reads() -> None:
    csr = certificate.build_csr(section(key_usage=("digitalSignature",)), generate_key("p256"))
    text = subprocess.run(
        ["openssl", "req", "-inform", "DER", "-noout", "-text", "-verify"],
        input=csr.public_bytes(serialization.Encoding.DER),
        capture_output=True,
        check=True,
    )
    out = text.stdout.decode()
    assert "CA:FALSE" in out
    assert "Digital Signature" in out
    assert "DNS:www.example.org" in out


@pytest.mark.unit
@pytest.mark.parametrize(
    ("overrides", "kind", "message"),
    [
        ({"subject": ((("XX", "y"),),)}, "p256", r"^subject: unknown attribute type 'XX'$"),
        ({"subject": ((("C", "FRA"),),)}, "p256", r"^subject: C=FRA: .*length must be"),
        (
            {"subject": ((("2.5.4.3.99999999999999999999999999999999999999999", "x"),),)},
            "p256",
            r"^subject: 2\.5\.4\.3\.9+=x: ",
        ),
        ({"hash": "sha256"}, "ed25519", r"^hash = sha256: Ed25519 and Ed448 keys take no hash$"),
    ],
)
def test_csr_refusals(overrides: dict[str, Any], kind: str, message: str) -> None:
    with pytest.raises(CertificateError, match=message):
        certificate.build_csr(section(**overrides), generate_key(kind))


# --- renewal ---------------------------------------------------------------------


@pytest.mark.unit
def test_valid_until(tmp_path: Path, ca: IssuingCA) -> None:
    key = generate_key("p256")
    cert = ca.issue(key.public_key(), ["www.example.org"], not_before=NOW, days=30)
    path = tmp_path / "cert.pem"
    path.write_bytes(pem(cert, ca.intermediate))
    expiry = cert.not_valid_after_utc
    assert certificate.valid_until(str(path), 21, NOW) == expiry
    assert certificate.valid_until(str(path), 0, NOW) == expiry
    # Days count for a third of the lifetime at most (tests/test_renewal_timing.py).
    assert certificate.valid_until(str(path), 30, NOW + datetime.timedelta(days=20)) is None
    assert certificate.valid_until(str(path), -1, NOW) is None
    assert certificate.valid_until(str(path), 0, expiry) is None
    assert certificate.valid_until(str(tmp_path / "missing"), 21, NOW) is None
    (tmp_path / "garbage").write_bytes(b"garbage")
    assert certificate.valid_until(str(tmp_path / "garbage"), 21, NOW) is None


# --- the chain from the client ----------------------------------------------------


@pytest.mark.unit
def test_parse_chain(ca: IssuingCA) -> None:
    leaf = ca.issue(generate_key("p256").public_key(), ["www.example.org"])
    assert certificate.parse_chain(pem(leaf, ca.intermediate)) == [leaf, ca.intermediate]
    assert certificate.parse_chain(b"\n" + pem(leaf).replace(b"\n", b"\r\n") + b"\n\n") == [leaf]


@pytest.mark.unit
@pytest.mark.parametrize(
    "mangle",
    [
        lambda chain: b"",
        lambda chain: b"\n \n",
        lambda chain: b"garbage",
        lambda chain: b"<html>500</html>" + chain,
        lambda chain: chain + b"trailing text\n",
        lambda chain: chain.replace(b"CERTIFICATE", b"PRIVATE KEY"),
        lambda chain: chain[:-40] + b"\n-----END CERTIFICATE-----\n",
        lambda chain: chain.replace(b"-----END CERTIFICATE-----", b""),
        lambda chain: b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ],
)
def test_parse_chain_refuses_anything_else(ca: IssuingCA, mangle: Any) -> None:
    leaf = ca.issue(generate_key("p256").public_key(), ["www.example.org"])
    with pytest.raises(CertificateError, match=r"^the ACME server's "):
        certificate.parse_chain(mangle(pem(leaf, ca.intermediate)))


@pytest.fixture
def cafile(tmp_path: Path, ca: IssuingCA) -> str:
    path = tmp_path / "roots.pem"
    # Other roots in the bundle do not matter.
    path.write_bytes(make_ca("other").root_pem() + ca.root_pem())
    return str(path)


@pytest.mark.unit
def test_check_chain_accepts_a_good_chain(ca: IssuingCA, cafile: str) -> None:
    key = generate_key("rsa2048")
    csr = certificate.build_csr(section(cafile=cafile), key)
    chain = [ca.issue(key.public_key(), ["www.example.org", "example.org"]), ca.intermediate]
    assert certificate.check_chain(chain, csr, section(cafile=cafile), NOW) == chain


@pytest.mark.unit
def test_check_chain_keeps_only_the_verified_path(ca: IssuingCA, cafile: str) -> None:
    """What else came with the leaf (another CA's certificates, copies, the
    root itself) is not installed: the path the verifier built, without its
    trust anchor, is."""
    key = generate_key("p256")
    csr = certificate.build_csr(section(cafile=cafile), key)
    leaf = ca.issue(key.public_key(), ["www.example.org", "example.org"])
    foreign = make_ca("foreign")
    padded = [leaf, foreign.intermediate, ca.intermediate, ca.root, *[ca.intermediate] * 50]
    assert certificate.check_chain(padded, csr, section(cafile=cafile), NOW) == [
        leaf,
        ca.intermediate,
    ]
    # Without verification, the chain as it came but for copies.
    assert certificate.check_chain(padded, csr, section(cafile=None), NOW) == [
        leaf,
        foreign.intermediate,
        ca.intermediate,
        ca.root,
    ]


@pytest.mark.unit
def test_wildcards_in_the_csr_and_the_chain(ca: IssuingCA, cafile: str) -> None:
    key = generate_key("p256")
    wildcard = section(cafile=cafile, identifiers=("*.example.org", "example.org"))
    csr = certificate.build_csr(wildcard, key)
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["*.example.org", "example.org"]
    chain = [ca.issue(key.public_key(), ["*.example.org", "example.org"]), ca.intermediate]
    certificate.check_chain(chain, csr, wildcard, NOW)
    # Names under the wildcard are not the wildcard.
    for names in (["example.org", "www.example.org"], ["example.org", "*.www.example.org"]):
        chain = [ca.issue(key.public_key(), names), ca.intermediate]
        with pytest.raises(CertificateError, match=r"does not verify for \*\.example\.org "):
            certificate.check_chain(chain, csr, wildcard, NOW)


@pytest.mark.unit
def test_check_chain_refusals(ca: IssuingCA, cafile: str) -> None:
    key = generate_key("p256")
    good = section(cafile=cafile)
    csr = certificate.build_csr(good, key)
    names = ["www.example.org", "example.org"]

    def refused(chain: list[x509.Certificate], message: str, conf: Any = good) -> None:
        with pytest.raises(CertificateError, match=message) as caught:
            certificate.check_chain(chain, csr, conf, NOW)
        assert "\n" not in str(caught.value)

    other_key = generate_key("p256").public_key()
    wrong_key = [ca.issue(other_key, names), ca.intermediate]
    refused(wrong_key, "^the issued certificate is not for the section's key$")
    # Even without verification the key must match.
    refused(wrong_key, "not for the section's key", section(cafile=None))
    rogue = make_ca("rogue")
    refused(
        [rogue.issue(key.public_key(), names), rogue.intermediate],
        r"^the issued certificate does not verify for www\.example\.org against .*roots\.pem: ",
    )
    refused([ca.issue(key.public_key(), names)], "does not verify for www.example.org")
    refused(
        [ca.issue(key.public_key(), ["www.example.org"]), ca.intermediate],
        "does not verify for example.org",
    )
    expired = ca.issue(key.public_key(), names, not_before=NOW - datetime.timedelta(days=100))
    refused([expired, ca.intermediate], "does not verify")
    refused(
        [ca.issue(key.public_key(), names, server_auth=False), ca.intermediate], "does not verify"
    )
    # The leaf as its own "intermediate" does not help, nor does a self-signed leaf.
    refused([rogue.root, ca.intermediate], "not for the section's key")


@pytest.mark.unit
def test_check_chain_cafile_problems(ca: IssuingCA, tmp_path: Path) -> None:
    key = generate_key("p256")
    chain = [ca.issue(key.public_key(), ["www.example.org", "example.org"]), ca.intermediate]
    csr = certificate.build_csr(section(), key)
    with pytest.raises(CertificateError, match=r"^can't read CAfile .*/none: No such file"):
        certificate.check_chain(chain, csr, section(cafile=str(tmp_path / "none")), NOW)
    (tmp_path / "empty.pem").write_text("")
    with pytest.raises(CertificateError, match=r"^CAfile .*/empty\.pem holds no PEM certificate$"):
        certificate.check_chain(chain, csr, section(cafile=str(tmp_path / "empty.pem")), NOW)
    # An empty CAfile setting skips verification: an unverifiable chain passes.
    certificate.check_chain(chain[:1], csr, section(cafile=None), NOW)


# --- installation --------------------------------------------------------------------


def snapshot(directory: Path) -> dict[str, tuple[bytes, int, int, int]]:
    return {
        p.name: (p.read_bytes(), p.stat().st_mode, p.stat().st_uid, p.stat().st_gid)
        for p in directory.iterdir()
        if p.is_file()
    }


@pytest.mark.unit
def test_install_new_and_replaced_files(tmp_path: Path) -> None:
    old_umask = os.umask(0o027)
    try:
        certificate.install(
            [(str(tmp_path / "a.pem"), b"A"), (str(tmp_path / "b.pem"), b"B")], None, None
        )
    finally:
        os.umask(old_umask)
    assert (tmp_path / "a.pem").read_bytes() == b"A"
    assert (tmp_path / "a.pem").stat().st_mode & 0o7777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pem", "b.pem"]
    inode = (tmp_path / "a.pem").stat().st_ino
    certificate.install([(str(tmp_path / "a.pem"), b"A2")], 0o600, None)
    assert (tmp_path / "a.pem").read_bytes() == b"A2"
    assert (tmp_path / "a.pem").stat().st_ino != inode
    assert (tmp_path / "a.pem").stat().st_mode & 0o7777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pem", "b.pem"]


@pytest.mark.process
@pytest.mark.root  # giving files away
def test_install_sets_owner_and_group(tmp_path: Path) -> None:
    certificate.install([(str(tmp_path / "a.pem"), b"A")], 0o644, None)
    inode = (tmp_path / "a.pem").stat().st_ino
    certificate.install([(str(tmp_path / "a.pem"), b"A2")], 0o600, "nobody:nogroup")
    stat = (tmp_path / "a.pem").stat()
    assert (tmp_path / "a.pem").read_bytes() == b"A2"
    assert stat.st_ino != inode
    assert stat.st_mode & 0o7777 == 0o600
    assert stat.st_uid == pwd.getpwnam("nobody").pw_uid
    assert stat.st_gid == grp.getgrnam("nogroup").gr_gid
    certificate.install([(str(tmp_path / "a.pem"), b"A3")], 0o644, "nobody")
    assert (tmp_path / "a.pem").stat().st_gid == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pem"]


@pytest.mark.unit
def test_failed_install_changes_nothing(tmp_path: Path) -> None:
    certificate.install(
        [(str(tmp_path / "a.pem"), b"old A"), (str(tmp_path / "b.pem"), b"old B")], 0o644, None
    )
    (tmp_path / "dir.pem").mkdir()
    before = snapshot(tmp_path)
    failures = [
        (
            [(str(tmp_path / "a.pem"), b"new"), (str(tmp_path / "gone/b.pem"), b"new")],
            None,
            r"^can't write .*/gone/b\.pem: No such file or directory$",
        ),
        (
            [(str(tmp_path / "a.pem"), b"new"), (str(tmp_path / "dir.pem"), b"new")],
            None,
            r"^can't write .*/dir\.pem: it is a directory$",
        ),
        (
            [(str(tmp_path / "a.pem"), b"new")],
            "no-such-user",
            r"^owner = no-such-user: unknown user",
        ),
    ]
    for files, owner, message in failures:
        with pytest.raises(CertificateError, match=message):
            certificate.install(files, 0o644, owner)
        assert snapshot(tmp_path) == before


# --- printing and revocation input ---------------------------------------------------------


@pytest.mark.process
@pytest.mark.debian("openssl")
def test_fingerprint_and_summary_match_openssl(ca: IssuingCA, tmp_path: Path) -> None:
    cert = ca.issue(generate_key("p256").public_key(), ["www.example.org", "example.org"])
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-fingerprint", "-sha256"],
        input=pem(cert),
        capture_output=True,
        check=True,
    ).stdout.decode()
    assert certificate.fingerprint(cert) == out.strip().replace("sha256 ", "SHA256 ")
    line = certificate.summary(cert)
    assert "\n" not in line
    assert line.startswith("subject CN=www.example.org (www.example.org, example.org), issuer ")
    assert f"serial {cert.serial_number:x}," in line


@pytest.mark.unit
def test_read_certificate(ca: IssuingCA, tmp_path: Path) -> None:
    cert = ca.issue(generate_key("p256").public_key(), ["www.example.org"])
    (tmp_path / "chain.pem").write_bytes(pem(cert, ca.intermediate))
    assert certificate.read_certificate(str(tmp_path / "chain.pem")) == cert
    (tmp_path / "key.pem").write_bytes(
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    )
    with pytest.raises(CertificateError, match=r"key\.pem holds no PEM certificate$"):
        certificate.read_certificate(str(tmp_path / "key.pem"))
    with pytest.raises(CertificateError, match=r"^can't read .*/none: No such file"):
        certificate.read_certificate(str(tmp_path / "none"))


@pytest.mark.unit
def test_subject_name_types() -> None:
    name = certificate.subject_name(((("cn", "x.org"),), (("DC", "org"), ("UID", "u"))))
    assert name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "x.org"
    assert len(list(name)) == 3
    assert isinstance(ec.SECP256R1(), ec.EllipticCurve)
