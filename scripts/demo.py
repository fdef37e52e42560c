"""The README's demo: a certificate from a local Pebble through lacme's four
processes, and who ran what.

It starts Pebble on loopback, writes a throwaway configuration, registers an
account (the key stays in lacme-accountd) and issues a certificate for two
names, watching /proc meanwhile to show which user each process ran as.
"""

import argparse
import datetime
import ipaddress
import json
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

BIN = Path(sys.executable).parent
LACME, ACCOUNTD = BIN / "lacme", BIN / "lacme-accountd"
CONTACT = "mailto:admin@example.test"
NAMES = ("www.example.test", "example.test")
ROLES = (
    ("lacme-accountd", "account key manager"),
    ("lacme.client", "ACME client"),
    ("lacme.webserver", "http-01 webserver"),
    ("bin/lacme ", "master"),
)
STARTUP_TIMEOUT = 30.0  # seconds for Pebble and its mock DNS to come up
STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL

T = TypeVar("T")
Watched = tuple[subprocess.Popen[bytes], Path]  # a server, and its output: COMMAND.log


def write_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """A new P-256 key, written to PATH (created 0600) as PKCS#8 PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    path.touch(mode=0o600)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return key


def write_listener_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA, and a certificate it signs for 127.0.0.1, for Pebble's
    HTTPS listeners; returns the paths of the CA, certificate and key files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cn = "lacme demo listener CA"
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_cn)])

    def issue(
        subject: str, key: ec.EllipticCurvePublicKey, extension: x509.ExtensionType
    ) -> x509.Certificate:
        """A day's certificate for KEY signed by the CA, with EXTENSION (critical
        only for basicConstraints, as the CA's is)."""
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(ca_name)
            .public_key(key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(extension, critical=isinstance(extension, x509.BasicConstraints))
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
            .sign(ca_key, hashes.SHA256())
        )

    ca = issue(ca_cn, ca_key.public_key(), x509.BasicConstraints(ca=True, path_length=0))
    key_path = directory / "listener-key.pem"
    listener_ip = x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))
    listener = issue(
        "127.0.0.1", write_key(key_path).public_key(), x509.SubjectAlternativeName([listener_ip])
    )
    ca_path, cert_path = directory / "listener-ca.pem", directory / "listener-cert.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    ca_path.chmod(0o644)  # lacme's ACME client, as _lacme-client, verifies Pebble with it
    cert_path.write_bytes(listener.public_bytes(serialization.Encoding.PEM))
    return ca_path, cert_path, key_path


def free_ports(count: int) -> list[int]:
    """COUNT distinct loopback ports free for both TCP and UDP (the mock DNS
    takes both); they stay free only until someone else binds them."""
    ports: list[int] = []
    with ExitStack() as held:  # every socket stays bound until all are chosen
        while len(ports) < count:
            tcp = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            tcp.bind(("127.0.0.1", 0))
            port: int = tcp.getsockname()[1]
            udp = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            ports.append(port)
    return ports


def port_open(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:PORT."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def stop(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM PROC, then SIGKILL it if it has not exited after STOP_TIMEOUT."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def spawn(stack: ExitStack, argv: list[str], log: Path, env: dict[str, str]) -> Watched:
    """Start ARGV with ENV and its output in LOG; STACK stops it on closing.

    In a session of its own, so that Ctrl-C reaches only the demo, which then
    stops it, rather than killing it under the demo's feet."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    stack.callback(stop, proc)
    return proc, log


def wait_for(condition: Callable[[], T | None], what: str, watched: Sequence[Watched]) -> T:
    """Poll CONDITION until it returns something true, and return that; fail with
    its output as soon as one of WATCHED exits, or after STARTUP_TIMEOUT."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        for proc, log in watched:
            if proc.poll() is not None:
                output = log.read_text(errors="replace")
                raise RuntimeError(f"{log.stem} exited {proc.returncode}:\n{output}")
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} after {STARTUP_TIMEOUT:g}s")
        time.sleep(0.05)


def start_pebble(stack: ExitStack, directory: Path) -> tuple[str, Path, int, Path]:
    """Pebble and, as its DNS, pebble-challtestsrv answering 127.0.0.1 for every
    name, with their files in DIRECTORY; STACK stops both on closing.  Returns
    the ACME directory URL, its listener CA, the port where Pebble validates
    http-01 challenges, and a file holding Pebble's issuing root."""
    ca, cert, key = write_listener_tls(directory)
    acme_port, management_port, http_port, dns_port, dns_management_port = free_ports(5)
    env = {name: value for name, value in os.environ.items() if not name.startswith("PEBBLE_")}

    mock_dns = {
        "-dns01": f"127.0.0.1:{dns_port}",
        "-management": f"127.0.0.1:{dns_management_port}",
        "-defaultIPv4": "127.0.0.1",
        "-defaultIPv6": "",  # no AAAA answers: validate on 127.0.0.1 only, where lacme listens
        "-http01": "",  # its own challenge servers are not needed
        "-https01": "",
        "-tlsalpn01": "",
    }
    argv = ["pebble-challtestsrv", *(word for option in mock_dns.items() for word in option)]
    watched = [spawn(stack, argv, directory / "pebble-challtestsrv.log", env)]
    wait_for(lambda: port_open(dns_port) and port_open(dns_management_port), "mock DNS", watched)

    config = directory / "pebble-config.json"
    settings = {
        "listenAddress": f"127.0.0.1:{acme_port}",
        "managementListenAddress": f"127.0.0.1:{management_port}",
        "certificate": str(cert),
        "privateKey": str(key),
        "httpPort": http_port,
    }
    config.write_text(json.dumps({"pebble": settings}))
    # No validation delay, no rejected nonces, no reused authorizations: Pebble's
    # defaults for these make it slow and random.
    env |= {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
    argv = ["pebble", "-config", str(config), "-dnsserver", f"127.0.0.1:{dns_port}"]
    watched.append(spawn(stack, argv, directory / "pebble.log", env))

    directory_url = f"https://127.0.0.1:{acme_port}/dir"
    client = stack.enter_context(httpx.Client(verify=ssl.create_default_context(cafile=ca)))

    def root() -> str | None:
        """Pebble's issuing root, once both its directory and management API answer."""
        try:
            client.get(directory_url).raise_for_status()
            response = client.get(f"https://127.0.0.1:{management_port}/roots/0")
            return response.raise_for_status().text
        except httpx.HTTPError:
            return None

    roots = directory / "pebble-root.pem"
    roots.write_text(wait_for(root, "answer from Pebble", watched))
    roots.chmod(0o644)
    return directory_url, ca, http_port, roots


def describe(certificate: x509.Certificate) -> list[str]:
    """What the demo shows of CERTIFICATE, one line each."""
    sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [
        f"subject:  {certificate.subject.rfc4514_string()}",
        f"names:    {', '.join(sans.get_values_for_type(x509.DNSName))}",
        f"issuer:   {certificate.issuer.rfc4514_string()}",
        f"valid:    {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} to "
        f"{certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC",
        f"SHA-256:  {certificate.fingerprint(hashes.SHA256()).hex(':').upper()}",
    ]


def lacme_processes(root: int) -> list[tuple[bytes, int]]:
    """(command line, uid) of ROOT and its descendants: another lacme on the
    machine (a timer's run, a test) is not this run's."""
    processes: dict[int, tuple[int, int, bytes]] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            cmdline = (status.parent / "cmdline").read_bytes().replace(b"\0", b" ")
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
            ppid, uid = int(fields["PPid"]), int(fields["Uid"].split()[0])
        except (OSError, KeyError, ValueError):
            continue  # gone meanwhile
        processes[int(status.parent.name)] = (ppid, uid, cmdline)
    ours = {root}
    grown = True
    while grown:
        found = {pid for pid, (ppid, _, _) in processes.items() if ppid in ours} - ours
        grown = bool(found)
        ours |= found
    return [(cmdline, uid) for pid, (_, uid, cmdline) in processes.items() if pid in ours]


def run_watching(argv: list[str]) -> dict[str, str]:
    """Run ARGV (failing loudly) and return, for each lacme process seen
    while it ran, the user it ran as."""
    seen: dict[str, str] = {}
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            while proc.poll() is None:
                for cmdline, uid in lacme_processes(proc.pid):
                    for marker, role in ROLES:
                        if marker.encode() in cmdline:
                            seen.setdefault(role, pwd.getpwuid(uid).pw_name)
            out, err = proc.communicate()
        finally:
            stop(proc)  # interrupted: stop lacme before its configuration goes
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{out}{err}")
    return seen


def main() -> int:
    """Run the demo; with --keep, copy the configuration out before cleaning up."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--keep", action="store_true", help="keep the configuration, keys and certificate"
    )
    args = parser.parse_args()
    # Killed politely, clean up as for Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    with ExitStack() as stack:
        # One directory for everything, which lacme's unprivileged users
        # (_lacme-client, _lacme-www) can enter: mkdtemp makes it 0700.
        directory = Path(tempfile.mkdtemp(prefix="lacme-master-"))
        stack.callback(shutil.rmtree, directory, ignore_errors=True)
        directory.chmod(0o755)
        pebble_dir = directory / "pebble"
        pebble_dir.mkdir()
        pebble_dir.chmod(0o755)

        print("Starting Pebble (a test ACME server) and its mock DNS on 127.0.0.1 ...")
        server, listener_ca, http_port, pebble_root = start_pebble(stack, pebble_dir)

        account_key, accountd_config = directory / "account.key", directory / "lacme-accountd.conf"
        write_key(account_key)
        accountd_config.write_text(f"privkey = file:{account_key}\n")
        config = directory / "lacme.conf"
        config.write_text(
            f"[client]\nserver = {server}\nSSL_CAfile = {listener_ca}\n"
            f"[webserver]\nlisten = 127.0.0.1:{http_port}\n"
            f"[accountd]\ncommand = {ACCOUNTD}\nconfig = {accountd_config}\n"
        )
        key_path, chain_path = directory / "demo.key", directory / "demo.chain.pem"
        write_key(key_path)
        # lacme-certs.conf, beside lacme.conf, is where lacme looks by default.
        (directory / "lacme-certs.conf").write_text(
            f"CAfile = {pebble_root}\n[demo]\n"
            f"certificate-key = {key_path}\ncertificate-chain = {chain_path}\n"
            f"subject = /CN={NAMES[0]}\n"
            f"subjectAltName = {','.join(f'DNS:{name}' for name in NAMES)}\n"
        )
        print(f"Configuration in {directory}\n")

        lacme = [str(LACME), f"--config={config}"]
        print(f"# lacme account --register --tos-agreed {CONTACT}")
        users = run_watching([*lacme, "account", "--register", "--tos-agreed", CONTACT])
        print("# lacme newOrder")
        users.update(run_watching([*lacme, "newOrder"]))

        chain = x509.load_pem_x509_certificates(chain_path.read_bytes())
        print("\nCertificate installed after verification against Pebble's root:")
        print("\n".join("  " + line for line in describe(chain[0])))
        print(f"  chain:    {len(chain)} certificates in {chain_path.name}")
        print("\nProcesses seen, and the user each ran as:")
        for _, role in ROLES:
            print(f"  {role:20} {users.get(role, '(not seen)')}")
        if args.keep:
            kept = Path(tempfile.mkdtemp(prefix="lacme-demo-"))
            ignore = shutil.ignore_patterns(pebble_dir.name)  # Pebble's own files
            shutil.copytree(directory, kept, ignore=ignore, dirs_exist_ok=True)
            print(f"\nKept a copy of the configuration, keys and certificate in {kept}")
            print("(its lacme.conf names Pebble's ports, which are closed now).")
    print("\nPebble stopped, temporary files removed.")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit("\nInterrupted: Pebble stopped, temporary files removed.")
    except (RuntimeError, TimeoutError) as e:  # Pebble did not start
        sys.exit(f"demo: {e}\nPebble stopped, temporary files removed.")
