"""Helpers to drive a lacme-accountd process (ours or Perl's) in tests."""

import base64
import contextlib
import hashlib
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pebble import stop_process, wait_for

from lacme.accountd_protocol import Greeting, canonical_json, parse_greeting

ACCOUNTD = Path(sys.executable).parent / "lacme-accountd"


def b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def unb64url(data: bytes | str) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))


def request_line(alg: str, payload: bytes = b"", **header: Any) -> bytes:
    """A valid signing input line, with HEADER fields overriding the defaults."""
    fields = {"alg": alg, "nonce": "n0nce", "url": "https://ca.test/new-acct", "kid": "k1"}
    fields.update(header)
    return b64url(json.dumps(fields).encode()) + b"." + b64url(payload) + b"\r\n"


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
