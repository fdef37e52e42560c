"""Unit tests of the accountd line protocol (lacme.accountd_protocol): each
message encoded then decoded, its bytes as lacme 0.8.2's, and each way its
decoding refuses."""

import json
from typing import Any

import pytest

from lacme.accountd_protocol import (
    MAX_JSON_DEPTH,
    MAX_LINE,
    Binding,
    Greeting,
    ProtocolError,
    b64url_decode,
    b64url_encode,
    canonical_json,
    encode_signature,
    encode_signing_request,
    json_depth,
    parse_greeting,
    parse_signature,
    parse_signing_request,
)
from support.accountd import signing_line

pytestmark = pytest.mark.unit


GOOD_HEADER = {"alg": "RS256", "nonce": "n0nce", "url": "https://ca.test/acct", "kid": "k"}
OWN = {"crv": "P-256", "kty": "EC", "x": "eA", "y": "eQ"}
EAB = Binding("HS384", "kid-1")


# -- The request line -------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "payload", "alg"),
    [
        (GOOD_HEADER, b"", "RS256"),
        ({"alg": "ES256", "nonce": "x", "url": "u", "jwk": OWN}, b'{"a":1}', "ES256"),
        # The two nonce-less inner JWS: a key change to OWN, and OWN's binding.
        (
            {"alg": "ES256", "url": "u", "jwk": OWN},
            json.dumps({"account": "a", "oldKey": {"kty": "RSA"}}).encode(),
            "ES256",
        ),
        ({"alg": "HS384", "kid": "kid-1", "url": "u"}, json.dumps(OWN).encode(), "ES256"),
    ],
)
def test_request_line_round_trip(header: dict[str, Any], payload: bytes, alg: str) -> None:
    signing_input = b64url_encode(json.dumps(header).encode()) + b"." + b64url_encode(payload)
    line = encode_signing_request(signing_input)
    request = parse_signing_request(line, alg, jwk=OWN, eab=EAB)
    assert request.signing_input == signing_input
    assert request.header == header
    assert request.payload == payload
    assert request.binding == (header["alg"] == EAB.alg)


def test_request_line_bytes_match_lacme_0_8_2() -> None:
    assert encode_signing_request(b"e30.e30") == b"e30.e30\r\n"


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
        (b"e30." + b"A" * (MAX_LINE - 5) + b"\r\n", f"line longer than {MAX_LINE} bytes"),
    ],
)
def test_request_line_refusals(raw: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        parse_signing_request(raw, "RS256")
    assert reason in str(refused.value)


def nested(depth: int) -> bytes:
    """A header that is a JSON object nesting DEPTH deep (DEPTH > 1)."""
    inner = "[" * (depth - 1) + "]" * (depth - 1)
    return json.dumps({**GOOD_HEADER, "x": "x"}).replace('"x"}', inner + "}").encode()


def test_header_nesting_is_bounded_before_parsing() -> None:
    assert json.loads(nested(MAX_JSON_DEPTH))["x"]
    assert parse_signing_request(signing_line(nested(MAX_JSON_DEPTH)), "RS256").header["x"]
    for header in (nested(MAX_JSON_DEPTH + 1), b"[" * 100000, b"{" * 100000, b"[{" * 50000):
        with pytest.raises(ProtocolError) as refused:
            parse_signing_request(signing_line(header), "RS256")
        assert str(refused.value) == (
            f"invalid JWS Protected Header (nested deeper than {MAX_JSON_DEPTH})"
        )


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("", 0),
        ("1", 0),
        ('"[[["', 0),
        ('{"a":"]]\\"[[", "b": [{}, []]}', 3),
        ('["\\\\", [[]]]', 3),  # an escaped backslash ends no string
        ("[]" * 1000, 1),
        ("[" * 100000, 100000),
        ('["x", "[[[', 1),  # json.loads stops at the unterminated string
        ('"\\', 0),
    ],
)
def test_json_depth_counts_brackets_outside_strings(text: str, depth: int) -> None:
    assert json_depth(text) == depth


def test_line_of_max_line_bytes_is_taken() -> None:
    start = signing_line(GOOD_HEADER)[:-2]
    padding = MAX_LINE - len(start) - 2
    padding -= padding % 4 == 1  # a length base64url has
    line = start + b"A" * padding + b"\r\n"
    assert len(line) >= MAX_LINE - 1
    assert parse_signing_request(line, "RS256").signing_input == line[:-2]


def test_base64url_round_trip_and_refusals() -> None:
    for data in (b"", b"a", b"ab", b"abc", bytes(range(256))):
        assert b64url_decode(b64url_encode(data)) == data
    assert b"=" not in b64url_encode(b"ab")
    for bad in (b"a", b"ab=", b"a/b_", b"a b"):
        with pytest.raises(ValueError, match="not base64url"):
            b64url_decode(bad)


# -- The greeting -----------------------------------------------------------


@pytest.mark.parametrize(
    "greeting",
    [
        Greeting(alg="RS256", jwk_thumbprint="tp", kid=None, jwk={"kty": "RSA", "n": "qq"}),
        Greeting(alg="ES256", jwk_thumbprint="tp", kid=None, jwk=OWN, eab=EAB),
        # With a Key ID the JWK is not sent: what is parsed is `{}`.
        Greeting(alg="ES384", jwk_thumbprint="tp", kid="k", jwk={}),
        Greeting(alg="ES384", jwk_thumbprint="tp", kid="k", jwk={}, eab=EAB),
    ],
)
def test_greeting_round_trip(greeting: Greeting) -> None:
    assert parse_greeting(*greeting.encode().splitlines(keepends=True)) == greeting


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
        (b"1 OK {}", b"{}\r\n", "not an accountd greeting"),
        (b"1 OK {}\n", b"{}\r\n", "not an accountd greeting"),
        (b"1 OK {" + b" " * MAX_LINE + b"}\r\n", b"{}\r\n", "not an accountd greeting"),
        (b"1 OK {}\r\n", b"", "no JWK line"),
        (b"1 OK {}\r\n", b"{}", "no JWK line"),
        (b"1 OK {}\r\n", b"{}\n", "no JWK line"),
        (b"1 OK {}\r\n", b"{" + b" " * MAX_LINE + b"}\r\n", "no JWK line"),
        (b"1 OK {\r\n", b"{}\r\n", "malformed JSON"),
        (b"1 OK []\r\n", b"{}\r\n", "not a JSON object"),
        (b"1 OK " + b"[" * 100000 + b"\r\n", b"{}\r\n", f"nested deeper than {MAX_JSON_DEPTH}"),
        (b"1 OK {}\r\n", b"{" * 100000 + b"\r\n", f"nested deeper than {MAX_JSON_DEPTH}"),
        (b"1 OK {}\r\n", b"[]\r\n", "not a JSON object"),
    ],
)
def test_parse_greeting_refusals(first: bytes, second: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        parse_greeting(first, second)
    assert reason in str(refused.value)


# -- The signature line -----------------------------------------------------


@pytest.mark.parametrize("signature", [b"s", b"si", b"sig", bytes(range(64)), bytes(512)])
def test_signature_line_round_trip(signature: bytes) -> None:
    assert b64url_decode(parse_signature(encode_signature(signature)).encode()) == signature


def test_signature_line_bytes_match_lacme_0_8_2() -> None:
    assert encode_signature(b"\xfb\xff") == b"-_8\r\n"
    assert parse_signature(b"-_8\r\n") == "-_8"


def test_signature_line_of_max_line_bytes_is_taken() -> None:
    line = b"A" * (MAX_LINE - 2) + b"\r\n"
    assert parse_signature(line) == "A" * (MAX_LINE - 2)


def test_end_of_file_is_a_refusal_to_sign() -> None:
    with pytest.raises(ProtocolError, match=r"^closed the connection: it refused to sign$"):
        parse_signature(b"")


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(b"\r\n", id="empty"),
        pytest.param(b"c2ln", id="no CRLF"),
        pytest.param(b"c2ln\n", id="LF only"),
        pytest.param(b"c2ln\r", id="CR only"),
        pytest.param(b"c2k=\r\n", id="padded"),
        pytest.param(b"c2k\r\n\r\n", id="two CRLF"),
        pytest.param(b"c2+n/w\r\n", id="base64 not base64url"),
        pytest.param(b"c2 ln\r\n", id="space"),
        pytest.param(b"\xffc2ln\r\n", id="not ASCII"),
        pytest.param(b"c2lnY\r\n", id="impossible length"),
        pytest.param(b"A" * (MAX_LINE - 1) + b"\r\n", id="over MAX_LINE"),
    ],
)
def test_signature_line_refusals(line: bytes) -> None:
    with pytest.raises(ProtocolError) as refused:
        parse_signature(line)
    assert str(refused.value) == f"sent a malformed signature {line[:80]!r}"
