"""Unit tests of the issue-6 features that need no ACME server: the accountd
protocol's two inner JWS (key change, external account binding) and their
refusals, min-days as a percentage, IP identifiers in certificate sections,
revocation reasons, alternate chain links."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from accountd_helpers import ACCOUNTD, b64url, request_line, unb64url, verify
from ca import NOW, IssuingCA, make_ca
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from keys import generate_key, new_key_file, public_jwk

from lacme import acme, certificate, config, master
from lacme.accountd_protocol import (
    Binding,
    Greeting,
    ProtocolError,
    parse_greeting,
    parse_signing_request,
)

OWN = {"kty": "EC", "crv": "P-256", "x": "own-x", "y": "own-y"}
OLD = {"kty": "EC", "crv": "P-256", "x": "old-x", "y": "old-y"}
KEY_CHANGE_URL = "https://ca.test/key-change"
EAB = Binding("HS256", "kid-1")


def line(header: dict[str, Any], payload: Any) -> bytes:
    encoded = b"" if payload is None else b64url(json.dumps(payload).encode())
    return b64url(json.dumps(header).encode()) + b"." + encoded + b"\r\n"


def inner(**header: Any) -> dict[str, Any]:
    return {"alg": "ES256", "jwk": OWN, "url": KEY_CHANGE_URL, **header}


ROLLOVER = {"account": "https://ca.test/acct/1", "oldKey": OLD}


# --- the accountd protocol -------------------------------------------------------


def test_inner_key_change_jws_is_signed_for_its_own_key() -> None:
    request = parse_signing_request(line(inner(), ROLLOVER), "ES256", jwk=OWN)
    assert not request.binding
    assert json.loads(request.payload) == ROLLOVER


@pytest.mark.parametrize(
    ("header", "payload", "reason"),
    [
        (inner(jwk=OLD), ROLLOVER, "jwk is not this accountd's key"),
        (inner(alg="RS256"), ROLLOVER, "inner keyChange JWS has alg 'RS256'"),
        (inner(kid="https://ca.test/acct/1"), ROLLOVER, "inner keyChange JWS has a kid"),
        (inner(), {"oldKey": OLD}, "payload names no account"),
        (inner(), {"account": "", "oldKey": OLD}, "payload names no account"),
        (inner(), {"account": "https://ca.test/acct/1"}, "payload names no oldKey"),
        (inner(), {"account": "a", "oldKey": "k"}, "payload names no oldKey"),
        (inner(), {"account": "a", "oldKey": OWN}, "oldKey is this accountd's key"),
        (inner(), ["account", "oldKey"], "payload is not a JSON object"),
        (inner(), None, "payload is not JSON"),
    ],
)
def test_inner_key_change_refusals(header: dict[str, Any], payload: Any, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        parse_signing_request(line(header, payload), "ES256", jwk=OWN)


def test_nonce_less_lines_are_refused_as_in_version_1_otherwise() -> None:
    # Without the accountd's JWK to compare with (a caller of 0.8.2 vintage),
    # with a kid instead of a jwk, or without url: "no nonce", as before.
    for header, jwk in (
        (inner(), None),
        ({"alg": "ES256", "kid": "k", "url": KEY_CHANGE_URL}, OWN),
        ({"alg": "ES256", "jwk": OWN}, OWN),
    ):
        with pytest.raises(ProtocolError, match=r"^invalid JWS Protected Header \(no nonce"):
            parse_signing_request(line(header, ROLLOVER), "ES256", jwk=jwk)


def test_external_account_binding_is_signed_for_its_own_key_and_kid() -> None:
    header = {"alg": "HS256", "kid": "kid-1", "url": "https://ca.test/new-acct"}
    request = parse_signing_request(line(header, OWN), "ES256", jwk=OWN, eab=EAB)
    assert request.binding


@pytest.mark.parametrize(
    ("header", "payload", "reason"),
    [
        ({"alg": "HS256", "kid": "kid-2"}, OWN, "kid is not this accountd's EAB key identifier"),
        ({"alg": "HS256", "kid": "kid-1"}, OLD, "payload is not this accountd's key"),
        ({"alg": "HS256", "kid": "kid-1"}, None, "payload is not JSON"),
        # Another HMAC algorithm than the key's is no binding: the old refusal.
        ({"alg": "HS512", "kid": "kid-1"}, OWN, r"no nonce"),
        # With a nonce it is an ordinary request, and HS256 is not the key's alg.
        ({"alg": "HS256", "kid": "kid-1", "nonce": "n"}, OWN, "the key signs ES256"),
    ],
)
def test_external_account_binding_refusals(
    header: dict[str, Any], payload: Any, reason: str
) -> None:
    header = {**header, "url": "https://ca.test/new-acct"}
    with pytest.raises(ProtocolError, match=reason):
        parse_signing_request(line(header, payload), "ES256", jwk=OWN, eab=EAB)
    # And nothing of the kind without an EAB key.
    with pytest.raises(ProtocolError):
        parse_signing_request(line(header, payload), "ES256", jwk=OWN)


def test_greeting_announces_the_binding_and_stays_0_8_2_without() -> None:
    plain = Greeting("ES256", "tp", None, OWN)
    assert plain.encode().startswith(b'1 OK {"alg":"ES256","jwk-thumbprint":"tp"}\r\n')
    with_eab = Greeting("ES256", "tp", None, OWN, EAB).encode()
    first, second = with_eab.split(b"\r\n", 1)
    assert json.loads(first[5:]) == {
        "alg": "ES256",
        "jwk-thumbprint": "tp",
        "eab-alg": "HS256",
        "eab-kid": "kid-1",
    }
    assert parse_greeting(first + b"\r\n", second).eab == EAB
    assert parse_greeting(*plain.encode().splitlines(keepends=True)).eab is None


# --- lacme-accountd signing them -------------------------------------------------


def run_accountd(conf: Path, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(ACCOUNTD), f"--config={conf}", "--stdio"],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_accountd_signs_key_change_and_binding(tmp_path: Path) -> None:
    key = new_key_file(tmp_path / "new.key", "p256")
    jwk = public_jwk(key)
    secret = os.urandom(32)
    mac_file = tmp_path / "eab.key"
    mac_file.touch(mode=0o600)
    mac_file.write_bytes(base64.urlsafe_b64encode(secret) + b"\n")  # padded, with a newline
    conf = tmp_path / "accountd.conf"
    conf.write_text(
        f"privkey = file:{tmp_path / 'new.key'}\neab-kid = kid-1\n"
        f"eab-hmac-key = {mac_file}\neab-alg = HS384\n"
    )
    key_change = line({"alg": "ES256", "jwk": jwk, "url": KEY_CHANGE_URL}, ROLLOVER)
    binding = line({"alg": "HS384", "kid": "kid-1", "url": "https://ca.test/n"}, jwk)
    ordinary = request_line("ES256", b"{}")
    done = run_accountd(conf, key_change + binding + ordinary)
    assert done.returncode == 0, done.stderr
    greeting, jwk_line, *signatures = done.stdout.split(b"\r\n")
    assert json.loads(greeting[5:])["eab-kid"] == "kid-1"
    assert json.loads(jwk_line) == jwk
    verify(jwk, key_change.rstrip(), signatures[0])
    assert unb64url(signatures[1]) == hmac.digest(secret, binding.rstrip(), hashlib.sha384)
    verify(jwk, ordinary.rstrip(), signatures[2])


def test_accountd_refuses_a_key_change_to_another_key(tmp_path: Path) -> None:
    new_key_file(tmp_path / "k.key", "p256")
    conf = tmp_path / "accountd.conf"
    conf.write_text(f"privkey = file:{tmp_path / 'k.key'}\n")
    foreign = line({"alg": "ES256", "jwk": OLD, "url": KEY_CHANGE_URL}, ROLLOVER)
    done = run_accountd(conf, foreign + request_line("ES256"))
    assert done.stdout.count(b"\r\n") == 2  # the greeting, and no signature at all
    assert b"NOSIGN [inner keyChange JWS: jwk is not this accountd's key]" in done.stderr


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("mode", "must be owned by uid 0 and accessible to nobody else"),
        ("alg", "eab-alg 'HS1': expected one of HS256, HS384, HS512"),
        ("garbage", "is not base64url"),
        ("half", "eab-kid and eab-hmac-key go together"),
    ],
)
@pytest.mark.skipif(os.geteuid() != 0, reason="the messages name uid 0")
def test_accountd_refuses_bad_eab_settings(tmp_path: Path, setup: str, message: str) -> None:
    new_key_file(tmp_path / "k.key", "p256")
    mac_file = tmp_path / "eab.key"
    mac_file.touch(mode=0o644 if setup == "mode" else 0o600)
    mac_file.write_text("not base64url!" if setup == "garbage" else "c2VjcmV0")
    settings = [f"privkey = file:{tmp_path / 'k.key'}", "eab-kid = kid-1"]
    if setup != "half":
        settings.append(f"eab-hmac-key = {mac_file}")
    if setup == "alg":
        settings.append("eab-alg = HS1")
    conf = tmp_path / "accountd.conf"
    conf.write_text("\n".join(settings) + "\n")
    done = run_accountd(conf, b"")
    assert done.returncode == 1
    assert done.stdout == b""
    assert message in done.stderr.decode()


# --- min-days as a percentage of the lifetime ----------------------------------


@pytest.fixture(scope="module")
def ca() -> IssuingCA:
    return make_ca()


def cert_file(tmp_path: Path, ca: IssuingCA, days: float) -> Path:
    cert = ca.issue(generate_key("p256").public_key(), ["a.example.org"], not_before=NOW, days=days)
    path = tmp_path / f"cert-{days}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_min_days_percentage_decides_by_lifetime(tmp_path: Path, ca: IssuingCA) -> None:
    six_days = cert_file(tmp_path, ca, 6)
    ninety_days = cert_file(tmp_path, ca, 90)
    third = config.Percent(33)
    day = datetime.timedelta(days=1)
    # A six-day certificate: 33% is about two days; 21 days would renew it on every run.
    assert certificate.valid_until(str(six_days), 21, NOW + day) is None
    assert certificate.valid_until(str(six_days), third, NOW + day) is not None
    assert certificate.valid_until(str(six_days), third, NOW + 3.9 * day) is not None
    assert certificate.valid_until(str(six_days), third, NOW + 4.1 * day) is None
    # A 90-day one: 33% is 29.7 days.
    assert certificate.valid_until(str(ninety_days), third, NOW + 60 * day) is not None
    assert certificate.valid_until(str(ninety_days), third, NOW + 60.5 * day) is None
    # 0% waits for the expiry, 100% always renews; no certificate: issue one.
    assert certificate.valid_until(str(six_days), config.Percent(0), NOW + 5.9 * day) is not None
    assert certificate.valid_until(str(six_days), config.Percent(100), NOW) is None
    assert certificate.valid_until(str(tmp_path / "missing"), third, NOW) is None


def source(**settings: str) -> config.CertSource:
    values = {"certificate-key": "/k", "certificate": "/c", "subject": "/", **settings}
    return config.CertSource(
        "www", "/f.conf", {k: config.Setting(k, v, "/f.conf") for k, v in values.items()}
    )


def test_min_days_setting_and_option_take_a_percentage() -> None:
    section = config.parse_section(source(subjectAltName="DNS:a.example", **{"min-days": "33%"}))
    assert section.min_days == config.Percent(33)
    assert config.parse_section(source(subjectAltName="DNS:a.example", **{"min-days": "12.5%"}))
    assert config.parse_section(source(subjectAltName="DNS:a.example")).min_days is None
    with pytest.raises(config.ConfigError, match=r"min-days = 150%: .* over 100%$"):
        config.parse_section(source(subjectAltName="DNS:a.example", **{"min-days": "150%"}))
    with pytest.raises(config.ConfigError, match=r"min-days = x%: not an integer$"):
        config.parse_section(source(subjectAltName="DNS:a.example", **{"min-days": "x%"}))
    parsed = master.parse_args(["newOrder", "--min-days=33%"])
    assert isinstance(parsed, master.Arguments)
    assert parsed.min_days == config.Percent(33)
    for bad in ("150%", "%", "-3%"):
        with pytest.raises(master.UsageError, match="--min-days"):
            master.parse_args(["newOrder", f"--min-days={bad}"])


# --- IP identifiers ---------------------------------------------------------------


def test_ip_identifiers_in_subject_alt_name() -> None:
    section = config.parse_section(
        source(subjectAltName="IP:127.0.0.1, DNS:a.example, IP:2001:DB8:0:0::1")
    )
    assert section.identifiers == ("127.0.0.1", "a.example", "2001:db8::1")
    csr = certificate.build_csr(section, generate_key("p256"))
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == [
        "127.0.0.1",
        "2001:db8::1",
    ]
    assert san.get_values_for_type(x509.DNSName) == ["a.example"]
    assert [acme.identifier_type(i) for i in section.identifiers] == ["ip", "dns", "ip"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("IP:a.example", r"'a\.example' is not an IP address$"),
        ("IP:300.1.1.1", r"'300\.1\.1\.1' is not an IP address$"),
        ("IP:fe80::1%eth0", r"'fe80::1%eth0' is not an IP address$"),
        ("DNS:192.0.2.1", r"'192\.0\.2\.1' is an IP address: write IP:192\.0\.2\.1$"),
    ],
)
def test_ip_identifier_refusals(value: str, message: str) -> None:
    with pytest.raises(config.ConfigError, match=message):
        config.parse_section(source(subjectAltName=value))


# --- revocation reasons and alternate links ---------------------------------------


def test_revocation_reasons_by_name_or_code() -> None:
    assert master.revocation_reason("keyCompromise") == 1
    assert master.revocation_reason("KEYCOMPROMISE") == 1
    assert master.revocation_reason("4") == 4
    assert master.revocation_reason("aACompromise") == 10
    for unknown in ("7", "11", "-1", "compromised", ""):
        assert master.revocation_reason(unknown) is None


def test_alternate_links() -> None:
    headers = httpx.Headers(
        [
            ("Link", '<https://ca.test/dir>;rel="index"'),
            ("Link", '</cert/1/alt/1>; rel="alternate", <https://o.test/2>;rel=alternate'),
            ("Link", '<https://ca.test/up>; rel="up"'),
        ]
    )
    response = acme.Response("POST", "https://ca.test/cert/1", 200, headers, b"")
    assert acme._alternate_links(response) == [
        "https://ca.test/cert/1/alt/1",
        "https://o.test/2",
    ]


def test_new_options_parse() -> None:
    parsed = master.parse_args(["account", "--rollover=/etc/new.conf", "--json"])
    assert isinstance(parsed, master.Arguments)
    assert (parsed.rollover, parsed.rollover_socket, parsed.json) == ("/etc/new.conf", None, True)
    parsed = master.parse_args(["revokeCert", "--reason", "keyCompromise", "c.pem"])
    assert isinstance(parsed, master.Arguments)
    assert (parsed.reason, parsed.arguments) == ("keyCompromise", ("c.pem",))
    for argv, message in (
        (["account", "--rollover=a", "--register"], "takes no other account change"),
        (["account", "--rollover-socket=/s", "mailto:a@b.example"], "no other account change"),
        (["account", "--rollover=a", "--rollover-socket=/s"], "exclude each other"),
        (["account", "--json=yes"], "does not take an argument"),
    ):
        with pytest.raises(master.UsageError, match=message):
            master.parse_args(argv)
