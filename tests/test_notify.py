"""lacme.notify without running a command: what a section's notify command
is told, its notify-timeout, and what the master says of each outcome
(the commands themselves: tests/test_notify_process.py; end to end:
tests/test_notify_e2e.py)."""

from __future__ import annotations

import datetime
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from lacme import config, notify
from lacme.errors import ConfigError
from support.pki import IssuingCA, generate_key, pem

pytestmark = pytest.mark.unit

Capture = pytest.CaptureFixture[str]
NOT_AFTER = datetime.datetime(2027, 3, 4, 5, 6, 7, tzinfo=datetime.UTC)


def section(directory: Path, settings: str = "") -> config.CertSection:
    """Section [www] of a lacme-certs.conf in DIRECTORY, SETTINGS added
    (a repeated key replaces the first)."""
    path = directory / "lacme-certs.conf"
    path.write_text(
        f"[www]\ncertificate-key = {directory / 'www.key'}\n"
        f"certificate = {directory / 'www.crt'}\ncertificate-chain = {directory / 'www.chain'}\n"
        "subject = /CN=www.example.org\nsubjectAltName = DNS:Example.org, IP:192.0.2.1\n"
        f"notify = systemctl reload nginx\n{settings}"
    )
    return config.parse_section(config.load_certs([str(path)])["www"])


def leaf(ca: IssuingCA) -> x509.Certificate:
    start = NOT_AFTER - datetime.timedelta(days=90)
    return ca.issue(generate_key("p256").public_key(), ["www.example.org"], not_before=start)


def install(ca: IssuingCA, conf: config.CertSection) -> x509.Certificate:
    cert = leaf(ca)
    for path in conf.certificate_paths():
        Path(path).write_bytes(pem(cert))
    return cert


class Runs:
    """notify.run, recorded and answering OUTCOME, instead of a shell."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, outcome: str | None = None) -> None:
        self.outcome = outcome
        self.calls: list[tuple[str, dict[str, str], int]] = []
        monkeypatch.setattr(notify, "run", self)

    def __call__(self, command: str, env: Mapping[str, str], timeout: int) -> str | None:
        self.calls.append((command, dict(env), timeout))
        return self.outcome


# --- the environment ------------------------------------------------------------


def test_the_environment_says_what_was_installed(tmp_path: Path, ca: IssuingCA) -> None:
    inherited = {"HOME": "/root", "PATH": "/nowhere", "LACME_NAMES": "stale", "LANG": "C.UTF-8"}
    env = notify.environment(section(tmp_path), leaf(ca), inherited, root=True)
    assert env == {
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LACME_SECTION": "www",
        "LACME_CERTIFICATE": str(tmp_path / "www.crt"),
        "LACME_CERTIFICATE_CHAIN": str(tmp_path / "www.chain"),
        "LACME_NAMES": "www.example.org example.org 192.0.2.1",
        "LACME_NOT_AFTER": "2027-03-04T05:06:07Z",
    }


def test_an_unset_certificate_is_an_empty_variable(tmp_path: Path, ca: IssuingCA) -> None:
    env = notify.environment(section(tmp_path, "certificate =\n"), leaf(ca), {}, root=True)
    assert env["LACME_CERTIFICATE"] == ""
    env = notify.environment(section(tmp_path, "certificate-chain =\n"), leaf(ca), {}, root=True)
    assert env["LACME_CERTIFICATE_CHAIN"] == ""


def test_what_changes_how_the_shell_reads_is_left_out(tmp_path: Path, ca: IssuingCA) -> None:
    inherited = {name: "x" for name in ("IFS", "CDPATH", "ENV", "BASH_ENV", "TERM")}
    env = notify.environment(section(tmp_path), leaf(ca), inherited, root=False)
    assert {k: v for k, v in env.items() if not k.startswith("LACME_")} == {
        "TERM": "x",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
    }


# --- notify-timeout ---------------------------------------------------------------


def test_notify_timeout(tmp_path: Path) -> None:
    assert section(tmp_path).notify_timeout == 300
    assert section(tmp_path, "notify-timeout =\n").notify_timeout == 300
    assert section(tmp_path, "notify-timeout = 1\n").notify_timeout == 1
    assert section(tmp_path, "notify-timeout = 86400\n").notify_timeout == 86400


@pytest.mark.parametrize("value", ["0", "86401", "-5", "1.5", "5s", "٣", "soon"])
def test_a_notify_timeout_but_seconds_is_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as refused:
        section(tmp_path, f"notify-timeout = {value}\n")
    assert str(refused.value) == (
        f"{tmp_path / 'lacme-certs.conf'}: [www] notify-timeout = {value}: "
        "not a number of seconds from 1 to 86400"
    )


# --- outcomes ---------------------------------------------------------------------


def test_a_notify_that_succeeds(
    tmp_path: Path,
    ca: IssuingCA,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Capture,
) -> None:
    runs = Runs(monkeypatch)
    conf = section(tmp_path, "notify-timeout = 7\n")
    install(ca, conf)
    assert notify.after_install(conf)
    ((command, env, timeout),) = runs.calls
    assert (command, env["LACME_NOT_AFTER"], timeout) == (
        "systemctl reload nginx",
        "2027-03-04T05:06:07Z",
        7,
    )
    assert capsys.readouterr().err == "Running notification command `systemctl reload nginx`\n"


def test_a_section_without_notify_runs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    runs = Runs(monkeypatch)
    assert notify.after_install(section(tmp_path, "notify =\n"))
    assert runs.calls == []
    assert capsys.readouterr().err == ""


def test_a_notify_that_fails_is_an_error(
    tmp_path: Path,
    ca: IssuingCA,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Capture,
) -> None:
    Runs(monkeypatch, "exited with value 1")
    conf = section(tmp_path)
    install(ca, conf)
    assert not notify.after_install(conf)
    assert capsys.readouterr().err.splitlines() == [
        "Running notification command `systemctl reload nginx`",
        "[www] Error: notification command exited with value 1",
    ]


def test_an_unreadable_certificate_runs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    runs = Runs(monkeypatch)
    conf = section(tmp_path)
    (tmp_path / "www.chain").write_text("garbage\n")
    assert not notify.after_install(conf)
    assert runs.calls == []
    assert capsys.readouterr().err == (
        f"[www] Error: {tmp_path / 'www.chain'} holds no PEM certificate: "
        "the notification command is not run\n"
    )


def test_a_shell_that_cannot_start(monkeypatch: pytest.MonkeyPatch) -> None:
    def popen(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        raise FileNotFoundError(2, "No such file or directory", "/bin/sh")

    monkeypatch.setattr(subprocess, "Popen", popen)
    assert notify.run("true", {}, 5) == "could not be started: No such file or directory"
