"""Our `lacme` master without an ACME server: a stand-in client (fake_client.py)
brings back hostile chains, configurations are broken on purpose, and runs are
interrupted.  Whatever happens, old certificates stay byte-identical and
nothing is left behind.  The attacks of issue 13 a compromised client makes
are in tests/test_red_team.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from support.commands import ACCOUNTD
from support.offline import OLD_CERT, Offline, alive, firewall, written
from support.proc import descendants
from support.system import free_ports
from support.users import client_user

pytestmark = [pytest.mark.process, pytest.mark.root]


def test_the_stand_in_client_works(offline: Offline) -> None:
    result = offline.run("newOrder")
    assert result.returncode == 0, result.stderr
    assert offline.files()["s.crt"] != OLD_CERT
    fingerprint, summary = result.stdout.splitlines()
    assert fingerprint.startswith("SHA256 Fingerprint=")
    # Which section it is: its CN says nothing of the section's name.
    assert summary.startswith("[s] subject CN=s.example.test (s.example.test, t.example.test), ")
    assert list(offline.tmp.iterdir()) == []
    assert not (offline.directory / "www.sock").exists()


def test_json_says_what_came_of_each_section(offline: Offline) -> None:
    result = offline.run("newOrder", "--json", "s", "nosuch")
    assert result.returncode == 1, result.stderr
    installed, unknown = map(json.loads, result.stdout.splitlines())
    leaf = x509.load_pem_x509_certificate(offline.files()["s.crt"])
    assert installed == {
        "section": "s",
        "ok": True,
        "outcome": "installed",
        "certificate": {
            "certificate": str(offline.directory / "s.crt"),
            "certificateChain": str(offline.directory / "s.chain"),
            "names": ["s.example.test", "t.example.test"],
            "subject": "CN=s.example.test",
            "issuer": leaf.issuer.rfc4514_string(),
            "serial": f"{leaf.serial_number:x}",
            "sha256": leaf.fingerprint(hashes.SHA256()).hex(),
            "notBefore": leaf.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "notAfter": leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }
    assert unknown == {"section": "nosuch", "ok": False, "outcome": "failed"}
    again = offline.run("newOrder", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"section": "s", "ok": True, "outcome": "skipped"}


def test_a_dry_run_with_another_client_is_refused(offline: Offline) -> None:
    before = offline.files()
    result = offline.run("newOrder", "--dry-run")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"Error: --dry-run needs lacme's own client ([client] command = ... -m lacme.client), "
        f"not {sys.executable}: lacme 0.8.2's can't stop an order before finalizing it"
    ]
    assert offline.files() == before
    assert list(offline.tmp.iterdir()) == []


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("wrong-key", "Error after issuance: the issued certificate is not for the section's key"),
        (
            "rogue",
            "Error after issuance: the issued certificate does not verify for s.example.test",
        ),
        ("garbage", "Error: the ACME server's answer is not a PEM certificate chain"),
        ("empty", "Error: the ACME server's answer is not a PEM certificate chain"),
    ],
)
def test_hostile_chains_install_nothing(offline: Offline, mode: str, message: str) -> None:
    offline.lacme_conf(mode)
    before = offline.files()
    result = offline.run("newOrder")
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    line = result.stderr.rstrip("\n")
    assert line.startswith(f"[s] {message}")
    after = offline.files()
    # For the section's key and names, but of a CA CAfile does not hold:
    # kept, for the next run (lacme.installed); anything else is not.
    kept = after.pop("s.chain.issued", None)
    assert (kept is not None) == (mode == "rogue")
    assert line.endswith(
        f"kept in {offline.directory / 's.chain.issued'}, for the next run to install"
    ) == (mode == "rogue")
    assert after == before


def test_no_verification_with_an_empty_cafile(offline: Offline) -> None:
    offline.lacme_conf("rogue")
    offline.certs_config.write_text(offline.certs_config.read_text() + "CAfile =\n")
    result = offline.run("newOrder")
    assert result.returncode == 0, result.stderr
    offline.lacme_conf("wrong-key")
    result = offline.run("newOrder", "--force")
    assert result.returncode == 1
    assert "not for the section's key" in result.stderr


def test_a_failing_section_does_not_stop_the_others(offline: Offline) -> None:
    d = offline.directory
    offline.certs_config.write_text(
        "[a]\ncertificate-key = /nonexistent.key\ncertificate = /nonexistent.crt\n"
        "subject = /CN=a.example.test\n"
        f"[b]\ncertificate-key = {d / 's.key'}\ncertificate = {d / 'b.crt'}\n"
        f"subject = /CN=b.example.test\nCAfile = {d / 'ca/root.pem'}\n"
        f"notify = exit 3\n"
        f"[c]\ncertificate-key = {d / 's.key'}\ncertificate = {d / 'c.crt'}\n"
        f"subject = /CN=c.example.test\nmode = 9\n"
    )
    result = offline.run("newOrder", "a", "b", "c", "d")
    assert result.returncode == 1
    assert (d / "b.crt").exists()
    assert result.stderr.splitlines() == [
        "[a] Error: can't read certificate-key /nonexistent.key: No such file or directory",
        f"Installing X.509 certificate {d / 'b.crt'}",
        "Running notification command `exit 3`",
        "[b] Error: notification command exited with value 3: it runs again on the next run",
        f"Error: {offline.certs_config}: [c] mode = 9: not an octal mode",
        "Warning: No such section d, skipping",
    ]


@pytest.mark.parametrize(
    ("conf", "section", "message"),
    [
        ("[client]\nusr = x\n", "", r"^Error: .*/lacme\.conf: unknown key 'usr' in \[client\]$"),
        ("[www]\n", "", r"^Error: .*/lacme\.conf: unknown section \[www\]$"),
        ("[webserver]\nlisten = 1.2.3\n", "", r"^Error: \[webserver\] listen: .*'1\.2\.3'$"),
        ("[client]\nuser = nosuchuser\n", "", r"^Error: \[client\] user: .*'nosuchuser'$"),
        ("", "hash = sha1\n", r"^Error: .*/lacme-certs\.conf: \[s\] hash = sha1: unsupported"),
        ("", "chmod = rw\n", r"^Error: .*/lacme-certs\.conf: \[s\] chmod = rw: not an octal"),
        (
            "",
            "subject = /O=Acme\nsubjectAltName =\n",
            r"\[s\] subject = /O=Acme: no domain name in CN nor in",
        ),
        ("", "certificat = x\n", r"^Error: .*s\.conf: unknown key 'certificat' in \[s\]$"),
        ("", "owner = nobody:nosuch\n", r"\[s\] owner = nobody:nosuch: unknown group 'nosuch'$"),
        ("", "certificate-key = /no.key\n", r"^\[s\] Error: can't read certificate-key /no\.key"),
    ],
)
def test_configuration_errors_are_one_line(
    offline: Offline, conf: str, section: str, message: str
) -> None:
    # A repeated section merges into the first, as in Config::Tiny.
    offline.config.write_text(offline.config.read_text() + conf)
    offline.section(section)
    before = offline.files()
    result = offline.run("newOrder")
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert re.search(message, line), line
    assert offline.files() == before


def test_non_empty_challenge_directory(offline: Offline) -> None:
    challenges = offline.directory / "challenges"
    challenges.mkdir()
    # The client's to write to, which only the stale file keeps from use.
    os.chown(challenges, client_user().pw_uid, -1)
    (challenges / "stale").write_text("")
    offline.lacme_conf(
        "good", listen="", extra=f"[webserver]\nchallenge-directory = {challenges}\n"
    )
    # A second section due: the challenge set-up failing stops the run, once.
    s = offline.certs_config.read_text()
    offline.certs_config.write_text(s + s.replace("[s]", "[t]").replace("/s.c", "/t.c"))
    before = offline.files()
    result = offline.run("newOrder")
    assert result.returncode == 1
    assert result.stderr == f"Error: refusing to use non-empty challenge directory {challenges}\n"
    assert offline.files() == before
    assert sorted(p.name for p in challenges.iterdir()) == ["stale"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
@pytest.mark.debian("iptables")
def test_a_signal_during_an_order_leaves_nothing_behind(
    netns: None, offline: Offline, signum: int
) -> None:
    port, mapped = free_ports(2)
    offline.lacme_conf(
        "hang",
        listen=f"{offline.directory / 'www.sock'}, 127.0.0.1:{port} [::ffff:127.0.0.1]:{mapped}",
        extra="[webserver]\niptables = Yes\n",
    )
    before = offline.files()
    rules = firewall()
    master = offline.start("newOrder")
    try:
        token = written(master, lambda: next(offline.tmp.glob("acme-challenge.*/token"), None))
        children = descendants(master.pid)
        # client, accountd and three webservers
        assert len(children) >= 5, children
        assert (offline.directory / "www.sock").exists()
        assert firewall() != rules
        master.send_signal(signum)
        _, stderr = master.communicate(timeout=30)
    finally:
        if master.poll() is None:
            master.kill()
            master.wait()
    assert master.returncode == 1, stderr
    assert (
        stderr.decode().splitlines()[-1] == f"lacme: interrupted by {signal.Signals(signum).name}"
    )
    assert [pid for pid in children if alive(pid)] == []
    assert not token.exists()
    assert list(offline.tmp.iterdir()) == []
    assert not (offline.directory / "www.sock").exists()
    assert firewall() == rules
    assert offline.files() == before


def test_min_days_from_the_section_the_command_line_or_21(offline: Offline) -> None:
    assert offline.run("newOrder").returncode == 0  # a fresh 90-day certificate
    issued = offline.files()["s.crt"]

    result = offline.run("newOrder")
    assert result.returncode == 0
    assert re.fullmatch(
        r"\[s\] Valid until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, skipping\n", result.stderr
    )
    assert offline.run("newOrder", "-q").stderr == ""
    assert offline.run("newOrder", "--min-days=89").stderr.endswith("skipping\n")
    assert offline.files()["s.crt"] == issued

    # No number of days renews it (a third of its lifetime at most): all of it does.
    offline.section("min-days = 100%\n")
    assert offline.run("newOrder", "--min-days=0").stderr.endswith("skipping\n")
    result = offline.run("newOrder")
    assert result.returncode == 0, result.stderr
    renewed = offline.files()["s.crt"]
    assert renewed != issued
    offline.section()
    assert offline.run("newOrder", "--force").returncode == 0
    assert offline.files()["s.crt"] not in (issued, renewed)


def test_debug_says_what_happens(offline: Offline) -> None:
    result = offline.run("newOrder", "--debug", "-q")
    assert result.returncode == 0, result.stderr
    for expected in (
        f"Using configuration file: {offline.config}",
        f"Reading {offline.certs_config}",
        "Configuration option for s:",
        "    subject = /CN=s.example.test",
        "Forking ACME webserver bound to ",
        "Forking lacme-accountd, child PID ",
        "Will request authorization for: s.example.test, t.example.test",
        "Shutting down lacme-accountd",
    ):
        assert expected in result.stderr, result.stderr


def test_revoke_cert_goes_on_after_a_bad_file(offline: Offline) -> None:
    assert offline.run("newOrder").returncode == 0
    good = offline.directory / "s.chain"
    garbage = offline.directory / "garbage.pem"
    garbage.write_text("garbage\n")
    missing = offline.directory / "missing.pem"
    result = offline.run("revoke-cert", str(missing), str(garbage), str(good))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"Revoking {missing}",
        f"Error: can't read {missing}: No such file or directory",
        f"Revoking {garbage}",
        f"Error: {garbage} holds no PEM certificate",
        f"Revoking {good}",
    ]
    assert result.stdout.startswith("SHA256 Fingerprint=")
    assert "subject CN=s.example.test (s.example.test, t.example.test)" in result.stdout
    assert offline.run("revokeCert", str(good)).returncode == 0
    nothing = offline.run("revokeCert")
    assert (nothing.returncode, nothing.stderr) == (1, "Error: Nothing to revoke\n")


def test_a_failing_client_fails_the_section(offline: Offline) -> None:
    offline.lacme_conf("unknown-mode")  # the stand-in exits non-zero
    before = offline.files()
    result = offline.run("newOrder")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == "[s] Error: Couldn't issue X.509 certificate!"
    assert offline.files() == before


def test_accountd_command_with_arguments_as_another_user(offline: Offline) -> None:
    # As `command = ssh -T host lacme-accountd`: split on whitespace, each word
    # %-expanded for the user it runs as.
    (offline.directory / "account.key").chmod(0o644)
    (offline.directory / "lacme-accountd.conf").chmod(0o644)
    text = offline.config.read_text().replace(
        f"command = {ACCOUNTD}\n",
        f"command = /usr/bin/env LACME_TEST=%u {ACCOUNTD}\nuser = nobody\ngroup = nogroup\n",
    )
    offline.config.write_text(text)
    result = offline.run("newOrder", "--debug")
    assert result.returncode == 0, result.stderr
    # The stand-in client checks accountd's greeting.
    assert "Forking lacme-accountd" in result.stderr


def test_a_configuration_directory_others_may_write_is_refused(offline: Offline) -> None:
    offline.directory.chmod(0o777)
    result = offline.run("newOrder")
    assert (result.returncode, result.stderr) == (
        1,
        f"Error: {offline.config}: refused: "
        f"{offline.directory} is writable by group and others (mode 0777)\n",
    )


def test_a_notify_program_others_may_write_is_refused_before_ordering(offline: Offline) -> None:
    program = offline.directory / "reload"
    program.write_text('#!/bin/sh\ntouch "$0.ran"\n')
    program.chmod(0o757)
    offline.section(f"notify = {program}\n")
    before = offline.files()
    result = offline.run("newOrder")
    assert (result.returncode, result.stderr) == (
        1,
        f"[s] Error before ordering: notify = {program}: refused: "
        f"{program}: writable by others (mode 0757)\n",
    )
    assert offline.files() == before


@pytest.mark.parametrize("setting", ["certificate-key", "CAfile"])
def test_a_key_or_ca_file_others_may_write_is_refused_before_ordering(
    offline: Offline, setting: str
) -> None:
    path = offline.directory / ("s.key" if setting == "certificate-key" else "ca/root.pem")
    path.chmod(0o666)
    before = offline.files()
    result = offline.run("newOrder")
    assert (result.returncode, result.stderr) == (
        1,
        f"[s] Error before ordering: {setting} = {path}: refused: "
        "writable by group and others (mode 0666)\n",
    )
    assert offline.files() == before


STRICT_AS_NOBODY = "import sys; from lacme import strict; print(strict.problem(sys.argv[1]))"


@pytest.mark.parametrize(
    ("owner", "problem"),
    [
        ("nobody", "None"),
        ("root", "None"),
        ("_lacme-www", "owned by _lacme-www, not root or nobody"),
    ],
)
def test_run_by_another_user_the_files_may_be_theirs(
    offline: Offline, owner: str, problem: str
) -> None:
    shutil.chown(offline.config, owner)
    checked = subprocess.run(
        [sys.executable, "-c", STRICT_AS_NOBODY, str(offline.config)],
        user="nobody",
        group="nogroup",
        extra_groups=[],
        capture_output=True,
        text=True,
        check=True,
    )
    assert checked.stdout == f"{problem}\n"
