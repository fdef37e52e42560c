"""A fault-injecting HTTPS proxy in front of Pebble's ACME listener, for
what real CAs send and Pebble does not.

`running_fault_proxy(pebble)` listens on 127.0.0.1 with a listener
certificate of its own CA (so a URL that bypassed it would fail the
client's verification) and forwards every request to Pebble with the Host
header the client used.  Pebble builds every URL it hands out, and checks
every JWS `url`, from that Host: all of them point at the proxy and nothing
is rewritten.  A test shapes the traffic with `hooks` (which may answer a
request themselves) and `answer_hooks` (which may alter what Pebble
answered); `exchanges` records what went through.
"""

from __future__ import annotations

import base64
import binascii
import http.server
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from support.pebble import PebbleServer
from support.pki import write_tls_material
from support.system import STOP_TIMEOUT, temporary_directory

# Every socket and request: a hung peer fails the test instead of hanging it.
SOCKET_TIMEOUT = 10.0
# ACME requests are a few KiB: more is a broken client, not a test.
MAX_REQUEST_BODY = 1 << 20
# Per connection or per message, not end to end (RFC 9110 section 7.6.1).
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "proxy-connection"}
)
# Recomputed for the body the proxy sends (which httpx has decoded).
FRAMING = frozenset({"content-length", "content-encoding"})
PROBLEM_JSON = "application/problem+json"
ERROR_NS = "urn:ietf:params:acme:error:"


@dataclass(frozen=True)
class Request:
    """A request as the hooks see it; `protected` and `payload` are the
    decoded JWS (payload None for a POST-as-GET or a body that is no JWS)."""

    method: str
    path: str
    body: bytes
    protected: dict[str, Any] | None
    payload: Any


@dataclass
class Answer:
    """An HTTP answer, Pebble's (which answer hooks may alter) or canned;
    with `drip`, its status line and headers go out a byte every `drip`
    seconds, as from a server that keeps a client waiting a byte at a time."""

    status: int
    headers: httpx.Headers
    body: bytes
    drip: float = 0.0


@dataclass(frozen=True)
class Exchange:
    """One request that went through, and the status it was answered with."""

    request: Request
    status: int
    canned: bool

    def __str__(self) -> str:
        how = "canned" if self.canned else "Pebble"
        return f"{self.request.method} {self.request.path} -> {self.status} ({how})"


# A request hook answers the request itself (an Answer) or lets it through
# (None); an answer hook alters Pebble's answer in place.
RequestHook = Callable[[Request], Answer | None]
AnswerHook = Callable[[Request, Answer], None]


def problem(status: int, type_: str, detail: str, *, retry_after: str | None = None) -> Answer:
    """A canned RFC 7807 problem answer; TYPE_ without a colon is an ACME error."""
    body = json.dumps(
        {"type": type_ if ":" in type_ else ERROR_NS + type_, "detail": detail, "status": status}
    ).encode()
    headers = httpx.Headers({"Content-Type": PROBLEM_JSON})
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return Answer(status, headers, body)


def _b64url_json(text: Any) -> Any:
    if not isinstance(text, str):
        raise ValueError("not a string")
    if not text:
        return None
    return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def decode_request(method: str, path: str, body: bytes) -> Request:
    """METHOD PATH with BODY, its JWS decoded where it is one."""
    protected: dict[str, Any] | None = None
    payload: Any = None
    try:
        jws = json.loads(body) if body else None
        if isinstance(jws, dict):
            header = _b64url_json(jws.get("protected"))
            if isinstance(header, dict):
                protected, payload = header, _b64url_json(jws.get("payload"))
    except (ValueError, binascii.Error):
        protected = payload = None
    return Request(method, path, body, protected, payload)


class FaultProxy:
    """The proxy's state and what the test tells it; a
    support.servers.AcmeTestServer for master_setup()."""

    def __init__(self, pebble: PebbleServer, port: int, ca_bundle: Path) -> None:
        self.pebble = pebble
        self.base = f"https://127.0.0.1:{port}"
        self.ca_bundle = ca_bundle
        self.hooks: list[RequestHook] = []
        self.answer_hooks: list[AnswerHook] = []
        self.exchanges: list[Exchange] = []
        self.connections = 0  # accepted so far
        self._lock = threading.Lock()
        upstream = httpx.URL(pebble.directory_url)
        self._upstream = f"https://{upstream.host}:{upstream.port}"
        self._directory_path = upstream.path
        self._http = httpx.Client(verify=pebble.ssl_context(), timeout=SOCKET_TIMEOUT)
        self._resources: dict[str, str] | None = None

    @property
    def directory_url(self) -> str:
        return f"{self.base}{self._directory_path}"

    @property
    def roots_file(self) -> Path:
        return self.pebble.roots_file

    @property
    def http_port(self) -> int:
        return self.pebble.http_port

    def log(self) -> str:
        """What went through the proxy, then Pebble's own log."""
        with self._lock:
            lines = [str(exchange) for exchange in self.exchanges]
        return "--- fault proxy ---\n" + "\n".join(lines) + "\n" + self.pebble.log()

    def path(self, resource: str) -> str:
        """The path of the directory's RESOURCE (newOrder...), through the proxy."""
        if self._resources is None:
            directory = self.forward(decode_request("GET", self._directory_path, b""), {})
            self._resources = json.loads(directory.body)
        url = self._resources[resource]
        assert url.startswith(self.base + "/"), f"{resource} bypasses the proxy: {url}"
        return urlsplit(url).path

    def sent(self, method: str, resource: str) -> list[Exchange]:
        """The exchanges of METHOD requests to the directory's RESOURCE."""
        path = self.path(resource)
        with self._lock:
            return [
                e for e in self.exchanges if (e.request.method, e.request.path) == (method, path)
            ]

    def forward(self, request: Request, headers: dict[str, str]) -> Answer:
        """Pebble's answer to REQUEST, asked with the proxy's host:port as Host."""
        response = self._http.request(
            request.method,
            self._upstream + request.path,
            content=request.body or None,
            headers={**headers, "Host": urlsplit(self.base).netloc, "Accept-Encoding": "identity"},
        )
        kept = [
            (name, value)
            for name, value in response.headers.multi_items()
            if name.lower() not in HOP_BY_HOP | FRAMING
        ]
        return Answer(response.status_code, httpx.Headers(kept), response.content)

    def answer(self, request: Request, headers: dict[str, str]) -> Answer:
        """The first hook's canned answer, else Pebble's as the answer hooks alter it."""
        for hook in list(self.hooks):
            if (canned := hook(request)) is not None:
                self._record(Exchange(request, canned.status, canned=True))
                return canned
        try:
            answer = self.forward(request, headers)
        except httpx.HTTPError as e:
            answer = Answer(502, httpx.Headers({"Content-Type": "text/plain"}), str(e).encode())
        else:
            for answer_hook in list(self.answer_hooks):
                answer_hook(request, answer)
        self._record(Exchange(request, answer.status, canned=False))
        return answer

    def _record(self, exchange: Exchange) -> None:
        with self._lock:
            self.exchanges.append(exchange)

    def close(self) -> None:
        self._http.close()


class _Server(http.server.ThreadingHTTPServer):
    # Handler threads are joined on server_close(); each is bounded by its
    # socket's timeout.
    daemon_threads = False
    proxy: FaultProxy


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client uses it
    timeout = SOCKET_TIMEOUT
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.proxy._lock:
            self.server.proxy.connections += 1

    def do_GET(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BODY:
            self.send_error(413)
            return
        body = self.rfile.read(length)
        headers = {
            name: value
            for name, value in self.headers.items()
            if name.lower() not in HOP_BY_HOP | FRAMING | {"host", "accept-encoding"}
        }
        answer = self.server.proxy.answer(decode_request(self.command, self.path, body), headers)
        lines = [f"{self.protocol_version} {answer.status} {HTTPStatus(answer.status).phrase}"]
        lines += [
            f"{name}: {value}"
            for name, value in answer.headers.multi_items()
            if name.lower() not in HOP_BY_HOP | FRAMING
        ]
        lines.append(f"Content-Length: {len(answer.body)}")
        head = "".join(f"{line}\r\n" for line in lines).encode("latin-1") + b"\r\n"
        try:
            if answer.drip:
                for byte in head:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    # Not to wait for a condition: the delay is the fault.
                    time.sleep(answer.drip)
            else:
                self.wfile.write(head)
            if self.command != "HEAD":
                self.wfile.write(answer.body)
        except OSError:  # the client went away
            self.close_connection = True

    do_HEAD = do_POST = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass  # FaultProxy.exchanges is the log


@contextmanager
def running_fault_proxy(pebble: PebbleServer) -> Iterator[FaultProxy]:
    """The proxy in front of PEBBLE, on a free port; stopped and joined on exit."""
    with ExitStack() as stack:
        workdir = temporary_directory(stack, "lacme-faults-")
        ca_bundle, cert, key = write_tls_material(workdir)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        httpd = _Server(("127.0.0.1", 0), _Handler)
        stack.callback(httpd.server_close)
        # The handshake happens in the handler's thread, under its timeout,
        # not in the accepting one where a silent client would stall all.
        httpd.socket = context.wrap_socket(
            httpd.socket, server_side=True, do_handshake_on_connect=False
        )
        proxy = FaultProxy(pebble, httpd.server_address[1], ca_bundle)
        stack.callback(proxy.close)
        httpd.proxy = proxy
        thread = threading.Thread(target=httpd.serve_forever, name="fault-proxy")
        thread.start()

        def stop() -> None:
            httpd.shutdown()
            thread.join(STOP_TIMEOUT)

        stack.callback(stop)
        yield proxy


def offer_renewal_info(
    proxy: FaultProxy, window: tuple[str, str], retry_after: str = "60"
) -> list[str]:
    """Make PROXY offer ACME Renewal Information (RFC 9773), which Pebble
    lacks: a `renewalInfo` URL in the directory, and every certificate's
    suggested WINDOW (start, end: RFC 3339) at it, with RETRY_AFTER.  The
    certIDs asked about are appended to the list returned."""
    asked: list[str] = []
    prefix = "/renewal-info/"
    directory_path = urlsplit(proxy.directory_url).path

    def directory(request: Request, answer: Answer) -> None:
        if (request.method, request.path) == ("GET", directory_path) and answer.status == 200:
            resources = json.loads(answer.body)
            resources["renewalInfo"] = proxy.base + prefix.rstrip("/")
            answer.body = json.dumps(resources).encode()

    def renewal_info(request: Request) -> Answer | None:
        if request.method != "GET" or not request.path.startswith(prefix):
            return None
        asked.append(request.path.removeprefix(prefix))
        body = json.dumps({"suggestedWindow": {"start": window[0], "end": window[1]}}).encode()
        headers = {"Content-Type": "application/json", "Retry-After": retry_after}
        return Answer(200, httpx.Headers(headers), body)

    proxy.answer_hooks.append(directory)
    proxy.hooks.append(renewal_info)
    return asked


def offer_profiles(proxy: FaultProxy, *names: str) -> None:
    """Make PROXY's directory list profiles NAMES in meta.profiles, which
    Pebble 2.4 lacks (it ignores the `profile` of a newOrder)."""
    directory_path = urlsplit(proxy.directory_url).path

    def directory(request: Request, answer: Answer) -> None:
        if (request.method, request.path) == ("GET", directory_path) and answer.status == 200:
            resources = json.loads(answer.body)
            resources.setdefault("meta", {})["profiles"] = {name: name for name in names}
            answer.body = json.dumps(resources).encode()

    proxy.answer_hooks.append(directory)
