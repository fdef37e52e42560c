"""Order and certificate options that need no ACME server: min-days as a
percentage of the lifetime, IP identifiers (RFC 8738) in certificate
sections, revocation reasons, alternate chain links, and their options."""

from __future__ import annotations

import datetime
from http.client import HTTPMessage
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from lacme import acme, acme_http, certificate, config, master, master_command
from lacme.cli import UsageError
from lacme.errors import ConfigError
from support.pki import NOW, IssuingCA, generate_key

# --- min-days as a percentage of the lifetime ----------------------------------


def cert_file(tmp_path: Path, ca: IssuingCA, days: float) -> Path:
    cert = ca.issue(generate_key("p256").public_key(), ["a.example.org"], not_before=NOW, days=days)
    path = tmp_path / f"cert-{days}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.mark.unit
def test_min_days_percentage_decides_by_lifetime(tmp_path: Path, ca: IssuingCA) -> None:
    six_days = cert_file(tmp_path, ca, 6)
    ninety_days = cert_file(tmp_path, ca, 90)
    third = config.Percent(33)
    day = datetime.timedelta(days=1)
    # A six-day certificate: 33% is about two days.
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


@pytest.mark.unit
def test_min_days_setting_and_option_take_a_percentage() -> None:
    section = config.parse_section(source(subjectAltName="DNS:a.example", **{"min-days": "33%"}))
    assert section.min_days == config.Percent(33)
    assert config.parse_section(source(subjectAltName="DNS:a.example", **{"min-days": "12.5%"}))
    assert config.parse_section(source(subjectAltName="DNS:a.example")).min_days is None
    with pytest.raises(ConfigError, match=r"min-days = 150%: .* over 100%$"):
        config.parse_section(source(subjectAltName="DNS:a.example", **{"min-days": "150%"}))
    with pytest.raises(ConfigError, match=r"min-days = x%: not a percentage$"):
        config.parse_section(source(subjectAltName="DNS:a.example", **{"min-days": "x%"}))
    parsed = master_command.parse_args(["newOrder", "--min-days=33%"])
    assert isinstance(parsed, master_command.Arguments)
    assert parsed.min_days == config.Percent(33)
    for bad in ("150%", "%", "-3%"):
        with pytest.raises(UsageError, match="--min-days"):
            master_command.parse_args(["newOrder", f"--min-days={bad}"])


# --- IP identifiers ---------------------------------------------------------------


@pytest.mark.unit
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


@pytest.mark.unit
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
    with pytest.raises(ConfigError, match=message):
        config.parse_section(source(subjectAltName=value))


# --- revocation reasons and alternate links ---------------------------------------


@pytest.mark.unit
def test_revocation_reasons_by_name_or_code() -> None:
    assert master.revocation_reason("keyCompromise") == 1
    assert master.revocation_reason("KEYCOMPROMISE") == 1
    assert master.revocation_reason("4") == 4
    assert master.revocation_reason("aACompromise") == 10
    for unknown in ("7", "11", "-1", "compromised", ""):
        assert master.revocation_reason(unknown) is None


@pytest.mark.unit
def test_alternate_links() -> None:
    headers = HTTPMessage()
    headers["Link"] = '<https://ca.test/dir>;rel="index"'
    headers["Link"] = '</cert/1/alt/1>; rel="alternate", <https://o.test/2>;rel=alternate'
    headers["Link"] = '<https://ca.test/up>; rel="up"'
    response = acme_http.Response("POST", "https://ca.test/cert/1", 200, headers, b"")
    assert response.links("alternate") == [
        "https://ca.test/cert/1/alt/1",
        "https://o.test/2",
    ]
    assert response.links("up") == ["https://ca.test/up"]
    assert response.links("index") == ["https://ca.test/dir"]


@pytest.mark.unit
def test_new_options_parse() -> None:
    parsed = master_command.parse_args(["account", "--rollover=/etc/new.conf", "--json"])
    assert isinstance(parsed, master_command.Arguments)
    assert (parsed.rollover, parsed.rollover_socket, parsed.json) == ("/etc/new.conf", None, True)
    parsed = master_command.parse_args(["revokeCert", "--reason", "keyCompromise", "c.pem"])
    assert isinstance(parsed, master_command.Arguments)
    assert (parsed.reason, parsed.arguments) == ("keyCompromise", ("c.pem",))
    for argv, message in (
        (["account", "--rollover=a", "--register"], "takes no other account change"),
        (["account", "--rollover-socket=/s", "mailto:a@b.example"], "no other account change"),
        (["account", "--rollover=a", "--rollover-socket=/s"], "exclude each other"),
        (["account", "--json=yes"], "does not take an argument"),
    ):
        with pytest.raises(UsageError, match=message):
            master_command.parse_args(argv)
