"""What lacme tells of itself for what a CA would refuse: the master's
warnings before ordering (lacme.master.refusal_warnings) of what Let's
Encrypt would refuse of the order or its CSR, and of wildcards, which lacme
cannot validate; the client naming a revocation reason the server refuses.
Must-Staple's refusal is tested with the configuration
(tests/test_master_config.py); end to end: tests/test_local_refusals_e2e.py."""

from __future__ import annotations

import io
import json
import ssl
import sys
from collections.abc import Callable
from http.client import HTTPMessage
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448

from lacme import certificate, config, log
from lacme.acme import AcmeSession
from lacme.acme_http import PROBLEM_JSON, AcmeError, Patience, Problem, Response, Target
from lacme.client import Fatal, revoke_cert
from lacme.client_contract import ClientSettings
from lacme.master import refusal_warnings
from support.pki import generate_key

pytestmark = pytest.mark.unit

KEYS = ("RSA 2048", "RSA 3072", "RSA 4096", "ECDSA P-256", "ECDSA P-384")


def section(profile: str | None = None, **settings: str) -> config.CertSection:
    values = {"certificate-key": "/k", "certificate": "/c", "subject": "/", **settings}
    if profile is not None:
        values["profile"] = profile
    return config.parse_section(
        config.CertSource(
            "www", "/f.conf", {k: config.Setting(k, v, "/f.conf") for k, v in values.items()}
        )
    )


def names(count: int) -> dict[str, str]:
    """Settings for COUNT names, the CN repeated in subjectAltName and a
    name twice: the order carries each once."""
    alt_names = ", ".join(f"DNS:n{i}.example.test" for i in range(count))
    return {"subject": "/CN=n0.example.test", "subjectAltName": f"{alt_names}, DNS:N1.example.test"}


# A key of each type, by the name key_type gives it.
KEY_MAKERS: dict[str, Callable[[], Any]] = {
    "RSA 2048": lambda: generate_key("rsa2048"),
    "RSA 1024": lambda: generate_key("rsa1024"),
    "ECDSA P-256": lambda: generate_key("p256"),
    "ECDSA P-384": lambda: generate_key("p384"),
    "ECDSA P-521": lambda: generate_key("p521"),
    "ECDSA secp256k1": lambda: ec.generate_private_key(ec.SECP256K1()),
    "Ed25519": lambda: generate_key("ed25519"),
    "Ed448": ed448.Ed448PrivateKey.generate,
    "DSA 2048": lambda: dsa.generate_private_key(2048),
}


@pytest.mark.parametrize("kind", KEY_MAKERS)
def test_key_types_as_ca_policies_name_them(kind: str) -> None:
    assert certificate.key_type(KEY_MAKERS[kind]()) == kind


@pytest.mark.parametrize("key_type", KEYS)
def test_nothing_to_say_of_what_lets_encrypt_takes(key_type: str) -> None:
    assert refusal_warnings(section(**names(25)), key_type) == []
    assert refusal_warnings(section("tlsserver", **names(25)), key_type) == []
    assert refusal_warnings(section("shortlived", subjectAltName="IP:192.0.2.1"), key_type) == []


@pytest.mark.parametrize("profile", ["tlsserver", "shortlived"])
def test_more_than_25_names_under_a_limited_profile(profile: str) -> None:
    assert refusal_warnings(section(profile, **names(26)), "ECDSA P-256") == [
        "26 names in subject and subjectAltName: Let's Encrypt allows at most 25 "
        f"under profile = {profile}"
    ]


@pytest.mark.parametrize("profile", [None, "classic"])
def test_more_than_25_names_elsewhere(profile: str | None) -> None:
    assert refusal_warnings(section(profile, **names(100)), "ECDSA P-256") == []


@pytest.mark.parametrize("profile", [None, "classic", "tlsserver"])
def test_ip_addresses_outside_shortlived(profile: str | None) -> None:
    ips = section(profile, subjectAltName="IP:192.0.2.1, DNS:a.example.test, IP:2001:DB8::1")
    assert refusal_warnings(ips, "ECDSA P-256") == [
        "subjectAltName IP:192.0.2.1, IP:2001:db8::1 without profile = shortlived: "
        "Let's Encrypt takes IP addresses only under the shortlived profile"
    ]


@pytest.mark.parametrize(
    "key_type",
    ["RSA 1024", "RSA 8192", "RSA 2049", "ECDSA P-521", "ECDSA secp256k1", "Ed25519", "Ed448"],
)
def test_other_keys(key_type: str) -> None:
    assert refusal_warnings(section(subjectAltName="DNS:a.example.test"), key_type) == [
        f"certificate-key /k is {key_type}: Let's Encrypt takes only RSA 2048, RSA 3072, "
        "RSA 4096, ECDSA P-256, ECDSA P-384"
    ]


def test_wildcards_in_subject_and_subject_alt_name() -> None:
    wildcards = section(
        subject="/CN=*.A.example.test",
        subjectAltName="DNS:a.example.test, DNS:*.a.example.test, DNS:*.b.example.test",
    )
    assert refusal_warnings(wildcards, "ECDSA P-256") == [
        "subject CN=*.a.example.test is a wildcard, which needs dns-01: lacme answers http-01 only",
        "subjectAltName DNS:*.b.example.test is a wildcard, which needs dns-01: "
        "lacme answers http-01 only",
    ]


def test_every_warning_at_once() -> None:
    settings = names(30)
    settings["subjectAltName"] += ", IP:192.0.2.1, DNS:*.example.test"
    assert refusal_warnings(section("tlsserver", **settings), "Ed25519") == [
        "32 names in subject and subjectAltName: Let's Encrypt allows at most 25 "
        "under profile = tlsserver",
        "subjectAltName IP:192.0.2.1 without profile = shortlived: "
        "Let's Encrypt takes IP addresses only under the shortlived profile",
        "certificate-key /k is Ed25519: Let's Encrypt takes only RSA 2048, RSA 3072, "
        "RSA 4096, ECDSA P-256, ECDSA P-384",
        "subjectAltName DNS:*.example.test is a wildcard, which needs dns-01: "
        "lacme answers http-01 only",
    ]


# --- a revocation reason the server refuses (lacme.client) -------------------------


CA = "https://ca.test"
BOULDER = {
    "type": "urn:ietf:params:acme:error:badRevocationReason",
    "detail": "Unable to revoke :: disallowed revocation reason: 2",
}
ACCEPTED = (
    "Let's Encrypt accepts only unspecified (0), keyCompromise (1), superseded (4), "
    "cessationOfOperation (5)"
)


def revoking(status: int, problem: dict[str, Any] | None = None) -> AcmeSession:
    """A session with a server that answers revokeCert with STATUS and PROBLEM."""

    def server(
        method: str,
        url: str,
        target: Target,
        body: bytes | None,
        headers: dict[str, str],
        limit: int,
    ) -> Response:
        answer = HTTPMessage()
        if target.path == "/dir":
            answer["Content-Type"] = "application/json"
            resources = {"newNonce": f"{CA}/nonce", "revokeCert": f"{CA}/revoke"}
            return Response(method, url, 200, answer, json.dumps(resources).encode())
        if target.path == "/nonce":
            answer["Replay-Nonce"] = "bm9uY2U"
            return Response(method, url, 200, answer, b"")
        assert target.path == "/revoke"
        if problem is None:
            return Response(method, url, status, answer, b"")
        answer["Content-Type"] = PROBLEM_JSON
        document = json.dumps({**problem, "status": status}).encode()
        return Response(method, url, status, answer, document)

    session = AcmeSession(
        f"{CA}/dir",
        context=ssl.create_default_context(),
        sign=lambda signing_input: "c2lnbmVk",
        alg="ES256",
        jwk={},
        thumbprint="",
        kid=f"{CA}/account/1",
        patience=Patience(30),
        warn=log.warn,
    )
    session.transport.exchange = server  # type: ignore[method-assign]
    return session


@pytest.fixture
def certificate_on_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"0\x82DER")))


@pytest.mark.usefixtures("certificate_on_stdin")
@pytest.mark.parametrize(
    ("argument", "reason"), [("2", "cACompromise (2)"), ("9", "privilegeWithdrawn (9)"), ("7", "7")]
)
def test_a_revocation_reason_refused_is_named(argument: str, reason: str) -> None:
    with revoking(400, BOULDER) as session, pytest.raises(Fatal) as refused:
        revoke_cert(session, [argument], ClientSettings())
    assert str(refused.value) == (
        f"the ACME server refused revocation reason {reason}: badRevocationReason: "
        f"Unable to revoke :: disallowed revocation reason: 2; {ACCEPTED}"
    )


@pytest.mark.usefixtures("certificate_on_stdin")
@pytest.mark.parametrize(
    ("arguments", "status", "answer"),
    [
        # No reason sent: none to name.
        ([], 400, BOULDER),
        (["2"], 403, {"type": "urn:ietf:params:acme:error:unauthorized", "detail": "not yours"}),
    ],
)
def test_other_revocation_refusals_are_the_servers(
    arguments: list[str], status: int, answer: dict[str, Any]
) -> None:
    with revoking(status, answer) as session, pytest.raises(AcmeError) as refused:
        revoke_cert(session, arguments, ClientSettings())
    assert str(refused.value) == f"POST {CA}/revoke: HTTP {status}: {Problem.from_json(answer)}"


@pytest.mark.usefixtures("certificate_on_stdin")
def test_a_revocation_with_a_reason_taken() -> None:
    with revoking(200) as session:
        revoke_cert(session, ["4"], ClientSettings())
