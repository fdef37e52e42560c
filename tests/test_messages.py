"""Messages that point at the fix (issue 15, point 4), each refusal on its
own: the [client] settings checked when the master reads lacme.conf
(lacme.config), `[accountd] privkey` in lacme.conf, the files the client
and webserver users must read, write or run, asked of the kernel as them
(lacme.privdrop.access_errors, lacme.access), what needs root, a non-socket
at `--socket=`, an accountd that fails (lacme.accountd_link).  End to end:
tests/test_messages_e2e.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lacme import access, config, privdrop
from lacme.accountd_link import AccountdFailed, connect_accountd, running_accountd
from lacme.client_contract import NEW_ORDER, tls_versions
from lacme.errors import ConfigError
from lacme.privdrop import Credentials
from support.commands import ACCOUNTD
from support.pki import new_key_file
from support.proc import children

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def refusal(tmp_path: Path, text: str) -> str:
    path = write(tmp_path / "lacme.conf", text)
    with pytest.raises(ConfigError) as refused:
        config.load(str(path))
    return str(refused.value).removeprefix(f"{path}: ")


# --- [client] settings, checked by the master -----------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("timeout = 30s", "timeout = 30s: not a number of seconds, such as 30 (without a unit)"),
        ("timeout = -1", "timeout = -1: not a number of seconds, such as 30 (without a unit)"),
        ("timeout = nan", "timeout = nan: not a number of seconds, such as 30 (without a unit)"),
        (
            "server = http://acme.example/dir",
            "server = http://acme.example/dir: not an https:// URL with a host "
            "(RFC 8555 section 6.1)",
        ),
        ("server =", "server = : not an https:// URL with a host (RFC 8555 section 6.1)"),
        ("server = https://acme.example:99999/", "server = https://acme.example:99999/: "),
        ("SSL_verify = false", "SSL_verify = false: expected Yes or No"),
        (
            "SSL_version = TLSv9",
            "SSL_version = TLSv9: unknown TLS version 'tlsv9' "
            "(one of tlsv1, tlsv1_1, tlsv1_2, tlsv1_3)",
        ),
        (
            "SSL_version = SSLv3:!TLSv1_2",
            "SSL_version = SSLv3:!TLSv1_2: allows no TLS version",
        ),
        (
            "SSL_cipher_list = NO-SUCH-CIPHER",
            "SSL_cipher_list = NO-SUCH-CIPHER: no cipher OpenSSL knows matches (see ciphers(1ssl))",
        ),
        (
            "SSL_CAfile = ca.pem",
            "SSL_CAfile = ca.pem: not an absolute path (the client runs in another directory)",
        ),
        (
            "SSL_CAfile =",
            "SSL_CAfile = : empty: leave SSL_CAfile out to trust what OpenSSL trusts",
        ),
    ],
)
def test_client_settings_the_client_would_refuse(
    tmp_path: Path, setting: str, message: str
) -> None:
    assert refusal(tmp_path, f"[client]\n{setting}\n").startswith(f"[client] {message}")


@pytest.mark.unit
def test_client_settings_the_client_takes(tmp_path: Path) -> None:
    conf = config.load(
        str(
            write(
                tmp_path / "lacme.conf",
                "[client]\nserver = https://acme.example:8443/dir\ntimeout = 0.5\n"
                "SSL_verify = no\nSSL_version = SSLv23:!TLSv1:!TLSv1_1\n"
                "SSL_cipher_list = HIGH:!aNULL\nSSL_CAfile = /etc/lacme/ca.pem\n",
            )
        )
    )
    assert conf.client.timeout == "0.5"
    assert tls_versions("SSLv23:!TLSv1:!TLSv1_1") == ("tlsv1_2", "tlsv1_3")
    assert tls_versions("TLSv1_2") == ("tlsv1_2", "tlsv1_2")
    assert tls_versions("!TLSv1_3") == ("tlsv1", "tlsv1_2")


@pytest.mark.unit
def test_perl_era_privkey_says_where_it_goes(tmp_path: Path) -> None:
    assert refusal(tmp_path, "[accountd]\nprivkey = file:/etc/lacme/account.key\n") == (
        "[accountd] privkey: lacme 0.8 moved it to lacme-accountd.conf; write "
        "`privkey = file:/etc/lacme/account.key` in %E/lacme/lacme-accountd.conf "
        "([accountd] config), before any section, and remove it here"
    )
    assert "in /srv/accountd.conf ([accountd] config)" in refusal(
        tmp_path, "[accountd]\nconfig = /srv/accountd.conf\nprivkey = gpg:/k.gpg\n"
    )


# --- what needs root ---------------------------------------------------------------------


@pytest.mark.unit
def test_dropping_privileges_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 65534)
    with pytest.raises(ConfigError) as refused:
        privdrop.resolve_credentials("_lacme-client", "nogroup", "client")
    assert str(refused.value) == (
        "[client] user = _lacme-client, group = nogroup: only root can start the client as "
        "them, and lacme runs as nobody: run lacme as root, or set both empty to run the "
        "client as nobody"
    )
    assert privdrop.resolve_credentials("", "", "client") is None


# --- files, as the users who need them -------------------------------------------------


def private_directory(shared_dir: Path) -> Path:
    """A directory only root enters, holding a readable file."""
    directory = shared_dir / "private"
    directory.mkdir(mode=0o700)
    write(directory / "ca.pem", "")
    return directory


@pytest.mark.process
@pytest.mark.root
def test_access_is_asked_as_the_user(client: Credentials, shared_dir: Path) -> None:
    private = private_directory(shared_dir)
    readable = write(shared_dir / "ca.pem", "")
    readable.chmod(0o644)
    challenges = shared_dir / "challenges"
    challenges.mkdir(mode=0o755)
    checks = [
        (str(readable), os.R_OK),
        (str(private / "ca.pem"), os.R_OK),
        (str(shared_dir / "missing.pem"), os.R_OK),
        (str(challenges), os.W_OK | os.X_OK),
    ]
    assert privdrop.access_errors(client, checks) == [
        None,
        "Permission denied",
        "No such file or directory",
        "Permission denied",
    ]
    # Root may do all of it but read what is missing.
    assert privdrop.access_errors(None, checks)[1:] == [None, "No such file or directory", None]
    assert children(os.getpid()) == []


@pytest.mark.process
@pytest.mark.root
@pytest.mark.debian("acl")
def test_an_access_control_list_counts(client: Credentials, shared_dir: Path) -> None:
    """What the mode bits deny, an ACL grants: only the kernel, asked as
    the user, tells."""
    challenges = shared_dir / "challenges"
    challenges.mkdir(mode=0o755)
    subprocess.run(["setfacl", "-m", "u:_lacme-client:rwx", str(challenges)], check=True)
    assert privdrop.access_errors(client, [(str(challenges), os.W_OK | os.X_OK)]) == [None]
    subprocess.run(["setfacl", "-m", "u:_lacme-client:r-x", str(challenges)], check=True)
    assert privdrop.access_errors(client, [(str(challenges), os.W_OK)]) == ["Permission denied"]


def master_config(shared_dir: Path, client: str = "", webserver: str = "") -> config.Config:
    path = write(
        shared_dir / "lacme.conf",
        f"[client]\n{client}\n[webserver]\nlisten = 127.0.0.1:5002\n{webserver}\n",
    )
    return config.load(str(path))


def access_refusal(conf: config.Config, client: Credentials, command: str = NEW_ORDER) -> str:
    with pytest.raises(ConfigError) as refused:
        access.check(conf, command, client)
    return str(refused.value).removeprefix(f"{conf.path}: ")


@pytest.mark.process
@pytest.mark.root
def test_the_client_must_read_ssl_cafile(client: Credentials, shared_dir: Path) -> None:
    private = private_directory(shared_dir)
    conf = master_config(shared_dir, f"SSL_CAfile = {private}/ca.pem")
    assert access_refusal(conf, client, "account") == (
        f"[client] SSL_CAfile = {private}/ca.pem: not readable by _lacme-client (Permission denied)"
    )
    conf = master_config(shared_dir, f"SSL_CAfile = {shared_dir}/none.pem")
    assert access_refusal(conf, client, "account") == (
        f"[client] SSL_CAfile = {shared_dir}/none.pem: not readable by _lacme-client "
        "(No such file or directory)"
    )
    (shared_dir / "junk.pem").write_text("junk\n")
    conf = master_config(shared_dir, f"SSL_CAfile = {shared_dir}/junk.pem")
    assert access_refusal(conf, client, "account") == (
        f"[client] SSL_CAfile = {shared_dir}/junk.pem: no PEM certificate (BEGIN CERTIFICATE) in it"
    )
    (shared_dir / "junk.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nno*base64\n-----END CERTIFICATE-----\n"
    )
    assert access_refusal(conf, client, "account") == (
        f"[client] SSL_CAfile = {shared_dir}/junk.pem: no PEM certificate (BEGIN CERTIFICATE) in it"
    )
    (shared_dir / "junk.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n"
    )
    assert access_refusal(conf, client, "account") == (
        f"[client] SSL_CAfile = {shared_dir}/junk.pem: a PEM certificate in it is not base64"
    )
    access.check(master_config(shared_dir, f"SSL_CAfile = {CA_BUNDLE}"), "account", client)


@pytest.mark.process
@pytest.mark.root
def test_the_client_must_write_the_challenge_directory(
    client: Credentials, shared_dir: Path
) -> None:
    challenges = shared_dir / "challenges"
    challenges.mkdir(mode=0o755)
    conf = master_config(shared_dir, webserver=f"challenge-directory = {challenges}")
    assert access_refusal(conf, client) == (
        f"[webserver] challenge-directory = {challenges}: not writable by _lacme-client, "
        "which writes the challenge files there (Permission denied)"
    )
    # Only newOrder writes there.
    access.check(conf, "account", client)
    os.chown(challenges, pwd_uid(client), -1)
    access.check(conf, NEW_ORDER, client)


def pwd_uid(credentials: Credentials) -> int:
    assert credentials.uid is not None
    return credentials.uid


@pytest.mark.process
@pytest.mark.root
def test_each_user_must_run_its_program(client: Credentials, shared_dir: Path) -> None:
    private = private_directory(shared_dir)
    program = private / "python3"
    program.symlink_to(sys.executable)
    conf = master_config(shared_dir, f"command = {program} -I -m lacme.client")
    assert access_refusal(conf, client, "account") == (
        f"[client] command = {program} -I -m lacme.client: {program} not executable by "
        "_lacme-client (Permission denied)"
    )
    conf = master_config(shared_dir, webserver=f"command = {program} -I -m lacme.webserver")
    assert access_refusal(conf, client) == (
        f"[webserver] command = {program} -I -m lacme.webserver: {program} not executable by "
        "_lacme-www (Permission denied)"
    )
    # The webserver is started for newOrder alone.
    access.check(conf, "account", client)


# --- lacme-accountd: what is not its socket, and failing once ---------------------------


@pytest.mark.process
@pytest.mark.root
def test_a_directory_is_no_socket(shared_dir: Path) -> None:
    (shared_dir / "run").mkdir(mode=0o700)
    path = shared_dir / "run" / "S.lacme"
    path.mkdir(mode=0o755)
    with pytest.raises(privdrop.SpawnError) as refused:
        connect_accountd(str(path))
    assert str(refused.value) == (
        f"{path}: a directory, not a socket (lacme-accountd --socket= makes one there)"
    )


@pytest.mark.process
@pytest.mark.root
@pytest.mark.parametrize(
    ("script", "message", "reported"),
    [
        ("echo 'lacme-accountd: why' >&2; exit 3", "lacme-accountd exited with status 3", True),
        ("exit 0", "lacme-accountd exited without a greeting", False),
        ("kill -9 $$", "lacme-accountd was killed by SIGKILL", False),
    ],
)
def test_an_accountd_that_fails_is_told_of_once(
    shared_dir: Path, script: str, message: str, reported: bool
) -> None:
    command = write(shared_dir / "accountd", f"#!/bin/sh\n{script}\n")
    command.chmod(0o755)
    accountd = running_accountd(str(command), None, config="", quiet=True, debug=False)
    with pytest.raises(AccountdFailed) as failed, accountd:
        raise AssertionError("no conversation")
    assert (str(failed.value), failed.value.reported) == (message, reported)
    assert children(os.getpid()) == []


@pytest.mark.process
@pytest.mark.root
def test_a_listener_that_hangs_up_at_once(shared_dir: Path) -> None:
    directory = shared_dir / "run"
    directory.mkdir(mode=0o700)
    path = directory / "S.lacme"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        path.chmod(0o600)
        listener.listen()

        def hang_up() -> None:
            conversation, _ = listener.accept()
            conversation.close()

        thread = threading.Thread(target=hang_up, daemon=True)
        thread.start()
        with pytest.raises(AccountdFailed) as failed:
            connect_accountd(str(path))
        thread.join()
    assert str(failed.value) == f"lacme-accountd on {path} closed the connection without a greeting"
    assert not failed.value.reported


@pytest.mark.process
@pytest.mark.root
def test_a_greeting_nobody_read_is_no_reset(
    shared_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A client that fails before it reads the greeting leaves it unread:
    the hang-up must not reach accountd as a lost conversation."""
    new_key_file(shared_dir / "account.key", "p256")
    command = f"{ACCOUNTD} --privkey=file:{shared_dir / 'account.key'}"
    with running_accountd(command, None, config="/dev/null", quiet=True, debug=False) as sock:
        assert sock.recv(1, socket.MSG_PEEK) == b"1"
    assert children(os.getpid()) == []
    assert capfd.readouterr().err == ""
