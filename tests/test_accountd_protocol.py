"""Unit tests of the accountd line protocol (lacme.accountd_protocol)."""

import json

import pytest

from lacme.accountd_protocol import (
    Greeting,
    ProtocolError,
    b64url_decode,
    b64url_encode,
    canonical_json,
    parse_greeting,
    parse_signing_request,
)
from support.accountd import signing_line

pytestmark = pytest.mark.unit


GOOD_HEADER = {"alg": "RS256", "nonce": "n0nce", "url": "https://ca.test/acct", "kid": "k"}


def test_valid_request_is_accepted_with_empty_payload() -> None:
    request = parse_signing_request(signing_line(GOOD_HEADER), "RS256")
    assert request.header == GOOD_HEADER
    assert request.payload == b""
    assert request.signing_input == signing_line(GOOD_HEADER)[:-2]


def test_valid_request_with_jwk_and_payload() -> None:
    header = {"alg": "ES256", "nonce": "x", "url": "u", "jwk": {"kty": "EC"}}
    request = parse_signing_request(signing_line(header, b'{"a":1}'), "ES256")
    assert request.payload == b'{"a":1}'
    assert 'payload={"a":1}' in request.describe()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (signing_line(GOOD_HEADER)[:-2] + b"\n", "not terminated by CRLF"),
        (signing_line(GOOD_HEADER)[:-2], "not terminated by CRLF"),
        (b"abc\r\n", "no '.'"),
        (b".e30\r\n", "empty JWS Protected Header"),
        (b"e30=.\r\n", "Protected Header (not base64url)"),
        (b"e+30.\r\n", "Protected Header (not base64url)"),
        (b"e30.e3.0\r\n", "Payload (not base64url)"),
        (b"e30.a\r\n", "Payload (not base64url)"),
        (b"e30.e30=\r\n", "Payload (not base64url)"),
        (signing_line(b"not json"), "(not JSON)"),
        (signing_line(b"\xff\xfe"), "(not JSON)"),
        (signing_line([1, 2]), "not a JSON object"),
        (signing_line("string"), "not a JSON object"),
        (signing_line({"nonce": "n", "url": "u", "kid": "k"}), "(no alg)"),
        (signing_line({"alg": "RS256", "url": "u", "kid": "k"}), "(no nonce)"),
        (signing_line({"alg": "RS256", "nonce": "n", "kid": "k"}), "(no url)"),
        (signing_line({"alg": "RS256", "nonce": None, "url": None, "kid": "k"}), "(no nonce, url)"),
        (signing_line({"alg": "RS256", "nonce": "n", "url": "u"}), "neither jwk nor kid"),
        (
            signing_line({"alg": "RS256", "nonce": "n", "url": "u", "jwk": None}),
            "neither jwk nor kid",
        ),
        (signing_line({**GOOD_HEADER, "alg": "ES256"}), "has alg 'ES256', the key signs RS256"),
        (signing_line({**GOOD_HEADER, "alg": "none"}), "has alg 'none'"),
    ],
)
def test_refusals(raw: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        parse_signing_request(raw, "RS256")
    assert reason in str(refused.value)


def test_base64url_round_trip_and_refusals() -> None:
    for data in (b"", b"a", b"ab", b"abc", bytes(range(256))):
        assert b64url_decode(b64url_encode(data)) == data
    assert b"=" not in b64url_encode(b"ab")
    for bad in (b"a", b"ab=", b"a/b_", b"a b"):
        with pytest.raises(ValueError, match="not base64url"):
            b64url_decode(bad)


def test_greeting_bytes_match_lacme_0_8_2() -> None:
    jwk = {"n": "qq", "kty": "RSA", "e": "AQAB"}
    greeting = Greeting(alg="RS256", jwk_thumbprint="tp", kid=None, jwk=jwk)
    assert greeting.encode() == (
        b'1 OK {"alg":"RS256","jwk-thumbprint":"tp"}\r\n{"e":"AQAB","kty":"RSA","n":"qq"}\r\n'
    )


def test_greeting_with_kid_hides_the_jwk() -> None:
    greeting = Greeting(alg="ES256", jwk_thumbprint="tp", kid="https://ca/acct/1", jwk={"a": "b"})
    first, second = greeting.encode().split(b"\r\n", 1)
    assert json.loads(first[5:]) == {
        "alg": "ES256",
        "jwk-thumbprint": "tp",
        "kid": "https://ca/acct/1",
    }
    assert second == b"{}\r\n"


def test_parse_greeting_round_trip() -> None:
    greeting = Greeting(alg="ES384", jwk_thumbprint="tp", kid="k", jwk={})
    first, second, _ = greeting.encode().split(b"\r\n")
    assert parse_greeting(first + b"\r\n", second + b"\r\n") == greeting


def test_parse_greeting_without_extra_data_computes_thumbprint() -> None:
    jwk = {"e": "AQAB", "kty": "RSA", "n": "qq"}
    parsed = parse_greeting(b"1 OK\r\n", canonical_json(jwk) + b"\r\n")
    assert parsed.alg == "RS256"
    assert parsed.kid is None
    assert len(b64url_decode(parsed.jwk_thumbprint.encode())) == 32


@pytest.mark.parametrize(
    ("first", "second", "reason"),
    [
        (b"2 OK {}\r\n", b"{}\r\n", "protocol version 2, not 1"),
        (b"hello\r\n", b"{}\r\n", "not an accountd greeting"),
        (b"", b"", "not an accountd greeting"),
        (b"1 OK {}\r\n", b"", "no JWK line"),
        (b"1 OK {\r\n", b"{}\r\n", "malformed JSON"),
        (b"1 OK []\r\n", b"{}\r\n", "not a JSON object"),
    ],
)
def test_parse_greeting_refusals(first: bytes, second: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        parse_greeting(first, second)
    assert reason in str(refused.value)
