"""A throwaway Pebble ACME server (plus its mock DNS) on loopback, for tests.

`running_pebble()` starts `pebble-challtestsrv` as the DNS server answering
127.0.0.1 for every name, then `pebble` with a listener certificate signed by
a CA generated here, and stops both on exit.  Everything lives in a fresh
temporary directory that other users can read, so that the unprivileged users
of lacme (`_lacme-client`, `_lacme-www`) can read the CA bundle and the roots.
"""

from __future__ import annotations

import datetime
import ipaddress
import itertools
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from keys import write_key

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0

T = TypeVar("T")


class PebbleFactory(Protocol):
    """Signature of the `pebble_factory` fixture: the options of `running_pebble()`."""

    def __call__(
        self,
        *,
        nonce_reject: int = 0,
        authz_reuse: int = 0,
        va_sleep: bool = False,
        env: Mapping[str, str] | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> PebbleServer: ...


def missing_commands() -> list[str]:
    return [cmd for cmd in ("pebble", "pebble-challtestsrv") if shutil.which(cmd) is None]


def wait_for(
    condition: Callable[[], T | None],
    what: str,
    timeout: float = STARTUP_TIMEOUT,
    interval: float = 0.05,
    alive: Callable[[], None] | None = None,
) -> T:
    """Poll `condition` until it returns something truthy, and return that.

    `alive` is called at each round to fail fast (by raising) when a process
    we are waiting on has died, instead of waiting for the whole timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None:
            alive()
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def free_ports(count: int) -> list[int]:
    """Return `count` distinct loopback ports currently free for both TCP and UDP.

    All sockets are held open until every port is chosen, so the ports are
    distinct; there is an unavoidable window before the servers bind them.
    """
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(tcp)
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            held.append(udp)
            try:
                # The mock DNS server listens on both TCP and UDP.
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def stop_process(proc: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within `timeout`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def temporary_directory(stack: ExitStack, prefix: str, mode: int = 0o755) -> Path:
    """A temporary directory (by default one other users can enter), removed when `stack` closes.

    pytest's tmp_path lives under a 0700 directory, which lacme's unprivileged
    children could not enter.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    stack.callback(shutil.rmtree, path, ignore_errors=True)
    path.chmod(mode)
    return path


def write_tls_material(directory: Path) -> tuple[Path, Path, Path]:
    """Create a CA and a listener certificate for 127.0.0.1/::1/localhost.

    Returns (CA certificate, listener certificate, listener key) paths.
    """
    now = datetime.datetime.now(datetime.UTC)
    validity = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lacme test listener CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )

    ca_path = directory / "listener-ca.pem"
    cert_path = directory / "listener-cert.pem"
    key_path = directory / "listener-key.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    ca_path.chmod(0o644)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_key(key_path, key)
    return ca_path, cert_path, key_path


@dataclass
class PebbleServer:
    """A running Pebble; see `running_pebble()`."""

    directory_url: str
    management_url: str
    ca_bundle: Path  # CA of the HTTPS listeners (ACME and management)
    roots_file: Path  # Pebble's issuing root(s), PEM, written at startup
    http_port: int  # where Pebble's VA fetches http-01 challenges on 127.0.0.1
    tls_port: int  # where Pebble's VA would connect for tls-alpn-01
    dns_port: int  # mock DNS (pebble-challtestsrv), TCP and UDP
    dns_management_url: str  # pebble-challtestsrv's API, to add DNS mocks
    workdir: Path
    env: dict[str, str]  # the PEBBLE_* variables Pebble was started with
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_bundle)

    def get(self, url: str) -> httpx.Response:
        with httpx.Client(verify=self.ssl_context(), timeout=10) as client:
            return client.get(url)

    def root_pems(self) -> list[str]:
        """Issuing root(s) from the management API: /roots/0 then any alternates.

        Alternates (PEBBLE_ALTERNATE_ROOTS=N) are announced by `Link: rel="alternate"`.
        """
        response = self.get(f"{self.management_url}/roots/0")
        response.raise_for_status()
        pems = [response.text]
        for link in response.headers.get_list("link", split_commas=True):
            target, _, params = link.partition(";")
            if 'rel="alternate"' in params.replace(" ", ""):
                alt = self.get(target.strip().strip("<>"))
                alt.raise_for_status()
                pems.append(alt.text)
        return pems

    def cert_status(self, serial: int | str) -> dict[str, Any]:
        """`/cert-status-by-serial/<hex>`: {"Certificate", "Status", "Serial", ...}."""
        hex_serial = format(serial, "x") if isinstance(serial, int) else serial
        response = self.get(f"{self.management_url}/cert-status-by-serial/{hex_serial}")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def log(self) -> str:
        """Output of Pebble and its DNS server so far, to explain failures."""
        return "\n".join(
            f"--- {path.name} ---\n{path.read_text(errors='replace')}"
            for path in sorted(self.workdir.glob("*.log"))
        )


def spawn_logged(
    stack: ExitStack, argv: list[str], log: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ARGV with its output in LOG; stopped when STACK closes."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env
        )
    stack.callback(stop_process, proc)
    return proc


def all_running(
    processes: list[subprocess.Popen[bytes]], log: Callable[[], str]
) -> Callable[[], None]:
    """A check for wait_for's ALIVE: raises, with LOG, once any of PROCESSES
    (as the list then stands) has exited."""

    def check() -> None:
        for proc in processes:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited {proc.returncode}:\n{log()}")

    return check


def mock_dns_argv(dns_port: int, management_port: int) -> list[str]:
    """pebble-challtestsrv as a DNS server answering 127.0.0.1 for every name."""
    options = {
        "-defaultIPv4": "127.0.0.1",
        # No AAAA answers, so that validation only tries 127.0.0.1, where the
        # http-01 webserver under test listens.
        "-defaultIPv6": "",
        "-dns01": f"127.0.0.1:{dns_port}",
        # Its own challenge servers are not needed and would take ports.
        "-http01": "",
        "-https01": "",
        "-tlsalpn01": "",
        "-management": f"127.0.0.1:{management_port}",
    }
    return ["pebble-challtestsrv", *itertools.chain(*options.items())]


@contextmanager
def running_pebble(
    *,
    nonce_reject: int = 0,
    authz_reuse: int = 0,
    va_sleep: bool = False,
    env: Mapping[str, str] | None = None,
    config: Mapping[str, Any] | None = None,
) -> Iterator[PebbleServer]:
    """Start pebble-challtestsrv and pebble on loopback; stop them on exit.

    nonce_reject, authz_reuse: PEBBLE_WFE_NONCEREJECT / PEBBLE_AUTHZREUSE
    percentages, set explicitly because Pebble's own defaults (5, 50) make
    tests flaky.  va_sleep: keep Pebble's random validation delay (otherwise
    PEBBLE_VA_NOSLEEP=1).  env: more variables for pebble (PEBBLE_CHAIN_LENGTH,
    PEBBLE_ALTERNATE_ROOTS, PEBBLE_VA_SLEEPTIME...).  config: more keys for
    the "pebble" object of its config (externalAccountBindingRequired...).
    """
    with ExitStack() as stack:
        workdir = temporary_directory(stack, "lacme-pebble-")
        ca_bundle, cert, key = write_tls_material(workdir)
        acme_port, mgmt_port, http_port, tls_port, dns_port, cts_port = free_ports(6)

        pebble_config = {
            "listenAddress": f"127.0.0.1:{acme_port}",
            "managementListenAddress": f"127.0.0.1:{mgmt_port}",
            "certificate": str(cert),
            "privateKey": str(key),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
            **(config or {}),
        }
        config_path = workdir / "pebble-config.json"
        config_path.write_text(json.dumps({"pebble": pebble_config}, indent=2))

        # Drop inherited PEBBLE_* so that only what the test asks for applies.
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("PEBBLE_")}
        pebble_env = {
            "PEBBLE_WFE_NONCEREJECT": str(nonce_reject),
            "PEBBLE_AUTHZREUSE": str(authz_reuse),
            **({} if va_sleep else {"PEBBLE_VA_NOSLEEP": "1"}),
            **(env or {}),
        }

        server = PebbleServer(
            directory_url=f"https://127.0.0.1:{acme_port}/dir",
            management_url=f"https://127.0.0.1:{mgmt_port}",
            ca_bundle=ca_bundle,
            roots_file=workdir / "pebble-roots.pem",
            http_port=http_port,
            tls_port=tls_port,
            dns_port=dns_port,
            dns_management_url=f"http://127.0.0.1:{cts_port}",
            workdir=workdir,
            env=pebble_env,
        )

        alive = all_running(server.processes, server.log)

        server.processes.append(
            spawn_logged(
                stack, mock_dns_argv(dns_port, cts_port), workdir / "challtestsrv.log", base_env
            )
        )
        wait_for(lambda: port_open(dns_port) and port_open(cts_port), "mock DNS", alive=alive)

        server.processes.append(
            spawn_logged(
                stack,
                ["pebble", "-config", str(config_path), "-dnsserver", f"127.0.0.1:{dns_port}"],
                workdir / "pebble.log",
                {**base_env, **pebble_env},
            )
        )

        def ready() -> list[str] | None:
            try:
                server.get(server.directory_url).raise_for_status()
                return server.root_pems()
            except httpx.HTTPError:
                return None

        roots = wait_for(ready, "Pebble's directory and management API", alive=alive)
        server.roots_file.write_text("".join(roots))
        server.roots_file.chmod(0o644)
        yield server
