"""Signatures per second of our lacme-accountd against Perl lacme-accountd 0.8.2.

Run by hand, not from the test suite (see bench/README.md):

    /opt/lacme-test-venv/bin/python bench/accountd_signatures.py
"""

import argparse
import base64
import contextlib
import functools
import hashlib
import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

# Generous, so that only a hung server trips it: a slow one must still be measured.
IO_TIMEOUT = 30.0
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


class BenchError(Exception):
    """A daemon did not start, misbehaved or answered something unverifiable."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(data: bytes) -> bytes:
    # validate=True so that stray characters in an answer fail instead of being skipped.
    return base64.b64decode(data + b"=" * (-len(data) % 4), altchars=b"-_", validate=True)


def json_compact(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class AccountKey:
    label: str
    alg: str
    path: Path
    public: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    jwk: dict[str, str]
    signature_size: int

    @property
    def thumbprint(self) -> str:
        # RFC 7638: SHA-256 of the sorted, whitespace-free required members, which is all
        # our JWK holds.
        return b64url(hashlib.sha256(json_compact(self.jwk)).digest())

    @property
    def answer_size(self) -> int:
        return len(b64url(bytes(self.signature_size))) + len(b"\r\n")

    def verify(self, signature: bytes, signing_input: bytes) -> None:
        if len(signature) != self.signature_size:
            raise InvalidSignature
        if isinstance(self.public, rsa.RSAPublicKey):
            self.public.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        else:
            # JWS (RFC 7518 sec. 3.4) carries ECDSA signatures as fixed-size R || S, not DER.
            half = self.signature_size // 2
            der = encode_dss_signature(
                int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
            )
            self.public.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))


def write_private_key(private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, path: Path) -> None:
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Created 0600 from the start rather than chmod'ed, so the key is never readable by others.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def new_rsa_key(directory: Path) -> AccountKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = directory / "rsa-2048.key"
    write_private_key(private, path)
    numbers = private.public_key().public_numbers()
    jwk = {
        "e": b64url(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
        "kty": "RSA",
        "n": b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
    }
    return AccountKey("RSA-2048", "RS256", path, private.public_key(), jwk, 256)


def new_p256_key(directory: Path) -> AccountKey:
    private = ec.generate_private_key(ec.SECP256R1())
    path = directory / "p-256.key"
    write_private_key(private, path)
    numbers = private.public_key().public_numbers()
    jwk = {
        "crv": "P-256",
        "kty": "EC",
        "x": b64url(numbers.x.to_bytes(32, "big")),
        "y": b64url(numbers.y.to_bytes(32, "big")),
    }
    return AccountKey("ECDSA P-256", "ES256", path, private.public_key(), jwk, 64)


def request_lines(key: AccountKey, count: int) -> list[bytes]:
    """Build the requests up front so that the timed loops only do socket I/O."""
    lines = []
    for i in range(count):
        # A fresh nonce per request, as a real client sends, so nothing can be cached.
        header = {
            "alg": key.alg,
            "jwk": key.jwk,
            "nonce": b64url(os.urandom(16)),
            "url": f"https://acme.invalid/acme/order/{i}",
        }
        # Alternate POST-as-GET (empty payload, RFC 8555 sec. 6.3) with a JSON body so
        # that both kinds of request are measured.
        payload = b"" if i % 2 else json_compact({"status": "valid", "request": i})
        lines.append(f"{b64url(json_compact(header))}.{b64url(payload)}\r\n".encode())
    return lines


class Client:
    """One accountd connection: the greeting is read on connect."""

    def __init__(self, sock_path: Path, key: AccountKey) -> None:
        self._key = key
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._reader = self._sock.makefile("rb")
        try:
            # Connect before setting the timeout: with a timeout Python makes the socket
            # non-blocking, and an AF_UNIX connect then fails with EAGAIN when the listen
            # backlog is full (Perl's is 1) instead of waiting for its turn.
            self._sock.connect(os.fspath(sock_path))
            self._sock.settimeout(IO_TIMEOUT)
            self.greeting = self._reader.readline()
            self.jwk = self._reader.readline()
        except BaseException:
            self.close()
            raise
        if not self.greeting.startswith(b"1 OK ") or not self.jwk.endswith(b"\r\n"):
            self.close()
            raise BenchError(f"unexpected greeting {self.greeting!r} {self.jwk!r}")

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._reader.close()
        self._sock.close()

    def check_greeting(self) -> None:
        """Check that the daemon serves our key, so its signatures can be verified."""
        info = json.loads(self.greeting.removeprefix(b"1 OK "))
        expected = {"alg": self._key.alg, "jwk-thumbprint": self._key.thumbprint}
        if not isinstance(info, dict) or {k: info.get(k) for k in expected} != expected:
            raise BenchError(f"greeting {info!r} does not match {expected!r}")
        if json.loads(self.jwk) != self._key.jwk:
            raise BenchError(f"JWK {self.jwk!r} is not {self._key.jwk!r}")

    def request(self, line: bytes) -> bytes:
        self._sock.sendall(line)
        answer = self._reader.readline()
        if not answer:
            raise BenchError("server closed the connection instead of answering")
        # Verifying every answer would put the client's CPU time into the measurement,
        # so measure() verifies only the first; a size check is cheap enough for all.
        if len(answer) != self._key.answer_size or not answer.endswith(b"\r\n"):
            raise BenchError(f"unexpected answer {answer[:80]!r}")
        return answer


def one_connection(sock_path: Path, key: AccountKey, lines: list[bytes]) -> list[bytes]:
    with Client(sock_path, key) as client:
        return [client.request(line) for line in lines]


def one_request(sock_path: Path, key: AccountKey, line: bytes) -> bytes:
    with Client(sock_path, key) as client:
        return client.request(line)


def sequential_connections(sock_path: Path, key: AccountKey, lines: list[bytes]) -> list[bytes]:
    return [one_request(sock_path, key, line) for line in lines]


def concurrent_connections(
    pool: ThreadPoolExecutor, sock_path: Path, key: AccountKey, lines: list[bytes]
) -> list[bytes]:
    return list(pool.map(functools.partial(one_request, sock_path, key), lines))


@dataclass(frozen=True)
class Mode:
    name: str
    requests: int
    warmup: int
    run: Callable[[Path, AccountKey, list[bytes]], list[bytes]]


def measure(sock_path: Path, key: AccountKey, mode: Mode, lines: list[bytes]) -> float:
    """Run a mode, check its answers, and return signatures per second."""
    start = time.perf_counter()
    answers = mode.run(sock_path, key, lines)
    elapsed = time.perf_counter() - start
    if len(answers) != len(lines):
        raise BenchError(f"{len(answers)} answers to {len(lines)} requests")
    signature = b64url_decode(answers[0].removesuffix(b"\r\n"))
    try:
        key.verify(signature, lines[0].removesuffix(b"\r\n"))
    except InvalidSignature:
        raise BenchError(f"invalid {key.alg} signature {answers[0][:80]!r}") from None
    return len(lines) / elapsed


def wait_ready(proc: subprocess.Popen[bytes], sock_path: Path, key: AccountKey) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            client = Client(sock_path, key)
        except (FileNotFoundError, ConnectionRefusedError):
            # Not bound or not listening yet.  Waiting on the process, not sleeping, both
            # paces the retries and notices at once a daemon that died during start-up.
            try:
                proc.wait(timeout=0.005)
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    raise BenchError(f"not accepting after {READY_TIMEOUT:.0f}s") from None
                continue
            # stop() reports the status.
            raise BenchError("exited during start-up") from None
        with client:
            client.check_greeting()
        return


def stop(proc: subprocess.Popen[bytes], name: str) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log(f"{name}: still running {STOP_TIMEOUT:.0f}s after SIGTERM, killing it")
            proc.kill()
            proc.wait()
    # Perl exits 0 from its SIGTERM handler; anything else hints at a crash mid-run.
    if proc.returncode not in (0, -signal.SIGTERM):
        log(f"{name}: exited with status {proc.returncode}")


@contextlib.contextmanager
def running_accountd(
    name: str, command: Sequence[str], key: AccountKey, workdir: Path
) -> Iterator[Path]:
    # lacme-accountd refuses a socket directory others can write to; mkdtemp makes it 0700.
    sock_path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=workdir)) / "S.lacme"
    argv = [*command, f"--privkey=file:{key.path}", f"--socket={sock_path}", "--quiet"]
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    except OSError as e:
        raise BenchError(f"cannot run {shlex.join(command)}: {e}") from e
    try:
        wait_ready(proc, sock_path, key)
        yield sock_path
    finally:
        stop(proc, f"{key.label}: {name}")


@dataclass(frozen=True)
class Implementation:
    name: str
    command: list[str]
    rsa_only: bool


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


Cell = float | str


def bench_key(
    key: AccountKey, impls: list[Implementation], modes: list[Mode], rounds: int
) -> dict[tuple[str, str], Cell]:
    cells: dict[tuple[str, str], Cell] = {}
    sockets: dict[str, Path] = {}
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        for impl in impls:
            if impl.rsa_only and not isinstance(key.public, rsa.RSAPublicKey):
                for mode in modes:
                    cells[mode.name, impl.name] = "n/a"
                continue
            try:
                sock_path = stack.enter_context(
                    running_accountd(impl.name, impl.command, key, workdir)
                )
                # Warm up every mode: first-use costs (lazy imports, thread start-up in the
                # pool or the daemon, allocator growth) must not land in the measurements.
                for mode in modes:
                    measure(sock_path, key, mode, request_lines(key, mode.warmup))
            except (BenchError, OSError) as e:
                log(f"{key.label}: {impl.name}: {e}")
                for mode in modes:
                    cells[mode.name, impl.name] = "FAILED"
                continue
            sockets[impl.name] = sock_path
        for mode in modes:
            rates: dict[str, list[float]] = {name: [] for name in sockets}
            # Both daemons run side by side and the rounds alternate between them, so slow
            # drift (CPU frequency, other load) hits both alike; the median drops outliers.
            for _ in range(rounds):
                lines = request_lines(key, mode.requests)
                for name, samples in rates.items():
                    if (mode.name, name) in cells:
                        continue  # failed in an earlier round
                    try:
                        samples.append(measure(sockets[name], key, mode, lines))
                    except (BenchError, OSError) as e:
                        log(f"{key.label}: {mode.name}: {name}: {e}")
                        cells[mode.name, name] = "FAILED"
            for name, samples in rates.items():
                if (mode.name, name) not in cells:
                    cells[mode.name, name] = statistics.median(samples)
                    spread = ", ".join(f"{rate:,.0f}" for rate in samples)
                    log(f"{key.label}: {mode.name}: {name}: {spread} sig/s")
    return cells


def format_cell(cell: Cell) -> str:
    return f"{cell:,.0f}" if isinstance(cell, float) else cell


def print_table(rows: list[tuple[str, str, Cell, Cell]]) -> None:
    table = [("key", "mode", "ours (sig/s)", "Perl (sig/s)", "ours/Perl")]
    for key, mode, ours, perl in rows:
        ratio = (
            f"{ours / perl:.2f}" if isinstance(ours, float) and isinstance(perl, float) else "n/a"
        )
        table.append((key, mode, format_cell(ours), format_cell(perl), ratio))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for n, row in enumerate(table):
        print(
            "  ".join(
                cell.ljust(width) if i < 2 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
        if n == 0:
            print("  ".join("-" * width for width in widths))


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return number


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ours",
        type=shlex.split,
        default=[os.fspath(Path(sys.executable).parent / "lacme-accountd")],
        help="our lacme-accountd command, split like a shell would (default: %(default)s)",
    )
    parser.add_argument(
        "--perl",
        type=shlex.split,
        default=["/usr/bin/lacme-accountd"],
        help="Perl lacme-accountd command, only given RSA keys (default: %(default)s)",
    )
    parser.add_argument(
        "--requests", type=positive_int, default=5000, help="requests on one connection"
    )
    parser.add_argument(
        "--connections", type=positive_int, default=500, help="one-request connections"
    )
    parser.add_argument(
        "--threads", type=positive_int, default=8, help="client threads for concurrency"
    )
    parser.add_argument(
        "--rounds", type=positive_int, default=5, help="runs per cell, median printed"
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    impls = [
        Implementation("ours", args.ours, rsa_only=False),
        # Perl lacme-accountd 0.8.2 only handles RSA account keys.
        Implementation("Perl", args.perl, rsa_only=True),
    ]
    with (
        ThreadPoolExecutor(max_workers=args.threads) as pool,
        tempfile.TemporaryDirectory() as keydir,
    ):
        modes = [
            Mode(f"1 connection x {args.requests} requests", args.requests, 200, one_connection),
            Mode(
                f"{args.connections} connections, sequential",
                args.connections,
                50,
                sequential_connections,
            ),
            Mode(
                f"{args.connections} connections, {args.threads} threads",
                args.connections,
                50,
                functools.partial(concurrent_connections, pool),
            ),
        ]
        keys = [new_rsa_key(Path(keydir)), new_p256_key(Path(keydir))]
        log(f"ours: {shlex.join(args.ours)}")
        log(f"Perl: {shlex.join(args.perl)}")
        log(f"CPUs: {os.cpu_count()}, median of {args.rounds} rounds per cell")
        rows: list[tuple[str, str, Cell, Cell]] = []
        for key in keys:
            cells = bench_key(key, impls, modes, args.rounds)
            rows.extend(
                (key.label, mode.name, cells[mode.name, "ours"], cells[mode.name, "Perl"])
                for mode in modes
            )
    print_table(rows)
    return 1 if any("FAILED" in row for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
