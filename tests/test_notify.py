"""lacme.notify without running a command: what a section's notify command
is told, its notify-timeout, and what the master says of each outcome
(the commands themselves: tests/test_notify_process.py; end to end:
tests/test_notify_e2e.py)."""

from __future__ import annotations

import datetime
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from lacme import config, log, notify
from lacme.errors import ConfigError
from support.pki import IssuingCA, generate_key, pem

pytestmark = pytest.mark.unit

Capture = pytest.CaptureFixture[str]
NOT_AFTER = datetime.datetime(2027, 3, 4, 5, 6, 7, tzinfo=datetime.UTC)
NOW = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)
EARLIER = datetime.datetime(2026, 11, 30, 18, 0, tzinfo=datetime.UTC)
TIMED_OUT = "timed out after 300 s (notify-timeout), its process group killed"


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


def leaf_of(conf: config.CertSection) -> x509.Certificate:
    return x509.load_pem_x509_certificate(Path(conf.certificate_paths()[0]).read_bytes())


def install(ca: IssuingCA, conf: config.CertSection) -> x509.Certificate:
    cert = leaf(ca)
    for path in conf.certificate_paths():
        Path(path).write_bytes(pem(cert))
    return cert


class Runs:
    """notify.run, answering OUTCOME, instead of a shell; each call is
    recorded with what the record of SECTION's notification then said."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        conf: config.CertSection,
        outcome: str | None = None,
    ) -> None:
        self.outcome = outcome
        self.record = record(conf)
        self.calls: list[tuple[str, dict[str, str], int, notify.Pending | None]] = []
        monkeypatch.setattr(notify, "run", self)

    def __call__(self, command: str, env: Mapping[str, str], timeout: int) -> str | None:
        self.calls.append((command, dict(env), timeout, notify.load(str(self.record))))
        return self.outcome


def prepared(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    settings: str = "",
    outcome: str | None = None,
    ca: IssuingCA | None = None,
) -> tuple[config.CertSection, Runs]:
    """Section [www] with SETTINGS, its certificate from CA installed (none
    without), and notify.run answering OUTCOME."""
    conf = section(tmp_path, settings)
    if ca is not None:
        install(ca, conf)
    return conf, Runs(monkeypatch, conf, outcome)


def record(conf: config.CertSection) -> Path:
    return Path(notify.state_path(conf.certificate_paths()[0]))


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


# --- after a certificate is installed ---------------------------------------------


def test_a_notify_that_succeeds_leaves_no_record(
    tmp_path: Path, ca: IssuingCA, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    conf, runs = prepared(monkeypatch, tmp_path, "notify-timeout = 7\n", ca=ca)
    # What was pending was for the certificate replaced.
    notify.save(str(runs.record), notify.Pending(EARLIER, "exited with value 1"))
    assert notify.after_install(conf, NOW)
    ((command, env, timeout, pending),) = runs.calls
    assert (command, env["LACME_NOT_AFTER"], timeout) == (
        "systemctl reload nginx",
        "2027-03-04T05:06:07Z",
        7,
    )
    # Recorded while it runs, for a run stopped meanwhile.
    assert pending == notify.Pending(NOW, None)
    assert not runs.record.exists()
    assert capsys.readouterr().err == "Running notification command `systemctl reload nginx`\n"


def test_a_notify_that_fails_is_an_error_and_pending(
    tmp_path: Path, ca: IssuingCA, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    conf, runs = prepared(monkeypatch, tmp_path, outcome="exited with value 1", ca=ca)
    assert not notify.after_install(conf, NOW)
    assert capsys.readouterr().err.splitlines() == [
        "Running notification command `systemctl reload nginx`",
        "[www] Error: notification command exited with value 1: it runs again on the next run",
    ]
    assert runs.record == tmp_path / "www.chain.notify"
    assert notify.load(str(runs.record)) == notify.Pending(NOW, "exited with value 1")
    assert oct(runs.record.stat().st_mode & 0o777) == "0o644"


def test_a_notify_program_others_may_write_is_not_run_and_stays_pending(
    tmp_path: Path, ca: IssuingCA, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    # Made writable since the check before ordering, or pending from before.
    program = tmp_path / "reload"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o757)
    conf, runs = prepared(monkeypatch, tmp_path, f"notify = {program}\n", ca=ca)
    assert not notify.after_install(conf, NOW)
    assert runs.calls == []
    failure = f"refused: {program}: writable by others (mode 0757)"
    assert capsys.readouterr().err.splitlines() == [
        f"[www] Error: notification command {failure}: it runs again on the next run"
    ]
    assert notify.load(str(runs.record)) == notify.Pending(NOW, failure)


def test_a_section_without_notify_runs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    conf, runs = prepared(monkeypatch, tmp_path, "notify =\n")
    # Left from when notify was set, about the certificate replaced.
    notify.save(str(runs.record), notify.Pending(EARLIER, "exited with value 1"))
    assert notify.after_install(conf, NOW)
    assert runs.calls == []
    assert not runs.record.exists()
    assert capsys.readouterr().err == ""


def test_a_failure_that_cannot_be_recorded_says_so(
    tmp_path: Path, ca: IssuingCA, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    conf, runs = prepared(monkeypatch, tmp_path, outcome="was killed by SIGSEGV", ca=ca)
    runs.record.mkdir()
    before = sorted(tmp_path.iterdir())
    assert not notify.after_install(conf, NOW)
    assert capsys.readouterr().err.splitlines()[1:] == [
        "[www] Error: notification command was killed by SIGSEGV; "
        f"can't save {runs.record}: Is a directory, so it won't run again"
    ]
    assert sorted(tmp_path.iterdir()) == before


def test_an_unreadable_certificate_stays_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    conf, runs = prepared(monkeypatch, tmp_path)
    (tmp_path / "www.chain").write_text("garbage\n")
    assert not notify.after_install(conf, NOW)
    assert runs.calls == []
    assert capsys.readouterr().err == (
        f"[www] Error: {tmp_path / 'www.chain'} holds no PEM certificate: "
        "the notification command stays pending\n"
    )
    assert notify.load(str(runs.record)) == notify.Pending(NOW, None)


# --- on the runs after ---------------------------------------------------------------


def test_nothing_pending_runs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    conf, runs = prepared(monkeypatch, tmp_path)
    assert notify.again(conf, log.say)
    assert runs.calls == []
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("last", "said"),
    [
        ("exited with value 1", "the last attempt exited with value 1"),
        (None, "the last attempt did not end"),
    ],
)
def test_a_pending_notify_runs_again_until_it_succeeds(
    tmp_path: Path,
    ca: IssuingCA,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Capture,
    last: str | None,
    said: str,
) -> None:
    conf, runs = prepared(monkeypatch, tmp_path, outcome=TIMED_OUT, ca=ca)
    notify.save(str(runs.record), notify.Pending(EARLIER, last))
    assert not notify.again(conf, log.say)
    assert capsys.readouterr().err.splitlines() == [
        f"[www] Notification pending since 2026-11-30 18:00:00 UTC, {said}: running it again",
        "Running notification command `systemctl reload nginx`",
        "[www] Error: notification command timed out after 300 s (notify-timeout), "
        "its process group killed: it runs again on the next run",
    ]
    assert notify.load(str(runs.record)) == notify.Pending(EARLIER, runs.outcome)

    runs.outcome = None
    assert notify.again(conf, log.say)
    assert capsys.readouterr().err.splitlines()[1:] == [
        "Running notification command `systemctl reload nginx`",
        "[www] Notification command succeeded, no longer pending",
    ]
    assert not runs.record.exists()
    assert notify.again(conf, log.say)
    assert len(runs.calls) == 2
    assert capsys.readouterr().err == ""


def test_a_pending_notify_tells_the_installed_certificate(
    tmp_path: Path, ca: IssuingCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf, runs = prepared(monkeypatch, tmp_path, "certificate =\n", ca=ca)
    notify.save(str(runs.record), notify.Pending(EARLIER, "exited with value 1"))
    assert notify.again(conf, log.say)
    ((_, env, _, _),) = runs.calls
    assert env == notify.environment(conf, leaf_of(conf), os.environ, os.geteuid() == 0)
    assert (env["LACME_CERTIFICATE"], env["LACME_NOT_AFTER"]) == ("", "2027-03-04T05:06:07Z")


def test_quiet_silences_only_the_success(
    tmp_path: Path, ca: IssuingCA, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    conf, _ = prepared(monkeypatch, tmp_path, ca=ca)
    notify.save(notify.state_path(conf.certificate_paths()[0]), notify.Pending(EARLIER, None))
    assert notify.again(conf, lambda message: None)
    assert capsys.readouterr().err.splitlines()[1:] == [
        "Running notification command `systemctl reload nginx`"
    ]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        '{"since": "2026-11-30T18:00:00", "last": null}',  # no time zone
        '{"since": "yesterday", "last": null}',
        '{"since": "2026-11-30T18:00:00+00:00", "last": 1}',
        '{"since": "2026-11-30T18:00:00+00:00"}',
    ],
)
def test_an_unreadable_record_is_pending_since_it_was_written(
    tmp_path: Path, ca: IssuingCA, monkeypatch: pytest.MonkeyPatch, capsys: Capture, text: str
) -> None:
    conf, runs = prepared(monkeypatch, tmp_path, ca=ca)
    runs.record.write_text(text)
    os.utime(runs.record, (EARLIER.timestamp(), EARLIER.timestamp()))
    assert notify.load(str(runs.record)) == notify.Pending(EARLIER, "is unknown")
    assert notify.again(conf, log.say)
    assert capsys.readouterr().err.splitlines()[0] == (
        "[www] Notification pending since 2026-11-30 18:00:00 UTC, "
        "the last attempt is unknown: running it again"
    )
    assert not runs.record.exists()


def test_a_pending_notify_of_an_unreadable_certificate_stays_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    conf, runs = prepared(monkeypatch, tmp_path)
    notify.save(str(runs.record), notify.Pending(EARLIER, "exited with value 1"))
    assert not notify.again(conf, log.say)
    assert runs.calls == []
    assert capsys.readouterr().err.splitlines()[1:] == [
        f"[www] Error: can't read {tmp_path / 'www.chain'}: No such file or directory: "
        "the notification command stays pending"
    ]
    assert notify.load(str(runs.record)) == notify.Pending(EARLIER, "exited with value 1")


def test_a_notify_unset_since_drops_what_was_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    conf, runs = prepared(monkeypatch, tmp_path, "notify =\n")
    notify.save(str(runs.record), notify.Pending(EARLIER, "exited with value 1"))
    assert notify.again(conf, log.say)
    assert runs.calls == []
    assert not runs.record.exists()
    assert capsys.readouterr().err == (
        "[www] No notify command any more: the pending notification is dropped\n"
    )


def test_a_record_that_cannot_be_removed_is_warned_of(
    tmp_path: Path, ca: IssuingCA, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    conf, runs = prepared(monkeypatch, tmp_path, ca=ca)
    runs.record.mkdir()
    assert notify.again(conf, log.say)
    assert capsys.readouterr().err.splitlines()[2:] == [
        f"[www] Warning: can't remove {runs.record}: Is a directory: "
        "the notification command runs again on the next run"
    ]
    assert notify.again(section(tmp_path, "notify =\n"), log.say)
    assert capsys.readouterr().err == f"[www] Warning: can't remove {runs.record}: Is a directory\n"


def test_a_shell_that_cannot_start(monkeypatch: pytest.MonkeyPatch) -> None:
    def popen(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        raise FileNotFoundError(2, "No such file or directory", "/bin/sh")

    monkeypatch.setattr(subprocess, "Popen", popen)
    assert notify.run("true", {}, 5) == "could not be started: No such file or directory"
