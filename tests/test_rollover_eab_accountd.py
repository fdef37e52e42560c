"""Key rollover and external account binding (RFC 8555 sections 7.3.4 and
7.3.5) where they need no ACME server: the accountd protocol's two inner JWS
and their refusals, and lacme-accountd signing them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any

import pytest

from lacme.accountd import Log, RequestSigner
from lacme.accountd_protocol import (
    MAX_JSON_DEPTH,
    Binding,
    Greeting,
    ProtocolError,
    SigningRequest,
    encode_signature,
    parse_greeting,
    parse_signing_request,
)
from lacme.accountkey import AccountKey
from support.accountd import request_line, run_accountd, signing_line, unb64url, verify
from support.pki import new_key_file, public_jwk

OWN = {"kty": "EC", "crv": "P-256", "x": "own-x", "y": "own-y"}
OLD = {"kty": "EC", "crv": "P-256", "x": "old-x", "y": "old-y"}
KEY_CHANGE_URL = "https://ca.test/key-change"
EAB = Binding("HS256", "kid-1")


def line(header: dict[str, Any], payload: Any) -> bytes:
    """A line for HEADER and PAYLOAD (JSON; None for an empty payload)."""
    return signing_line(header, b"" if payload is None else json.dumps(payload).encode())


def inner(**header: Any) -> dict[str, Any]:
    return {"alg": "ES256", "jwk": OWN, "url": KEY_CHANGE_URL, **header}


ROLLOVER = {"account": "https://ca.test/acct/1", "oldKey": OLD}


# --- the accountd protocol -------------------------------------------------------


@pytest.mark.unit
def test_inner_key_change_jws_is_signed_for_its_own_key() -> None:
    request = parse_signing_request(line(inner(), ROLLOVER), "ES256", jwk=OWN)
    assert not request.binding
    assert json.loads(request.payload) == ROLLOVER


@pytest.mark.unit
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
        (inner(alg=None), ROLLOVER, "inner keyChange JWS has no alg"),
        ({"jwk": OWN, "url": KEY_CHANGE_URL}, ROLLOVER, "inner keyChange JWS has no alg"),
        (inner(), None, "payload is not JSON"),
    ],
)
def test_inner_key_change_refusals(header: dict[str, Any], payload: Any, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        parse_signing_request(line(header, payload), "ES256", jwk=OWN)


@pytest.mark.unit
@pytest.mark.parametrize("payload", [b"[" * 100000, b'{"a":' * 100000])
def test_deep_inner_jws_payloads_are_refused_unparsed(payload: bytes) -> None:
    binding = {"alg": "HS256", "kid": "kid-1", "url": "https://ca.test/new-acct"}
    for header, what in ((inner(), "inner keyChange JWS"), (binding, "external account binding")):
        with pytest.raises(ProtocolError) as refused:
            parse_signing_request(signing_line(header, payload), "ES256", jwk=OWN, eab=EAB)
        assert str(refused.value) == f"{what}: payload nested deeper than {MAX_JSON_DEPTH}"


@pytest.mark.unit
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


@pytest.mark.unit
def test_external_account_binding_is_signed_for_its_own_key_and_kid() -> None:
    header = {"alg": "HS256", "kid": "kid-1", "url": "https://ca.test/new-acct"}
    request = parse_signing_request(line(header, OWN), "ES256", jwk=OWN, eab=EAB)
    assert request.binding


@pytest.mark.unit
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


@pytest.mark.unit
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


class StandInKeys:
    """An account key and an HMAC key for OWN that note what each signed."""

    def __init__(self) -> None:
        self.used: list[tuple[str, bytes]] = []

    def account(self, data: bytes) -> bytes:
        self.used.append(("account", data))
        return b"account signature"

    def mac(self, data: bytes) -> bytes:
        self.used.append(("mac", data))
        return b"mac signature"

    def signer(self, eab: Binding | None) -> RequestSigner:
        """A RequestSigner holding these keys, the HMAC key only with EAB."""
        key = AccountKey("ES256", OWN, self.account)
        return RequestSigner(key, None, Log(Log.INFO), None if eab is None else (eab, self.mac))


@pytest.mark.unit
def test_request_signer_signs_a_binding_with_the_hmac_key_only() -> None:
    keys = StandInKeys()
    signer = keys.signer(EAB)
    binding = line({"alg": "HS256", "kid": "kid-1", "url": "https://ca.test/n"}, OWN)
    ordinary = request_line("ES256")
    assert signer.answer(binding, "0") == encode_signature(b"mac signature")
    assert signer.answer(ordinary, "0") == encode_signature(b"account signature")
    assert keys.used == [("mac", binding.rstrip()), ("account", ordinary.rstrip())]


@pytest.mark.unit
def test_request_signer_without_eab_key_never_signs_a_binding() -> None:
    keys = StandInKeys()
    signer = keys.signer(None)
    binding = line({"alg": "HS256", "kid": "kid-1", "url": "https://ca.test/n"}, OWN)
    assert signer.answer(binding, "0") is None
    # What the protocol never lets through is a programming error, not a refusal.
    request = SigningRequest(binding.rstrip(), {"alg": "HS256"}, json.dumps(OWN).encode(), True)
    with pytest.raises(RuntimeError, match="no EAB key"):
        signer.sign(request)
    assert keys.used == []


@pytest.mark.process
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
    done = run_accountd(f"--config={conf}", "--stdio", stdin=key_change + binding + ordinary)
    assert done.returncode == 0, done.stderr
    greeting, jwk_line, *signatures = done.stdout.split(b"\r\n")
    assert json.loads(greeting[5:])["eab-kid"] == "kid-1"
    assert json.loads(jwk_line) == jwk
    verify(jwk, key_change.rstrip(), signatures[0])
    assert unb64url(signatures[1]) == hmac.digest(secret, binding.rstrip(), hashlib.sha384)
    verify(jwk, ordinary.rstrip(), signatures[2])


@pytest.mark.process
def test_accountd_refuses_a_key_change_to_another_key(tmp_path: Path) -> None:
    new_key_file(tmp_path / "k.key", "p256")
    conf = tmp_path / "accountd.conf"
    conf.write_text(f"privkey = file:{tmp_path / 'k.key'}\n")
    foreign = line({"alg": "ES256", "jwk": OLD, "url": KEY_CHANGE_URL}, ROLLOVER)
    done = run_accountd(f"--config={conf}", "--stdio", stdin=foreign + request_line("ES256"))
    assert done.stdout.count(b"\r\n") == 2  # the greeting, and no signature at all
    assert b"NOSIGN [inner keyChange JWS: jwk is not this accountd's key]" in done.stderr


@pytest.mark.process
@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("mode", "must be owned by uid 0 and accessible to nobody else"),
        ("alg", "eab-alg 'HS1': expected one of HS256, HS384, HS512"),
        ("garbage", "is not base64url"),
        ("half", "eab-kid and eab-hmac-key go together"),
    ],
)
@pytest.mark.root  # the messages name uid 0
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
    done = run_accountd(f"--config={conf}", "--stdio", stdin=b"")
    assert done.returncode == 1
    assert done.stdout == b""
    assert message in done.stderr.decode()
