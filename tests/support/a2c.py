"""A throwaway acme2certifier ACME server, in a network namespace of its own.

acme2certifier (PyPI, 0.46.x) is a second ACME server, independent of Pebble,
that implements ACME Renewal Information (RFC 9773) and profiles.  Its
http-01 validation resolves names only through the DNS servers of its
`dns_server_list`, on port 53, and fetches port 80: ports a test must not take
on the machine.  So `network_namespace()` moves the test into a fresh network
namespace (only a loopback interface, brought up), where 127.0.0.1 has every
port free and nothing else can be reached; `running_acme2certifier()`, called
inside it, starts there

- pebble-challtestsrv as the DNS server on 127.0.0.1:53, answering 127.0.0.1
  for every name;
- acme2certifier's WSGI application served over HTTPS on 127.0.0.1:443
  (tests/a2c_serve.py), with SQLite and its "openssl" CA handler issuing from
  a throwaway root and intermediate;

and lacme's webserver is to listen on 127.0.0.1:80, where the validation
looks.  Everything the processes need lives in a temporary directory other
users can read (lacme's unprivileged children read the CA bundle).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import ssl
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from support.pebble import mock_dns_argv
from support.pki import make_ca, write_key, write_tls_material
from support.system import (
    all_running,
    in_own_network_namespace,
    port_open,
    spawn_logged,
    temporary_directory,
    wait_for,
)

ACME_PORT = 443
HTTP_PORT = 80
DNS_PORT = 53
CHALLTESTSRV_PORT = 8055
SERVE = Path(__file__).parent.parent / "a2c_serve.py"
# The profiles the bench advertises in the directory's meta.profiles.
PROFILES = {
    "classic": "the default profile",
    "shortlived": "certificates valid for a few days",
}


@dataclass
class A2CServer:
    """A running acme2certifier (a support.servers.AcmeTestServer)."""

    directory_url: str
    ca_bundle: Path  # CA of the HTTPS listener
    roots_file: Path  # the issuing root
    workdir: Path
    config: Path
    http_port: int = HTTP_PORT
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def get(self, url: str) -> httpx.Response:
        with httpx.Client(
            verify=ssl.create_default_context(cafile=self.ca_bundle), timeout=10
        ) as client:
            return client.get(url)

    def directory(self) -> dict[str, Any]:
        response = self.get(self.directory_url)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows from acme2certifier's SQLite database."""
        with contextlib.closing(sqlite3.connect(self.workdir / "acme_srv.db")) as db:
            return db.execute(sql).fetchall()

    def renewal_info_requests(self) -> int:
        """How many renewalInfo GETs acme2certifier has answered."""
        log = (self.workdir / "acme2certifier.log").read_text(errors="replace")
        return len(re.findall(r'"GET /acme/renewal-info/\S+ HTTP/1.1"', log))

    def revocations(self) -> dict[int, str]:
        """The reason name of each certificate revoked, by serial number.
        The "openssl" CA handler puts no reason on its CRL: the reasons are
        those its debug log shows it was given, matched to the CRL entries,
        which it keeps in the order of revocation (any refused after the CA
        handler was called, as already revoked, would skew this)."""
        crl_file = self.workdir / "ca" / "crl.pem"
        if not crl_file.exists():
            return {}
        crl = x509.load_pem_x509_crl(crl_file.read_bytes())
        log = (self.workdir / "acme2certifier.log").read_text(errors="replace")
        reasons = re.findall(r"CAhandler\.revoke\((\w+): ", log)
        assert len(reasons) == len(crl), (reasons, len(crl))
        return {entry.serial_number: reason for entry, reason in zip(crl, reasons, strict=True)}

    def log(self) -> str:
        """Output of acme2certifier and the DNS server so far, to explain failures."""
        return "\n".join(
            f"--- {path.name} ---\n{path.read_text(errors='replace')[-20000:]}"
            for path in sorted(self.workdir.glob("*.log"))
        )


def _config(
    workdir: Path,
    renewalinfo: Mapping[str, str],
    profiles: Mapping[str, str] | None,
    eab_keys: Mapping[str, str] | None,
) -> str:
    """acme_srv.cfg (see acme2certifier's docs/acme_srv.md)."""
    sections: dict[str, dict[str, str]] = {
        "DEFAULT": {"debug": "True", "dns_server_list": json.dumps(["127.0.0.1"])},
        "Nonce": {"nonce_check_disable": "False"},
        "CAhandler": {
            "handler_module": "acme2certifier.cahandlers.openssl_ca_handler",
            "issuing_ca_key": str(workdir / "ca" / "intermediate-key.pem"),
            "issuing_ca_cert": str(workdir / "ca" / "intermediate.pem"),
            "issuing_ca_crl": str(workdir / "ca" / "crl.pem"),
            "ca_cert_chain_list": json.dumps([str(workdir / "ca" / "root.pem")]),
            "cert_save_path": str(workdir / "ca" / "certs"),
            "cert_validity_days": "30",
        },
        "DBhandler": {
            "handler_module": "acme2certifier.dbhandlers.wsgi_handler",
            "dbfile": str(workdir / "acme_srv.db"),
        },
        "Certificate": {"revocation_reason_check_disable": "False"},
        "Challenge": {"challenge_validation_disable": "False"},
        "Order": {"tnauthlist_support": "False"},
        "Renewalinfo": dict(renewalinfo),
    }
    if profiles is not None:
        sections["Order"]["profiles"] = json.dumps(profiles)
    if eab_keys is not None:
        # The JSON file handler: {key identifier: base64url MAC key}.
        eab_file = workdir / "eab-keys.json"
        eab_file.write_text(json.dumps(dict(eab_keys)))
        sections["EABhandler"] = {
            "eab_handler_module": "acme2certifier.eabhandlers.json_handler",
            "key_file": str(eab_file),
        }
    return "".join(
        f"[{name}]\n" + "".join(f"{key}: {value}\n" for key, value in values.items())
        for name, values in sections.items()
    )


@contextmanager
def running_acme2certifier(
    *,
    renewalinfo: Mapping[str, str] | None = None,
    profiles: Mapping[str, str] | None = PROFILES,
    eab_keys: Mapping[str, str] | None = None,
) -> Iterator[A2CServer]:
    """Start the mock DNS and acme2certifier; call inside network_namespace().

    renewalinfo: the [Renewalinfo] settings (renewalthreshold_pctg,
    renewal_force, retry_after_timeout...); profiles: meta.profiles, None
    for none; eab_keys: if given, external account binding is required, with
    these MAC keys (base64url) by key identifier.
    """
    if not in_own_network_namespace():
        # Ports 53, 80 and 443 of the machine are not the bench's to take.
        raise RuntimeError("running_acme2certifier() belongs inside network_namespace()")
    with ExitStack() as stack:
        workdir = temporary_directory(stack, "lacme-a2c-")
        ca_bundle, listener_cert, listener_key = write_tls_material(workdir)
        ca = make_ca("acme2certifier test")
        (workdir / "ca" / "certs").mkdir(parents=True)
        (workdir / "ca" / "root.pem").write_bytes(ca.root_pem())
        (workdir / "ca" / "intermediate.pem").write_bytes(ca.intermediate_pem())
        write_key(workdir / "ca" / "intermediate-key.pem", ca.intermediate_key)
        roots_file = workdir / "roots.pem"
        roots_file.write_bytes(ca.root.public_bytes(serialization.Encoding.PEM))
        roots_file.chmod(0o644)
        config = workdir / "acme_srv.cfg"
        config.write_text(_config(workdir, renewalinfo or {}, profiles, eab_keys))

        server = A2CServer(
            directory_url=f"https://127.0.0.1:{ACME_PORT}/directory",
            ca_bundle=ca_bundle,
            roots_file=roots_file,
            workdir=workdir,
            config=config,
        )

        alive = all_running(server.processes, server.log)

        server.processes.append(
            spawn_logged(
                stack, mock_dns_argv(DNS_PORT, CHALLTESTSRV_PORT), workdir / "challtestsrv.log"
            )
        )
        wait_for(lambda: port_open(DNS_PORT), "mock DNS", alive=alive)
        env = {**os.environ, "ACME_SRV_CONFIGFILE": str(config)}
        server.processes.append(
            spawn_logged(
                stack,
                [
                    sys.executable,
                    "-I",
                    str(SERVE),
                    "127.0.0.1",
                    str(ACME_PORT),
                    str(listener_cert),
                    str(listener_key),
                ],
                workdir / "acme2certifier.log",
                env,
            )
        )

        def ready() -> bool:
            try:
                server.get(server.directory_url).raise_for_status()
            except httpx.HTTPError:
                return False
            return True

        wait_for(ready, "acme2certifier's directory", alive=alive)
        yield server
