"""The http-01 webserver process (lacme.webserver), driven over real sockets.

Each test binds a listening socket, as lacme's master does, and starts
`python -m lacme.webserver FD` on it with a challenge directory as its
working directory.  Every response must be a token file's content, 400, 403
or 404, and the process must survive whatever it is sent.  The Perl master
driving our webserver in place of its own ends this file.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from lacme import webserver
from support import requires
from support.commands import CONTACT, PERL_ACCOUNTD
from support.masters import perl_master_setup
from support.pebble import PebbleServer
from support.proc import open_fds
from support.system import stop_process, wait_for

PREFIX = "/.well-known/acme-challenge/"
TOKENS = {
    "tok_1": b"tok_1.thumbprint-of-the-account-key",
    "Zm9v-YmFy_42": b"Zm9v-YmFy_42.other-key-authorization",
    "empty": b"",
}
SECRET = b"-----BEGIN PRIVATE KEY----- not for the web"
# Deeper than the 5 of lacme's master: a test opening connections in a loop
# can outrun the webserver's scheduling, and the kernel drops what overflows.
BACKLOG = 64
CLIENT_TIMEOUT = 10.0


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class WebserverProcess:
    proc: subprocess.Popen[bytes]
    family: socket.AddressFamily
    address: str | tuple[str, int]
    stdout: Path
    stderr: Path

    def connect(self, timeout: float = CLIENT_TIMEOUT) -> socket.socket:
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(self.address)
        return sock

    def exchange(self, request: bytes, timeout: float = CLIENT_TIMEOUT) -> bytes:
        """Send `request`, end our side, and read until the server closes."""
        with self.connect(timeout) as sock:
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
            return read_all(sock)

    def get(self, target: str, method: str = "GET", timeout: float = CLIENT_TIMEOUT) -> Response:
        raw = self.exchange(
            f"{method} {target} HTTP/1.1\r\nHost: a.example.test\r\n"
            "User-Agent: test\r\nAccept: */*\r\n\r\n".encode(),
            timeout,
        )
        return parse_response(raw, head=method == "HEAD")

    def assert_alive(self) -> None:
        assert self.proc.poll() is None, f"webserver exited {self.proc.returncode}: {self.log()}"

    def log(self) -> str:
        # Written before the response is sent, so complete once it is read.
        return self.stderr.read_text(errors="replace")


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def parse_response(raw: bytes, head: bool = False) -> Response:
    """Parse one response; fail unless it has exactly the headers we promise."""
    head_block, separator, body = raw.partition(b"\r\n\r\n")
    assert separator, f"no end of headers in {raw!r}"
    status_line, *header_lines = head_block.decode("ascii").split("\r\n")
    version, status, _ = status_line.split(" ", 2)
    assert version == "HTTP/1.1"
    headers = dict(line.split(": ", 1) for line in header_lines)
    assert set(headers) == {"Content-Type", "Content-Length", "Connection"}, headers
    assert headers["Content-Type"] == "text/plain"
    assert headers["Connection"] == "close"
    if not head:
        assert int(headers["Content-Length"]) == len(body)
    else:
        assert body == b""
    return Response(int(status), headers, body)


def assert_harmless(request: bytes, raw: bytes) -> int:
    """A response to anything: a token's content, or 400/403/404 with no body; its status."""
    head = request.startswith(b"HEAD ")
    response = parse_response(raw, head=head)
    if response.status == 200:
        if head:
            assert int(response.headers["Content-Length"]) in map(len, TOKENS.values())
        else:
            assert response.body in TOKENS.values()
    else:
        assert response.status in (400, 403, 404), response
        assert response.body == b""
    assert SECRET not in raw
    return response.status


@contextmanager
def running_webserver(
    directory: Path, family: socket.AddressFamily = socket.AF_INET, debug: str | None = None
) -> Iterator[WebserverProcess]:
    """Start the webserver on a socket bound here; on exit, SIGTERM must stop it with status 0."""
    with ExitStack() as stack:
        listener = stack.enter_context(socket.socket(family, socket.SOCK_STREAM))
        address: str | tuple[str, int]
        if family == socket.AF_UNIX:
            address = str(directory.parent / f"{directory.name}.sock")
        else:
            address = ("::1" if family == socket.AF_INET6 else "127.0.0.1", 0)
        listener.bind(address)
        if isinstance(address, str):
            stack.callback(os.unlink, address)
        listener.listen(BACKLOG)
        logs = directory.parent / f"{directory.name}-logs"
        logs.mkdir()
        env = {k: v for k, v in os.environ.items() if k != "DEBUG"}
        if debug is not None:
            env["DEBUG"] = debug
        with (logs / "stdout").open("wb") as out, (logs / "stderr").open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "lacme.webserver", str(listener.fileno())],
                pass_fds=[listener.fileno()],
                cwd=directory,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        stack.callback(stop_process, proc)
        server = WebserverProcess(
            proc, family, listener.getsockname(), logs / "stdout", logs / "stderr"
        )
        yield server
        if proc.returncode is None:  # else the test stopped it and checked how
            server.assert_alive()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(CLIENT_TIMEOUT) == 0, server.log()
        assert server.stdout.read_bytes() == b""


@pytest.fixture
def challenges(tmp_path: Path) -> Path:
    """A challenge directory with the TOKENS, next to a secret it must never serve."""
    directory = tmp_path / "challenges"
    directory.mkdir()
    for name, content in TOKENS.items():
        (directory / name).write_bytes(content)
    (tmp_path / "secret").write_bytes(SECRET)
    return directory


@pytest.fixture
def server(challenges: Path) -> Iterator[WebserverProcess]:
    with running_webserver(challenges) as server:
        yield server


def families() -> list[socket.AddressFamily]:
    result = [socket.AF_INET, socket.AF_UNIX]
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        result.append(socket.AF_INET6)
    except OSError:
        pass
    return result


@pytest.mark.process
@pytest.mark.parametrize("family", families(), ids=lambda f: f.name)
def test_get_and_head(challenges: Path, family: socket.AddressFamily) -> None:
    with running_webserver(challenges, family) as server:
        for token, content in TOKENS.items():
            response = server.get(PREFIX + token)
            assert (response.status, response.body) == (200, content)
            head = server.get(PREFIX + token, method="HEAD")
            assert head.status == 200
            assert head.headers["Content-Length"] == str(len(content))
        raw = server.exchange(f"GET {PREFIX}tok_1 HTTP/1.0\r\n\r\n".encode())
        assert parse_response(raw).body == TOKENS["tok_1"]


@pytest.mark.process
def test_missing_token(server: WebserverProcess) -> None:
    for method in ("GET", "HEAD"):
        response = server.get(PREFIX + "no_such_token", method=method)
        assert (response.status, response.body) == (404, b"")


@pytest.mark.process
def test_symlinks_not_followed(challenges: Path, server: WebserverProcess) -> None:
    (challenges / "outside").symlink_to(challenges.parent / "secret")
    (challenges / "inside").symlink_to("tok_1")
    (challenges / "dangling").symlink_to("no_such_token")
    for name in ("outside", "inside", "dangling"):
        raw = server.exchange(f"GET {PREFIX}{name} HTTP/1.1\r\n\r\n".encode())
        assert parse_response(raw).status == 403
        assert SECRET not in raw


@pytest.mark.process
def test_fifo_does_not_block(challenges: Path, server: WebserverProcess) -> None:
    os.mkfifo(challenges / "fifo")
    assert server.get(PREFIX + "fifo").status == 403
    assert server.get(PREFIX + "tok_1").body == TOKENS["tok_1"]


@pytest.mark.process
def test_not_regular_files(challenges: Path, server: WebserverProcess) -> None:
    (challenges / "directory").mkdir()
    (challenges / "huge").write_bytes(b"x" * (webserver.MAX_CONTENT + 1))
    (challenges / "unreadable").write_bytes(b"x")
    (challenges / "unreadable").chmod(0)
    assert server.get(PREFIX + "directory").status == 403
    assert server.get(PREFIX + "huge").status == 403
    if os.geteuid() != 0:  # root reads it anyway
        assert server.get(PREFIX + "unreadable").status == 403
    (challenges / "limit").write_bytes(b"y" * webserver.MAX_CONTENT)
    assert server.get(PREFIX + "limit").body == b"y" * webserver.MAX_CONTENT


FORBIDDEN_REQUESTS = [
    *(f"{method} {PREFIX}tok_1" for method in ("POST", "PUT", "DELETE", "OPTIONS", "get", "X")),
    "GET /",
    "GET /tok_1",
    "GET *",
    f"GET {PREFIX}",
    f"GET {PREFIX}tok_1/",
    f"GET {PREFIX}tok_1?x=1",
    f"GET {PREFIX}tok_1#x",
    f"GET {PREFIX}tok%5f1",
    f"GET {PREFIX}../secret",
    f"GET {PREFIX}..%2fsecret",
    f"GET {PREFIX}%2e%2e/secret",
    f"GET {PREFIX}%2E%2E%2Fsecret",
    f"GET {PREFIX}.",
    f"GET {PREFIX}..",
    "GET /.well-known/acme-challenge//tok_1",
    f"GET /{PREFIX}tok_1",
    "GET /.well-known//acme-challenge/tok_1",
    "GET /.well-known/acme-challenge/./tok_1",
    "GET /.well-known/x/../acme-challenge/tok_1",
    "GET /.well-known%2facme-challenge%2ftok_1",
    f"GET http://a.example.test{PREFIX}tok_1",
    f"GET {PREFIX}tok_1%00",
    f"GET {PREFIX}{'a' * (webserver.NAME_MAX + 1)}",
]


@pytest.mark.process
@pytest.mark.parametrize("request_line", FORBIDDEN_REQUESTS)
def test_forbidden(server: WebserverProcess, request_line: str) -> None:
    raw = server.exchange(f"{request_line} HTTP/1.1\r\nHost: a.example.test\r\n\r\n".encode())
    response = parse_response(raw)
    assert (response.status, response.body) == (403, b"")


BAD_REQUESTS = [
    b"\r\n",
    f"GET {PREFIX}tok_1\r\n".encode(),  # HTTP/0.9
    f"GET {PREFIX}tok_1 HTTP/2.0\r\n\r\n".encode(),
    f"GET {PREFIX}tok_1 HTTP/1.2\r\n\r\n".encode(),
    f"GET {PREFIX}tok_1 http/1.1\r\n\r\n".encode(),
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # HTTP/2 connection preface
    f"GET  {PREFIX}tok_1 HTTP/1.1\r\n\r\n".encode(),
    f"GET {PREFIX}tok_1 HTTP/1.1 \r\n\r\n".encode(),
    f"GET\t{PREFIX}tok_1 HTTP/1.1\r\n\r\n".encode(),
    f"GET {PREFIX}tok\x001 HTTP/1.1\r\n\r\n".encode(),
    f"GET {PREFIX}t\xf6k HTTP/1.1\r\n\r\n".encode(),
    f"G\x00T {PREFIX}tok_1 HTTP/1.1\r\n\r\n".encode(),
    f"GET {PREFIX}tok_1 HTTP/1.1\r\nno colon\r\n\r\n".encode(),
    f"GET {PREFIX}tok_1 HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n".encode(),
    f"GET {PREFIX}tok_1 HTTP/1.1\r\n: no name\r\n\r\n".encode(),
    f"GET {PREFIX}tok_1 HTTP/1.1\r\nX: a\x00b\r\n\r\n".encode(),
    f"GET {PREFIX}tok_1 HTTP/1.1\r\nHost: a\r\n".encode(),  # no end of headers
    f"GET {PREFIX}{'a' * webserver.MAX_HEAD} HTTP/1.1\r\n\r\n".encode(),
    b"G" * (webserver.MAX_HEAD * 3),
    f"GET {PREFIX}tok_1 HTTP/1.1\r\nX-Pad: {'p' * webserver.MAX_HEAD}\r\n\r\n".encode(),
    f"GET {PREFIX}tok_1 HTTP/1.1\r\n".encode() + b"X: y\r\n" * (webserver.MAX_HEAD // 6) + b"\r\n",
]


@pytest.mark.process
@pytest.mark.parametrize("request_bytes", BAD_REQUESTS, ids=lambda r: repr(r[:40]))
def test_bad_request(server: WebserverProcess, request_bytes: bytes) -> None:
    response = parse_response(server.exchange(request_bytes))
    assert (response.status, response.body) == (400, b"")


@pytest.mark.process
def test_bare_newlines_accepted(server: WebserverProcess) -> None:
    raw = server.exchange(f"GET {PREFIX}tok_1 HTTP/1.1\nHost: a\n\n".encode())
    assert parse_response(raw).body == TOKENS["tok_1"]


def fuzz_cases(seed: int, count: int) -> list[bytes]:
    """Request-shaped and random inputs, reproducible from `seed`."""
    rng = random.Random(seed)  # noqa: S311 -- reproducible, not secret
    methods = ["GET", "HEAD", "POST", "get", "GET GET", "", "G\x00T", "CONNECT", "\xff"]
    segments = [
        "", ".", "..", "%2e", "%2e%2e", "%2E%2E", "%2f", "%2F", "%00", "%5c", "\\", "/",
        ".well-known", "acme-challenge", "tok_1", "Zm9v-YmFy_42", "secret", "outside",
        "fifo", "directory", "tok_1?x", "~", "\x00", "\r", "\n", " ", "\xe9", "a" * 300,
    ]  # fmt: skip
    versions = ["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/0.9", "HTTP/1.1 x", "", "HTTP/", "\x00"]
    cases = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.2:
            cases.append(rng.randbytes(rng.randint(1, 3 * webserver.MAX_HEAD)))
            continue
        if kind < 0.3:  # well-formed, for a token or some other name
            name = rng.choice([*TOKENS, *segments])
            cases.append(f"{rng.choice(['GET', 'HEAD'])} {PREFIX}{name} HTTP/1.1\r\n\r\n".encode())
            continue
        if rng.random() < 0.5:
            path = PREFIX + "".join(rng.choices(segments, k=rng.randint(1, 3)))
        else:
            path = "/" + "/".join(rng.choices(segments, k=rng.randint(0, 6)))
        line = f"{rng.choice(methods)} {path} {rng.choice(versions)}"
        ending = rng.choice(["\r\n", "\n", "\r", ""])
        headers = "".join(
            rng.choice(["Host: a\r\n", "X: y\r\n", "bad\r\n", " fold\r\n", "Long: " + "z" * 5000])
            for _ in range(rng.randint(0, 3))
        )
        data = (line + ending + headers + rng.choice(["\r\n", "\n", ""])).encode("latin-1")
        if kind < 0.5:  # flip some bytes
            mutable = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                mutable[rng.randrange(len(mutable))] = rng.randrange(256)
            data = bytes(mutable)
        cases.append(data)
    return cases


@pytest.mark.process
def test_fuzz(challenges: Path, server: WebserverProcess) -> None:
    os.mkfifo(challenges / "fifo")
    (challenges / "outside").symlink_to(challenges.parent / "secret")
    (challenges / "directory").mkdir()
    statuses: set[int] = set()
    for case in fuzz_cases(seed=3, count=400):
        statuses.add(assert_harmless(case, server.exchange(case)))
        server.assert_alive()
    # The generator does reach every kind of answer.
    assert statuses == {200, 400, 403, 404}
    assert server.get(PREFIX + "tok_1").body == TOKENS["tok_1"]


@pytest.mark.process
def test_abrupt_clients(server: WebserverProcess) -> None:
    """Peers that reset or vanish mid-request don't disturb the others."""
    for partial in (b"", b"GET /", f"GET {PREFIX}tok_1 HTTP/1.1\r\n".encode()):
        sock = server.connect()
        sock.sendall(partial)
        # SO_LINGER on with a zero timeout: close() sends a reset instead of a FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    # A client that sends a request and never reads the answer.
    with server.connect() as sock:
        sock.sendall(f"GET {PREFIX}tok_1 HTTP/1.1\r\n\r\n".encode())
    assert server.get(PREFIX + "tok_1").body == TOKENS["tok_1"]
    server.assert_alive()


def still_open(sock: socket.socket) -> bool:
    """Whether the server has neither answered nor closed SOCK yet."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(CLIENT_TIMEOUT)


@pytest.mark.process
def test_idle_connections_do_not_block(server: WebserverProcess) -> None:
    baseline = len(open_fds(server.proc.pid))
    idle = []
    try:
        for index in range(50):
            sock = server.connect()
            idle.append(sock)
            if index % 2:  # half of them a slow request, never finished
                sock.sendall(f"GET {PREFIX}tok_1 HTTP/1.1\r\nHost: a".encode())
        # All of them accepted: none is just waiting in the listen backlog.
        wait_for(lambda: len(open_fds(server.proc.pid)) >= baseline + 50, "50 accepted connections")
        response = server.get(PREFIX + "tok_1")
        assert response.body == TOKENS["tok_1"]
        # Answered while every idle peer is still held: not after dropping them.
        assert all(still_open(sock) for sock in idle)
        # Idle peers are dropped without an answer once their time is up.
        idle[-1].settimeout(webserver.REQUEST_TIMEOUT + CLIENT_TIMEOUT)
        assert read_all(idle[-1]) == b""
    finally:
        for sock in idle:
            sock.close()


@pytest.mark.process
def test_concurrent_clients(server: WebserverProcess) -> None:
    results: list[bytes] = []

    def fetch() -> None:
        for _ in range(10):
            results.append(server.get(PREFIX + "Zm9v-YmFy_42").body)

    threads = [threading.Thread(target=fetch) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [TOKENS["Zm9v-YmFy_42"]] * 100


@pytest.mark.process
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_signal_exits_zero(challenges: Path, signum: signal.Signals) -> None:
    with running_webserver(challenges) as server:
        # Served once: past interpreter startup, when a signal still kills it.
        assert server.get(PREFIX + "tok_1").status == 200
        idle = server.connect()  # a connection in progress doesn't delay the exit
        server.proc.send_signal(signum)
        assert server.proc.wait(CLIENT_TIMEOUT) == 0, server.log()
        idle.close()
        assert server.log() == ""


@pytest.mark.process
def test_debug_log(challenges: Path) -> None:
    with running_webserver(challenges, debug="1") as server:
        server.get(PREFIX + "tok_1")
        server.exchange(b"\x1b[31m\r\n")
        pid = server.proc.pid
        report, *lines = server.log().splitlines()
        # What the kernel offers is the kernel's (tests/test_confinement.py).
        assert re.fullmatch(
            rf"lacme-webserver\[{pid}\]: confinement: Landlock ABI \d+: fs\S*; seccomp: on", report
        )
        assert lines == [
            f"lacme-webserver[{pid}]: 127.0.0.1: GET {PREFIX}tok_1 -> 200",
            f"lacme-webserver[{pid}]: 127.0.0.1: \\x1b[31m -> 400",
        ]
    quiet_directory = challenges.parent / "quiet"
    quiet_directory.mkdir()
    with running_webserver(quiet_directory, debug="0") as quiet:
        quiet.get(PREFIX + "tok_1")
        quiet.exchange(b"junk\r\n")
        assert quiet.log() == ""


@pytest.mark.process
def test_bad_arguments(tmp_path: Path) -> None:
    def run(*args: str, pass_fds: tuple[int, ...] = ()) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lacme.webserver", *args],
            capture_output=True,
            text=True,
            pass_fds=pass_fds,
            cwd=tmp_path,
            timeout=CLIENT_TIMEOUT,
            check=False,
        )

    assert run().returncode == 2
    assert run("x").returncode == 2
    assert run("3", "4").returncode == 2
    with (tmp_path / "file").open("w") as not_a_socket:
        result = run(str(not_a_socket.fileno()), pass_fds=(not_a_socket.fileno(),))
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1
    with socket.socket() as unbound:
        result = run(str(unbound.fileno()), pass_fds=(unbound.fileno(),))
        assert result.returncode == 1
        assert "not a listening stream socket" in result.stderr
    assert result.stdout == ""


@pytest.mark.process
def test_imports_only_what_it_needs() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import sys, lacme.webserver; print(*sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    modules = set(result.stdout.split())
    # re and typing alone cost a megabyte; the others would be a mistake.
    unwanted = {"re", "typing", "threading", "ssl", "json", "httpx", "cryptography", "lacme.client"}
    assert not modules & unwanted


@pytest.mark.e2e
@pytest.mark.interop
@pytest.mark.root
@pytest.mark.debian(*requires.PERL_MASTER, *requires.PERL_ACCOUNTD)
def test_perl_master_spawns_our_webserver(pebble: PebbleServer) -> None:
    """Perl lacme 0.8.2, all Perl but for `[webserver] command`, issues a certificate."""
    with perl_master_setup(
        pebble,
        accountd_command=[str(PERL_ACCOUNTD)],
        webserver_command=[sys.executable, "-m", "lacme.webserver"],
    ) as setup:
        setup.run("account", "--register", "--tos-agreed", CONTACT)
        # --debug gives the webserver DEBUG=1: each request it serves is logged.
        result = setup.run("--debug", "newOrder")
        setup.check_certificate()
    served = [
        line
        for line in result.stderr.splitlines()
        # Not startswith: the Perl client's debug output may not end its last line.
        if "lacme-webserver[" in line and f" {PREFIX}" in line and line.endswith(" -> 200")
    ]
    assert len(served) >= len(setup.names), result.stderr
    # Confined under Perl's master too, before serving (lacme.confinement).
    assert re.search(
        r"lacme-webserver\[\d+\]: confinement: Landlock ABI \d+: fs\+net\+scope; seccomp: on",
        result.stderr,
    ), result.stderr
