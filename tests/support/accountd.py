"""Talking to a lacme-accountd, ours or Perl's, as its clients do: signing
requests, checking signatures, a standalone accountd on a socket, the
[accountd] section spawning one; and a stand-in accountd for the client's
tests."""

import base64
import contextlib
import hashlib
import json
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from lacme.accountd_protocol import Greeting, canonical_json, parse_greeting
from support.commands import ACCOUNTD
from support.system import stop_process, wait_for

# What the stand-in accountd greets with: an ES256 key (not a real one).
GREETING = (
    b'1 OK {"alg":"ES256","jwk-thumbprint":"thumb"}\r\n'
    b'{"crv":"P-256","kty":"EC","x":"eA","y":"eQ"}\r\n'
)


def b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def unb64url(data: bytes | str) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))


def signing_line(header: object, payload: bytes = b"") -> bytes:
    """A line as the client sends it: HEADER (JSON-encoded, unless bytes
    already) and PAYLOAD, base64url, joined by a dot, then CRLF."""
    encoded = header if isinstance(header, bytes) else json.dumps(header).encode()
    return b64url(encoded) + b"." + b64url(payload) + b"\r\n"


def request_line(alg: str, payload: bytes = b"", **header: Any) -> bytes:
    """A valid signing input line, with HEADER fields overriding the defaults."""
    fields = {"alg": alg, "nonce": "n0nce", "url": "https://ca.test/new-acct", "kid": "k1"}
    fields.update(header)
    return signing_line(fields, payload)


def run_accountd(
    *args: str, stdin: bytes = b"", **popen: Any
) -> subprocess.CompletedProcess[bytes]:
    """Our `lacme-accountd ARGS`, STDIN its input, its output captured."""
    return subprocess.run(
        [str(ACCOUNTD), *args], input=stdin, capture_output=True, timeout=60, check=False, **popen
    )


def verify(jwk: dict[str, str], signing_input: bytes, signature_b64: bytes) -> None:
    """Verify a JWS signature from accountd against its public JWK; raises if bad."""
    signature = unb64url(signature_b64.strip())
    if jwk["kty"] == "RSA":
        public = rsa.RSAPublicNumbers(
            int.from_bytes(unb64url(jwk["e"]), "big"), int.from_bytes(unb64url(jwk["n"]), "big")
        ).public_key()
        public.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        return
    curve, digest = {
        "P-256": (ec.SECP256R1(), hashes.SHA256()),
        "P-384": (ec.SECP384R1(), hashes.SHA384()),
    }[jwk["crv"]]
    size = len(signature) // 2
    assert size == (curve.key_size + 7) // 8
    ec_public = ec.EllipticCurvePublicNumbers(
        int.from_bytes(unb64url(jwk["x"]), "big"), int.from_bytes(unb64url(jwk["y"]), "big"), curve
    ).public_key()
    der = encode_dss_signature(
        int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
    )
    ec_public.verify(der, signing_input, ec.ECDSA(digest))


def thumbprint(jwk: dict[str, str]) -> str:
    return b64url(hashlib.sha256(canonical_json(jwk)).digest()).decode()


class Connection:
    """A client connection to accountd, greeting already read."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.rfile = sock.makefile("rb")
        self.greeting: Greeting = parse_greeting(self.rfile.readline(), self.rfile.readline())

    def sign(self, line: bytes) -> bytes:
        self.sock.sendall(line)
        return self.rfile.readline()

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()


def connect(path: Path) -> Connection:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(str(path))
    return Connection(sock)


def accepts_connections(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
        return True


@dataclass
class Accountd:
    """A standalone accountd process serving `socket`, its output going to `log`."""

    process: subprocess.Popen[bytes]
    socket: Path
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate(self, signum: int = signal.SIGTERM) -> int:
        """Send SIGNUM (SIGTERM) and wait; its exit status."""
        self.process.send_signal(signum)
        return self.process.wait(timeout=10)


@contextlib.contextmanager
def standalone_accountd(
    command: Sequence[str | Path], socket_path: Path, *args: str, **popen: Any
) -> Iterator[Accountd]:
    """Run `COMMAND --socket=SOCKET_PATH ARGS` until the socket accepts
    connections; stopped on exit if still running.  Its stderr goes to a log
    file beside the socket (a pipe nobody reads could fill up and block it)."""
    log = socket_path.with_name(socket_path.name + ".log")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*map(str, command), f"--socket={socket_path}", *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            **popen,
        )
    accountd = Accountd(proc, socket_path, log)

    def alive() -> None:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited {proc.returncode}: {accountd.output()}")

    try:
        wait_for(
            lambda: accepts_connections(socket_path), f"accountd on {socket_path}", alive=alive
        )
        yield accountd
    finally:
        stop_process(proc)


def accountd_section(directory: Path, account_key: Path, command: Sequence[str]) -> list[str]:
    """lacme.conf lines spawning COMMAND as accountd, with a lacme-accountd.conf
    written in DIRECTORY that names ACCOUNT_KEY."""
    accountd_config = directory / "lacme-accountd.conf"
    accountd_config.write_text(f"privkey = file:{account_key}\n")
    return ["[accountd]", f"command = {' '.join(command)}", f"config = {accountd_config}"]


@contextlib.contextmanager
def fake_accountd(greeting: bytes = GREETING) -> Iterator[socket.socket]:
    """The client's end of a socketpair whose other end greets, then answers
    every line with a (meaningless) signature, for servers that check none."""
    ours, theirs = socket.socketpair()

    def serve() -> None:
        with theirs, theirs.makefile("rb") as lines:
            try:
                theirs.sendall(greeting)
                for _ in lines:
                    theirs.sendall(b"c2ln\r\n")
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with ours:
        yield ours
