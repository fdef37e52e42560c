"""lacme.spawn: privilege drop, clean environment and fds, accountd,
webservers, challenge directories and firewall rules, as root with the real
users _lacme-client and _lacme-www."""

import json
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from spawn_master import CHALLENGE, http_get

from lacme.config import WebserverConfig
from lacme.spawn import (
    LOCK_FILE,
    Credentials,
    ListenAddress,
    SpawnError,
    challenge_setup,
    connect_accountd,
    parse_listen,
    resolve_credentials,
    spawn,
    spawn_accountd,
    stop,
)
from support import requires
from support.accountd import Connection, standalone_accountd
from support.commands import ACCOUNTD
from support.pki import new_key_file
from support.proc import children
from support.system import temporary_directory, wait_for

HELPERS = Path(__file__).with_name("spawn_master.py")
PERL_ACCOUNTD = Path("/usr/bin/lacme-accountd")
PERL_WEBSERVER = Path("/usr/libexec/lacme/webserver")
NOGROUP = 65534


def client_user() -> pwd.struct_passwd:
    """The client's user, which Debian's lacme package creates."""
    return pwd.getpwnam("_lacme-client")


def www_user() -> pwd.struct_passwd:
    """The webserver's user, which Debian's lacme package creates."""
    return pwd.getpwnam("_lacme-www")


@pytest.fixture
def client() -> Credentials:
    credentials = resolve_credentials("_lacme-client", "nogroup", "client")
    assert credentials is not None
    return credentials


@pytest.fixture
def www() -> Credentials:
    credentials = resolve_credentials("_lacme-www", "nogroup", "webserver")
    assert credentials is not None
    return credentials


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory other users can enter (pytest's tmp_path is 0700)."""
    with ExitStack() as stack:
        yield temporary_directory(stack, "lacme-spawn-test.")


@pytest.fixture
def scratch_tmp(shared_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where challenge_setup makes its temporary directory, to see it go."""
    monkeypatch.setattr(tempfile, "tempdir", str(shared_dir))
    return shared_dir


def status_fields(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {name: value.strip() for name, _, value in (line.partition(":") for line in lines)}


def environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode()
    return dict(item.split("=", 1) for item in raw.split("\0") if item)


def open_fds(pid: int) -> set[int]:
    return {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}


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
        assert open_fds(proc.pid) == {0, 1, 2, write_end}
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


# --- accountd --------------------------------------------------------------


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
        # It may need the terminal (passphrase) and setuid helpers (ssh).
        assert status_fields(proc.pid)["NoNewPrivs"] == "0"
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
    path.touch(mode=0o600)
    with pytest.raises(SpawnError, match=r"is not a socket$"):
        connect_accountd(str(path))
    path.unlink()
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(path))
    path.chmod(0o600)
    with pytest.raises(SpawnError, match=r"^can't connect to .*: Connection refused \(is lacme"):
        connect_accountd(str(path))


# --- parse_listen ----------------------------------------------------------


@pytest.mark.unit
def test_parse_listen() -> None:
    parsed = parse_listen("127.0.0.1, [::1]:8080 /run/lacme-www.socket,0.0.0.0:443 [::]")
    assert parsed == [
        ListenAddress(socket.AF_INET, ("127.0.0.1", 80)),
        ListenAddress(socket.AF_INET6, ("::1", 8080)),
        ListenAddress(socket.AF_UNIX, "/run/lacme-www.socket"),
        ListenAddress(socket.AF_INET, ("0.0.0.0", 443)),  # noqa: S104
        ListenAddress(socket.AF_INET6, ("::", 80)),
    ]
    assert [str(a) for a in parsed] == [
        "127.0.0.1:80",
        "[::1]:8080",
        "/run/lacme-www.socket",
        "0.0.0.0:443",
        "[::]:80",
    ]
    assert parse_listen("[0:0::ffff:127.0.0.1]")[0].address == ("::ffff:127.0.0.1", 80)
    assert parse_listen("") == parse_listen(" , ") == []


@pytest.mark.unit
@pytest.mark.parametrize(
    "bad",
    [
        "1.2.3",
        "256.1.1.1",
        "01.2.3.4",
        "1.2.3.4:0",
        "1.2.3.4:65536",
        "1.2.3.4:http",
        "::1",
        "[::1",
        "[::1]:",
        "[fe80::1%lo]",
        "[1.2.3.4]",
        "localhost:80",
        "relative/socket",
        "/" + "s" * 200,
        "\u0661.\u0662.\u0663.\u0664",  # non-ASCII digits
    ],
)
def test_parse_listen_refusals(bad: str) -> None:
    message = f"[webserver] listen: invalid address {bad!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_listen(f"127.0.0.1 {bad}")


# --- challenge_setup: webservers --------------------------------------------


def refusal(
    settings: WebserverConfig, client: Credentials | None, www: Credentials | None
) -> Exception:
    """What challenge_setup raises on entry with SETTINGS."""
    with pytest.raises((SpawnError, ValueError)) as refused:
        challenge_setup(settings, client, www, debug=False).__enter__()
    return refused.value


def leftovers(scratch_tmp: Path) -> list[str]:
    return [p.name for p in scratch_tmp.iterdir() if p.name.startswith("acme-challenge.")]


@pytest.mark.process
@pytest.mark.root
def test_webservers_on_tcp_and_unix_sockets(
    client: Credentials, www: Credentials, scratch_tmp: Path
) -> None:
    port = free_port()
    unix_path = scratch_tmp / "lacme-www.socket"
    settings = WebserverConfig(listen=f"127.0.0.1:{port},{unix_path}")
    with challenge_setup(settings, client, www, debug=False) as directory:
        challenge_dir = Path(directory)
        info = challenge_dir.stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (client_user().pw_uid, 0o755)
        assert challenge_dir.parent == scratch_tmp
        # The client writes the token file, with its umask.
        writer = spawn(
            ["sh", "-c", "printf tok.thumb > tok"], client, cwd=directory, stdin=subprocess.DEVNULL
        )
        assert writer.wait(30) == 0
        assert (challenge_dir / "tok").stat().st_uid == client_user().pw_uid
        assert stat.S_IMODE(unix_path.stat().st_mode) == 0o666
        webservers = children(os.getpid())
        assert len(webservers) == 2
        for pid in webservers:
            status = status_fields(pid)
            assert status["Uid"].split() == [str(www_user().pw_uid)] * 4
            assert status["NoNewPrivs"] == "1"
            assert environment(pid)["DEBUG"] == "0"
            assert (
                os.readlink(f"/proc/{pid}/fd/0") == os.readlink(f"/proc/{pid}/fd/1") == "/dev/null"
            )
            argv = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
            listening = int(argv[-2])
            assert os.readlink(f"/proc/{pid}/fd/{listening}").startswith("socket:")
            # Beyond stdin, stdout, stderr and its socket only what it opened itself
            # (checked before any request: connections linger a little).
            others = open_fds(pid) - {0, 1, 2, listening}
            assert {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in others} <= {
                "anon_inode:[eventpoll]"
            }
            assert os.readlink(f"/proc/{pid}/cwd") == directory
        targets: list[tuple[socket.AddressFamily, str | tuple[str, int]]] = [
            (socket.AF_INET, ("127.0.0.1", port)),
            (socket.AF_UNIX, str(unix_path)),
        ]
        for family, address in targets:
            response = http_get(family, address, CHALLENGE + "tok")
            assert response.startswith(b"HTTP/1.1 200 OK\r\n")
            assert response.endswith(b"\r\n\r\ntok.thumb")
    assert leftovers(scratch_tmp) == []
    assert not unix_path.exists()
    assert children(os.getpid()) == []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.process
@pytest.mark.root
@pytest.mark.interop
@pytest.mark.debian("lacme")
def test_perl_webserver_command(client: Credentials, www: Credentials, scratch_tmp: Path) -> None:
    """The contract is lacme 0.8.2's: its webserver works behind our master."""
    port = free_port()
    settings = WebserverConfig(listen=f"[::1]:{port}", command=str(PERL_WEBSERVER))
    with challenge_setup(settings, client, www, debug=False) as directory:
        (Path(directory) / "tok").write_text("perl")
        response = http_get(socket.AF_INET6, ("::1", port), CHALLENGE + "tok")
        assert response.startswith(b"HTTP/1.1 200 OK\r\n")
        assert response.endswith(b"\r\n\r\nperl")
    assert leftovers(scratch_tmp) == []
    assert children(os.getpid()) == []


@pytest.mark.process
@pytest.mark.root
def test_nothing_left_after_an_exception_inside(
    client: Credentials, www: Credentials, scratch_tmp: Path
) -> None:
    unix_path = scratch_tmp / "www.socket"
    settings = WebserverConfig(listen=f"127.0.0.1:{free_port()} [::1]:{free_port()} {unix_path}")

    def fail_inside() -> None:
        with challenge_setup(settings, client, www, debug=False) as directory:
            (Path(directory) / "tok").write_text("x")
            assert len(children(os.getpid())) == 3
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        fail_inside()
    assert leftovers(scratch_tmp) == []
    assert not unix_path.exists()
    assert children(os.getpid()) == []


@pytest.mark.process
@pytest.mark.root
def test_failed_setup_undoes_what_was_done(
    client: Credentials, www: Credentials, scratch_tmp: Path
) -> None:
    unix_path = scratch_tmp / "www.socket"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = WebserverConfig(listen=f"{unix_path} 127.0.0.1:{port}")
        error = refusal(settings, client, www)
    assert str(error) == f"can't listen on 127.0.0.1:{port}: Address already in use"
    assert leftovers(scratch_tmp) == []
    assert not unix_path.exists()
    assert children(os.getpid()) == []


@pytest.mark.process
@pytest.mark.root
def test_webserver_command_failure(
    client: Credentials, www: Credentials, scratch_tmp: Path
) -> None:
    settings = WebserverConfig(listen=f"127.0.0.1:{free_port()}", command="/no/such/webserver")
    error = refusal(settings, client, www)
    assert str(error) == "can't execute /no/such/webserver: No such file or directory"
    assert leftovers(scratch_tmp) == []
    error = refusal(WebserverConfig(listen="127.0.0.1", command=" "), client, www)
    assert str(error) == "[webserver] command is empty"
    assert leftovers(scratch_tmp) == []


@pytest.mark.process
@pytest.mark.root
def test_a_webserver_that_died_is_reported(
    client: Credentials, www: Credentials, scratch_tmp: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    settings = WebserverConfig(listen=f"127.0.0.1:{port}", command="false")
    with challenge_setup(settings, client, www, debug=False):
        [pid] = children(os.getpid())
        wait_for(lambda: status_fields(pid)["State"].startswith("Z"), "false to exit")
    assert f"Warning: the webserver on 127.0.0.1:{port} had exited with status 1" in (
        capfd.readouterr().err
    )
    assert leftovers(scratch_tmp) == []


@pytest.mark.process
@pytest.mark.root
def test_unix_socket_path_in_the_way(
    client: Credentials, www: Credentials, scratch_tmp: Path
) -> None:
    path = scratch_tmp / "www.socket"
    path.write_text("not a socket")
    error = refusal(WebserverConfig(listen=str(path)), client, www)
    assert str(error) == f"can't listen on {path}: it exists and is not a socket"
    assert path.read_text() == "not a socket"
    path.unlink()
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(str(path))
        live.listen()
        error = refusal(WebserverConfig(listen=str(path)), client, www)
        assert str(error) == f"can't listen on {path}: another process is listening there"
    # Left over by a killed run: nobody listens, so it is replaced.
    with challenge_setup(WebserverConfig(listen=str(path)), client, www, debug=False):
        response = http_get(socket.AF_UNIX, str(path), CHALLENGE + "missing")
        assert response.startswith(b"HTTP/1.1 404 ")
    assert not path.exists()
    assert leftovers(scratch_tmp) == []


@pytest.mark.process
@pytest.mark.root
def test_listen_empty_needs_a_challenge_directory(client: Credentials, www: Credentials) -> None:
    error = refusal(WebserverConfig(listen=""), client, www)
    assert str(error) == "[webserver] challenge-directory is required when listen is empty"


def hold(scratch_tmp: Path, listen: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """A master-like process whose SIGTERM and SIGINT handlers raise, with
    webservers running, and what it holds."""
    master = subprocess.Popen(
        [sys.executable, str(HELPERS), "hold", listen],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(scratch_tmp)},
    )
    assert master.stdout is not None
    held = json.loads(master.stdout.readline())
    assert len(held["webservers"]) == len(listen.split())
    assert Path(held["directory"], "tok").exists()
    return master, held


def assert_released(held: dict[str, Any], unix_path: Path) -> None:
    assert not Path(held["directory"]).exists()
    assert not unix_path.exists()
    for pid in held["webservers"]:
        assert not Path(f"/proc/{pid}").exists()


@pytest.mark.process
@pytest.mark.root
def test_sigterm_leaves_nothing_behind(scratch_tmp: Path) -> None:
    unix_path = scratch_tmp / "www.socket"
    master, held = hold(scratch_tmp, f"127.0.0.1:{free_port()} {unix_path}")
    master.send_signal(signal.SIGTERM)
    _, err = master.communicate(timeout=30)
    assert master.returncode == 3, err
    assert "interrupted by SIGTERM" in err
    assert "Shutting down ACME webserver bound to" in err  # debug=True
    assert_released(held, unix_path)


@pytest.mark.process
@pytest.mark.root
def test_impatient_signals_leave_nothing_behind(scratch_tmp: Path) -> None:
    """More signals while the first one's exception unwinds: held back
    until everything is undone."""
    unix_path = scratch_tmp / "www.socket"
    listen = f"127.0.0.1:{free_port()} [::1]:{free_port()} {unix_path}"
    master, held = hold(scratch_tmp, listen)
    for signum in [signal.SIGTERM, signal.SIGINT] * 50:
        if master.poll() is not None:
            break
        master.send_signal(signum)
        time.sleep(0.001)
    _, err = master.communicate(timeout=30)
    assert master.returncode != 0, err
    assert_released(held, unix_path)


# --- challenge_setup: challenge-directory ------------------------------------


def challenge_directory(shared_dir: Path) -> Path:
    directory = shared_dir / "acme-challenge"
    directory.mkdir()
    os.chown(directory, client_user().pw_uid, -1)
    return directory


@pytest.mark.process
@pytest.mark.root
def test_challenge_directory_is_emptied(
    client: Credentials, www: Credentials, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = challenge_directory(shared_dir)
    outside = shared_dir / "precious"
    outside.write_text("keep")
    monkeypatch.setenv("TMPDIR", str(shared_dir))
    # Expanded before the drop (root's %T), and `listen` is then ignored.
    settings = WebserverConfig(listen="127.0.0.1:1", challenge_directory="%T/acme-challenge")
    with challenge_setup(settings, client, www, debug=False) as used:
        assert used == str(directory)
        assert (directory / LOCK_FILE).read_text() == f"{os.getpid()}\n"
        assert children(os.getpid()) == []  # the HTTP daemon is someone else's
        make_mess = (
            "mkdir -p sub/deeper && echo a > tok1 && echo b > sub/deeper/c"
            f" && ln -s {outside} link && ln -s {shared_dir} dirlink"
        )
        proc = spawn(["sh", "-c", make_mess], client, cwd=used)
        assert proc.wait(30) == 0
    assert list(directory.iterdir()) == []
    assert outside.read_text() == "keep"


@pytest.mark.process
@pytest.mark.root
def test_challenge_directory_must_be_empty(
    client: Credentials, www: Credentials, shared_dir: Path
) -> None:
    directory = challenge_directory(shared_dir)
    (directory / "someone-elses").write_text("x")
    settings = WebserverConfig(challenge_directory=str(directory))
    error = refusal(settings, client, www)
    assert str(error) == f"refusing to use non-empty challenge directory {directory}"
    assert [p.name for p in directory.iterdir()] == ["someone-elses"]


@pytest.mark.process
@pytest.mark.root
def test_challenge_directory_lock(client: Credentials, www: Credentials, shared_dir: Path) -> None:
    directory = challenge_directory(shared_dir)
    settings = WebserverConfig(challenge_directory=str(directory))
    with challenge_setup(settings, client, www, debug=False):
        (directory / "tok").write_text("x")
        error = refusal(settings, client, www)
        assert str(error).startswith(f"challenge directory {directory} is in use: ")
        # The refused run removed nothing of the running one's.
        assert sorted(p.name for p in directory.iterdir()) == [LOCK_FILE, "tok"]
    assert list(directory.iterdir()) == []


@pytest.mark.process
@pytest.mark.root
def test_challenge_directory_missing(
    client: Credentials, www: Credentials, shared_dir: Path
) -> None:
    settings = WebserverConfig(challenge_directory=str(shared_dir / "missing"))
    assert str(refusal(settings, client, www)) == (
        f"can't open challenge directory {shared_dir}/missing: No such file or directory"
    )


# --- challenge_setup: iptables -----------------------------------------------


@pytest.mark.process
@pytest.mark.root
@pytest.mark.debian("iptables", "util-linux", "iproute2")
def test_firewall_rules_in_a_network_namespace() -> None:
    done = subprocess.run(
        ["unshare", "-n", sys.executable, str(HELPERS), "firewall"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    policies = ["-P INPUT ACCEPT", "-P FORWARD ACCEPT", "-P OUTPUT ACCEPT"]
    admin = "-A INPUT -p tcp -m tcp --dport 9 -j DROP"
    assert report["after_fresh"] == {"iptables": policies, "ip6tables": policies}
    assert report["before"] == {"iptables": [*policies, admin], "ip6tables": [*policies, admin]}
    accept_in = "-p tcp -m tcp --dport {} -m state --state NEW,ESTABLISHED -j ACCEPT"
    accept_out = "-p tcp -m tcp --sport {} -m state --state ESTABLISHED -j ACCEPT"
    assert sorted(report["during"]["iptables"]) == sorted(
        [
            *policies,
            admin,
            "-A INPUT -d 127.0.0.1/32 " + accept_in.format(80),
            "-A OUTPUT -s 127.0.0.1/32 " + accept_out.format(80),
            # [::]:8081 is dual-stack: IPv4 too, on every address.
            "-A INPUT " + accept_in.format(8081),
            "-A OUTPUT " + accept_out.format(8081),
            # So is [::ffff:127.0.0.1]:8082.
            "-A INPUT -d 127.0.0.1/32 " + accept_in.format(8082),
            "-A OUTPUT -s 127.0.0.1/32 " + accept_out.format(8082),
        ]
    )
    assert sorted(report["during"]["ip6tables"]) == sorted(
        [
            *policies,
            admin,
            "-A INPUT -d ::1/128 " + accept_in.format(8080),
            "-A OUTPUT -s ::1/128 " + accept_out.format(8080),
            "-A INPUT " + accept_in.format(8081),
            "-A OUTPUT " + accept_out.format(8081),
            "-A INPUT -d ::ffff:127.0.0.1/128 " + accept_in.format(8082),
            "-A OUTPUT -s ::ffff:127.0.0.1/128 " + accept_out.format(8082),
        ]
    )
    for answer in report["answers"]:
        assert answer.startswith("HTTP/1.1 200 OK\r\n")
        assert answer.endswith("\r\n\r\ntok.key-authorization")
    assert report["after"] == report["before"]
    assert report["after_exception"] == report["before"]
