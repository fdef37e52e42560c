"""The accountd line protocol, version 1: the contract between lacme-accountd
and the ACME client, byte for byte that of lacme 0.8.2.  Every byte that
crosses it is encoded and decoded here, and nowhere else.

Every message is one or more lines, each terminated by CRLF and at most
MAX_LINE bytes long, CRLF included.

The greeting (Greeting.encode, parse_greeting).  On each connection
accountd speaks first, with two lines:

    1 OK {"alg":"RS256","jwk-thumbprint":"...","kid":"..."}
    {"e":"AQAB","kty":"RSA","n":"..."}

the second being the account's public JWK in canonical form (`{}` when a
Key ID is configured, which keeps the client from account management).  A
peer of 0.8.2 vintage may send just `1 OK` as the first line (its key is
then RSA).

The request line (encode_signing_request, parse_signing_request).  Then the
client sends JWS signing inputs (RFC 7515 section 5.1), one per line,
`BASE64URL(protected header).BASE64URL(payload)`.  accountd refuses, by
closing the connection, any line that is not such a signing input for an
RFC 8555 request signed with its own algorithm.

The signature line (encode_signature, parse_signature).  accountd answers
each request line it accepts with `BASE64URL(signature)`, unpadded; the
client takes nothing else for an answer, and end of file for a refusal.

Beyond 0.8.2, two nonce-less signing inputs are signed, both RFC 8555 inner
JWS that bind something to this accountd's own key and nothing else (a
lacme 0.8.2 client never sends them, and everything else is as before):

- the inner JWS of a key change (section 7.3.5): `alg` (the key's own),
  `url` and `jwk`, the latter this accountd's own public key, and a payload
  naming an `account` and an `oldKey` other than this key: signed with the
  account key, so that an account can move to this key;
- the external account binding (section 7.3.4), when accountd holds an EAB
  key: `alg` (its HS256/HS384/HS512), `kid` (its key identifier) and `url`,
  and as payload this accountd's own public key: signed with the HMAC key.
  The greeting then carries `"eab-alg"` and `"eab-kid"` so the client knows
  to ask for it.
"""

import base64
import binascii
import itertools
import json
import re
from typing import Any, NamedTuple

PROTOCOL_VERSION = 1
EOL = b"\r\n"

# A finalize request carrying a CSR with hundreds of names stays far below
# this; anything longer is not a signing input lacme would send.
MAX_LINE = 1 << 20

# json.loads recurses once per level of nesting, and a line of brackets runs
# it out of stack (RecursionError) long before MAX_LINE: the depth is counted
# on the raw text first.  Perl lacme 0.8.2 refuses beyond the JSON module's
# default max_depth, 512, and so does this.
MAX_JSON_DEPTH = 512

_BASE64URL = re.compile(rb"[A-Za-z0-9_-]*")
# A JSON string, or an unterminated one to the end of the text (json.loads
# stops there): possessive and never failing, so linear however the quotes
# and backslashes fall.
_JSON_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_GREETING = re.compile(rb"(\d+) OK(?: (.*))?\r\n")


class ProtocolError(ValueError):
    """The peer broke the protocol, or refused to sign; the message says how."""


def b64url_encode(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def b64url_decode(data: bytes) -> bytes:
    """Decode unpadded base64url, refusing anything else."""
    if not _BASE64URL.fullmatch(data) or len(data) % 4 == 1:
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))
    except binascii.Error as e:
        raise ValueError("not base64url") from e


class TooDeep(ValueError):
    """JSON nested deeper than MAX_JSON_DEPTH, refused before parsing."""


def json_depth(text: str) -> int:
    """How deep the arrays and objects of TEXT nest at most, counted on the
    brackets outside strings without parsing (so in linear time and constant
    stack whatever TEXT is; for valid JSON, exactly its nesting depth)."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(itertools.accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0)


def loads(data: bytes) -> Any:
    """The JSON value in DATA (UTF-8); ValueError if it is not JSON, TooDeep
    if it nests deeper than MAX_JSON_DEPTH."""
    text = data.decode("utf-8")
    if json_depth(text) > MAX_JSON_DEPTH:
        raise TooDeep(f"nested deeper than {MAX_JSON_DEPTH}")
    return json.loads(text)


def canonical_json(obj: Any) -> bytes:
    """JSON with sorted keys and no whitespace: RFC 7638's form for JWKs."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class Binding(NamedTuple):
    """An external account binding key's algorithm and identifier (not the key)."""

    alg: str
    kid: str


class Greeting(NamedTuple):
    alg: str
    jwk_thumbprint: str
    kid: str | None
    jwk: dict[str, Any]
    eab: Binding | None = None

    def encode(self) -> bytes:
        extra: dict[str, str] = {"alg": self.alg, "jwk-thumbprint": self.jwk_thumbprint}
        if self.kid is not None:
            extra["kid"] = self.kid
        if self.eab is not None:
            extra["eab-alg"], extra["eab-kid"] = self.eab
        jwk: dict[str, Any] = {} if self.kid is not None else self.jwk
        return (
            f"{PROTOCOL_VERSION} OK ".encode()
            + json.dumps(extra, separators=(",", ":")).encode()
            + EOL
            + canonical_json(jwk)
            + EOL
        )


def parse_greeting(first: bytes, second: bytes) -> Greeting:
    """Parse the two greeting lines a client reads from accountd.

    A peer of lacme 0.8.2 vintage may omit the extra data; its key is then
    RSA and the thumbprint is computed from the JWK line.
    """
    m = _GREETING.fullmatch(first) if len(first) <= MAX_LINE else None
    if m is None:
        raise ProtocolError(f"not an accountd greeting: {first[:80]!r}")
    if int(m.group(1)) != PROTOCOL_VERSION:
        raise ProtocolError(
            f"accountd speaks protocol version {int(m.group(1))}, not {PROTOCOL_VERSION}"
        )
    if len(second) > MAX_LINE or not second.endswith(EOL):
        raise ProtocolError("accountd sent no JWK line")
    try:
        extra = loads(m.group(2)) if m.group(2) is not None else {}
        jwk = loads(second)
    except ValueError as e:
        raise ProtocolError(f"accountd sent malformed JSON: {e}") from e
    if not isinstance(extra, dict) or not isinstance(jwk, dict):
        raise ProtocolError("accountd greeting data is not a JSON object")
    thumbprint = extra.get("jwk-thumbprint")
    if thumbprint is None:
        import hashlib  # only for peers of 0.8.2 vintage; accountd starts faster without it

        thumbprint = b64url_encode(hashlib.sha256(canonical_json(jwk)).digest()).decode()
    eab_alg, eab_kid = extra.get("eab-alg"), extra.get("eab-kid")
    return Greeting(
        alg=str(extra.get("alg", "RS256")),
        jwk_thumbprint=str(thumbprint),
        kid=None if extra.get("kid") is None else str(extra["kid"]),
        jwk=jwk,
        eab=None if eab_alg is None or eab_kid is None else Binding(str(eab_alg), str(eab_kid)),
    )


class SigningRequest(NamedTuple):
    """A validated line: what to sign, and its decoded parts for the log."""

    signing_input: bytes
    header: dict[str, Any]
    payload: bytes
    # An external account binding, signed with the HMAC key, not the account key.
    binding: bool = False

    def describe(self) -> str:
        payload = self.payload.decode("utf-8", errors="backslashreplace")
        return f"header={json.dumps(self.header, sort_keys=True)} payload={payload}"


def encode_signing_request(signing_input: bytes) -> bytes:
    """The client's request line asking accountd to sign SIGNING_INPUT."""
    return signing_input + EOL


def parse_signing_request(
    line: bytes, alg: str, *, jwk: dict[str, Any] | None = None, eab: Binding | None = None
) -> SigningRequest:
    """Validate one request line (with its CRLF) for a key signing with ALG.

    JWK, the key's public JWK, allows the inner JWS of a key change to it;
    EAB, that of an external account binding of it (JWK required then).
    Raises ProtocolError naming what is wrong; nothing may be signed then.
    """
    if len(line) > MAX_LINE:
        raise ProtocolError(f"line longer than {MAX_LINE} bytes")
    if not line.endswith(EOL):
        raise ProtocolError("line not terminated by CRLF")
    signing_input = line[: -len(EOL)]
    header_b64, dot, payload_b64 = signing_input.partition(b".")
    if not dot:
        raise ProtocolError("not a JWS signing input (no '.')")
    if not header_b64:
        raise ProtocolError("empty JWS Protected Header")
    try:
        header_json = b64url_decode(header_b64)
    except ValueError:
        raise ProtocolError("malformed JWS Protected Header (not base64url)") from None
    try:
        # Empty payloads are valid: POST-as-GET, RFC 8555 section 6.3.
        payload = b64url_decode(payload_b64)
    except ValueError:
        raise ProtocolError("malformed JWS Payload (not base64url)") from None
    try:
        header = loads(header_json)
    except TooDeep as e:
        raise ProtocolError(f"invalid JWS Protected Header ({e})") from None
    except ValueError:
        raise ProtocolError("invalid JWS Protected Header (not JSON)") from None
    if not isinstance(header, dict):
        raise ProtocolError("invalid JWS Protected Header (not a JSON object)")
    if header.get("nonce") is None and header.get("url") is not None and jwk is not None:
        if header.get("jwk") is not None:
            _check_key_change(header, payload, alg, jwk)
            return SigningRequest(signing_input=signing_input, header=header, payload=payload)
        if eab is not None and header.get("alg") == eab.alg:
            _check_binding(header, payload, eab, jwk)
            return SigningRequest(
                signing_input=signing_input, header=header, payload=payload, binding=True
            )
    # RFC 8555 section 6.2: alg, nonce, url, and jwk or kid.
    missing = [field for field in ("alg", "nonce", "url") if header.get(field) is None]
    if missing:
        raise ProtocolError(f"invalid JWS Protected Header (no {', '.join(missing)})")
    if header.get("jwk") is None and header.get("kid") is None:
        raise ProtocolError("invalid JWS Protected Header (neither jwk nor kid)")
    if header["alg"] != alg:
        raise ProtocolError(f"JWS Protected Header has alg {header['alg']!r}, the key signs {alg}")
    return SigningRequest(signing_input=signing_input, header=header, payload=payload)


def _json_object(payload: bytes, what: str) -> dict[str, Any]:
    try:
        obj = loads(payload)
    except TooDeep as e:
        raise ProtocolError(f"{what}: payload {e}") from None
    except ValueError:
        raise ProtocolError(f"{what}: payload is not JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what}: payload is not a JSON object")
    return obj


def _check_key_change(
    header: dict[str, Any], payload: bytes, alg: str, jwk: dict[str, Any]
) -> None:
    """RFC 8555 section 7.3.5: the inner JWS may only move an account TO this key."""
    what = "inner keyChange JWS"
    if header.get("alg") is None:
        raise ProtocolError(f"{what} has no alg")
    if header["alg"] != alg:
        raise ProtocolError(f"{what} has alg {header['alg']!r}, the key signs {alg}")
    if header.get("kid") is not None:
        raise ProtocolError(f"{what} has a kid")
    if canonical_json(header["jwk"]) != canonical_json(jwk):
        raise ProtocolError(f"{what}: jwk is not this accountd's key")
    obj = _json_object(payload, what)
    account = obj.get("account")
    if not isinstance(account, str) or not account:
        raise ProtocolError(f"{what}: payload names no account")
    old_key = obj.get("oldKey")
    if not isinstance(old_key, dict) or not old_key:
        raise ProtocolError(f"{what}: payload names no oldKey")
    if canonical_json(old_key) == canonical_json(jwk):
        raise ProtocolError(f"{what}: oldKey is this accountd's key")


def _check_binding(
    header: dict[str, Any], payload: bytes, eab: Binding, jwk: dict[str, Any]
) -> None:
    """RFC 8555 section 7.3.4: the HMAC key only ever vouches for this key."""
    what = "external account binding"
    if header.get("kid") != eab.kid:
        raise ProtocolError(f"{what}: kid is not this accountd's EAB key identifier")
    if _json_object(payload, what) != jwk:
        raise ProtocolError(f"{what}: payload is not this accountd's key")


def encode_signature(signature: bytes) -> bytes:
    """accountd's answer to a request line it accepted: SIGNATURE, unpadded
    base64url, on a line."""
    return b64url_encode(signature) + EOL


def parse_signature(line: bytes) -> str:
    """The signature in LINE, accountd's answer to a request line (b"" for
    end of file), unpadded base64url as the JWS carries it.

    Raises ProtocolError with what accountd did, worded to follow its name
    ("closed the connection: ...", "sent a malformed signature ...").
    """
    if not line:
        raise ProtocolError("closed the connection: it refused to sign")
    malformed = f"sent a malformed signature {line[:80]!r}"
    signature = line[: -len(EOL)]
    # No algorithm makes an empty signature: refused here, not by the CA.
    if len(line) > MAX_LINE or not line.endswith(EOL) or not signature:
        raise ProtocolError(malformed)
    try:
        b64url_decode(signature)
    except ValueError:
        raise ProtocolError(malformed) from None
    return signature.decode()
