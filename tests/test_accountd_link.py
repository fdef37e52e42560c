"""lacme.accountd_link: accountd spawned by the master (as another user, its
command expanded as the child would) or connected to on its socket, as
root with the real users _lacme-client and _lacme-www."""

import os
import pwd
import socket
import subprocess
import sys
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from lacme.accountd_link import connect_accountd, running_accountd, spawn_accountd
from lacme.privdrop import Credentials, SpawnError, resolve_credentials, spawn, stop
from support import requires
from support.accountd import Connection, standalone_accountd
from support.commands import ACCOUNTD, PERL_ACCOUNTD
from support.pki import new_key_file
from support.proc import children, open_fds, status_fields
from support.users import client_user, www_user

# --- spawn_accountd --------------------------------------------------------


@pytest.mark.process
@pytest.mark.root
def test_spawn_accountd_as_another_user(client: Credentials, shared_dir: Path) -> None:
    # %u is expanded for the child (_lacme-client), not for root.
    key = shared_dir / "_lacme-client.key"
    new_key_file(key, "p256")
    os.chown(key, client_user().pw_uid, -1)
    command = f"{ACCOUNTD} --privkey=file:{shared_dir}/%u.key"
    sock, proc = spawn_accountd(command, client, config="/dev/null", quiet=True, debug=False)
    try:
        assert proc.args == [
            str(ACCOUNTD),
            f"--privkey=file:{key}",
            "--stdio",
            "--config=/dev/null",
            "--quiet",
        ]
        sock.settimeout(30)
        connection = Connection(sock)
        assert connection.greeting.alg == "ES256"
        assert status_fields(proc.pid)["Uid"].split() == [str(client_user().pw_uid)] * 4
        # Its end of the socketpair as stdin and stdout, nothing else.
        assert open_fds(proc.pid) - {0, 1, 2} == set()
        assert os.readlink(f"/proc/{proc.pid}/fd/0") == os.readlink(f"/proc/{proc.pid}/fd/1")
        # Spawned without no_new_privs, for it may need the terminal
        # (passphrase) and setuid helpers (ssh); once its key is loaded it
        # confines itself (lacme.confinement), which sets it.
        assert status_fields(proc.pid)["NoNewPrivs"] == "1"
        assert status_fields(proc.pid)["Seccomp"] == "2"
        connection.close()
        assert stop(proc, grace=10) == 0
    finally:
        sock.close()
        stop(proc)


@pytest.mark.process
@pytest.mark.root
@pytest.mark.interop
@pytest.mark.debian(*requires.PERL_ACCOUNTD)
def test_spawn_perl_accountd(www: Credentials, shared_dir: Path) -> None:
    key = shared_dir / "account.key"
    new_key_file(key, "rsa2048")
    os.chown(key, www_user().pw_uid, -1)
    config = shared_dir / "accountd.conf"
    config.write_text(f"privkey = file:{key}\n")
    sock, proc = spawn_accountd(
        str(PERL_ACCOUNTD), www, config=str(config), quiet=True, debug=False
    )
    try:
        sock.settimeout(30)
        connection = Connection(sock)
        assert connection.greeting.alg == "RS256"
        connection.close()
        assert stop(proc, grace=10) == 0
    finally:
        sock.close()
        stop(proc)


@pytest.mark.process
@pytest.mark.root
def test_spawn_accountd_command_is_just_argv(client: Credentials) -> None:
    """As with `ssh -T host lacme-accountd`: words, looked up in PATH, and
    the documented options appended; echo writes them to the socket."""
    sock, proc = spawn_accountd(
        "echo -T lacme@host lacme-accountd %u:%g",
        client,
        config="%E/accountd.conf",
        quiet=False,
        debug=True,
    )
    with sock:
        assert proc.wait(30) == 0
        assert sock.makefile("rb").read() == (
            b"-T lacme@host lacme-accountd _lacme-client:nogroup --stdio"
            b" --config=%E/accountd.conf --debug\n"
        )


@pytest.mark.process
@pytest.mark.root
@pytest.mark.parametrize(
    ("user", "group"), [("_lacme-client", "nogroup"), ("", ""), ("", "nogroup"), ("_lacme-www", "")]
)
def test_spawn_accountd_expands_as_the_child_would(user: str, group: str) -> None:
    """The master expands the command for the child's identity: the same as
    the child's own expansion after the drop, in the clean environment."""
    credentials = resolve_credentials(user, group, "accountd")
    value = "%C|%E|%g|%G|%h|%T|%u|%U|%%" + ("|%t" if credentials is None else "")
    sock, proc = spawn_accountd(f"echo {value}", credentials, config="", quiet=False, debug=False)
    with sock:
        assert proc.wait(30) == 0
        by_master = sock.makefile("rb").read().split(b" --stdio")[0]
    expand = "import sys; from lacme import specifiers; print(specifiers.expand(sys.argv[1]))"
    child = spawn([sys.executable, "-c", expand, value], credentials, stdout=subprocess.PIPE)
    by_child, _ = child.communicate(timeout=30)
    assert by_master == by_child.rstrip(b"\n")


@pytest.mark.process
@pytest.mark.root
def test_spawn_accountd_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPG_TTY", "/dev/pts/9")
    monkeypatch.setenv("XDG_CONFIG_HOME", "/root/.config-of-the-master")
    sock, proc = spawn_accountd("sh -c env", None, config="", quiet=True, debug=False)
    with sock:
        assert proc.wait(30) == 0
        lines = sock.makefile("rb").read().decode().splitlines()
    env = dict(line.split("=", 1) for line in lines)
    env.pop("PWD", None)  # sh's own
    env.pop("SHLVL", None)
    assert env == {
        "USER": "root",
        "LOGNAME": "root",
        "HOME": pwd.getpwuid(0).pw_dir,
        "SHELL": pwd.getpwuid(0).pw_shell,
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "GPG_TTY": "/dev/pts/9",
        **({"TERM": os.environ["TERM"]} if "TERM" in os.environ else {}),
    }


@pytest.mark.process
@pytest.mark.root
def test_spawn_accountd_refusals(client: Credentials) -> None:
    with pytest.raises(ValueError, match=r"^\[accountd\] command is empty$"):
        spawn_accountd("  ", None, config="", quiet=True, debug=False)
    # After the drop there is no XDG_RUNTIME_DIR: %t can't expand for a user.
    with pytest.raises(ValueError, match="undefined expansion %t"):
        spawn_accountd("lacme-accountd --socket=%t/S", client, config="", quiet=True, debug=False)
    assert children(os.getpid()) == []


# --- running_accountd ------------------------------------------------------


def running(credentials: Credentials, shared_dir: Path) -> AbstractContextManager[socket.socket]:
    """Our accountd with a key of its own, as the master runs it with --debug."""
    key = shared_dir / "account.key"
    if not key.exists():
        new_key_file(key, "p256")
        os.chown(key, client_user().pw_uid, -1)
    command = f"{ACCOUNTD} --privkey=file:{key}"
    return running_accountd(command, credentials, config="/dev/null", quiet=True, debug=True)


@pytest.mark.process
@pytest.mark.root
def test_running_accountd_hangs_up_then_stops_it(
    client: Credentials, shared_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with running(client, shared_dir) as sock:
        sock.settimeout(30)
        assert Connection(sock).greeting.alg == "ES256"
        [pid] = children(os.getpid())
        assert status_fields(pid)["Uid"].split()[0] == str(client_user().pw_uid)
    assert sock.fileno() == -1
    assert children(os.getpid()) == []
    ours = f"[{os.getpid()}] "  # the master's, among accountd's own debug lines
    assert [line for line in capfd.readouterr().err.splitlines() if line.startswith(ours)] == [
        f"{ours}Forking lacme-accountd, child PID {pid}",
        f"{ours}Shutting down lacme-accountd",
    ]


@pytest.mark.process
@pytest.mark.root
def test_running_accountd_leaves_nothing_after_an_exception_inside(
    client: Credentials, shared_dir: Path
) -> None:
    def fail_inside() -> None:
        with running(client, shared_dir):
            assert len(children(os.getpid())) == 1
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        fail_inside()
    assert children(os.getpid()) == []


# --- connect_accountd ------------------------------------------------------


@pytest.mark.process
@pytest.mark.root
def test_connect_accountd(shared_dir: Path) -> None:
    directory = shared_dir / "run"
    directory.mkdir(mode=0o700)
    key = shared_dir / "account.key"
    new_key_file(key, "p256")
    path = directory / "S.lacme"
    with standalone_accountd([ACCOUNTD, f"--privkey=file:{key}"], path):
        with connect_accountd(str(path)) as sock:
            sock.settimeout(30)
            assert Connection(sock).greeting.alg == "ES256"
        path.chmod(0o660)
        with pytest.raises(SpawnError) as refused:
            connect_accountd(str(path))
        assert str(refused.value) == f"insecure permissions on {path}: open to group or others"
        path.chmod(0o600)
        directory.chmod(0o770)
        with pytest.raises(SpawnError) as refused:
            connect_accountd(str(path))
        assert str(refused.value) == (
            f"insecure permissions on {directory}: writable by group or others"
        )


@pytest.mark.process
@pytest.mark.root
def test_connect_accountd_missing_or_not_a_socket(shared_dir: Path) -> None:
    directory = shared_dir / "run"
    directory.mkdir(mode=0o755)
    path = directory / "S.lacme"
    with pytest.raises(SpawnError) as refused:
        connect_accountd(str(path))
    assert str(refused.value) == (
        f"can't stat {path}: No such file or directory (is lacme-accountd running?)"
    )
    # Its permissions are a socket's business: a regular file is named as one.
    path.touch(mode=0o644)
    with pytest.raises(SpawnError) as refused:
        connect_accountd(str(path))
    assert str(refused.value) == (
        f"{path}: a regular file, not a socket (lacme-accountd --socket= makes one there)"
    )
    path.unlink()
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(path))
    path.chmod(0o600)
    with pytest.raises(SpawnError, match=r"^can't connect to .*: Connection refused \(is lacme"):
        connect_accountd(str(path))


@pytest.mark.unit
def test_connect_accountd_missing_directory(tmp_path: Path) -> None:
    directory = tmp_path / "missing"
    with pytest.raises(SpawnError) as refused:
        connect_accountd(str(directory / "S.lacme"))
    assert str(refused.value) == f"can't stat {directory}: No such file or directory"
