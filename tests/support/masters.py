"""A master, ours (`master_setup`) or Perl lacme 0.8.2's (`perl_master_setup`),
with a throwaway configuration against an ACME test server.

The master runs as root; it forks the ACME client as `_lacme-client` and the
http-01 webserver as `_lacme-www`, so everything those read lives in
world-readable temporary directories.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import verification

from support.accountd import accountd_section
from support.commands import ACCOUNTD, CONTACT, LACME, PERL_CLIENT, PERL_LACME, TIMEOUT, run_checked
from support.pebble import PebbleServer
from support.pki import new_key_file, public_jwk
from support.servers import AcmeTestServer
from support.system import temporary_directory

KeyType = Literal["rsa", "ec"]
KEY_KINDS: dict[KeyType, str] = {"rsa": "rsa2048", "ec": "p256"}
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def leaf_of(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def names_of(cert: x509.Certificate) -> list[str]:
    """The DNS names of CERT's subjectAltName, sorted."""
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sorted(san.get_values_for_type(x509.DNSName))


def check_issued(
    roots_file: Path, chain: list[x509.Certificate], names: Sequence[str], public_key: Any
) -> x509.Certificate:
    """CHAIN (leaf first) is a certificate for NAMES and PUBLIC_KEY with its
    intermediates, up to a root in ROOTS_FILE (Pebble's, as fetched from its
    management API at its start); its leaf."""
    leaf, *intermediates = chain
    assert intermediates, "no intermediate after the leaf"
    assert leaf.public_key() == public_key, "the leaf is not for the service key"
    assert names_of(leaf) == sorted(names), f"the leaf is for {names_of(leaf)}"
    roots = x509.load_pem_x509_certificates(roots_file.read_bytes())
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store(roots))
        .build_server_verifier(x509.DNSName(names[0]))
    )
    verifier.verify(leaf, intermediates)
    return leaf


@dataclass
class MasterSetup:
    """Our master's lacme.conf, lacme-accountd.conf and account key."""

    server: AcmeTestServer
    directory: Path
    config: Path
    certs_config: Path
    account_key_path: Path
    account_key: Any

    def run(
        self, *args: str, check: bool = True, timeout: float = TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """`lacme --config=... ARGS`; unless CHECK is false, fail the test with
        its output unless it succeeds."""
        return run_checked(
            [LACME, f"--config={self.config}", *args],
            check=check,
            timeout=timeout,
            explain=self.server.log,
        )

    def register(self) -> dict[str, Any]:
        """`account --register --tos-agreed CONTACT`: the new account, checked
        to be valid and, where the server shows its key, to be accountd's."""
        account: dict[str, Any] = json.loads(
            self.run("account", "--register", "--tos-agreed", CONTACT).stdout
        )
        assert account["status"] == "valid"
        assert account.get("key", public_jwk(self.account_key)) == public_jwk(self.account_key)
        return account

    def write_sections(self, sections: Mapping[str, Mapping[str, str]], defaults: str = "") -> None:
        """Write lacme-certs.conf; every section trusts the server's roots."""
        lines = [f"CAfile = {self.server.roots_file}", defaults]
        for name, settings in sections.items():
            lines.append(f"[{name}]")
            lines += [f"{key} = {value}" for key, value in settings.items()]
        self.certs_config.write_text("\n".join(lines) + "\n")

    def one_section(self, name: str = "site", **settings: str) -> Path:
        """Write lacme-certs.conf with one section NAME for a fresh P-256
        key; the certificate chain file it installs."""
        key_path, _ = self.service_key(name, "p256")
        chain = self.directory / f"{name}.chain"
        self.write_sections(
            {name: {"certificate-key": str(key_path), "certificate-chain": str(chain), **settings}}
        )
        return chain

    def service_key(self, name: str, kind: str) -> tuple[Path, Any]:
        path = self.directory / f"{name}.key"
        return path, new_key_file(path, kind)


@contextmanager
def master_setup(
    server: AcmeTestServer,
    *,
    account_key_kind: str = "p256",
    accountd: Sequence[str] | None = (str(ACCOUNTD),),
    client: Sequence[str] | None = None,
    webserver: Sequence[str] | None = None,
    listen: str | None = None,
    extra_client: Sequence[str] = (),
    ssl_cafile: bool = True,
    extra_webserver: Sequence[str] = (),
    defaults: Sequence[str] = (),
) -> Iterator[MasterSetup]:
    """lacme.conf, lacme-accountd.conf and an account key in a temporary
    directory; ACCOUNTD None leaves [accountd] out (use --socket=).  Without
    SSL_CAFILE the client must be told about the server's listener CA
    otherwise.  DEFAULTS are lacme.conf's lines before any section."""
    with ExitStack() as stack:
        directory = temporary_directory(stack, "lacme-master-")
        account_key_path = directory / "account.key"
        account_key = new_key_file(account_key_path, account_key_kind)
        certs_config = directory / "lacme-certs.conf"
        lines = [
            *defaults,
            "[client]",
            f"server = {server.directory_url}",
            *([f"SSL_CAfile = {server.ca_bundle}"] if ssl_cafile else []),
            *([f"command = {' '.join(client)}"] if client else []),
            *extra_client,
            "[webserver]",
            f"listen = {f'127.0.0.1:{server.http_port}' if listen is None else listen}",
            *([f"command = {' '.join(webserver)}"] if webserver else []),
            *extra_webserver,
        ]
        if accountd is not None:
            lines += accountd_section(directory, account_key_path, accountd)
        config = directory / "lacme.conf"
        config.write_text("\n".join(lines) + "\n")
        yield MasterSetup(server, directory, config, certs_config, account_key_path, account_key)


@dataclass
class PerlMasterSetup:
    """Perl's lacme.conf and lacme-certs.conf (and lacme-accountd.conf), and keys."""

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
        argv: list[str | Path] = [PERL_LACME, f"--config={self.config}"]
        if socket is not None:
            argv.append(f"--socket={socket}")
        return run_checked([*argv, *args], check=check, explain=self.pebble.log)

    def register_and_issue(self, socket: Path | None = None) -> None:
        """`account --register --tos-agreed`, then `newOrder`, checking both results."""
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
        chain = x509.load_pem_x509_certificates(self.certificate_chain.read_bytes())
        leaf = check_issued(
            self.pebble.roots_file, chain, self.names, self.service_key.public_key()
        )
        assert x509.load_pem_x509_certificate(self.certificate.read_bytes()) == leaf

        status = self.pebble.cert_status(leaf.serial_number)
        assert status["Status"] == "Valid"
        assert x509.load_pem_x509_certificate(status["Certificate"].encode()) == leaf


@contextmanager
def perl_master_setup(
    pebble: PebbleServer,
    *,
    account_key_type: KeyType = "rsa",
    accountd_command: Sequence[str] | None = None,
    webserver_command: Sequence[str] | None = None,
    client_command: Sequence[str] | None = None,
    client_timeout: float | None = None,
    names: Sequence[str] = ("a.example.test", "b.example.test"),
) -> Iterator[PerlMasterSetup]:
    """Perl lacme's configuration in a temporary directory, removed on exit.

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
        command = " ".join(client_command or [str(PERL_CLIENT)])
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
        yield PerlMasterSetup(
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
