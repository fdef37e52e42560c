"""Our `lacme` master without an ACME server: the stand-in client
tests/fake_client.py, in a mode, brings back what the test wants, against a
throwaway CA; tests/test_master_offline.py and tests/test_red_team.py use it
(the `offline` fixture of tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.commands import ACCOUNTD, LACME
from support.pki import make_ca, new_key_file, save_ca
from support.system import temporary_directory, wait_for

TESTS = Path(__file__).parent.parent
FAKE_CLIENT = TESTS / "fake_client.py"
ORPHANING = TESTS / "orphaning.py"
OLD_CERT = b"-----BEGIN CERTIFICATE-----\nold\n-----END CERTIFICATE-----\n"


@dataclass
class Offline:
    directory: Path
    config: Path
    certs_config: Path
    tmp: Path  # the master's TMPDIR: its challenge directories go there

    def lacme_conf(self, mode: str, listen: str | None = None, extra: str = "") -> None:
        self.config.write_text(
            "[client]\n"
            f"command = {sys.executable} {FAKE_CLIENT} {mode} {self.directory / 'ca'}\n"
            "[webserver]\n"
            f"listen = {listen or self.directory / 'www.sock'}\n"
            "[accountd]\n"
            f"command = {ACCOUNTD}\n"
            f"config = {self.directory / 'lacme-accountd.conf'}\n" + extra
        )

    def section(self, extra: str = "") -> None:
        self.certs_config.write_text(
            "[s]\n"
            f"certificate-key = {self.directory / 's.key'}\n"
            f"certificate = {self.directory / 's.crt'}\n"
            f"certificate-chain = {self.directory / 's.chain'}\n"
            "subject = /CN=s.example.test\n"
            "subjectAltName = DNS:t.example.test\n"
            f"CAfile = {self.directory / 'ca' / 'root.pem'}\n" + extra
        )

    def argv(self, *args: str) -> list[str]:
        return [str(LACME), f"--config={self.config}", *args]

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "TMPDIR": str(self.tmp)}

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), capture_output=True, text=True, timeout=60, check=False, env=self.env
        )

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        """`lacme ARGS` started, its stdout and stderr piped."""
        return subprocess.Popen(
            self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env
        )

    def files(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in self.directory.iterdir() if p.is_file()}


@contextmanager
def offline_setup() -> Iterator[Offline]:
    """A CA, an account key, a section [s] with an old certificate, and a
    lacme.conf for the stand-in client's `good` mode, in a temporary
    directory."""
    with ExitStack() as stack:
        directory = temporary_directory(stack, "lacme-offline-")
        (directory / "ca").mkdir(mode=0o755)
        save_ca(make_ca(), directory / "ca")
        new_key_file(directory / "account.key", "p256")
        (directory / "lacme-accountd.conf").write_text(
            f"privkey = file:{directory / 'account.key'}\nquiet = Yes\n"
        )
        new_key_file(directory / "s.key", "p256")
        (directory / "s.crt").write_bytes(OLD_CERT)
        (directory / "s.chain").write_bytes(OLD_CERT * 2)
        tmp = directory / "tmp"
        tmp.mkdir()
        setup = Offline(directory, directory / "lacme.conf", directory / "lacme-certs.conf", tmp)
        setup.lacme_conf("good")
        setup.section()
        yield setup


def written(master: subprocess.Popen[bytes], challenge: Callable[[], Path | None]) -> Path:
    """The challenge file CHALLENGE finds once MASTER's client has written it."""
    return wait_for(
        challenge,
        "the challenge file",
        alive=lambda: None if master.poll() is None else pytest.fail(str(master.communicate())),
    )


def firewall() -> list[str]:
    """The rules, IPv4 and IPv6 (an empty table that was not there before is no rule)."""
    rules = []
    for program in ("iptables-save", "ip6tables-save"):
        out = subprocess.run([program], capture_output=True, text=True, check=True).stdout
        rules += [line for line in out.splitlines() if line.startswith("-")]
    return rules


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
