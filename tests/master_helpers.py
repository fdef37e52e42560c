"""Running our `lacme` master against the Pebble bench, with throwaway configuration."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accountd_helpers import accountd_section
from cryptography import x509
from keys import new_key_file
from pebble import PebbleServer, temporary_directory

LACME = Path(sys.executable).parent / "lacme"
OUR_ACCOUNTD = Path(sys.executable).parent / "lacme-accountd"
TIMEOUT = 120.0
CONTACT = "mailto:admin@example.test"


@dataclass
class MasterSetup:
    pebble: PebbleServer
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
        result = subprocess.run(
            [str(LACME), f"--config={self.config}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(result.args)} exited {result.returncode}\n"
                f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}\n"
                f"{self.pebble.log()}"
            )
        return result

    def write_sections(self, sections: Mapping[str, Mapping[str, str]], defaults: str = "") -> None:
        """Write lacme-certs.conf; every section trusts Pebble's roots."""
        lines = [f"CAfile = {self.pebble.roots_file}", defaults]
        for name, settings in sections.items():
            lines.append(f"[{name}]")
            lines += [f"{key} = {value}" for key, value in settings.items()]
        self.certs_config.write_text("\n".join(lines) + "\n")

    def service_key(self, name: str, kind: str) -> tuple[Path, Any]:
        path = self.directory / f"{name}.key"
        return path, new_key_file(path, kind)


def leaf_of(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


@contextmanager
def master_setup(
    pebble: PebbleServer,
    *,
    account_key_kind: str = "p256",
    accountd: Sequence[str] | None = (str(OUR_ACCOUNTD),),
    client: Sequence[str] | None = None,
    webserver: Sequence[str] | None = None,
    listen: str | None = None,
    extra_client: Sequence[str] = (),
    ssl_cafile: bool = True,
    extra_webserver: Sequence[str] = (),
) -> Iterator[MasterSetup]:
    """lacme.conf, lacme-accountd.conf and an account key in a temporary
    directory; ACCOUNTD None leaves [accountd] out (use --socket=).  Without
    SSL_CAFILE the client must be told about Pebble's listener CA otherwise."""
    with ExitStack() as stack:
        directory = temporary_directory(stack, "lacme-master-")
        account_key_path = directory / "account.key"
        account_key = new_key_file(account_key_path, account_key_kind)
        certs_config = directory / "lacme-certs.conf"
        lines = [
            "[client]",
            f"server = {pebble.directory_url}",
            *([f"SSL_CAfile = {pebble.ca_bundle}"] if ssl_cafile else []),
            *([f"command = {' '.join(client)}"] if client else []),
            *extra_client,
            "[webserver]",
            f"listen = {f'127.0.0.1:{pebble.http_port}' if listen is None else listen}",
            *([f"command = {' '.join(webserver)}"] if webserver else []),
            *extra_webserver,
        ]
        if accountd is not None:
            lines += accountd_section(directory, account_key_path, accountd)
        config = directory / "lacme.conf"
        config.write_text("\n".join(lines) + "\n")
        yield MasterSetup(pebble, directory, config, certs_config, account_key_path, account_key)
