"""lacme.privdrop: the privilege drop, clean environment and descriptors of
every child the master starts, as root with the real users _lacme-client
and _lacme-www."""

import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lacme.privdrop import (
    Credentials,
    OutputTooLong,
    SpawnError,
    exchange,
    resolve_credentials,
    spawn,
    stop,
)
from support.proc import environment, open_fds, status_fields
from support.system import wait_for
from support.users import NOGROUP, client_user, www_user

HELPERS = Path(__file__).with_name("spawn_master.py")


def sleeper(credentials: Credentials | None, **kwargs: Any) -> subprocess.Popen[bytes]:
    """`sleep 60` spawned (Popen returns once execve has succeeded)."""
    return spawn(["sleep", "60"], credentials, **kwargs)


# --- credentials -----------------------------------------------------------


@pytest.mark.process
@pytest.mark.debian("lacme")  # its users
def test_resolve_credentials() -> None:
    assert resolve_credentials("", "", "client") is None
    client = (client_user().pw_uid, NOGROUP)
    assert resolve_credentials("_lacme-client", "nogroup", "client") == client
    assert resolve_credentials("_lacme-www", "", "webserver") == (www_user().pw_uid, None)
    assert resolve_credentials("", "nogroup", "accountd") == (None, NOGROUP)


@pytest.mark.process
@pytest.mark.debian("lacme")  # its users
@pytest.mark.parametrize(
    ("user", "group", "message"),
    [
        ("no-such-user", "nogroup", "[webserver] user: no such user 'no-such-user'"),
        ("_lacme-www", "no-such-group", "[webserver] group: no such group 'no-such-group'"),
    ],
)
def test_resolve_credentials_refusals(user: str, group: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        resolve_credentials(user, group, "webserver")


# --- spawn -----------------------------------------------------------------


@pytest.mark.process
@pytest.mark.root
def test_child_runs_unprivileged_with_only_its_contract(
    client: Credentials, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERM", "vt100")
    monkeypatch.setenv("SECRET", "master-only")
    read_end, write_end = os.pipe()
    leaked = os.open("/etc/hostname", os.O_RDONLY)  # inheritable, yet must not be inherited
    os.set_inheritable(leaked, True)
    try:
        proc = sleeper(client, cwd=str(shared_dir), pass_fds=(write_end,), env={"DEBUG": "1"})
    finally:
        os.close(leaked)
        os.close(read_end)
        os.close(write_end)
    try:
        status = status_fields(proc.pid)
        assert status["Uid"].split() == [str(client_user().pw_uid)] * 4
        assert status["Gid"].split() == [str(NOGROUP)] * 4
        assert status["Groups"].split() == [str(NOGROUP)]
        assert status["NoNewPrivs"] == "1"
        assert status["CapEff"] == status["CapPrm"] == "0000000000000000"
        assert status["Umask"] == "0022"
        assert environment(proc.pid) == {
            "USER": "_lacme-client",
            "LOGNAME": "_lacme-client",
            "HOME": client_user().pw_dir,
            "SHELL": client_user().pw_shell,
            "PATH": "/usr/bin:/bin",
            "TERM": "vt100",
            "DEBUG": "1",
        }
        # Right after execve, the dynamic loader may still hold a library
        # open: what stays open is what the child was given.
        wait_for(
            lambda: open_fds(proc.pid) == {0, 1, 2, write_end},
            f"the child to hold descriptors 0, 1, 2 and {write_end} only",
        )
        assert os.readlink(f"/proc/{proc.pid}/cwd") == str(shared_dir)
        # A session of its own: no controlling terminal to push input into.
        assert os.getsid(proc.pid) == proc.pid
        assert Path(f"/proc/{proc.pid}/exe").resolve() == Path(shutil.which("sleep") or "")
    finally:
        assert stop(proc) == -signal.SIGTERM


@pytest.mark.process
@pytest.mark.root
def test_child_without_privilege_drop_keeps_roots_identity() -> None:
    proc = sleeper(None)
    try:
        status = status_fields(proc.pid)
        assert status["Uid"].split() == ["0"] * 4
        env = environment(proc.pid)
        assert (env["USER"], env["HOME"]) == ("root", pwd.getpwuid(0).pw_dir)
        assert env["PATH"] == "/usr/sbin:/usr/bin:/sbin:/bin"
        assert os.readlink(f"/proc/{proc.pid}/cwd") == "/"
    finally:
        stop(proc)


@pytest.mark.process
@pytest.mark.root
def test_child_cannot_read_root_files_nor_become_root(
    client: Credentials, shared_dir: Path
) -> None:
    secret = shared_dir / "service.key"
    secret.touch(mode=0o600)
    secret.write_text("secret")
    probe = (
        "import os, sys\n"
        "try:\n"
        "    open(sys.argv[1]).read()\n"
        "    print('read')\n"
        "except PermissionError:\n"
        "    print('denied')\n"
        "try:\n"
        "    os.setuid(0)\n"
        "    print('root')\n"
        "except PermissionError:\n"
        "    print('denied')\n"
    )
    proc = spawn([sys.executable, "-c", probe, str(secret)], client, stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=30)
    assert (proc.returncode, out) == (0, b"denied\ndenied\n")


@pytest.mark.process
@pytest.mark.root
def test_spawn_failures_are_one_line_errors(
    client: Credentials, shared_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SpawnError, match=r"^can't execute no-such-program: No such file"):
        spawn(["no-such-program"], client)
    private = shared_dir / "private"
    private.mkdir(mode=0o700)
    # The working directory is entered after the privilege drop.
    with pytest.raises(SpawnError, match=r"^can't start true \(see above\)$"):
        spawn(["true"], client, cwd=str(private))
    assert f"lacme: can't start true: [Errno 13] Permission denied: '{private}'" in (
        capfd.readouterr().err
    )
    with pytest.raises(ValueError, match="empty command"):
        spawn([], client)


@pytest.mark.process
@pytest.mark.root
def test_children_get_sigterm_when_the_master_dies() -> None:
    master = subprocess.Popen(
        [sys.executable, str(HELPERS), "orphan"], stdout=subprocess.PIPE, text=True
    )
    assert master.stdout is not None
    pid = int(master.stdout.readline())
    assert status_fields(pid)["Uid"].split()[0] == str(www_user().pw_uid)
    master.kill()
    master.wait()
    # Reparented and killed: gone, or a zombie about to be reaped by init.
    wait_for(
        lambda: not Path(f"/proc/{pid}").exists() or status_fields(pid)["State"].startswith("Z"),
        "the orphaned child to die",
    )


# --- exchange ----------------------------------------------------------------


@pytest.mark.process
def test_exchange_feeds_stdin_while_reading_stdout_up_to_the_limit() -> None:
    # More than a pipe holds each way: neither side may wait for the other.
    data = os.urandom(1 << 20)
    proc = spawn(["cat"], None, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert exchange(proc, data, len(data), "cat") == data
    assert proc.wait() == 0


@pytest.mark.process
def test_exchange_kills_a_child_writing_past_the_limit() -> None:
    proc = spawn(["cat", "/dev/zero"], None, stdout=subprocess.PIPE)
    with pytest.raises(OutputTooLong) as raised:
        exchange(proc, None, 1000, "the client cat")
    assert str(raised.value) == "the client cat wrote more than 1000 bytes on stdout: killed"
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.process
def test_exchange_ends_when_the_child_exits_though_its_stdout_is_held_open() -> None:
    proc = spawn(["sh", "-c", "echo out; sleep 60 &"], None, stdout=subprocess.PIPE)
    try:
        assert exchange(proc, None, 100, "sh") == b"out\n"
        assert proc.wait() == 0
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sleep, in sh's session
