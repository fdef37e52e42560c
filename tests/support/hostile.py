"""A hand-made ACME server on loopback, for what neither Pebble nor
acme2certifier can be made to send: it checks no signature, answers a happy
issuance by default, and whatever a test tells it to for any path."""

from __future__ import annotations

import http.server
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.pki import write_tls_material
from support.system import temporary_directory

TOKEN = "tok_en-1"
# Server text the red team sent (issue 13), and how lacme shows it.
HOSTILE_TEXT = "\x1b]0;owned\x07\x1b[2Jgone\nError: forged"
SHOWN_TEXT = "\\x1b]0;owned\\x07\\x1b[2Jgone\\nError: forged"
PEM = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"


# An answer: (status, Content-Type, body, extra headers).  A callable body is
# called with the handler to stream something unusual itself.
Answer = tuple[
    int, str, bytes | Callable[[http.server.BaseHTTPRequestHandler], None], dict[str, str]
]


@dataclass
class HostileServer:
    """An ACME server on loopback that checks no signature and answers a
    happy issuance, except for the paths in `overrides`, and first with the
    answers `queued` for a path."""

    base: str
    ca_bundle: Path
    overrides: dict[str, Answer] = field(default_factory=dict)
    queued: dict[str, list[Answer]] = field(default_factory=dict)
    user_agents: set[str] = field(default_factory=set)
    token: str = TOKEN
    order_status: str = "valid"
    requests: list[str] = field(default_factory=list)
    connections: int = 0

    @property
    def directory_url(self) -> str:
        return f"{self.base}/dir"

    def settings(self, **more: Any) -> dict[str, Any]:
        return {"server": self.directory_url, "SSL_CAfile": str(self.ca_bundle), **more}

    def answer(self, method: str, path: str) -> Answer:
        if self.queued.get(path):
            return self.queued[path].pop(0)
        if path in self.overrides:
            return self.overrides[path]
        b = self.base
        objects: dict[str, tuple[int, Any, dict[str, str]]] = {
            "/dir": (
                200,
                {
                    "newNonce": f"{b}/nonce",
                    "newAccount": f"{b}/acct",
                    "newOrder": f"{b}/new-order",
                    "revokeCert": f"{b}/revoke",
                },
                {},
            ),
            "/acct": (200, {"status": "valid"}, {"Location": f"{b}/acct/1"}),
            "/new-order": (
                201,
                {
                    "status": "pending",
                    "authorizations": [f"{b}/authz/1"],
                    "finalize": f"{b}/finalize",
                },
                {"Location": f"{b}/order/1"},
            ),
            "/authz/1": (
                200,
                {
                    "status": "pending",
                    "identifier": {"type": "dns", "value": "a.example.test"},
                    "challenges": [{"type": "http-01", "token": self.token, "url": f"{b}/chall/1"}],
                },
                {},
            ),
            "/chall/1": (200, {"type": "http-01", "status": "pending"}, {}),
            "/order/1": (
                200,
                {
                    "status": self.order_status,
                    "authorizations": [f"{b}/authz/1"],
                    "finalize": f"{b}/finalize",
                    "certificate": f"{b}/cert/1",
                },
                {},
            ),
            "/finalize": (200, {"status": "processing"}, {}),
        }
        if path == "/nonce":
            return 200, "", b"", {}
        if path == "/cert/1":
            return 200, "application/pem-certificate-chain", PEM.encode(), {}
        if path == "/revoke":
            return 200, "", b"", {}
        if path in objects:
            status, obj, headers = objects[path]
            return status, "application/json", json.dumps(obj).encode(), headers
        return 404, "application/problem+json", b'{"type":"about:blank","detail":"no"}', {}


@contextmanager
def hostile_server() -> Iterator[HostileServer]:
    with ExitStack() as stack:
        directory = temporary_directory(stack, "lacme-hostile-")
        ca_bundle, cert, key = write_tls_material(directory)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        state: list[HostileServer] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                state[0].connections += 1

            def handle_any(self) -> None:
                server = state[0]
                server.requests.append(f"{self.command} {self.path}")
                server.user_agents.add(self.headers.get("User-Agent", ""))
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                status, content_type, body, headers = server.answer(self.command, self.path)
                self.send_response(status)
                self.send_header("Replay-Nonce", f"nonce-{len(server.requests):010d}")
                if content_type:
                    self.send_header("Content-Type", content_type)
                for name, value in headers.items():
                    self.send_header(name, value)
                try:
                    if callable(body):
                        body(self)
                        return
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(body)
                except OSError:
                    self.close_connection = True

            do_GET = do_POST = do_HEAD = handle_any

        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        state.append(
            HostileServer(base=f"https://127.0.0.1:{httpd.server_port}", ca_bundle=ca_bundle)
        )
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        stack.callback(httpd.server_close)
        stack.callback(httpd.shutdown)
        yield state[0]
