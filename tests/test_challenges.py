"""lacme.challenges: `listen` parsing, webservers, challenge directories and
firewall rules, as root with the real users _lacme-client and _lacme-www."""

import functools
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from spawn_master import CHALLENGE, http_get

from lacme.challenges import (
    LOCK_FILE,
    ListenAddress,
    challenge_setup,
    clear,
    parse_listen,
    remove_tree,
)
from lacme.config import WebserverConfig
from lacme.leftovers import Owner, current, of
from lacme.privdrop import Credentials, SpawnError, spawn
from support.commands import PERL_WEBSERVER
from support.proc import children, environment, open_fds, status_fields
from support.system import deep_tree, wait_for
from support.users import client_user, www_user

HELPERS = Path(__file__).with_name("spawn_master.py")


@pytest.fixture
def scratch_tmp(shared_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where challenge_setup makes its temporary directory, to see it go."""
    monkeypatch.setattr(tempfile, "tempdir", str(shared_dir))
    return shared_dir


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
            # Beyond stdin, stdout, stderr and its socket only what it opened itself,
            # once it serves (Python's start-up opens files of its own), and before
            # any request (connections linger a little).
            others = wait_for(
                functools.partial(serving_fds, pid, {0, 1, 2, listening}),
                "the webserver's event loop",
            )
            assert others <= {"anon_inode:[eventpoll]"}
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


def serving_fds(pid: int, known: set[int]) -> set[str] | None:
    """What PID's descriptors other than KNOWN are, once one is its event loop."""
    targets = set()
    for fd in open_fds(pid) - known:
        try:
            targets.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:
            return None  # closed meanwhile: still starting
    return targets if "anon_inode:[eventpoll]" in targets else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.process
@pytest.mark.root
@pytest.mark.parametrize(("confinement", "seccomp"), [(True, "2"), (False, "0")])
def test_webserver_confinement_setting(
    client: Credentials, www: Credentials, confinement: bool, seccomp: str
) -> None:
    """[webserver] confinement = No: the master passes --unconfined."""
    port = free_port()
    settings = WebserverConfig(listen=f"127.0.0.1:{port}", confinement=confinement)
    with challenge_setup(settings, client, www, debug=False) as directory:
        (Path(directory) / "tok").write_text("served")
        # Served, so started and, when it is to be, confined.
        assert http_get(socket.AF_INET, ("127.0.0.1", port), CHALLENGE + "tok").endswith(b"served")
        (webserver,) = children(os.getpid())
        assert status_fields(webserver)["Seccomp"] == seccomp
        with open(f"/proc/{webserver}/cmdline", "rb") as cmdline:
            unconfined = b"--unconfined" in cmdline.read().split(b"\0")
        assert unconfined is not confinement


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
        owner = current()
        assert owner is not None
        assert (directory / LOCK_FILE).read_text() == f"{os.getpid()}\n{owner.tag}\n"
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


# --- what a killed master left: locks and temporary directories ------------


def dead_owner() -> Owner:
    """The owner of a process that has come and gone, as a killed master."""
    proc = subprocess.Popen(["sleep", "60"])
    owner = of(proc.pid)
    proc.kill()
    proc.wait()
    assert owner is not None
    return owner


@pytest.fixture
def live_owner() -> Iterator[Owner]:
    """The owner of a running process, as another master in the middle of a run."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        owner = of(proc.pid)
        assert owner is not None
        yield owner
    finally:
        proc.kill()
        proc.wait()


def killed_run_in(directory: Path, lock: str) -> None:
    """What a master killed while using DIRECTORY leaves there, its lock LOCK."""
    (directory / LOCK_FILE).write_text(lock)
    (directory / "token").write_text("key authorization")
    (directory / "sub").mkdir()
    (directory / "sub" / "token").write_text("x")


@pytest.mark.process
@pytest.mark.root
def test_the_lock_of_a_master_that_is_gone_is_replaced_and_the_directory_emptied(
    client: Credentials, www: Credentials, shared_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    directory = challenge_directory(shared_dir)
    stale = dead_owner()
    killed_run_in(directory, f"{stale.pid}\n{stale.tag}\n")
    settings = WebserverConfig(challenge_directory=str(directory))
    with challenge_setup(settings, client, www, debug=False):
        assert [p.name for p in directory.iterdir()] == [LOCK_FILE]
        assert (directory / LOCK_FILE).read_text().startswith(f"{os.getpid()}\n")
    assert list(directory.iterdir()) == []
    assert capfd.readouterr().err == (
        f"Warning: emptied {directory} and replaced its {LOCK_FILE}, left by lacme process"
        f" {stale.pid}, which is no longer running\n"
    )


def stale_lock_texts() -> dict[str, str]:
    """Locks that may look stale but can't be proved so."""
    stale = dead_owner()
    elsewhere = stale._replace(boot="0" * 32)
    return {
        # lacme 0.8.2's (and ours before owners): a pid, of which host?
        "bare pid": f"{stale.pid}\n",
        "another boot or machine": f"{elsewhere.pid}\n{elsewhere.tag}\n",
        "pid and owner differ": f"{stale.pid + 1}\n{stale.tag}\n",
        "garbage": "\x00\xff" * 10,
        "empty": "",
    }


@pytest.mark.process
@pytest.mark.root
@pytest.mark.parametrize("kind", [*stale_lock_texts(), "live master", "symlink", "fifo"])
def test_a_lock_not_provably_stale_still_refuses(
    client: Credentials, www: Credentials, shared_dir: Path, live_owner: Owner, kind: str
) -> None:
    directory = challenge_directory(shared_dir)
    if kind == "live master":
        killed_run_in(directory, f"{live_owner.pid}\n{live_owner.tag}\n")
    elif kind in ("symlink", "fifo"):
        killed_run_in(directory, "")
        (directory / LOCK_FILE).unlink()
        if kind == "fifo":
            os.mkfifo(directory / LOCK_FILE)
        else:
            stale = dead_owner()
            target = shared_dir / "elsewhere"
            target.write_text(f"{stale.pid}\n{stale.tag}\n")
            (directory / LOCK_FILE).symlink_to(target)
    else:
        killed_run_in(directory, stale_lock_texts()[kind])
    before = {p.name: p.lstat() for p in directory.rglob("*")}
    error = refusal(WebserverConfig(challenge_directory=str(directory)), client, www)
    assert str(error).startswith(f"challenge directory {directory} is in use: {LOCK_FILE} exists")
    assert {p.name: p.lstat() for p in directory.rglob("*")} == before


def planted(scratch_tmp: Path, owner: Owner, kind: str) -> Path:
    path = scratch_tmp / f"acme-challenge.{owner.tag}.{kind}"
    if kind == "symlink":
        target = scratch_tmp / "precious"
        target.mkdir()
        (target / "file").write_text("keep")
        path.symlink_to(target)
        return path
    path.mkdir()
    (path / "token").write_text("x")
    if kind != "other-users":
        os.chown(path / "token", client_user().pw_uid, -1)
        os.chown(path, client_user().pw_uid, -1)
    return path


@pytest.mark.process
@pytest.mark.root
def test_temporary_directories_of_masters_that_are_gone_are_removed_and_nothing_else(
    client: Credentials,
    www: Credentials,
    scratch_tmp: Path,
    live_owner: Owner,
    capfd: pytest.CaptureFixture[str],
) -> None:
    stale = dead_owner()
    removed = planted(scratch_tmp, stale, "killed")
    # A directory the client user made there, holding another user's.
    foreign = planted(scratch_tmp, stale, "holding")
    (foreign / "theirs").mkdir()
    (foreign / "theirs" / "file").write_text("keep")
    kept = [
        planted(scratch_tmp, stale, "symlink"),
        planted(scratch_tmp, stale, "other-users"),
        planted(scratch_tmp, live_owner, "running"),
        planted(scratch_tmp, stale._replace(boot="0" * 32), "elsewhere"),
    ]
    perl = scratch_tmp / "acme-challenge.AbCdEfGhIj"  # lacme 0.8.2's
    perl.mkdir()
    os.chown(perl, client_user().pw_uid, -1)
    kept.append(perl)
    before = {p: p.lstat() for p in kept}
    listen = WebserverConfig(listen=str(scratch_tmp / "www.sock"))
    with challenge_setup(listen, client, www, debug=False) as used:
        mine = current()
        assert mine is not None
        # Named after its master, in case that is killed.
        assert Path(used).name.startswith(f"acme-challenge.{mine.tag}.")
    assert not removed.exists()
    assert {p: p.lstat() for p in kept} == before
    assert (scratch_tmp / "precious" / "file").read_text() == "keep"
    assert sorted(p.name for p in foreign.iterdir()) == ["theirs"]
    assert (foreign / "theirs" / "file").read_text() == "keep"
    assert sorted(capfd.readouterr().err.splitlines()) == sorted(
        [
            f"Warning: removed {removed}, left by lacme process {stale.pid},"
            " which is no longer running",
            f"Warning: not removing {kept[0]}: Not a directory",
            f"Warning: not removing {kept[1]}: not the client user's",
            f"Warning: not removing {foreign}/theirs: another user's",
            f"Warning: can't remove {foreign}: Directory not empty",
        ]
    )
    assert sorted(leftovers(scratch_tmp)) == sorted(p.name for p in [foreign, *kept])


# --- challenge_setup: iptables -----------------------------------------------


def in_network_namespace(mode: str) -> tuple[dict[str, Any], str]:
    """The JSON report of spawn_master.py MODE, run in a network namespace
    of its own, and its stderr."""
    done = subprocess.run(
        ["unshare", "-n", sys.executable, str(HELPERS), mode],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report, done.stderr


@pytest.mark.process
@pytest.mark.root
@pytest.mark.debian("iptables", "util-linux", "iproute2")
def test_firewall_rules_in_a_network_namespace() -> None:
    report, _ = in_network_namespace("firewall")
    policies = ["-P INPUT ACCEPT", "-P FORWARD ACCEPT", "-P OUTPUT ACCEPT"]
    admin = "-A INPUT -p tcp -m tcp --dport 9 -j DROP"
    assert report["after_fresh"] == {"iptables": policies, "ip6tables": policies}
    assert report["before"] == {"iptables": [*policies, admin], "ip6tables": [*policies, admin]}
    # Tagged with the master's owner, for the next master if this one is killed.
    tagged = f"-m comment --comment {report['tag']} -j ACCEPT"
    accept_in = "-p tcp -m tcp --dport {} -m state --state NEW,ESTABLISHED " + tagged
    accept_out = "-p tcp -m tcp --sport {} -m state --state ESTABLISHED " + tagged
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


@pytest.mark.process
@pytest.mark.root
@pytest.mark.debian("iptables", "util-linux", "iproute2")
def test_only_rules_tagged_by_a_master_that_is_gone_are_removed() -> None:
    report, stderr = in_network_namespace("stale-firewall")
    stale = report["stale"]
    pid = stale.split("-")[1]
    for program in ("iptables", "ip6tables"):
        before = report["before"][program]
        removed = [
            rule
            for rule in before
            if rule.split()[1] in ("INPUT", "OUTPUT") and f" --comment {stale} " in rule
        ]
        assert len(removed) == 2, before
        kept = [rule for rule in before if rule not in removed]
        assert report["after"][program] == kept
        assert set(kept) < set(report["during"][program])
    assert stderr.splitlines() == [
        f"Warning: removed 2 {program} rules left by lacme process {pid},"
        " which is no longer running"
        for program in ("iptables", "ip6tables")
    ]


# --- cleaning up what the client controls -------------------------------------------


def hostile_tree(top: Path, outside: Path) -> None:
    """What a compromised client can leave in its challenge directory: a
    FIFO (opening it would wait for a writer), a link out, a deep tree."""
    os.mkfifo(top / "fifo")
    (top / "link").symlink_to(outside)
    (top / "dir-link").symlink_to(outside.parent)
    deep_tree(top, 1500)
    (top / "a" / "b").mkdir(parents=True)
    (top / "a" / "b" / "token").write_text("x")


@pytest.mark.unit
def test_clear_removes_a_hostile_tree_without_following_or_waiting(tmp_path: Path) -> None:
    outside = tmp_path / "outside" / "precious"
    outside.parent.mkdir()
    outside.write_text("keep me")
    top = tmp_path / "challenges"
    top.mkdir()
    hostile_tree(top, outside)
    (top / LOCK_FILE).write_text("1\n")
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        clear(fd, str(top), keep=frozenset({LOCK_FILE}))
    finally:
        os.close(fd)
    assert sorted(p.name for p in top.iterdir()) == [LOCK_FILE]
    assert outside.read_text() == "keep me"


@pytest.mark.unit
def test_a_moved_temporary_directory_is_emptied_and_its_path_left(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The client renamed its directory and put a FIFO at its path: the
    cleanup empties the directory it opened, wherever it went, and opens
    nothing at the path."""
    directory = tmp_path / "acme-challenge.x"
    directory.mkdir()
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    (directory / "token").write_text("x")
    directory.rename(tmp_path / "moved")
    os.mkfifo(directory)
    remove_tree(fd, str(directory))
    assert list((tmp_path / "moved").iterdir()) == []
    assert stat.S_ISFIFO(directory.lstat().st_mode)
    assert capfd.readouterr().err == (
        f"Warning: can't remove {directory}: it was moved, and something else is there\n"
    )
