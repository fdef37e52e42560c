"""A throwaway Pebble ACME server (plus its mock DNS) on loopback, for tests.

`running_pebble()` starts `pebble-challtestsrv` as the DNS server answering
127.0.0.1 for every name, then `pebble` with a listener certificate signed by
a CA generated here, and stops both on exit.  Everything lives in a fresh
temporary directory that other users can read, so that the unprivileged users
of lacme (`_lacme-client`, `_lacme-www`) can read the CA bundle and the roots.
"""

from __future__ import annotations

import itertools
import json
import os
import ssl
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from support.pki import write_tls_material
from support.system import (
    all_running,
    free_ports,
    port_open,
    spawn_logged,
    temporary_directory,
    wait_for,
)


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
