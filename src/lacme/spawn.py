"""Starting and stopping the master's children: accountd, client, webservers.

The master runs as root; everything it starts runs as a fresh program
(fork and execve through subprocess, never a forked copy of the master's
memory running Python code beyond the few checks below) with:

- the configured user and group: `setgroups([gid])`, `setgid`, `setuid`
  (an empty user or group skips that part, as lacme(8) says), checked in the
  child before exec: real, effective and saved ids, the group list, and that
  `setuid(0)` fails;
- a clean environment: USER, LOGNAME, HOME and SHELL from the user's passwd
  entry, PATH (`/usr/bin:/bin`, `/usr/sbin:/usr/bin:/sbin:/bin` for root, as
  lacme 0.8.2), TERM if set, plus what the caller adds (DEBUG);
- umask 0022, the working directory entered after the privilege drop, and
  only stdin, stdout, stderr and the contract's `pass_fds` open;
- SIGTERM when the master dies (PR_SET_PDEATHSIG), so that even a killed
  master leaves no child behind;
- when `isolate` (client and webservers): PR_SET_NO_NEW_PRIVS, and a new
  session without controlling terminal, so that a child cannot push input
  into root's terminal with TIOCSTI.  accountd is not isolated: it may ask
  for a passphrase on the terminal or run `ssh`, which may need both.

Interface:

    Credentials, resolve_credentials(user, group, section) -> Credentials | None
    spawn(argv, credentials, *, cwd="/", pass_fds=(), stdin=DEVNULL,
          stdout=DEVNULL, env=None, isolate=True) -> Popen[bytes]
    stop(proc, timeout=STOP_TIMEOUT, grace=0.0) -> int
    spawn_accountd(command, credentials, *, config, quiet, debug)
        -> (socket, Popen[bytes])
    connect_accountd(path) -> socket
    ListenAddress, parse_listen(value) -> list[ListenAddress]
    challenge_setup(webserver, client, www, debug)   (context manager)

Configuration mistakes raise ValueError (SpecifierError included), failures
to set things up SpawnError; both carry a one-line message naming the
culprit.  Cleanup never raises: what it cannot undo is reported on stderr.

The accountd `command` is %-expanded "after privilege drop" (lacme(8)):
here the master expands it for the child's identity, uid, gid and the clean
environment the child gets (specifiers.Identity), which is what the child
would compute itself, without an extra interpreter in between, and with
expansion errors reported before anything is started.

The master must be single-threaded when it calls spawn (the child runs a
preexec function between fork and exec).
"""

from __future__ import annotations

import functools
import grp
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import IO, Any, NamedTuple, Protocol

from lacme import specifiers, webserver_contract

Stream = int | IO[Any] | None

STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL
USER_PATH = "/usr/bin:/bin"
ROOT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
CHILD_UMASK = 0o022
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
LOCK_FILE = ".lacme.lock"  # lacme 0.8.2's name, so that it and we keep apart too
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


class SpawnError(Exception):
    """Something could not be started or set up; the message says what."""


class Credentials(NamedTuple):
    """Whom a child runs as: None keeps the master's uid or gid."""

    uid: int | None
    gid: int | None


def resolve_credentials(user: str, group: str, section: str) -> Credentials | None:
    """The ids of SECTION's `user` and `group`; None when both are empty."""
    if not user and not group:
        return None
    uid = gid = None
    if user:
        try:
            uid = pwd.getpwnam(user).pw_uid
        except KeyError:
            raise ValueError(f"[{section}] user: no such user {user!r}") from None
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise ValueError(f"[{section}] group: no such group {group!r}") from None
    return Credentials(uid, gid)


def _ids(credentials: Credentials | None) -> tuple[int, int]:
    uid = credentials.uid if credentials is not None else None
    gid = credentials.gid if credentials is not None else None
    return (os.getuid() if uid is None else uid, os.getgid() if gid is None else gid)


def _clean_environment(credentials: Credentials | None) -> dict[str, str]:
    uid, _ = _ids(credentials)
    entry = pwd.getpwuid(uid)
    environment = {
        "USER": entry.pw_name,
        "LOGNAME": entry.pw_name,
        "HOME": entry.pw_dir,
        "SHELL": entry.pw_shell,
        "PATH": ROOT_PATH if uid == 0 else USER_PATH,
    }
    if "TERM" in os.environ:
        environment["TERM"] = os.environ["TERM"]
    return environment


def _debug(message: str) -> None:
    sys.stderr.write(f"[{os.getpid()}] {message}\n")
    sys.stderr.flush()


def _warn(message: str) -> None:
    sys.stderr.write(f"Warning: {message}\n")
    sys.stderr.flush()


@functools.cache
def _prctl() -> Callable[[int, int], None]:
    # ctypes is imported here, not at the top: the master's --help and
    # `account` paths must stay light.
    import ctypes

    function = ctypes.CDLL(None, use_errno=True).prctl
    function.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    function.restype = ctypes.c_int

    def prctl(option: int, value: int) -> None:
        if function(option, value, 0, 0, 0) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"prctl({option}): {os.strerror(errno)}")

    return prctl


def _check_dropped(credentials: Credentials | None) -> None:
    if credentials is None:
        return
    uid, gid = credentials
    if gid is not None and (os.getresgid() != (gid, gid, gid) or os.getgroups() != [gid]):
        raise PermissionError(f"still not group {gid} only after setgid")
    if uid is not None:
        if os.getresuid() != (uid, uid, uid):
            raise PermissionError(f"still not user {uid} after setuid")
        if uid != 0:
            try:
                os.setuid(0)
            except PermissionError:
                return
            raise PermissionError("setuid(0) succeeded after dropping privileges")


def _child_setup(
    name: str, credentials: Credentials | None, cwd: str, isolate: bool
) -> Callable[[], None]:
    prctl = _prctl()
    parent = os.getpid()

    def setup() -> None:
        # Runs in the child after setgroups/setgid/setuid, before execve;
        # subprocess then closes every fd but the contract's.
        try:
            prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
            if os.getppid() != parent:  # the master died before the line above
                os._exit(1)
            if isolate:
                prctl(PR_SET_NO_NEW_PRIVS, 1)
            _check_dropped(credentials)
            # After the drop, so that the child may enter it on its own rights.
            os.chdir(cwd)
        except Exception as e:
            os.write(2, f"lacme: can't start {name}: {e}\n".encode(errors="replace"))
            raise

    return setup


def spawn(
    argv: Sequence[str],
    credentials: Credentials | None,
    *,
    cwd: str = "/",
    pass_fds: Sequence[int] = (),
    stdin: Stream = subprocess.DEVNULL,
    stdout: Stream = subprocess.DEVNULL,
    env: Mapping[str, str] | None = None,
    isolate: bool = True,
) -> subprocess.Popen[bytes]:
    """Start ARGV (argv[0] looked up in the clean PATH) as described above.

    stderr is the master's.  ENV is added to the clean environment.
    """
    if not argv:
        raise ValueError("empty command")
    environment = _clean_environment(credentials)
    environment.update(env or {})
    uid = credentials.uid if credentials is not None else None
    gid = credentials.gid if credentials is not None else None
    try:
        return subprocess.Popen(
            list(argv),
            stdin=stdin,
            stdout=stdout,
            env=environment,
            close_fds=True,
            pass_fds=tuple(pass_fds),
            umask=CHILD_UMASK,
            start_new_session=isolate,
            user=uid,
            group=gid,
            extra_groups=None if gid is None else [gid],
            preexec_fn=_child_setup(argv[0], credentials, cwd, isolate),
        )
    except subprocess.SubprocessError as e:
        raise SpawnError(f"can't start {argv[0]} (see above)") from e
    except OSError as e:
        raise SpawnError(f"can't execute {argv[0]}: {e.strerror}") from e


def stop(proc: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT, grace: float = 0.0) -> int:
    """Reap PROC, giving it GRACE seconds to exit on its own, then SIGTERM,
    then SIGKILL after TIMEOUT seconds; return its exit status."""
    try:
        return proc.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    proc.terminate()
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def spawn_accountd(
    command: str, credentials: Credentials | None, *, config: str, quiet: bool, debug: bool
) -> tuple[socket.socket, subprocess.Popen[bytes]]:
    """Start `COMMAND --stdio ...` on a socketpair; return the master's end.

    Each word of COMMAND is %-expanded for the child's identity.  The master
    closes the socket to end the conversation, then `stop(proc, grace=...)`.
    """
    environment = _clean_environment(credentials)
    identity = specifiers.Identity(*_ids(credentials), environment)
    argv = [specifiers.expand(word, identity) for word in command.split()]
    if not argv:
        raise ValueError("[accountd] command is empty")
    argv.append("--stdio")
    if config:
        argv.append(f"--config={config}")
    if quiet:
        argv.append("--quiet")
    if debug:
        argv.append("--debug")
    extra = {"GPG_TTY": os.environ["GPG_TTY"]} if "GPG_TTY" in os.environ else {}
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with theirs:
            proc = spawn(
                argv,
                credentials,
                stdin=theirs.fileno(),
                stdout=theirs.fileno(),
                env=extra,
                isolate=False,
            )
    except BaseException:
        ours.close()
        raise
    if debug:
        _debug(f"Forking lacme-accountd, child PID {proc.pid}")
    return ours, proc


def connect_accountd(path: str) -> socket.socket:
    """Connect to accountd's socket PATH, refusing one others could tamper with."""
    directory = os.path.dirname(path) or "."
    try:
        mode = os.stat(directory).st_mode
    except OSError as e:
        raise SpawnError(f"can't stat {directory}: {e.strerror}") from e
    if mode & 0o022:
        raise SpawnError(f"insecure permissions on {directory}: writable by group or others")
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise SpawnError(f"can't stat {path}: {e.strerror} (is lacme-accountd running?)") from e
    if mode & 0o066:
        raise SpawnError(f"insecure permissions on {path}: open to group or others")
    if not stat.S_ISSOCK(mode):
        raise SpawnError(f"{path} is not a socket")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise SpawnError(
            f"can't connect to {path}: {e.strerror} (is lacme-accountd running?)"
        ) from e
    return sock


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
    raise ValueError(f"[webserver] listen: invalid address {item!r}")


def parse_listen(value: str) -> list[ListenAddress]:
    """The comma- or space-separated addresses of [webserver] listen.

    `IPV4[:PORT]`, `[IPV6][:PORT]` (port 80 by default) or the absolute path
    of a UNIX socket; raise ValueError naming the first bad one.
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


@contextmanager
def challenge_setup(
    webserver: WebserverSettings,
    client: Credentials | None,
    www: Credentials | None,
    debug: bool,
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
    its place is refused.
    """
    addresses = parse_listen(webserver.listen)
    stack = ExitStack()
    try:
        if webserver.challenge_directory:
            directory = specifiers.expand(webserver.challenge_directory)
            _use_directory(stack, directory, debug)
        elif addresses:
            directory = _serve(stack, addresses, webserver, client, www, debug)
        else:
            raise ValueError("[webserver] challenge-directory is required when listen is empty")
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
        _debug(f"Using existing webserver on {directory}")
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise SpawnError(f"can't open challenge directory {directory}: {e.strerror}") from e
    stack.callback(os.close, fd)
    # O_EXCL rather than flock: lacme 0.8.2 locks this way (so a Perl run and
    # ours keep apart too), and it works over NFS.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        lock = os.open(LOCK_FILE, flags, 0o600, dir_fd=fd)
    except FileExistsError:
        raise SpawnError(
            f"challenge directory {directory} is in use: {LOCK_FILE} exists"
            " (another lacme is running, or one was killed: then empty the directory)"
        ) from None
    except OSError as e:
        raise SpawnError(f"can't create {directory}/{LOCK_FILE}: {e.strerror}") from e
    stack.callback(_unlink_at, fd, directory, LOCK_FILE)
    try:
        os.write(lock, f"{os.getpid()}\n".encode())
    finally:
        os.close(lock)
    if any(name != LOCK_FILE for name in os.listdir(fd)):
        raise SpawnError(f"refusing to use non-empty challenge directory {directory}")
    # Only now: what was there before is not ours to remove.
    stack.callback(_empty_directory, fd, directory)


def _unlink_at(fd: int, directory: str, name: str) -> None:
    try:
        os.unlink(name, dir_fd=fd)
    except OSError as e:
        _warn(f"can't remove {directory}/{name}: {e.strerror}")


def _empty_directory(fd: int, directory: str) -> None:
    for name in os.listdir(fd):
        if name == LOCK_FILE:
            continue
        try:
            if stat.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                shutil.rmtree(name, dir_fd=fd)
            else:
                os.unlink(name, dir_fd=fd)
        except OSError as e:
            _warn(f"can't remove {directory}/{name}: {e.strerror}")


def _serve(
    stack: ExitStack,
    addresses: list[ListenAddress],
    webserver: WebserverSettings,
    client: Credentials | None,
    www: Credentials | None,
    debug: bool,
) -> str:
    argv = webserver.command.split()
    if not argv:
        raise ValueError("[webserver] command is empty")
    directory = tempfile.mkdtemp(prefix="acme-challenge.")
    stack.callback(_remove_tree, directory)
    os.chmod(directory, 0o755)  # noqa: S103 - the webserver user reads, whoever it is
    if client is not None and client.uid is not None:
        os.chown(directory, client.uid, -1)
    firewall: list[tuple[socket.AddressFamily, str, int]] = []
    for address in addresses:
        with socket.socket(address.family, socket.SOCK_STREAM) as sock:
            _bind(stack, sock, address)
            fd = sock.fileno()
            proc = spawn(
                webserver_contract.argv(argv, fd),
                www,
                cwd=directory,
                pass_fds=(fd,),
                env=webserver_contract.environment(debug),
            )
            stack.callback(_stop_webserver, proc, address, debug)
            if debug:
                _debug(f"Forking ACME webserver bound to {address}, child PID {proc.pid}")
            if isinstance(address.address, tuple):
                firewall.append((address.family, *address.address))
                mapped = _ipv4_mapped(sock, address.address)
                if mapped is not None:
                    firewall.append((socket.AF_INET, *mapped))
    if webserver.iptables:
        _open_firewall(stack, firewall, debug)
    return directory


def _remove_tree(directory: str) -> None:
    try:
        shutil.rmtree(directory)
    except OSError as e:
        _warn(f"can't remove {directory}: {e.strerror}")


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
            _warn(f"not removing {path}: it is no longer the socket lacme created")
    except FileNotFoundError:
        pass
    except OSError as e:
        _warn(f"can't remove {path}: {e.strerror}")


def _stop_webserver(proc: subprocess.Popen[bytes], address: ListenAddress, debug: bool) -> None:
    status = proc.poll()
    if status is not None:
        _warn(f"the webserver on {address} had exited with status {status}")
        return
    if debug:
        _debug(f"Shutting down ACME webserver bound to {address}")
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
    """Save the tables, arrange for their restoration, then let the addresses in."""
    for family, program, everywhere, prefix in (
        (socket.AF_INET, "iptables", "0.0.0.0", 32),  # noqa: S104
        (socket.AF_INET6, "ip6tables", "::", 128),
    ):
        mine = [(host, port) for f, host, port in targets if f == family]
        if not mine:
            continue
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
                        *("--state", states, "-j", "ACCEPT"),
                    ]
                )


def _restore_firewall(program: str, saved: bytes, debug: bool) -> None:
    if debug:
        _debug(f"Restoring {program}")
    try:
        _run([f"{SBIN}/{program}-restore", "-c"], saved)
    except SpawnError as e:
        _warn(f"{e}: the {program} rules lacme added may still be there")
