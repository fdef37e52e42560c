"""Fuzzing, with hypothesis, of the parsers that read what another process
or the network sent: each takes anything, and either gives its result or
refuses with its own error, never another exception.  A fixed number of
examples each, derandomized, so that a run is the same every time.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lacme import config, inifile, webserver
from lacme.accountd_protocol import ProtocolError, b64url_encode, parse_signing_request
from lacme.acme_http import AcmeError, Problem
from lacme.acme_resources import Authorization, Directory, Order
from lacme.client_contract import (
    ContractError,
    decode_object,
    decode_order_url,
    decode_rate_limit,
    decode_renewal_info,
    decode_settings,
    split_chain,
)
from lacme.errors import ConfigError

pytestmark = pytest.mark.unit

# Examples per parser: well under a minute for the whole module.
EXAMPLES = 300
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
# Objects with the keys the parsers look for, so that they get past the first check.
ACME_KEYS = st.sampled_from(
    [
        "status", "type", "detail", "identifier", "value", "subproblems", "instance",
        "authorizations", "finalize", "certificate", "error", "challenges", "token",
        "url", "meta", "termsOfService", "externalAccountRequired", "newNonce",
        "newAccount", "newOrder", "wildcard",
    ]
)  # fmt: skip
ACME_OBJECTS = st.dictionaries(ACME_KEYS, JSON_VALUES, max_size=8)


# --- what the ACME server sends ------------------------------------------------------


@FUZZ
@given(JSON_VALUES)
def test_problem_documents(document: Any) -> None:
    problem = Problem.from_json(document)
    assert isinstance(str(problem), str)


@FUZZ
@given(ACME_OBJECTS)
def test_orders_authorizations_and_directories(obj: dict[str, Any]) -> None:
    for parse in (
        Order.parse,
        Authorization.parse,
        lambda o: Directory.parse("https://ca.test/dir", o),
    ):
        with contextlib.suppress(AcmeError):
            parse(obj)


# --- what accountd's peers send -------------------------------------------------------

HEADER_KEYS = st.sampled_from(["alg", "nonce", "url", "jwk", "kid", "crit", "b64"])
HEADERS = st.dictionaries(HEADER_KEYS, JSON_VALUES, max_size=6) | JSON_VALUES
KEY_JWK = {"kty": "EC", "crv": "P-256", "x": "eA", "y": "eQ"}


def _line(header: Any, payload: Any) -> bytes:
    encoded = [b64url_encode(json.dumps(part).encode()) for part in (header, payload)]
    return b".".join(encoded) + b"\r\n"


@FUZZ
@given(
    st.binary(max_size=200) | st.builds(_line, HEADERS, JSON_VALUES),
    st.sampled_from([None, KEY_JWK]),
)
def test_accountd_signs_only_well_formed_requests(line: bytes, jwk: dict[str, str] | None) -> None:
    """Anything but a request RFC 8555 allows (or the inner JWS of a key
    change to this key) is refused, with the protocol's own error."""
    try:
        request = parse_signing_request(line, "ES256", jwk=jwk)
    except ProtocolError:
        return
    header = request.header
    if header.get("nonce") is not None:
        assert header["alg"] == "ES256"
        assert header.get("url") is not None
        assert header.get("jwk") is not None or header.get("kid") is not None
    else:  # the inner JWS of a key change: to this very key
        assert jwk is not None
        assert header.get("jwk") == jwk


# --- what the client sends the master ------------------------------------------------


@FUZZ
@given(st.binary(max_size=300) | st.from_regex(rb"\A\{.{0,200}\}\Z"))
def test_client_outputs(data: bytes) -> None:
    for decode in (decode_renewal_info, decode_rate_limit, decode_order_url, split_chain):
        with contextlib.suppress(ContractError):
            decode(data)
    assert decode_object(data) is None or isinstance(decode_object(data), dict)


@FUZZ
@given(st.dictionaries(st.text(max_size=20), JSON_VALUES, max_size=6))
def test_client_settings(settings_object: dict[str, Any]) -> None:
    with contextlib.suppress(ContractError):
        decode_settings(json.dumps(settings_object).encode())


# --- what the webserver is sent ------------------------------------------------------


@pytest.fixture
def challenge_directory(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "tok").write_bytes(b"tok.thumbprint")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "tok").write_bytes(b"not to be served")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(cwd)


@FUZZ
@given(
    st.binary(max_size=120)
    | st.builds(
        lambda method, target: method + b" " + target + b" HTTP/1.1",
        st.sampled_from([b"GET", b"HEAD", b"POST", b"G\x00T"]),
        st.builds(
            lambda tail: webserver.PREFIX + tail,
            st.binary(max_size=40) | st.sampled_from([b"tok", b"sub/tok", b"../tok", b"tok/"]),
        ),
    )
)
def test_webserver_requests(challenge_directory: Path, line: bytes) -> None:
    """Only the token file of the directory is ever served, only as it is named."""
    request = webserver.parse_request_line(line)
    if request is None:
        return
    method, target = request
    status, content = webserver.answer(method, target)
    if status == 200:
        assert method in (b"GET", b"HEAD")
        assert target == webserver.PREFIX + b"tok"
        assert content == b"tok.thumbprint"
    else:
        assert status in (403, 404)


@FUZZ
@given(st.binary(max_size=200))
def test_webserver_headers(block: bytes) -> None:
    assert webserver.headers_well_formed(block) in (True, False)


# --- configuration -------------------------------------------------------------------

INI_LINES = r"\A(\[[a-z]{0,5}\]\n|[a-z-]{1,10} ?= ?.{0,20}\n|#.*\n){0,8}\Z"


@FUZZ
@given(st.text(max_size=300) | st.from_regex(INI_LINES))
def test_ini_files(text: str) -> None:
    try:
        sections = inifile.parse(text, "fuzz.conf")
    except inifile.IniError as e:
        sections, error = {}, str(e)
    else:
        error = "fuzz.conf: parsed"
    assert error.startswith("fuzz.conf:")
    for values in sections.values():
        for value in values.values():
            assert "\n" not in value


CERT_VALUES = st.text(max_size=40) | st.sampled_from(
    ["/CN=a.example.test", "DNS:a.test, IP:127.0.0.1", "0644", "root:root", "21", "50%",
     "sha256", "digitalSignature", "status_request", "classic", "*.a.test"]
)  # fmt: skip


@FUZZ
@given(st.dictionaries(st.sampled_from(sorted(config.CERT_KEYS)), CERT_VALUES, max_size=10))
def test_certificate_sections(values: dict[str, str]) -> None:
    source = config.CertSource(
        "fuzz", "/fuzz.conf", {k: config.Setting(k, v, "/fuzz.conf") for k, v in values.items()}
    )
    try:
        config.parse_section(source)
    except ConfigError as e:
        error = str(e)
    else:
        error = "/fuzz.conf: parsed"
    assert "/fuzz.conf" in error
