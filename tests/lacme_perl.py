"""Driving Debian's Perl lacme 0.8.2 master (/usr/sbin/lacme) against the Pebble bench.

Only the master runs as root; it forks the ACME client as `_lacme-client`
and the http-01 webserver as `_lacme-www`, so everything those read lives
in world-readable temporary directories.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from accountd_helpers import accountd_section
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import verification
from keys import new_key_file, public_jwk
from pebble import (
    PebbleServer,
    temporary_directory,
)

LACME = Path("/usr/sbin/lacme")
LACME_CLIENT = Path("/usr/libexec/lacme/client")
PERL_ACCOUNTD = Path("/usr/bin/lacme-accountd")
OUR_ACCOUNTD = Path(sys.executable).parent / "lacme-accountd"
LACME_TIMEOUT = 120.0
CONTACT = "mailto:admin@example.test"

KeyType = Literal["rsa", "ec"]
KEY_KINDS: dict[KeyType, str] = {"rsa": "rsa2048", "ec": "p256"}
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass
class LacmeSetup:
    """A throwaway lacme.conf + lacme-certs.conf (+ lacme-accountd.conf) and keys."""

    pebble: PebbleServer
    directory: Path
    config: Path
    account_key_path: Path
    account_key: PrivateKey
    service_key: PrivateKey
    certificate: Path
    certificate_chain: Path
    names: tuple[str, ...]

    def run(
        self, *args: str, socket: Path | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run `lacme [--socket=S] ARGS`; unless `check` is false, fail the
        test with its output unless it succeeds."""
        argv = [str(LACME), f"--config={self.config}"]
        if socket is not None:
            argv.append(f"--socket={socket}")
        result = subprocess.run(
            [*argv, *args], capture_output=True, text=True, timeout=LACME_TIMEOUT, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(result.args)} exited {result.returncode}\n"
                f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}\n"
                f"{self.pebble.log()}"
            )
        return result

    def register_and_issue(self, socket: Path | None = None) -> None:
        """`account --register --tos-agreed`, then `newOrder`, checking both results."""
        # A contact is needed: without one lacme follows the registration with
        # an empty account update, which Pebble rejects.
        result = self.run("account", "--register", "--tos-agreed", CONTACT, socket=socket)
        account = json.loads(result.stdout)
        assert account["status"] == "valid"
        assert account["contact"] == [CONTACT]
        # The account really is the key accountd was given.
        assert account["key"] == public_jwk(self.account_key)
        self.run("newOrder", socket=socket)
        self.check_certificate()

    def check_certificate(self) -> None:
        """The installed certificate is for our names and service key, chaining to Pebble's root."""
        leaf, *intermediates = x509.load_pem_x509_certificates(self.certificate_chain.read_bytes())
        assert x509.load_pem_x509_certificate(self.certificate.read_bytes()) == leaf
        assert intermediates, "certificate-chain has no intermediate"
        assert leaf.public_key() == self.service_key.public_key()
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sorted(sans.get_values_for_type(x509.DNSName)) == sorted(self.names)

        roots = x509.load_pem_x509_certificates(self.pebble.roots_file.read_bytes())
        verifier = (
            verification.PolicyBuilder()
            .store(verification.Store(roots))
            .build_server_verifier(x509.DNSName(self.names[0]))
        )
        verifier.verify(leaf, intermediates)

        status = self.pebble.cert_status(leaf.serial_number)
        assert status["Status"] == "Valid"
        assert x509.load_pem_x509_certificate(status["Certificate"].encode()) == leaf


@contextmanager
def lacme_setup(
    pebble: PebbleServer,
    *,
    account_key_type: KeyType = "rsa",
    accountd_command: Sequence[str] | None = None,
    webserver_command: Sequence[str] | None = None,
    client_command: Sequence[str] | None = None,
    client_timeout: float | None = None,
    names: Sequence[str] = ("a.example.test", "b.example.test"),
) -> Iterator[LacmeSetup]:
    """Write the configuration in a temporary directory, removed on exit.

    With `accountd_command`, lacme spawns it (`--stdio`, with a
    lacme-accountd.conf naming the account key); without, the [accountd]
    section is left out and lacme must be given `--socket=`.  With
    `webserver_command`, lacme spawns it instead of its own webserver
    (lacme splits the command on whitespace); `client_command` likewise
    for the ACME client, and `client_timeout` sets its [client] timeout.
    """
    with ExitStack() as stack:
        directory = temporary_directory(stack, "lacme-interop-")
        account_key_path = directory / "account.key"
        account_key = new_key_file(account_key_path, KEY_KINDS[account_key_type])
        service_key_path = directory / "service.key"
        service_key = new_key_file(service_key_path, "rsa2048")

        # The client gets a wiped environment and verifies the server's chain
        # against the system store, hence env.  For Perl's client,
        # SSL_verify = No only skips the hostname check, which LWP fails for
        # an IP URL despite the certificate's IP SAN.  Ours checks it, and
        # is given the CA the same way: Perl lacme refuses [client] keys it
        # doesn't know, such as SSL_CAfile.
        command = " ".join(client_command or [str(LACME_CLIENT)])
        config_lines = [
            f"config-certs = {directory / 'lacme-certs.conf'}",
            "[client]",
            f"server = {pebble.directory_url}",
            f"command = /usr/bin/env SSL_CERT_FILE={pebble.ca_bundle} {command}",
            *([] if client_command else ["SSL_verify = No"]),
            *([] if client_timeout is None else [f"timeout = {client_timeout:g}"]),
            "[webserver]",
            f"listen = 127.0.0.1:{pebble.http_port}",
        ]
        if webserver_command is not None:
            config_lines.append(f"command = {' '.join(webserver_command)}")
        if accountd_command is not None:
            config_lines += accountd_section(directory, account_key_path, accountd_command)
        config = directory / "lacme.conf"
        config.write_text("\n".join(config_lines) + "\n")

        certificate = directory / "cert.pem"
        certificate_chain = directory / "chain.pem"
        (directory / "lacme-certs.conf").write_text(
            "\n".join(
                [
                    "[test]",
                    f"certificate-key = {service_key_path}",
                    f"certificate = {certificate}",
                    f"certificate-chain = {certificate_chain}",
                    f"subject = /CN={names[0]}",
                    f"subjectAltName = {','.join(f'DNS:{name}' for name in names)}",
                    # Its default bundle only holds Let's Encrypt's roots.
                    f"CAfile = {pebble.roots_file}",
                ]
            )
            + "\n"
        )
        yield LacmeSetup(
            pebble=pebble,
            directory=directory,
            config=config,
            account_key_path=account_key_path,
            account_key=account_key,
            service_key=service_key,
            certificate=certificate,
            certificate_chain=certificate_chain,
            names=tuple(names),
        )
