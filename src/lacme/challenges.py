"""Making http-01 challenges servable, for the master: the challenge
directory, the webservers' listening sockets and processes, and the
firewall rules that let the ACME server reach them.

What it may touch, and always puts back on the way out: the configured
`challenge-directory` (locked, then emptied), or a temporary directory of
its own; the UNIX sockets it binds at `listen` paths; the webserver
processes it starts (through lacme.privdrop, as lacme.webserver_contract
says); and, with `iptables`, the iptables and ip6tables rules, saved first
and restored afterwards.  What a master killed with SIGKILL can't put back
is tagged with it (lacme.leftovers) and removed by the next one that needs
the same thing: its lock and the files in `challenge-directory`, its
temporary directory, its firewall rules.

    ListenAddress, parse_listen(value) -> list[ListenAddress]
    challenge_setup(webserver, client, www, debug, end_orphans=False)
                                                     (context manager)

Configuration mistakes raise errors.ConfigError (SpecifierError included), failures
to set things up SpawnError; both carry a one-line message naming the
culprit.  Cleanup never raises: what it cannot undo is reported on stderr.
"""

from __future__ import annotations

import errno
import os
import re
import shlex
import signal
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import NamedTuple, Protocol

from lacme import log, specifiers, webserver_contract
from lacme.errors import ConfigError
from lacme.leftovers import Owner, current, gone, left_by
from lacme.privdrop import Credentials, SpawnError, child_ids, end_orphans, spawn, stop

# Cleaning up what the client wrote (clear): how deep a stack of open
# directories goes, and how many entries are removed at most.
MAX_DEPTH = 32
MAX_ENTRIES = 100_000
DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
LOCK_FILE = ".lacme.lock"  # lacme 0.8.2's name, so that it and we keep apart too
# O_EXCL rather than flock: lacme 0.8.2 locks this way (so a Perl run and
# ours keep apart too), and it works over NFS.
LOCK_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# A temporary challenge directory is named after its master (lacme.leftovers),
# then mkdtemp's random part; lacme 0.8.2's have no owner in their names.
TEMPORARY_PREFIX = "acme-challenge."
_TEMPORARY_NAME = re.compile(re.escape(TEMPORARY_PREFIX) + r"(lacme-[0-9a-f-]+)\.[^.]+")
BACKLOG = 16
HTTP_PORT = 80
SBIN = "/usr/sbin"
# Signals the master turns into exceptions; held back while undoing things.
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
# iptables-restore only resets the tables it is given; an absent filter table
# (nf_tables before the first rule) must come back as this empty one.
EMPTY_FILTER_TABLE = (
    b"*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
)


class ListenAddress(NamedTuple):
    """A `listen` item: a UNIX socket path, or an (address, port) pair."""

    family: socket.AddressFamily
    address: str | tuple[str, int]

    def __str__(self) -> str:
        if isinstance(self.address, str):
            return self.address
        host, port = self.address
        return f"[{host}]:{port}" if self.family == socket.AF_INET6 else f"{host}:{port}"


_SEPARATORS = re.compile(r"[\s,]+")
_INET_FORMS = (
    (socket.AF_INET, re.compile(r"([0-9]+(?:\.[0-9]+){3})(?::([0-9]+))?")),
    (socket.AF_INET6, re.compile(r"\[([0-9A-Fa-f:.]{2,39})\](?::([0-9]+))?")),
)
_SUN_PATH_MAX = 107  # bytes, without the terminating NUL


def _parse_address(item: str) -> ListenAddress:
    if item.startswith("/") and len(os.fsencode(item)) <= _SUN_PATH_MAX and "\0" not in item:
        return ListenAddress(socket.AF_UNIX, item)
    for family, form in _INET_FORMS:
        match = form.fullmatch(item)
        if match is None:
            continue
        try:
            packed = socket.inet_pton(family, match[1])
        except OSError:
            break
        port = int(match[2]) if match[2] else HTTP_PORT
        if 0 < port < 65536:
            return ListenAddress(family, (socket.inet_ntop(family, packed), port))
    raise ConfigError(f"[webserver] listen: invalid address {item!r}")


def parse_listen(value: str) -> list[ListenAddress]:
    """The comma- or space-separated addresses of [webserver] listen.

    `IPV4[:PORT]`, `[IPV6][:PORT]` (port 80 by default) or the absolute path
    of a UNIX socket; raise ConfigError naming the first bad one.
    """
    return [_parse_address(item) for item in _SEPARATORS.split(value) if item]


class WebserverSettings(Protocol):
    """The [webserver] settings challenge_setup reads (config.WebserverConfig)."""

    @property
    def listen(self) -> str: ...
    @property
    def challenge_directory(self) -> str | None: ...
    @property
    def command(self) -> str: ...
    @property
    def iptables(self) -> bool: ...
    @property
    def confinement(self) -> bool: ...


@contextmanager
def challenge_setup(
    webserver: WebserverSettings,
    client: Credentials | None,
    www: Credentials | None,
    debug: bool,
    end_orphans: bool = False,
) -> Iterator[str]:
    """Make http-01 challenges servable; yield the directory the client writes them to.

    With `challenge-directory` (%-expanded here): that directory, which must
    be empty, locked with LOCK_FILE and emptied afterwards.  Otherwise a new
    temporary directory, owned by the client user, and for each `listen`
    address a socket and a webserver process (as WWW) serving it, with
    temporary firewall rules when `iptables` is set.  Everything is undone
    on the way out, whatever the way out; SIGINT, SIGTERM and SIGHUP are
    held back meanwhile.

    As in lacme 0.8.2, IPv6 sockets keep the system's IPV6_V6ONLY: `[::]`
    is dual-stack by default and serves IPv4 too (lacme(8) recommends it),
    and the firewall rules then open the IPv4 side as well.  A UNIX socket
    nobody listens on (left by a killed run) is replaced; anything else in
    its place is refused.  The lock, temporary directories and firewall
    rules of a master that is gone (lacme.leftovers) are removed first,
    with a warning for each; anyone else's stay.

    END_ORPHANS: the caller, a subreaper, runs nothing else as WWW's uid, so
    that what runs as it once the webservers are stopped they left behind,
    and is ended (lacme.privdrop.end_orphans).
    """
    addresses = parse_listen(webserver.listen)
    stack = ExitStack()
    try:
        if webserver.challenge_directory:
            directory = specifiers.expand(webserver.challenge_directory)
            _use_directory(stack, directory, debug)
        elif addresses:
            directory = _serve(stack, addresses, webserver, client, www, debug, end_orphans)
        else:
            raise ConfigError("[webserver] challenge-directory is required when listen is empty")
        yield directory
    finally:
        _close(stack)


def _close(stack: ExitStack) -> None:
    """Close STACK with the stop signals held back, delivered afterwards
    (the master does not block them otherwise)."""
    interrupted: BaseException | None = None
    while True:
        try:
            signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
            stack.close()
            break
        except BaseException as e:
            # The handler of a signal that came just before the block raised,
            # or a callback did: finish closing first.
            interrupted = e
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    if interrupted is not None:
        raise interrupted


def _use_directory(stack: ExitStack, directory: str, debug: bool) -> None:
    if debug:
        log.debug(f"Using existing webserver on {directory}")
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise SpawnError(f"can't open challenge directory {directory}: {e.strerror}") from e
    stack.callback(os.close, fd)
    stale: Owner | None = None
    try:
        lock = os.open(LOCK_FILE, LOCK_FLAGS, 0o600, dir_fd=fd)
    except FileExistsError:
        stale, lock = _replace_stale_lock(fd, directory)
    except OSError as e:
        raise SpawnError(f"can't create {directory}/{LOCK_FILE}: {e.strerror}") from e
    stack.callback(_unlink_at, fd, directory, LOCK_FILE)
    owner = current()
    # The pid first and alone on its line, as lacme 0.8.2 writes it.
    content = f"{os.getpid()}\n" + (f"{owner.tag}\n" if owner is not None else "")
    try:
        os.write(lock, content.encode())
    finally:
        os.close(lock)
    if stale is not None:
        clear(fd, directory, keep=frozenset({LOCK_FILE}))
        log.warn(f"emptied {directory} and replaced its {LOCK_FILE}, {left_by(stale)}")
    if any(name != LOCK_FILE for name in os.listdir(fd)):
        raise SpawnError(f"refusing to use non-empty challenge directory {directory}")
    # Only now: what was there before is not ours to remove.
    stack.callback(_empty_directory, fd, directory)


def _replace_stale_lock(fd: int, directory: str) -> tuple[Owner, int]:
    """Take the place of the lock in the directory open as FD if a master
    that is gone holds it: its owner, and the new lock open for writing.
    SpawnError if the lock is anyone else's, or can't be told."""
    in_use = SpawnError(
        f"challenge directory {directory} is in use: {LOCK_FILE} exists"
        " (another lacme is running, or one was killed: then empty the directory)"
    )
    try:
        old = os.open(
            LOCK_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd
        )
    except OSError:
        raise in_use from None
    try:
        judged = os.fstat(old)
        text = os.read(old, 4096) if stat.S_ISREG(judged.st_mode) else b""
    finally:
        os.close(old)
    owner = _lock_owner(text)
    if owner is None or not gone(owner):
        raise in_use
    # Renamed first, then compared: the stale lock another new master may
    # just have replaced with its own is not removed.
    aside = f"{LOCK_FILE}.{os.getpid()}"
    try:
        os.rename(LOCK_FILE, aside, src_dir_fd=fd, dst_dir_fd=fd)
        moved = os.stat(aside, dir_fd=fd, follow_symlinks=False)
    except OSError:
        raise in_use from None
    if (moved.st_dev, moved.st_ino) != (judged.st_dev, judged.st_ino):
        try:
            os.link(aside, LOCK_FILE, src_dir_fd=fd, dst_dir_fd=fd, follow_symlinks=False)
        except OSError as e:
            log.warn(f"can't put back {directory}/{LOCK_FILE} from {aside}: {e.strerror}")
            raise in_use from None
        _unlink_at(fd, directory, aside)
        raise in_use
    _unlink_at(fd, directory, aside)
    try:
        return owner, os.open(LOCK_FILE, LOCK_FLAGS, 0o600, dir_fd=fd)
    except OSError:
        raise in_use from None


def _lock_owner(text: bytes) -> Owner | None:
    """Whose lock TEXT is, if ours: its pid alone on the first line, its owner on the second."""
    lines = text.decode("ascii", errors="replace").split("\n")
    owner = Owner.parse(lines[1]) if len(lines) == 3 and lines[2] == "" else None
    return owner if owner is not None and lines[0] == str(owner.pid) else None


def _unlink_at(fd: int, directory: str, name: str) -> None:
    try:
        os.unlink(name, dir_fd=fd)
    except OSError as e:
        log.warn(f"can't remove {directory}/{name}: {e.strerror}")


def _empty_directory(fd: int, directory: str) -> None:
    clear(fd, directory, keep=frozenset({LOCK_FILE}))


def clear(
    top: int, where: str, keep: frozenset[str] = frozenset(), owner: int | None = None
) -> None:
    """Remove everything in the directory open as TOP (WHERE, for messages)
    but the names in KEEP, warning of what could not be; with OWNER, a
    directory that uid does not own is neither entered nor removed, so that
    nothing is removed its owner could not remove itself.

    The client can change that directory while this runs.  So nothing is
    done by path: only relative to directory descriptors, opened with
    O_NOFOLLOW | O_DIRECTORY | O_NONBLOCK, and nothing but a directory is
    ever opened (unlink removes a FIFO or a link without opening it: no
    wait on another process, no link followed).  No recursion: a stack of
    at most MAX_DEPTH open directories, and a deeper one is moved up to TOP
    to be emptied from there; MAX_ENTRIES bounds the work."""
    stack: list[tuple[int, str, str | None]] = [(top, where, None)]
    entries = 0
    moved = 0
    try:
        while stack:
            fd, path, name = stack[-1]
            try:
                names = [n for n in os.listdir(fd) if not (fd == top and n in keep)]
            except OSError as e:
                log.warn(f"can't list {path}: {e.strerror}")
                names = []
            for entry in names:
                entries += 1
                if entries > MAX_ENTRIES:
                    log.warn(f"left {where}: over {MAX_ENTRIES} entries to remove")
                    return
                try:
                    os.unlink(entry, dir_fd=fd)
                    continue
                except IsADirectoryError:
                    pass
                except FileNotFoundError:
                    continue
                except OSError as e:
                    if e.errno != errno.EISDIR:
                        log.warn(f"can't remove {path}/{entry}: {e.strerror}")
                        continue
                if len(stack) >= MAX_DEPTH:
                    moved += 1
                    try:
                        flat = f".lacme-deep.{os.getpid()}.{moved}"
                        os.rename(entry, flat, src_dir_fd=fd, dst_dir_fd=top)
                    except OSError as e:
                        log.warn(f"can't remove {path}/{entry}: {e.strerror}")
                    continue
                try:
                    sub = os.open(entry, DIRECTORY_FLAGS, dir_fd=fd)
                except OSError as e:  # replaced meanwhile by something else
                    log.warn(f"can't remove {path}/{entry}: {e.strerror}")
                    continue
                if owner is not None and os.fstat(sub).st_uid != owner:
                    os.close(sub)
                    log.warn(f"not removing {path}/{entry}: another user's")
                    continue
                stack.append((sub, f"{path}/{entry}", entry))
                break
            else:
                stack.pop()
                if name is not None:
                    os.close(fd)
                    parent = stack[-1][0]
                    try:
                        os.rmdir(name, dir_fd=parent)
                    except FileNotFoundError:
                        pass
                    except OSError as e:
                        log.warn(f"can't remove {path}: {e.strerror}")
    finally:
        for fd, _, name in stack:
            if name is not None:
                os.close(fd)


def _serve(
    stack: ExitStack,
    addresses: list[ListenAddress],
    webserver: WebserverSettings,
    client: Credentials | None,
    www: Credentials | None,
    debug: bool,
    orphans: bool,
) -> str:
    argv = webserver.command.split()
    if not argv:
        raise ConfigError("[webserver] command is empty")
    client_uid = child_ids(client)[0]
    _remove_stale_directories(client_uid)
    owner = current()
    tag = f"{owner.tag}." if owner is not None else ""
    directory = tempfile.mkdtemp(prefix=f"{TEMPORARY_PREFIX}{tag}")
    # Opened now, while only root can change it: from then on it is the
    # client's, which may move it or put something else at its path.
    fd = os.open(directory, DIRECTORY_FLAGS)
    stack.callback(remove_tree, fd, directory)
    if orphans:
        # Before the webservers' stop, so after it on the way out.
        stack.callback(end_orphans, child_ids(www)[0])
    os.chmod(directory, 0o755)  # noqa: S103 - the webserver user reads, whoever it is
    if client_uid != os.getuid():
        os.chown(directory, client_uid, -1)
    firewall: list[tuple[socket.AddressFamily, str, int]] = []
    for address in addresses:
        with socket.socket(address.family, socket.SOCK_STREAM) as sock:
            _bind(stack, sock, address)
            fd = sock.fileno()
            proc = spawn(
                webserver_contract.argv(argv, fd, webserver.confinement),
                www,
                cwd=directory,
                pass_fds=(fd,),
                env=webserver_contract.environment(debug),
            )
            stack.callback(_stop_webserver, proc, address, debug)
            if debug:
                log.debug(f"Forking ACME webserver bound to {address}, child PID {proc.pid}")
            if isinstance(address.address, tuple):
                firewall.append((address.family, *address.address))
                mapped = _ipv4_mapped(sock, address.address)
                if mapped is not None:
                    firewall.append((socket.AF_INET, *mapped))
    if webserver.iptables:
        _open_firewall(stack, firewall, debug)
    return directory


def remove_tree(fd: int, directory: str) -> None:
    """Remove the temporary challenge directory open as FD: its contents
    (clear), then its name, if that still names it."""
    try:
        clear(fd, directory)
        parent_path, name = os.path.split(directory)
        parent = os.open(parent_path, DIRECTORY_FLAGS)
        try:
            _rmdir_if_same(parent, name, fd, directory)
        finally:
            os.close(parent)
    except OSError as e:
        log.warn(f"can't remove {directory}: {e.strerror}")
    finally:
        os.close(fd)


def _rmdir_if_same(parent: int, name: str, fd: int, directory: str) -> bool:
    """Remove NAME from the directory open as PARENT if it is still the
    (emptied) directory open as FD; whether it was."""
    ours = os.fstat(fd)
    there = os.stat(name, dir_fd=parent, follow_symlinks=False)
    if (there.st_dev, there.st_ino) != (ours.st_dev, ours.st_ino):
        log.warn(f"can't remove {directory}: it was moved, and something else is there")
        return False
    os.rmdir(name, dir_fd=parent)
    return True


def _remove_stale_directories(uid: int) -> None:
    """Remove the temporary challenge directories of masters that are gone.

    Anyone may put a directory with such a name in the temporary directory,
    and the client user may put anything in its own.  So only a directory
    owned by UID, the client user (whose the master's are), is removed,
    through descriptors, and inside it only what UID could remove itself
    (clear with OWNER): a planted link, another user's directory or one
    whose name no master that is gone wrote stays."""
    parent_path = tempfile.gettempdir()
    try:
        parent = os.open(parent_path, DIRECTORY_FLAGS)
    except OSError as e:
        log.warn(f"can't look for directories left by killed lacme runs in {parent_path}: {e}")
        return
    try:
        for name in os.listdir(parent):
            match = _TEMPORARY_NAME.fullmatch(name)
            owner = Owner.parse(match[1]) if match is not None else None
            if owner is None or not gone(owner):
                continue
            path = os.path.join(parent_path, name)
            try:
                fd = os.open(name, DIRECTORY_FLAGS, dir_fd=parent)
            except OSError as e:
                log.warn(f"not removing {path}: {e.strerror}")
                continue
            try:
                if os.fstat(fd).st_uid != uid:
                    log.warn(f"not removing {path}: not the client user's")
                    continue
                clear(fd, path, owner=uid)
                if _rmdir_if_same(parent, name, fd, path):
                    log.warn(f"removed {path}, {left_by(owner)}")
            except OSError as e:
                log.warn(f"can't remove {path}: {e.strerror}")
            finally:
                os.close(fd)
    finally:
        os.close(parent)


def _bind(stack: ExitStack, sock: socket.socket, address: ListenAddress) -> None:
    try:
        if isinstance(address.address, str):
            _bind_unix(stack, sock, address.address)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address.address)
        sock.listen(BACKLOG)
    except OSError as e:
        raise SpawnError(f"can't listen on {address}: {e.strerror}") from e


def _bind_unix(stack: ExitStack, sock: socket.socket, path: str) -> None:
    try:
        existing = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(existing.st_mode):
            raise SpawnError(f"can't listen on {path}: it exists and is not a socket")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(path)
            except ConnectionRefusedError:
                os.unlink(path)  # left over by a run that was killed
            else:
                raise SpawnError(f"can't listen on {path}: another process is listening there")
    # 0666: the HTTP daemon that forwards challenges connects as its own user.
    umask = os.umask(0o111)
    try:
        sock.bind(path)
    finally:
        os.umask(umask)
    bound = os.lstat(path)
    stack.callback(_unlink_socket, path, bound.st_dev, bound.st_ino)


def _unlink_socket(path: str, dev: int, ino: int) -> None:
    try:
        current = os.lstat(path)
        if (current.st_dev, current.st_ino) == (dev, ino):
            os.unlink(path)
        else:
            log.warn(f"not removing {path}: it is no longer the socket lacme created")
    except FileNotFoundError:
        pass
    except OSError as e:
        log.warn(f"can't remove {path}: {e.strerror}")


def _stop_webserver(proc: subprocess.Popen[bytes], address: ListenAddress, debug: bool) -> None:
    status = proc.poll()
    if status is not None:
        log.warn(f"the webserver on {address} had exited with status {status}")
        return
    if debug:
        log.debug(f"Shutting down ACME webserver bound to {address}")
    stop(proc)


def _ipv4_mapped(sock: socket.socket, address: tuple[str, int]) -> tuple[str, int] | None:
    """The IPv4 address a dual-stack IPv6 socket also receives on, as lacme 0.8.2."""
    if sock.family != socket.AF_INET6 or sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY):
        return None
    host, port = address
    packed = socket.inet_pton(socket.AF_INET6, host)
    if packed == bytes(16):
        return ("0.0.0.0", port)  # noqa: S104 - [::] also listens on every IPv4 address
    if packed[:12] == bytes(10) + b"\xff\xff":
        return (socket.inet_ntop(socket.AF_INET, packed[12:]), port)
    return None


def _run(argv: list[str], data: bytes | None = None) -> bytes:
    try:
        if data is None:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        else:
            done = subprocess.run(argv, input=data, stdout=subprocess.PIPE)
    except OSError as e:
        raise SpawnError(f"can't execute {argv[0]}: {e.strerror}") from e
    if done.returncode != 0:
        raise SpawnError(f"{argv[0]} exited with status {done.returncode}")
    return done.stdout


def _open_firewall(
    stack: ExitStack, targets: list[tuple[socket.AddressFamily, str, int]], debug: bool
) -> None:
    """Remove the rules killed masters left, save the tables, arrange for
    their restoration, then let the addresses in with rules tagged with
    this master (lacme.leftovers)."""
    owner = current()
    tag = ["-m", "comment", "--comment", owner.tag] if owner is not None else []
    for family, program, everywhere, prefix in (
        (socket.AF_INET, "iptables", "0.0.0.0", 32),  # noqa: S104
        (socket.AF_INET6, "ip6tables", "::", 128),
    ):
        mine = [(host, port) for f, host, port in targets if f == family]
        if not mine:
            continue
        _remove_stale_rules(program)
        saved = _run([f"{SBIN}/{program}-save", "-c"])
        if b"*filter" not in saved.splitlines():
            saved += EMPTY_FILTER_TABLE
        stack.callback(_restore_firewall, program, saved, debug)
        for host, port in mine:
            target = f"{host}/{0 if host == everywhere else prefix}"
            for chain, on_address, on_port, states in (
                ("INPUT", "-d", "--dport", "NEW,ESTABLISHED"),
                ("OUTPUT", "-s", "--sport", "ESTABLISHED"),
            ):
                _run(
                    [
                        f"{SBIN}/{program}",
                        "-I",
                        chain,
                        *("-p", "tcp", "-m", "tcp", "-m", "state"),
                        *(on_address, target, on_port, str(port)),
                        *("--state", states, *tag, "-j", "ACCEPT"),
                    ]
                )


def _remove_stale_rules(program: str) -> None:
    """Delete the filter rules tagged by a master that is gone (leftovers),
    one by one: the others are not ours to touch, and lacme 0.8.2's are
    untagged."""
    # Ours are only in the filter table; without -c, each line is a rule
    # specification as -D takes it.
    try:
        rules = _run([f"{SBIN}/{program}-save", "-t", "filter"])
    except SpawnError as e:
        log.warn(f"{e}: not looking for {program} rules left by killed lacme runs")
        return
    stale: dict[Owner, list[list[str]]] = {}
    for line in rules.decode(errors="replace").splitlines():
        try:
            words = shlex.split(line)
        except ValueError:
            continue
        if words[:1] != ["-A"] or words[1:2] not in (["INPUT"], ["OUTPUT"]):
            continue
        comments = [words[i + 1] for i in range(len(words) - 1) if words[i] == "--comment"]
        owner = Owner.parse(comments[0]) if len(comments) == 1 else None
        if owner is not None and gone(owner):
            stale.setdefault(owner, []).append(words[1:])
    for owner, specs in stale.items():
        removed = 0
        for spec in specs:
            try:
                _run([f"{SBIN}/{program}", "-D", *spec])
                removed += 1
            except SpawnError as e:
                log.warn(f"{e}: can't remove one of the {program} rules {left_by(owner)}")
        if removed:
            rules_word = "rule" if removed == 1 else "rules"
            log.warn(f"removed {removed} {program} {rules_word} {left_by(owner)}")


def _restore_firewall(program: str, saved: bytes, debug: bool) -> None:
    if debug:
        log.debug(f"Restoring {program}")
    try:
        _run([f"{SBIN}/{program}-restore", "-c"], saved)
    except SpawnError as e:
        log.warn(f"{e}: the {program} rules lacme added may still be there")
