"""ACME's HTTP layer (RFC 8555 section 6): responses and their problem
documents (RFC 7807), Retry-After, the `timeout` setting, and the transport
that sends requests over one connection, keeps the nonce each answer
brings, and retries what real servers make worth retrying.

What real servers do is expected and handled here: a fresh nonce comes with
every response, `badNonce` is retried with it, connection errors and 5xx
answers are retried with bounded backoff, and `Retry-After` is honoured.
`timeout` bounds each wait, as lacme 0.8.2 meant it, not the conversation:
every exchange, from connecting to the last byte of the body, and the time
spent retrying one request or polling one resource beyond what the server
asked to wait.  Bodies larger than a bound or of an unexpected Content-Type
are refused, and so is JSON nested deeper than any ACME object, before it
is parsed.  Every request goes to an https:// URL (RFC 8555 section 6.1),
the directory's as those the server names.  What the server wrote is
escaped (lacme.log.printable) in every message made of it: it reaches
root's terminal.
"""

from __future__ import annotations

import datetime
import email.utils
import http.client
import json
import re
import select
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from lacme import __version__
from lacme.accountd_protocol import b64url_decode
from lacme.client_contract import MAX_CHAIN_OUTPUT, MAX_OUTPUT
from lacme.log import printable

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

USER_AGENT = f"lacme/{__version__}"

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
JOSE_JSON = "application/jose+json"
PEM_CHAIN = "application/pem-certificate-chain"

# Directories, orders and authorizations are a few KiB; a certificate chain
# a few tens.  Anything much larger is a broken or hostile server.  The
# master reads no more of the client's output (client_contract).
MAX_BODY = MAX_OUTPUT
MAX_CERTIFICATE_BODY = MAX_CHAIN_OUTPUT
# An ACME object nests four levels at most (a problem's subproblem's
# identifier); Python's parser recurses once a level, and a RecursionError
# deep in it is no message.
MAX_JSON_DEPTH = 20
JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
JSON_NESTING = re.compile(rb"[][{}]")

ERROR_NS = "urn:ietf:params:acme:error:"
# RFC 8288 links: <target>; param; param=value...
LINK = re.compile(r"<([^>]*)>((?:\s*;\s*[^;,]*)*)")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# What a request target keeps as the server wrote it (RFC 3986 reserved
# characters, and escapes already made); the rest, spaces and non-ASCII
# text, is percent-encoded.
URL_SAFE = "!$%&'()*+,/:;=?@[]~"
# The most read from the connection at once: a body is refused at its
# bound, not buffered whole beforehand.
READ_SIZE = 1 << 16

# RFC 8555 section 6.5: a badNonce answer carries a fresh nonce to retry
# with.  Retries are bounded so that a server rejecting every nonce cannot
# keep us busy until the timeout; at Pebble's worst test setting (half the
# nonces rejected) 20 retries fail one request in two million, where 10
# would fail one in two thousand: one run in twenty of a 100-request test.
MAX_BAD_NONCE_RETRIES = 20
# Connection errors and 5xx answers: retried this many times, waiting
# Retry-After or else 1, 2, 4, 8... seconds, capped.
MAX_TRANSIENT_RETRIES = 5
MAX_BACKOFF = 10.0
# Beyond any sensible timeout, and far from what time.sleep() overflows on.
MAX_RETRY_AFTER = 86400.0
# What one exchange may take when `timeout` is 0 (no bound on polling):
# a server that stops sending must not hold the client for ever.
EXCHANGE_TIMEOUT = 30.0
# The waits a server asks for (Retry-After) are not bounded by `timeout`:
# Boulder asks for 60 s after every 500, and ZeroSSL keeps an order
# processing for minutes.  But retrying one request, or polling one
# resource, waits at most this long in all for the server, whatever it asks.
MAX_SERVER_WAIT = 900.0


Trace = Callable[[str], None]


@dataclass
class Problem:
    """An RFC 7807 problem document, with RFC 8555 section 6.7.1 subproblems."""

    type: str
    detail: str
    status: int | None = None
    identifier: str | None = None
    # RFC 7807 section 3.1: a URL about this occurrence; for
    # userActionRequired, the page where the user acts (RFC 8555 section 7.3.3).
    instance: str | None = None
    subproblems: list[Problem] = field(default_factory=list)

    @classmethod
    def from_json(cls, obj: Any) -> Problem:
        if not isinstance(obj, dict):
            return cls(type="about:blank", detail=f"malformed problem document: {obj!r:.200}")
        identifier = obj.get("identifier")
        status = obj.get("status")
        instance = obj.get("instance")
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
            instance=str(instance) if instance is not None else None,
            subproblems=(
                [cls.from_json(sub) for sub in subproblems] if isinstance(subproblems, list) else []
            ),
        )

    def __str__(self) -> str:
        name = self.type.removeprefix(ERROR_NS)
        parts = (self.identifier, None if name == "about:blank" else name, self.detail)
        head = ": ".join(printable(part) for part in parts if part)
        instance = [] if self.instance is None else [f"instance: {printable(self.instance)}"]
        return "\n  ".join([head, *instance, *(str(sub) for sub in self.subproblems)])


class AcmeError(Exception):
    """The conversation failed; `problem` is the server's word on it, if any,
    and `retry_after` the seconds it asked to wait before trying again.
    MESSAGE and NOTES may hold what the server sent (URLs, say): the text
    of the error has them escaped, each a line, unless SHOWN says they are
    made of text escaped already (another error's, say)."""

    def __init__(
        self,
        message: str,
        problem: Problem | None = None,
        *,
        retry_after: float | None = None,
        notes: Iterable[str] = (),
        shown: bool = False,
    ) -> None:
        escape = (lambda text: text) if shown else printable
        text = escape(message) if problem is None else f"{escape(message)}: {problem}"
        super().__init__("\n  ".join([text, *map(escape, notes)]))
        self.problem = problem
        self.retry_after = retry_after


class AcmeTimeout(AcmeError):
    """A wait went past `timeout`, or past what lacme waits for the server."""


class AcmeUnreachable(AcmeError):
    """The server could not be reached (connection, TLS or I/O failures) for
    as long as the client tried."""


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


def parse_json(body: bytes) -> Any:
    """The JSON value BODY holds; ValueError if it is not JSON, or nests
    deeper than MAX_JSON_DEPTH (strings left out, each bracket counts)."""
    depth = 0
    for bracket in JSON_NESTING.finditer(JSON_STRING.sub(b"", body)):
        depth += 1 if bracket.group() in (b"[", b"{") else -1
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return json.loads(body)


class Target(NamedTuple):
    """Where a request goes: the server, and the request target (RFC 9112
    section 3.2.1) on it."""

    host: str  # ASCII: an IDNA name, an IP address
    port: int
    path: str


def check_https(method: str, url: str) -> Target:
    """Where URL points; AcmeError unless it is https:// (RFC 8555 section
    6.1: ACME servers and clients MUST use HTTPS), so that a signed request,
    a registration with its contacts, never goes out in clear, and unless it
    is a URL with a host (no control character either: urlsplit would drop
    some)."""
    if CONTROL.search(url):
        raise AcmeError(f"{method} {url}: a control character in the URL")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port or 443  # ValueError if no number in range
        host = parts.hostname or ""
        if not host.isascii():
            host = host.encode("idna").decode("ascii")
    except ValueError as e:  # UnicodeError included
        raise AcmeError(f"{method} {url}: {e}") from None
    if parts.scheme != "https":
        raise AcmeError(
            f"{method} {url}: refusing a URL that is not https:// "
            "(RFC 8555 section 6.1); nothing was sent"
        )
    if not host:
        raise AcmeError(f"{method} {url}: no host in the URL")
    path = urllib.parse.quote(parts.path or "/", safe=URL_SAFE)
    if parts.query:
        path += "?" + urllib.parse.quote(parts.query, safe=URL_SAFE)
    return Target(host, port, path)


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
    """An HTTP response read in full (within its size bound); `resent` if an
    earlier attempt at the request may have reached the server (it failed
    in transit or with a 5xx), so that a non-idempotent one may have been
    done already."""

    method: str
    url: str
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    resent: bool = False

    def header(self, name: str) -> str | None:
        """The value of header NAME, its repetitions joined (RFC 9110 section 5.3)."""
        values = self.headers.get_all(name)
        return None if values is None else ", ".join(values)

    @property
    def media_type(self) -> str:
        return media_type(self.header("content-type"))

    @property
    def location(self) -> str:
        location = self.header("location")
        if not location:
            raise AcmeError(f"{self.method} {self.url}: HTTP {self.status} without a Location")
        return urllib.parse.urljoin(self.url, location)

    def links(self, relation: str) -> list[str]:
        """The targets of the response's `Link: <...>;rel="RELATION"` headers
        (RFC 8288), resolved against its URL."""
        urls: list[str] = []
        for value in self.headers.get_all("link") or []:
            for match in LINK.finditer(value):
                for param in match.group(2).split(";"):
                    name, _, rel = param.partition("=")
                    if name.strip().lower() == "rel" and relation in rel.strip().strip('"').split():
                        urls.append(urllib.parse.urljoin(self.url, match.group(1)))
        return urls

    def retry_after(self) -> float | None:
        return parse_retry_after(self.header("retry-after"), time.time())

    def problem(self) -> Problem | None:
        if self.status < 400 or self.media_type != PROBLEM_JSON:
            return None
        try:
            return Problem.from_json(parse_json(self.body))
        except ValueError as e:
            return Problem(type="about:blank", detail=f"problem document is not JSON ({e})")

    def error(self) -> AcmeError:
        """The failure this answer reports: the server's problem document,
        and what it points the user to (RFC 8555 sections 6.6, 7.3.3: the
        terms of service to agree to, a page explaining a rate limit) and
        when it says to try again."""
        what = f"{self.method} {self.url}: HTTP {self.status}"
        problem = self.problem()
        if problem is None:
            what += f" (Content-Type {self.media_type or 'none'}, no problem)"
        terms = self.links("terms-of-service")
        notes = [f"terms of service: {url}" for url in terms]
        if terms and problem is not None and problem.type == ERROR_NS + "userActionRequired":
            notes.append("to agree to them: lacme account --tos-agreed")
        notes += [f"help: {url}" for url in self.links("help")]
        retry_after = self.retry_after()
        if retry_after is not None:
            when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=retry_after)
            notes.append(f"retry after {when:%Y-%m-%d %H:%M:%S} UTC (in {retry_after:.0f}s)")
        return AcmeError(what, problem, retry_after=retry_after, notes=notes)

    def check(self) -> Response:
        """Self if successful, else the error it reports."""
        if self.status < 400:
            return self
        raise self.error()

    def json(self) -> dict[str, Any]:
        """The body of a successful application/json response, an object."""
        self.check()
        if self.media_type != JSON:
            raise AcmeError(
                f"{self.method} {self.url}: Content-Type {self.media_type or 'none'}, not {JSON}"
            )
        try:
            obj = parse_json(self.body)
        except ValueError as e:
            raise AcmeError(f"{self.method} {self.url}: body is not JSON ({e})") from None
        if not isinstance(obj, dict):
            raise AcmeError(f"{self.method} {self.url}: body is not a JSON object")
        return obj


class Patience:
    """The `timeout` setting (0: polling is not bounded), and the clock and
    sleep it is kept with."""

    def __init__(
        self,
        timeout: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.timeout = timeout
        self.clock = clock
        self.sleep = sleep

    @property
    def exchange(self) -> float:
        """What one exchange may take, from connecting to the last body byte."""
        return self.timeout if self.timeout > 0 else EXCHANGE_TIMEOUT

    def wait(self, what: str) -> Wait:
        """A new wait for the server: retrying one request, polling one resource."""
        return Wait(self, what)


class Wait:
    """One wait for the server, bounded by `timeout` beyond the waits the
    server asked for, and those by MAX_SERVER_WAIT."""

    def __init__(self, patience: Patience, what: str) -> None:
        self.patience = patience
        self.what = what
        self.server_waited = 0.0
        timeout = patience.timeout
        self.end = patience.clock() + timeout if timeout > 0 else None

    def sleep(
        self,
        seconds: float,
        *,
        server_asked: bool,
        why: str,
        until: Callable[[float], bool] | None = None,
    ) -> bool:
        """Wait SECONDS before the next attempt, WHY being what the last one
        brought.  A wait the server asked for is honoured up to MAX_SERVER_WAIT
        in all, and moves the end of this one; one of our own choosing ends
        at the end at the latest, for one last look.  WHY is text to show,
        escaped already.  UNTIL, if given, waits instead of the patience's
        sleep, and may end sooner: what it returns (whether it did)."""
        timeout = self.patience.timeout
        if server_asked:
            if self.server_waited + seconds > MAX_SERVER_WAIT:
                raise AcmeTimeout(
                    f"giving up {printable(self.what)}: the server asked to wait "
                    f"{seconds:g}s more, past the {MAX_SERVER_WAIT:g}s lacme waits for it "
                    f"in all: {why}",
                    shown=True,
                )
            self.server_waited += seconds
            if self.end is not None:
                self.end += seconds
        elif self.end is not None:
            left = self.end - self.patience.clock()
            if left <= 0:
                raise AcmeTimeout(
                    f"timeout ({timeout:g}s) exceeded {printable(self.what)}: {why}", shown=True
                )
            seconds = min(seconds, left)
        if until is not None:
            return until(seconds)
        self.patience.sleep(seconds)
        return False


class _Bound:
    """The end of the exchange under way, which every read and write of its
    connection is bounded by: a server dripping bytes (the headers too)
    is cut off there, not at a timeout that each byte resets."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.end: float | None = None
        self.limit = 0.0

    def left(self) -> float | None:
        """The time left, the socket timeout of the next read or write;
        TimeoutError if none is."""
        if self.end is None:
            return None
        left = self.end - self.clock()
        if left <= 0:
            raise TimeoutError
        return left


class _BoundedSocket(ssl.SSLSocket):
    """A TLS socket whose every read and write, the handshake's too, may
    take what is left of the exchange (`bound`, set before the handshake)
    and no more: a socket timeout alone restarts with each read."""

    bound: _Bound

    def do_handshake(self, block: bool = False) -> None:
        self.settimeout(self.bound.left())
        super().do_handshake(block)

    def read(self, len: int = 1024, buffer: WriteableBuffer | None = None) -> bytes:
        self.settimeout(self.bound.left())
        return super().read(len, buffer)

    def write(self, data: ReadableBuffer) -> int:
        self.settimeout(self.bound.left())
        return super().write(data)

    def send(self, data: ReadableBuffer, flags: int = 0) -> int:
        self.settimeout(self.bound.left())
        return super().send(data, flags)


class _Connection(http.client.HTTPSConnection):
    """One keep-alive HTTPS connection, (re)opened within the exchange bound;
    no proxy, as lacme 0.8.2."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext, bound: _Bound) -> None:
        super().__init__(host, port, context=context)
        self.tls = context
        self.bound = bound

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.bound.left())
        try:
            # http.client writes a request's head and body apart: with Nagle's
            # algorithm the body would wait for the server's delayed ACK of
            # the head, some 40 ms a request.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # The handshake waits for the socket to know the bound.
            tls = self.tls.wrap_socket(
                sock, server_hostname=self.host, do_handshake_on_connect=False
            )
        except BaseException:
            sock.close()
            raise
        self.sock = tls
        cast(_BoundedSocket, tls).bound = self.bound
        tls.do_handshake()

    def closed_by_server(self) -> bool:
        """Whether the server closed the idle connection (or sent what no
        request asked for): a request sent on it would be lost."""
        return self.sock is not None and bool(select.select([self.sock], [], [], 0)[0])


class _NoAnswer(Exception):
    """The exchange failed in transit (connecting, TLS, a broken or stalled
    connection, a malformed answer): worth retrying, but for an untrusted
    certificate (the cause)."""


class Transport:
    """The HTTP side of one ACME conversation: one keep-alive connection,
    the nonce the last answer brought, bounded exchanges and bodies, and
    retries within the patience of the `timeout` setting."""

    def __init__(self, context: ssl.SSLContext, patience: Patience, trace: Trace | None) -> None:
        # The documented way to have wrap_socket() make a _BoundedSocket;
        # the context is the conversation's alone.
        context.sslsocket_class = _BoundedSocket
        # As httpx did, and as servers multiplexing HTTP versions may want.
        context.set_alpn_protocols(["http/1.1"])
        self.context = context
        self.patience = patience
        self.bound = _Bound(patience.clock)
        self.connection: _Connection | None = None
        self.trace = trace
        self.nonce: str | None = None

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def take_nonce(self) -> str | None:
        """The nonce to sign the next request with, if the last answer brought
        one: each is good for one request, and the answer brings the next."""
        nonce, self.nonce = self.nonce, None
        return nonce

    def send(self, method: str, url: str, body: bytes | None, limit: int, accept: str) -> Response:
        """One HTTP exchange, reading at most `limit` bytes of body, within
        the exchange bound; _NoAnswer if it fails in transit."""
        target = check_https(method, url)
        headers = {"User-Agent": USER_AGENT, "Accept": accept, "Accept-Language": "en"}
        if body is not None:
            headers["Content-Type"] = JOSE_JSON
        if self.trace:
            self.trace(f">>> {method} {printable(url)}")
        self.bound.limit = self.patience.exchange
        self.bound.end = self.patience.clock() + self.bound.limit
        try:
            result = self.exchange(method, url, target, body, headers, limit)
        except TimeoutError as e:
            self.close()
            raise _NoAnswer(f"no complete answer within {self.bound.limit:g}s") from e
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise _NoAnswer(str(e) or type(e).__name__) from e
        except BaseException:
            self.close()  # a body refused, say: its rest is still coming
            raise
        finally:
            self.bound.end = None
        # RFC 8555 section 6.5: any response may carry the next nonce, even an
        # error.  An invalid one would only be refused (section 6.5.1: clients
        # MUST ignore it): the next request asks newNonce instead.
        nonce = result.header("replay-nonce")
        if nonce and valid_nonce(nonce):
            self.nonce = nonce
        if self.trace:
            headers_text = "".join(
                f"\n    {printable(k)}: {printable(v)}" for k, v in result.headers.items()
            )
            self.trace(f"<<< HTTP {result.status} {method} {printable(url)}{headers_text}")
            if result.media_type in (JSON, PROBLEM_JSON):
                self.trace(f"<<< {printable(result.body.decode('utf-8', 'surrogateescape'))}")
        return result

    def exchange(
        self,
        method: str,
        url: str,
        target: Target,
        body: bytes | None,
        headers: dict[str, str],
        limit: int,
    ) -> Response:
        """The request sent and its answer read, on the connection kept
        if it is to the same server and still open, else a new one."""
        connection = self.connection
        if connection is not None and (
            (connection.host, connection.port) != target[:2] or connection.closed_by_server()
        ):
            self.close()
            connection = None
        if connection is None:
            connection = self.connection = _Connection(
                target.host, target.port, self.context, self.bound
            )
        connection.request(method, target.path, body, headers)
        answer = connection.getresponse()
        length = answer.getheader("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise AcmeError(f"{method} {url}: refusing a {length}-byte body (limit {limit})")
        # http.client asks for none (Accept-Encoding: identity): bodies are
        # bounded as they come, with nothing to decompress.
        encoding = answer.getheader("content-encoding", "").strip().lower()
        if encoding not in ("", "identity"):
            raise AcmeError(f"{method} {url}: refusing a body in Content-Encoding {encoding}")
        chunks: list[bytes] = []
        size = 0
        while chunk := answer.read(min(READ_SIZE, limit + 1 - size)):
            size += len(chunk)
            if size > limit:
                raise AcmeError(f"{method} {url}: refusing a body over {limit} bytes")
            chunks.append(chunk)
        return Response(method, url, answer.status, answer.headers, b"".join(chunks))

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
        wait = self.patience.wait("retrying")
        bad_nonces = 0
        transient = 0
        unreachable = False  # the last attempt got no answer at all
        while True:
            try:
                response = self.send(method, url, None if body is None else body(), limit, accept)
            except _NoAnswer as e:
                failure = printable(f"{method} {url}: {e}")
                # An untrusted certificate will not become trusted by retrying.
                if isinstance(e.__cause__, ssl.SSLCertVerificationError):
                    raise AcmeError(failure, shown=True) from None
                retry_after = None
                unreachable = True
            else:
                response.resent = transient > 0
                problem = response.problem()
                if problem is not None and problem.type == ERROR_NS + "badNonce":
                    bad_nonces += 1
                    if bad_nonces > MAX_BAD_NONCE_RETRIES:
                        raise AcmeError(f"{method} {url}: {bad_nonces} nonces rejected", problem)
                    continue
                if response.status < 500:
                    return response
                failure = str(response.error())
                retry_after = response.retry_after()
                unreachable = False
            transient += 1
            if transient > MAX_TRANSIENT_RETRIES:
                error = AcmeUnreachable if unreachable else AcmeError
                raise error(f"giving up after {transient} attempts: {failure}", shown=True)
            delay = (
                retry_after if retry_after is not None else min(MAX_BACKOFF, 2.0 ** (transient - 1))
            )
            if self.trace:
                self.trace(f"!!! {failure}; retrying in {delay:g}s")
            try:
                wait.sleep(delay, server_asked=retry_after is not None, why=failure)
            except AcmeTimeout as e:
                if unreachable:
                    raise AcmeUnreachable(str(e), shown=True) from None
                raise
