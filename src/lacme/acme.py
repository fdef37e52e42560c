"""ACME (RFC 8555) over one HTTPS connection, signing through a callback.

`AcmeSession` holds what an ACME conversation needs and nothing secret: an
HTTP client (one keep-alive connection), the directory, the current nonce,
the account's public JWK or Key ID, and a `sign` callback that turns a JWS
signing input into a signature (lacme's client asks accountd for it).

Resources and states are named as in RFC 8555 (and certbot's acme library):
directory, newNonce, newAccount, newOrder, authorization, challenge,
finalize, certificate, revokeCert, keyChange; orders go pending -> ready ->
processing -> valid, or invalid.  The inner JWS of keyChange and of an
external account binding are signed through callbacks too: accountd holds
the new key and the HMAC key, never this process.

What real servers do is expected and handled here: a fresh nonce comes with
every response, `badNonce` is retried with it, connection errors and 5xx
answers are retried with bounded backoff, `Retry-After` is honoured, and one
deadline bounds every request, wait and poll.  Bodies larger than a bound or
of an unexpected Content-Type are refused.
"""

from __future__ import annotations

import email.utils
import json
import re
import ssl
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from lacme import __version__
from lacme.accountd_protocol import b64url_encode
from lacme.parsing import is_ip_address

USER_AGENT = f"lacme/{__version__}"

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
JOSE_JSON = "application/jose+json"
PEM_CHAIN = "application/pem-certificate-chain"

# Directories, orders and authorizations are a few KiB; a certificate chain
# a few tens.  Anything much larger is a broken or hostile server.
MAX_BODY = 1 << 20
MAX_CERTIFICATE_BODY = 10 << 20

ERROR_NS = "urn:ietf:params:acme:error:"

# RFC 8555 section 6.5: a badNonce answer carries a fresh nonce to retry
# with.  Retries are bounded so that a server rejecting every nonce cannot
# keep us busy until the deadline; at Pebble's worst test setting (half the
# nonces rejected) 20 retries fail one request in two million, where 10
# would fail one in two thousand: one run in twenty of a 100-request test.
MAX_BAD_NONCE_RETRIES = 20
# Connection errors and 5xx answers: retried this many times, waiting
# Retry-After or else 1, 2, 4, 8... seconds, capped.
MAX_TRANSIENT_RETRIES = 5
MAX_BACKOFF = 10.0
# Polling orders that give no Retry-After: quick at first (Pebble and
# Boulder usually validate or issue within a second), then slower.
POLL_INITIAL = 0.1
POLL_MAX = 2.0
# Beyond any sensible timeout, and far from what time.sleep() overflows on.
MAX_RETRY_AFTER = 86400.0
# One request may take at most this long, deadline permitting.
REQUEST_TIMEOUT = 30.0

# RFC 8555 section 8.3: tokens are base64url.  Whoever publishes one makes a
# file of that name, so anything else ('/', '..', NUL) is refused.
TOKEN = re.compile(r"[A-Za-z0-9_-]+")
# RFC 9773 section 4.1: base64url(AKI keyIdentifier) "." base64url(serial);
# it goes into a URL path, so nothing else.
CERT_ID = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
ALREADY_REPLACED = ERROR_NS + "alreadyReplaced"
# RFC 8288 links: <target>; param; param=value...
LINK = re.compile(r"<([^>]*)>((?:\s*;\s*[^;,]*)*)")

# sign(signing input) -> base64url signature
Signer = Callable[[bytes], str]
# provision(token, key authorization): publish an http-01 key authorization
Provision = Callable[[str, str], None]
Trace = Callable[[str], None]


@dataclass
class Problem:
    """An RFC 7807 problem document, with RFC 8555 section 6.7.1 subproblems."""

    type: str
    detail: str
    status: int | None = None
    identifier: str | None = None
    subproblems: list[Problem] = field(default_factory=list)

    @classmethod
    def from_json(cls, obj: Any) -> Problem:
        if not isinstance(obj, dict):
            return cls(type="about:blank", detail=f"malformed problem document: {obj!r:.200}")
        identifier = obj.get("identifier")
        status = obj.get("status")
        subproblems = obj.get("subproblems")
        return cls(
            type=str(obj.get("type", "about:blank")),
            detail=str(obj.get("detail", obj.get("title", ""))),
            status=status if isinstance(status, int) else None,
            identifier=(
                f"{identifier.get('type')}:{identifier.get('value')}"
                if isinstance(identifier, dict)
                else None
            ),
            subproblems=(
                [cls.from_json(sub) for sub in subproblems] if isinstance(subproblems, list) else []
            ),
        )

    def __str__(self) -> str:
        name = self.type.removeprefix(ERROR_NS)
        parts = (self.identifier, None if name == "about:blank" else name, self.detail)
        head = ": ".join(part for part in parts if part)
        return "\n  ".join([head, *(str(sub) for sub in self.subproblems)])


class AcmeError(Exception):
    """The conversation failed; `problem` is the server's word on it, if any."""

    def __init__(self, message: str, problem: Problem | None = None) -> None:
        super().__init__(f"{message}: {problem}" if problem is not None else message)
        self.problem = problem


class AcmeTimeout(AcmeError):
    """The deadline passed, or a wait the server asked for would pass it."""


def media_type(content_type: str | None) -> str:
    return (content_type or "").partition(";")[0].strip().lower()


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (RFC 9110 section 10.2.3),
    delay-seconds or HTTP-date; None if absent or unparseable."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": RFC 5322's way of saying UTC, for HTTP-dates too
        return None
    return min(max(0.0, when.timestamp() - now), MAX_RETRY_AFTER)


@dataclass
class Response:
    """An HTTP response read in full (within its size bound)."""

    method: str
    url: str
    status: int
    headers: httpx.Headers
    body: bytes

    @property
    def media_type(self) -> str:
        return media_type(self.headers.get("content-type"))

    @property
    def location(self) -> str:
        location: str | None = self.headers.get("location")
        if not location:
            raise AcmeError(f"{self.method} {self.url}: HTTP {self.status} without a Location")
        return str(httpx.URL(self.url).join(location))

    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("retry-after"), time.time())

    def problem(self) -> Problem | None:
        if self.status < 400 or self.media_type != PROBLEM_JSON:
            return None
        try:
            return Problem.from_json(json.loads(self.body))
        except ValueError:
            return Problem(type="about:blank", detail="problem document is not JSON")

    def check(self) -> Response:
        """Self if successful, else an AcmeError with the server's problem."""
        if self.status < 400:
            return self
        problem = self.problem()
        what = f"{self.method} {self.url}: HTTP {self.status}"
        if problem is None:
            raise AcmeError(f"{what} (Content-Type {self.media_type or 'none'}, no problem)")
        raise AcmeError(what, problem)

    def json(self) -> dict[str, Any]:
        """The body of a successful application/json response, an object."""
        self.check()
        if self.media_type != JSON:
            raise AcmeError(
                f"{self.method} {self.url}: Content-Type {self.media_type or 'none'}, not {JSON}"
            )
        try:
            obj = json.loads(self.body)
        except ValueError as e:
            raise AcmeError(f"{self.method} {self.url}: body is not JSON ({e})") from None
        if not isinstance(obj, dict):
            raise AcmeError(f"{self.method} {self.url}: body is not a JSON object")
        return obj


class Deadline:
    """The `timeout` setting: one deadline for the whole conversation (none if 0)."""

    def __init__(
        self,
        timeout: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.timeout = timeout
        self.clock = clock
        self.wait = sleep
        self.end = clock() + timeout if timeout > 0 else None

    def remaining(self, what: str) -> float | None:
        """Seconds left (None: no deadline); raises AcmeTimeout if none are."""
        if self.end is None:
            return None
        left = self.end - self.clock()
        if left <= 0:
            raise AcmeTimeout(f"timeout ({self.timeout:g}s) exceeded {what}")
        return left

    def sleep(self, seconds: float, what: str, *, server_asked: bool) -> None:
        """Wait, unless that passes the deadline.  A wait of our own choosing
        is shortened instead, leaving time for one more look."""
        left = self.remaining(what)
        if left is not None and seconds >= left:
            if server_asked:
                raise AcmeTimeout(
                    f"timeout ({self.timeout:g}s) would be exceeded waiting the "
                    f"{seconds:g}s the server asked for {what}"
                )
            seconds = left / 2
        self.wait(seconds)


class AcmeSession:
    """One ACME conversation with the server whose directory is `directory_url`.

    `jwk` (may be empty when accountd only knows the Key ID), its RFC 7638
    `thumbprint` and `kid` are the account's; `sign` returns the base64url
    signature of a signing input made with `alg`.  Use as a context manager to close the connection.
    """

    def __init__(
        self,
        directory_url: str,
        *,
        http: httpx.Client,
        sign: Signer,
        alg: str,
        jwk: dict[str, Any],
        thumbprint: str,
        kid: str | None,
        deadline: Deadline,
        trace: Trace | None = None,
        eab: tuple[str, str] | None = None,
    ) -> None:
        self.directory_url = directory_url
        self.http = http
        self.sign = sign
        self.alg = alg
        self.jwk = jwk
        self.thumbprint = thumbprint
        self.kid = kid
        self.deadline = deadline
        self.trace = trace
        # (alg, kid) of the external account binding `sign` makes, if any.
        self.eab = eab
        self.nonce: str | None = None
        self._directory: dict[str, Any] | None = None

    def __enter__(self) -> AcmeSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.http.close()

    # -- HTTP ---------------------------------------------------------------

    def _send(self, method: str, url: str, body: bytes | None, limit: int, accept: str) -> Response:
        """One HTTP exchange, reading at most `limit` bytes of body."""
        left = self.deadline.remaining(f"before {method} {url}")
        timeout = REQUEST_TIMEOUT if left is None else min(left, REQUEST_TIMEOUT)
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = JOSE_JSON
        if self.trace:
            self.trace(f">>> {method} {url}")
        with self.http.stream(
            method, url, content=body, headers=headers, timeout=timeout
        ) as response:
            length = response.headers.get("content-length", "")
            if length.isdigit() and int(length) > limit:
                raise AcmeError(f"{method} {url}: refusing a {length}-byte body (limit {limit})")
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > limit:
                    raise AcmeError(f"{method} {url}: refusing a body over {limit} bytes")
                chunks.append(chunk)
                # A server dripping bytes would otherwise outlive the deadline.
                self.deadline.remaining(f"reading the answer to {method} {url}")
        result = Response(method, url, response.status_code, response.headers, b"".join(chunks))
        # RFC 8555 section 6.5: any response may carry the next nonce, even an error.
        if nonce := response.headers.get("replay-nonce"):
            self.nonce = nonce
        if self.trace:
            headers_text = "".join(f"\n    {k}: {v}" for k, v in response.headers.multi_items())
            self.trace(f"<<< HTTP {response.status_code} {method} {url}{headers_text}")
            if result.media_type in (JSON, PROBLEM_JSON):
                self.trace(f"<<< {result.body.decode(errors='replace')}")
        return result

    def _request(
        self,
        method: str,
        url: str,
        *,
        payload: dict[str, Any] | None = None,
        signed: bool = False,
        use_jwk: bool = False,
        limit: int = MAX_BODY,
        accept: str = JSON,
    ) -> Response:
        """An HTTP request, signed if `signed` (POST-as-GET when `payload` is
        None), retried on badNonce, connection errors and 5xx answers."""
        bad_nonces = 0
        transient = 0
        while True:
            body = self._jws(url, payload, use_jwk) if signed else None
            try:
                response = self._send(method, url, body, limit, accept)
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as e:
                raise AcmeError(f"{method} {url}: {e}") from None
            except httpx.TransportError as e:
                failure = f"{method} {url}: {e or type(e).__name__}"
                # An untrusted certificate will not become trusted by retrying.
                if _caused_by(e, ssl.SSLCertVerificationError):
                    raise AcmeError(failure) from None
                self.deadline.remaining(f"during {failure}")
                retry_after = None
            except httpx.HTTPError as e:  # a body that fails to decode, say
                raise AcmeError(f"{method} {url}: {e or type(e).__name__}") from None
            else:
                problem = response.problem()
                if problem is not None and problem.type == ERROR_NS + "badNonce":
                    bad_nonces += 1
                    if bad_nonces > MAX_BAD_NONCE_RETRIES:
                        raise AcmeError(f"{method} {url}: {bad_nonces} nonces rejected", problem)
                    continue
                if response.status < 500:
                    return response
                failure = f"{method} {url}: HTTP {response.status}"
                if problem is not None:
                    failure += f" ({problem})"
                retry_after = response.retry_after()
            transient += 1
            if transient > MAX_TRANSIENT_RETRIES:
                raise AcmeError(f"giving up after {transient} attempts: {failure}")
            delay = (
                retry_after if retry_after is not None else min(MAX_BACKOFF, 2.0 ** (transient - 1))
            )
            if self.trace:
                self.trace(f"!!! {failure}; retrying in {delay:g}s")
            self.deadline.sleep(
                delay, f"to retry {method} {url}", server_asked=retry_after is not None
            )

    def _jws(self, url: str, payload: dict[str, Any] | None, use_jwk: bool) -> bytes:
        """A flattened JWS (RFC 7515 section 7.2.2) as RFC 8555 section 6.2 wants."""
        if self.nonce is None:
            self.new_nonce()
        header: dict[str, Any] = {"alg": self.alg, "nonce": self.nonce, "url": url}
        if use_jwk:
            if not self.jwk:
                raise AcmeError(
                    "accountd sent an empty JWK (it has a Key ID configured) "
                    "but this request must carry the account key"
                )
            header["jwk"] = self.jwk
        elif self.kid is None:
            raise AcmeError("no account Key ID to sign with")
        else:
            header["kid"] = self.kid
        if self.trace:
            self.trace(f">>> {json.dumps(header)} {'' if payload is None else json.dumps(payload)}")
        protected = b64url_encode(json.dumps(header, separators=(",", ":")).encode())
        encoded_payload = (
            b""
            if payload is None
            else b64url_encode(json.dumps(payload, separators=(",", ":")).encode())
        )
        signature = self.sign(protected + b"." + encoded_payload)
        # Each nonce is good for one request; the response brings the next.
        self.nonce = None
        return json.dumps(
            {
                "protected": protected.decode(),
                "payload": encoded_payload.decode(),
                "signature": signature,
            }
        ).encode()

    def post(
        self,
        url: str,
        payload: dict[str, Any] | None = None,
        *,
        use_jwk: bool = False,
        limit: int = MAX_BODY,
        accept: str = JSON,
    ) -> Response:
        """A signed POST; `payload` None makes it a POST-as-GET."""
        return self._request(
            "POST", url, payload=payload, signed=True, use_jwk=use_jwk, limit=limit, accept=accept
        )

    # -- Resources ----------------------------------------------------------

    @property
    def directory(self) -> dict[str, Any]:
        if self._directory is None:
            self._directory = self._request("GET", self.directory_url).json()
        return self._directory

    def resource(self, name: str) -> str:
        url = self.directory.get(name)
        if not isinstance(url, str):
            raise AcmeError(f"the directory {self.directory_url} has no {name!r} resource")
        return url

    def _meta(self) -> dict[str, Any]:
        meta = self.directory.get("meta")
        return meta if isinstance(meta, dict) else {}

    def terms_of_service(self) -> str | None:
        tos = self._meta().get("termsOfService")
        return tos if isinstance(tos, str) else None

    def new_nonce(self) -> None:
        response = self._request("HEAD", self.resource("newNonce"))
        response.check()
        if self.nonce is None:
            raise AcmeError(f"HEAD {response.url}: no Replay-Nonce")

    def new_account(self, payload: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """newAccount; sets `kid`.  Returns the account and whether it is new (201).
        A registration carries the external account binding, if there is one."""
        url = self.resource("newAccount")
        if not payload.get("onlyReturnExisting"):
            if self.eab is not None:
                alg, eab_kid = self.eab
                payload = {
                    **payload,
                    "externalAccountBinding": self._inner_jws(
                        {"alg": alg, "kid": eab_kid, "url": url}, self.jwk, self.sign
                    ),
                }
            elif self._meta().get("externalAccountRequired") is True:
                raise AcmeError(
                    f"{self.directory_url} requires an external account binding: "
                    "set eab-kid and eab-hmac-key in lacme-accountd.conf"
                )
        response = self.post(url, payload, use_jwk=True)
        account = response.json()
        self.kid = response.location
        return account, response.status == 201

    def find_account(self) -> str | None:
        """The account Key ID (looked up with onlyReturnExisting unless known),
        or None if the key has no account."""
        if self.kid is None:
            response = self.post(
                self.resource("newAccount"), {"onlyReturnExisting": True}, use_jwk=True
            )
            problem = response.problem()
            if problem is not None and problem.type == ERROR_NS + "accountDoesNotExist":
                return None
            response.check()
            self.kid = response.location
        return self.kid

    def key_change(self, alg: str, jwk: dict[str, Any], thumbprint: str, sign: Signer) -> None:
        """Move the account to the key JWK (with its THUMBPRINT), which SIGN
        signs for with ALG (RFC 8555 section 7.3.5); from then on the session
        uses that key."""
        url = self.resource("keyChange")
        kid = self.account_kid()
        if not self.jwk:
            raise AcmeError(
                "accountd sent an empty JWK (it has a Key ID configured), "
                "but a key change must name the old key"
            )
        inner = self._inner_jws(
            {"alg": alg, "jwk": jwk, "url": url}, {"account": kid, "oldKey": self.jwk}, sign
        )
        self.post(url, inner).check()
        self.alg, self.jwk, self.thumbprint, self.sign = alg, jwk, thumbprint, sign

    def _inner_jws(
        self, header: dict[str, Any], payload: dict[str, Any], sign: Signer
    ) -> dict[str, str]:
        """A nonce-less JWS carried in a request's payload (RFC 8555 sections 7.3.4, 7.3.5)."""
        if self.trace:
            self.trace(f">>> inner {json.dumps(header)} {json.dumps(payload)}")
        protected = b64url_encode(json.dumps(header, separators=(",", ":")).encode())
        encoded_payload = b64url_encode(json.dumps(payload, separators=(",", ":")).encode())
        return {
            "protected": protected.decode(),
            "payload": encoded_payload.decode(),
            "signature": sign(protected + b"." + encoded_payload),
        }

    def account_kid(self) -> str:
        kid = self.find_account()
        if kid is None:
            raise AcmeError("no account for this key; register one with `lacme account --register`")
        return kid

    def update_account(self, payload: dict[str, Any] | None) -> dict[str, Any]:
        """Update the account (RFC 8555 section 7.3.2), or fetch it if `payload` is None."""
        return self.post(self.account_kid(), payload).json()

    def new_order(
        self, domains: Iterable[str], *, profile: str | None = None, replaces: str | None = None
    ) -> tuple[str, dict[str, Any]]:
        """newOrder for DNS identifiers, and IP ones (RFC 8738); (order URL, order).
        PROFILE names one of the directory's meta.profiles; REPLACES is the
        ARI certID (RFC 9773 section 5) of the certificate the order renews."""
        identifiers = [{"type": identifier_type(domain), "value": domain} for domain in domains]
        payload: dict[str, Any] = {"identifiers": identifiers}
        if profile is not None:
            payload["profile"] = profile
        if replaces is not None:
            payload["replaces"] = replaces
        self.account_kid()
        response = self.post(self.resource("newOrder"), payload)
        problem = response.problem()
        if replaces is not None and problem is not None and problem.type == ALREADY_REPLACED:
            # That certificate was renewed already (by a run whose installation
            # failed, say): a new certificate is still wanted, just not as its
            # replacement.
            print(f"Warning: {problem}; ordering without `replaces`", file=sys.stderr)
            del payload["replaces"]
            response = self.post(self.resource("newOrder"), payload)
        order = response.json()
        return response.location, order

    def renewal_info(self, cert_id: str) -> tuple[dict[str, Any], float | None]:
        """The renewal information of the certificate with ARI certID CERT_ID
        (RFC 9773 section 4.1, an unsigned GET) and the Retry-After it came
        with, in seconds."""
        if not CERT_ID.fullmatch(cert_id):
            raise AcmeError(f"not an ARI certID: {cert_id[:100]!r}")
        url = self.resource("renewalInfo").rstrip("/") + "/" + cert_id
        response = self._request("GET", url)
        return response.json(), response.retry_after()

    def authorization(self, url: str) -> dict[str, Any]:
        return self.post(url).json()

    def answer_challenge(self, url: str) -> dict[str, Any]:
        """Tell the server the challenge is ready to be validated (section 7.5.1)."""
        return self.post(url, {}).json()

    def finalize(self, order: dict[str, Any], csr_der: bytes) -> Response:
        url = _text(order.get("finalize"), "finalize URL of the order")
        return self.post(url, {"csr": b64url_encode(csr_der).decode()})

    def certificate(self, url: str, preferred_chain: str | None = None) -> str:
        """Download the certificate chain (section 7.4.2), PEM: the first of
        the default chain and its alternates whose topmost certificate was
        issued by PREFERRED_CHAIN (a common name), else the default one."""
        chain, response = self._chain(url)
        if preferred_chain is None:
            return chain
        issuers = [_chain_issuer(chain)]
        if _same_name(issuers[0], preferred_chain):
            return chain
        for alternate in _alternate_links(response):
            alternate_chain, _ = self._chain(alternate)
            issuers.append(_chain_issuer(alternate_chain))
            if _same_name(issuers[-1], preferred_chain):
                return alternate_chain
        offered = ", ".join(repr(issuer) for issuer in issuers)
        print(
            f"Warning: no chain issued by {preferred_chain!r} (offered: {offered}); "
            "using the default chain",
            file=sys.stderr,
        )
        return chain

    def _chain(self, url: str) -> tuple[str, Response]:
        response = self.post(url, limit=MAX_CERTIFICATE_BODY, accept=PEM_CHAIN).check()
        if response.media_type != PEM_CHAIN:
            raise AcmeError(
                f"POST {url}: Content-Type {response.media_type or 'none'}, not {PEM_CHAIN}"
            )
        try:
            chain = response.body.decode("ascii")
        except UnicodeDecodeError:
            raise AcmeError(f"POST {url}: certificate chain is not PEM (not ASCII)") from None
        if not chain.lstrip().startswith("-----BEGIN CERTIFICATE-----"):
            raise AcmeError(f"POST {url}: certificate chain is not PEM")
        return chain, response

    def revoke(self, certificate_der: bytes, reason: int | None = None) -> None:
        """revokeCert, with the account's Key ID if the key has an account,
        else with the JWK (accountd then holds the certificate's own key);
        REASON is an RFC 5280 reason code."""
        payload: dict[str, Any] = {"certificate": b64url_encode(certificate_der).decode()}
        if reason is not None:
            payload["reason"] = reason
        use_jwk = self.find_account() is None
        self.post(self.resource("revokeCert"), payload, use_jwk=use_jwk).check()

    # -- Issuance -----------------------------------------------------------

    def issue(
        self,
        domains: Iterable[str],
        csr_der: bytes,
        provision: Provision,
        *,
        preferred_chain: str | None = None,
        profile: str | None = None,
        replaces: str | None = None,
    ) -> str:
        """Order a certificate for DOMAINS with the CSR, having `provision`
        publish each pending http-01 key authorization; the PEM chain
        (see `certificate` for PREFERRED_CHAIN, `new_order` for PROFILE and
        REPLACES)."""
        url, order = self.new_order(domains, profile=profile, replaces=replaces)
        for authz_url in _list(order, "authorizations", "order"):
            authz = self.authorization(_text(authz_url, "authorization URL"))
            identifier = _identifier(authz)
            status = authz.get("status")
            if status == "valid":
                continue
            if status != "pending":
                raise AcmeError(
                    f"authorization for {identifier} is {status}", _challenge_problems(authz)
                )
            challenges = _list(authz, "challenges", f"authorization for {identifier}")
            challenge = next(
                (c for c in challenges if isinstance(c, dict) and c.get("type") == "http-01"),
                None,
            )
            if challenge is None:
                raise AcmeError(f"no http-01 challenge offered for {identifier}")
            token = _text(challenge.get("token"), f"http-01 token for {identifier}")
            if not TOKEN.fullmatch(token):
                raise AcmeError(f"refusing the http-01 token {token[:100]!r} for {identifier}")
            provision(token, f"{token}.{self.thumbprint}")
            self.answer_challenge(_text(challenge.get("url"), f"challenge URL for {identifier}"))
        order = self.wait_for_order(url, order, csr_der)
        return self.certificate(
            _text(order.get("certificate"), "certificate URL of the order"), preferred_chain
        )

    def wait_for_order(self, url: str, order: dict[str, Any], csr_der: bytes) -> dict[str, Any]:
        """Poll the order through pending, ready (finalizing it then),
        processing, until valid; raise if it becomes invalid, or at the deadline."""
        interval = POLL_INITIAL
        delay = interval
        server_asked = False
        finalized = False
        while True:
            status = order.get("status")
            if status == "valid":
                return order
            if status == "invalid":
                raise self._order_failure(order)
            try:
                if status == "ready" and not finalized:
                    response = self.finalize(order, csr_der)
                    finalized = True
                elif status in ("pending", "ready", "processing"):
                    self.deadline.sleep(delay, f"polling order {url}", server_asked=server_asked)
                    response = self.post(url)
                else:
                    raise AcmeError(f"order {url} has unknown status {status!r}")
            except AcmeTimeout as e:
                raise AcmeTimeout(f"{e} (the order was {status})") from None
            order = response.json()
            server_wait = response.retry_after()
            server_asked = server_wait is not None
            # Back off while the status stays the same; a new one is progress,
            # and the next step (validation, issuance) is as quick to come.
            interval = (
                POLL_INITIAL if order.get("status") != status else min(POLL_MAX, interval * 2)
            )
            delay = server_wait if server_wait is not None else interval

    def _order_failure(self, order: dict[str, Any]) -> AcmeError:
        """The order's problem, with those of its failed challenges per identifier."""
        problem = (
            Problem.from_json(order["error"])
            if "error" in order
            else Problem(type="about:blank", detail="")
        )
        for url in _list(order, "authorizations", "order"):
            authz = self.authorization(_text(url, "authorization URL"))
            if authz.get("status") == "invalid":
                problem.subproblems += [
                    sub
                    for sub in _challenge_problems(authz).subproblems
                    # Servers often copy the failed challenge's error into the order's.
                    if (sub.type, sub.detail) != (problem.type, problem.detail)
                ]
        return AcmeError("the order is invalid", problem)


def identifier_type(value: str) -> str:
    """RFC 8738: an IP address is an `ip` identifier, anything else `dns`."""
    return "ip" if is_ip_address(value) else "dns"


def _alternate_links(response: Response) -> list[str]:
    """The targets of the response's `Link: <...>;rel="alternate"` headers."""
    urls: list[str] = []
    for value in response.headers.get_list("link"):
        for match in LINK.finditer(value):
            for param in match.group(2).split(";"):
                name, _, rel = param.partition("=")
                if name.strip().lower() == "rel" and "alternate" in rel.strip().strip('"').split():
                    urls.append(str(httpx.URL(response.url).join(match.group(1))))
    return urls


def _chain_issuer(chain: str) -> str | None:
    """The issuer common name of the chain's topmost certificate: the root it leads to."""
    # Only newOrder with a preferred chain needs X.509 in the client.
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        top = x509.load_pem_x509_certificates(chain.encode())[-1]
    except ValueError:
        return None
    names = top.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def _same_name(issuer: str | None, preferred: str) -> bool:
    return issuer is not None and issuer.casefold() == preferred.casefold()


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, kind):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise AcmeError(f"the server sent no valid {what}")
    return value


def _list(obj: dict[str, Any], name: str, what: str) -> list[Any]:
    value = obj.get(name)
    if not isinstance(value, list):
        raise AcmeError(f"the server sent an {what} without a list of {name}")
    return value


def _identifier(authz: dict[str, Any]) -> str:
    identifier = authz.get("identifier")
    if not isinstance(identifier, dict):
        raise AcmeError("the server sent an authorization without identifier")
    return f"{identifier.get('type')}:{identifier.get('value')}"


def _challenge_problems(authz: dict[str, Any]) -> Problem:
    """The errors of an authorization's challenges, as subproblems for its identifier."""
    identifier = _identifier(authz)
    problem = Problem(type="about:blank", detail="")
    for challenge in authz.get("challenges") or []:
        if isinstance(challenge, dict) and "error" in challenge:
            sub = Problem.from_json(challenge["error"])
            sub.identifier = identifier
            problem.subproblems.append(sub)
    return problem
