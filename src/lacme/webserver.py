"""The http-01 challenge webserver: `python -m lacme.webserver [--unconfined] FD`.

Holds nothing secret.  It runs unprivileged, started by the master as
lacme.webserver_contract says: its working directory the challenge
directory, FD a listening stream socket (TCP over IPv4 or IPv6, or UNIX)
that the master bound.  The only files it touches are the token files in
that directory, opened read-only relative to it, never following a symbolic
link and never blocking on a FIFO.  It writes no file, and nothing to stdout.
Once it holds the socket it confines itself (`confine`, lacme.confinement):
the kernel then refuses it any other file, any TCP connect or bind, and
starting, tracing or signalling anything.

Every connection carries one request and gets one response, with
`Content-Type: text/plain`, `Content-Length` and `Connection: close`:

- 200 with the file's content (no body for HEAD): `GET` or `HEAD` of
  `/.well-known/acme-challenge/TOKEN`, TOKEN a valid token
  (`[A-Za-z0-9_-]+`, webserver_contract.valid_token) naming a regular file
  of at most MAX_CONTENT bytes;
- 404: the same, but there is no file TOKEN;
- 403: any other well-formed request: another method or path, a query, a
  percent-encoded or otherwise invalid token, a symbolic link, a FIFO, a
  directory or anything else that is not a small regular file;
- 400: a malformed request: a request line that is not
  `METHOD SP TARGET SP HTTP/1.0|HTTP/1.1` (HTTP/0.9 `GET /x`, HTTP/2.0,
  control or non-ASCII bytes in the target), a malformed header line,
  request line and headers beyond MAX_HEAD bytes, or end of input before
  the end of the headers.

A connection is closed without an answer when it has not been served within
REQUEST_TIMEOUT of being accepted.  Connections are multiplexed in one
thread without blocking operations, so idle or slow peers only hold their
own buffers and at most MAX_CONNECTIONS sockets (the oldest goes first).
SIGTERM and SIGINT (how the master stops it) exit with status 0.  Errors go
to stderr, one line each; with DEBUG set (and not "0") so does every request.
"""

from __future__ import annotations

import errno
import os
import selectors
import signal
import socket
import stat
import sys
import time

from lacme import confinement, webserver_contract
from lacme.log import printable as printable_text
from lacme.log import say

# typing imports re and more: a megabyte of resident memory for annotations.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType
    from typing import NoReturn

NAME = "lacme-webserver"
PREFIX = b"/.well-known/acme-challenge/"
# RFC 9110 §5.6.2: the characters of a method or header name.
TCHAR_BYTES = frozenset(
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
NAME_MAX = 255  # a longer token can't name a file
MAX_HEAD = 8192  # request line and headers together
MAX_CONTENT = 16384  # a key authorization is under 200 bytes
REQUEST_TIMEOUT = 5.0  # from accept to close, whatever the peer does
MAX_CONNECTIONS = 256  # well under the usual 1024 file descriptors
RECV_SIZE = 4096
REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found"}
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
# Failures of the peer's side of the connection, not worth an error line.
PEER_ERRNOS = frozenset((errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED, errno.ETIMEDOUT))
DEBUG = webserver_contract.debug(os.environ)
LOGGED_REQUEST = 200  # bytes of a request line shown in the debug log


class Stop(BaseException):
    """Raised by the SIGTERM/SIGINT handler to leave the event loop."""


def _stop(signum: int, frame: FrameType | None) -> NoReturn:
    raise Stop


def log(message: str) -> None:
    say(f"{NAME}[{os.getpid()}]: {message}")


def printable(data: bytes) -> str:
    """DATA, which any HTTP client may have sent, safe for a terminal."""
    return printable_text(data.decode("utf-8", "surrogateescape"))


def parse_request_line(line: bytes) -> tuple[bytes, bytes] | None:
    """(method, target) of `METHOD SP TARGET SP HTTP/1.x`, or None if malformed."""
    parts = line.split(b" ")
    if len(parts) != 3:
        return None
    method, target, version = parts
    if version not in (b"HTTP/1.0", b"HTTP/1.1"):
        return None
    if not method or not TCHAR_BYTES.issuperset(method):
        return None
    if not target or not all(0x21 <= byte <= 0x7E for byte in target):
        return None
    return method, target


def headers_well_formed(block: bytes) -> bool:
    """Whether every line of `block` is `NAME: VALUE` (no obsolete line folding)."""
    for raw in block.split(b"\n"):
        line = raw.removesuffix(b"\r")
        name, colon, value = line.partition(b":")
        if not colon or not name or not TCHAR_BYTES.issuperset(name):
            return False
        if b"\r" in value or b"\0" in value:
            return False
    return True


def read_token(token: str) -> tuple[int, bytes]:
    """(status, content) for the token file named `token` in the working directory."""
    try:
        fd = os.open(token, OPEN_FLAGS)
    except FileNotFoundError:
        return 404, b""
    except OSError as e:
        # ELOOP is a symbolic link, refused on purpose; anything else
        # (EACCES...) means the challenge directory is not as it should be.
        if e.errno != errno.ELOOP:
            log(f"error: can't open token {token}: {e.strerror}")
        return 403, b""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return 403, b""
        content = b""
        # Read one byte past the cap: the file may grow after fstat().
        while len(content) <= MAX_CONTENT:
            chunk = os.read(fd, MAX_CONTENT + 1 - len(content))
            if not chunk:
                break
            content += chunk
    except OSError as e:
        log(f"error: can't read token {token}: {e.strerror}")
        return 403, b""
    finally:
        os.close(fd)
    if len(content) > MAX_CONTENT:
        log(f"error: token {token} is larger than {MAX_CONTENT} bytes")
        return 403, b""
    return 200, content


def answer(method: bytes, target: bytes) -> tuple[int, bytes]:
    """(status, content) for a well-formed request."""
    if method not in (b"GET", b"HEAD") or not target.startswith(PREFIX):
        return 403, b""
    token = target[len(PREFIX) :]
    if len(token) > NAME_MAX or not webserver_contract.valid_token(token):
        return 403, b""
    return read_token(token.decode("ascii"))


def response(status: int, content: bytes, with_body: bool) -> bytes:
    head = (
        f"HTTP/1.1 {status} {REASONS[status]}\r\n"
        "Content-Type: text/plain\r\n"
        f"Content-Length: {len(content)}\r\n"
        "Connection: close\r\n"
        "\r\n"
    ).encode("ascii")
    return head + content if with_body else head


def format_peer(address: object) -> str:
    """The peer's address for logs: its IP address, or `unix:` and its (usually empty) path."""
    if isinstance(address, tuple):  # (host, port) or (host, port, flowinfo, scope_id)
        return str(address[0])
    return "unix:" + (printable(address) if isinstance(address, bytes) else str(address))


class Connection:
    """One request and its response: reading, then writing, then draining
    what the peer still sends until it closes, so that our close does not
    reset the connection before the response has been read."""

    def __init__(self, sock: socket.socket, peer: str, deadline: float) -> None:
        self.sock = sock
        self.peer = peer
        self.deadline = deadline
        self.received = bytearray()
        self.request: tuple[bytes, bytes] | None = None
        self.answered = False
        self.unsent = memoryview(b"")

    def on_readable(self) -> bool:
        """Take in what the peer sent; False once the connection is over."""
        data = self.sock.recv(RECV_SIZE)
        if self.answered:
            return bool(data)
        if not data:
            if self.received:
                self.reply(400, b"", b"end of input within the request")
                return True
            return False
        self.received += data
        self.parse()
        return True

    def parse(self) -> None:
        if self.request is None:
            end = self.received.find(b"\n")
            if end < 0:
                if len(self.received) > MAX_HEAD:
                    self.reply(400, b"", b"request line too long")
                return
            line = bytes(self.received[:end]).removesuffix(b"\r")
            self.request = parse_request_line(line)
            if self.request is None:
                # Answered at once: an HTTP/0.9 client sends no headers to wait for.
                self.reply(400, b"", line)
                return
        # The end of the headers: an empty line right after another line.
        ends = [
            (newline, newline + len(pattern))
            for pattern in (b"\n\r\n", b"\n\n")
            if (newline := self.received.find(pattern)) >= 0
        ]
        method, target = self.request
        request_line = method + b" " + target
        last_newline, head_end = min(ends, default=(-1, len(self.received)))
        if head_end > MAX_HEAD:
            self.reply(400, b"", request_line + b" (headers too long)")
            return
        if last_newline < 0:
            return
        first_newline = self.received.index(b"\n")
        if last_newline > first_newline and not headers_well_formed(
            bytes(self.received[first_newline + 1 : last_newline])
        ):
            self.reply(400, b"", request_line + b" (malformed header)")
            return
        status, content = answer(method, target)
        self.reply(status, content, request_line, with_body=method != b"HEAD")

    def reply(self, status: int, content: bytes, what: bytes, with_body: bool = True) -> None:
        if DEBUG:
            log(f"{self.peer}: {printable(what[:LOGGED_REQUEST])} -> {status}")
        self.received = bytearray()
        self.answered = True
        self.unsent = memoryview(response(status, content, with_body))
        self.on_writable()

    def on_writable(self) -> None:
        sent = self.sock.send(self.unsent)
        self.unsent = self.unsent[sent:]
        if not self.unsent:
            self.sock.shutdown(socket.SHUT_WR)


class Server:
    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ)
        # In order of acceptance, hence of deadline.
        self.connections: dict[socket.socket, Connection] = {}

    def run(self) -> NoReturn:
        while True:
            timeout = None
            if self.connections:
                oldest = next(iter(self.connections.values()))
                timeout = max(0.0, oldest.deadline - time.monotonic())
            for key, events in self.selector.select(timeout):
                if key.fileobj is self.listener:
                    self.accept()
                else:
                    self.step(key.data, events)
            now = time.monotonic()
            while self.connections:
                oldest = next(iter(self.connections.values()))
                if oldest.deadline > now:
                    break
                if DEBUG and not oldest.answered:
                    log(f"{oldest.peer}: timed out")
                self.close(oldest)

    def accept(self) -> None:
        """Empty the listen backlog: lacme's master makes it 5 deep, and while
        it is full the kernel drops new connections, the ACME server's too."""
        for _ in range(MAX_CONNECTIONS):
            if len(self.connections) >= MAX_CONNECTIONS:
                self.close(next(iter(self.connections.values())))
            try:
                sock, address = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in PEER_ERRNOS:
                    continue
                log(f"error: accept: {e.strerror}")
                if e.errno in (errno.EMFILE, errno.ENFILE) and self.connections:
                    self.close(next(iter(self.connections.values())))
                return
            sock.setblocking(False)
            deadline = time.monotonic() + REQUEST_TIMEOUT
            connection = Connection(sock, format_peer(address), deadline)
            self.connections[sock] = connection
            self.selector.register(sock, selectors.EVENT_READ, connection)

    def step(self, connection: Connection, events: int) -> None:
        try:
            if connection.unsent:
                if events & selectors.EVENT_WRITE:
                    connection.on_writable()
            elif events & selectors.EVENT_READ and not connection.on_readable():
                self.close(connection)
                return
        except BlockingIOError:
            pass
        except OSError as e:
            if e.errno not in PEER_ERRNOS:
                log(f"error: {connection.peer}: {e.strerror or e}")
            self.close(connection)
            return
        except Exception as e:  # a bug met with one peer must not stop the others
            log(f"error: {connection.peer}: {type(e).__name__}: {e}")
            self.close(connection)
            return
        interest = selectors.EVENT_WRITE if connection.unsent else selectors.EVENT_READ
        if self.selector.get_key(connection.sock).events != interest:
            self.selector.modify(connection.sock, interest, connection)

    def close(self, connection: Connection) -> None:
        del self.connections[connection.sock]
        self.selector.unregister(connection.sock)
        connection.sock.close()


def confine(confined: bool) -> None:
    """Once it holds its listening socket: reading its interpreter and the
    challenge directory (its working directory) only, no TCP connect or
    bind, no signal or abstract socket outside, no execve (lacme.confinement)."""
    policy = confinement.Policy(read=(*confinement.interpreter_paths(), "."))
    report = confinement.confine(NAME, policy, confined, f"{webserver_contract.UNCONFINED} given")
    if DEBUG:
        log(f"confinement: {report}")


def main() -> int:
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop)
    try:
        fd, confined = webserver_contract.parse_argv(sys.argv[1:])
    except ValueError as e:
        log(str(e))
        return 2
    try:
        try:
            listener = webserver_contract.listener(fd)
        except ValueError as e:
            log(f"error: {e}")
            return 1
        try:
            confine(confined)
        except confinement.ConfinementError as e:
            log(
                f"error: can't confine the webserver: {e} (see [webserver] confinement in lacme(8))"
            )
            return 1
        # accept() must not block when a peer gives up between select() and it.
        listener.setblocking(False)
        Server(listener).run()
    except Stop:
        return 0


if __name__ == "__main__":
    sys.exit(main())
