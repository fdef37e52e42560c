"""ACME's HTTP layer (RFC 8555 section 6): responses and their problem
documents (RFC 7807), Retry-After, the deadline of the whole conversation,
and the transport that sends requests over one connection, keeps the nonce
each answer brings, and retries what real servers make worth retrying.

What real servers do is expected and handled here: a fresh nonce comes with
every response, `badNonce` is retried with it, connection errors and 5xx
answers are retried with bounded backoff, `Retry-After` is honoured, and one
deadline bounds every request, wait and poll.  Bodies larger than a bound or
of an unexpected Content-Type are refused.
"""

from __future__ import annotations

import email.utils
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from lacme import __version__
from lacme.accountd_protocol import b64url_decode

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
# Beyond any sensible timeout, and far from what time.sleep() overflows on.
MAX_RETRY_AFTER = 86400.0
# One request may take at most this long, deadline permitting.
REQUEST_TIMEOUT = 30.0


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


def valid_nonce(value: str) -> bool:
    """Whether VALUE is a Replay-Nonce as RFC 8555 section 6.5.1 defines it:
    a non-empty octet string, base64url-encoded without padding."""
    if not value:
        return False
    try:
        b64url_decode(value.encode("ascii"))
    except ValueError:  # not ASCII (UnicodeEncodeError), or not base64url
        return False
    return True


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


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, kind):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


class Transport:
    """The HTTP side of one ACME conversation: one keep-alive connection,
    the nonce the last answer brought, bounded bodies, retries, and the
    deadline over all of it."""

    def __init__(self, http: httpx.Client, deadline: Deadline, trace: Trace | None) -> None:
        self.http = http
        self.deadline = deadline
        self.trace = trace
        self.nonce: str | None = None

    def take_nonce(self) -> str | None:
        """The nonce to sign the next request with, if the last answer brought
        one: each is good for one request, and the answer brings the next."""
        nonce, self.nonce = self.nonce, None
        return nonce

    def send(self, method: str, url: str, body: bytes | None, limit: int, accept: str) -> Response:
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
        # RFC 8555 section 6.5: any response may carry the next nonce, even an
        # error.  An invalid one would only be refused (section 6.5.1: clients
        # MUST ignore it): the next request asks newNonce instead.
        nonce = response.headers.get("replay-nonce")
        if nonce and valid_nonce(nonce):
            self.nonce = nonce
        if self.trace:
            headers_text = "".join(f"\n    {k}: {v}" for k, v in response.headers.multi_items())
            self.trace(f"<<< HTTP {response.status_code} {method} {url}{headers_text}")
            if result.media_type in (JSON, PROBLEM_JSON):
                self.trace(f"<<< {result.body.decode(errors='replace')}")
        return result

    def request(
        self,
        method: str,
        url: str,
        *,
        body: Callable[[], bytes] | None = None,
        limit: int = MAX_BODY,
        accept: str = JSON,
    ) -> Response:
        """An HTTP request, retried on badNonce, connection errors and 5xx
        answers; BODY makes the body anew for each attempt (a JWS needs the
        nonce of the answer before)."""
        bad_nonces = 0
        transient = 0
        while True:
            try:
                response = self.send(method, url, None if body is None else body(), limit, accept)
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
