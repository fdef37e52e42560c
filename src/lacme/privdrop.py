"""Starting a program unprivileged: how the master starts every child.

Holds nothing and touches nothing but the child it starts.  The master runs
as root; everything it starts runs as a fresh program (fork and execve
through subprocess, never a forked copy of the master's memory running
Python code beyond the few checks below) with:

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

What a child leaves behind ends with it.  PR_SET_PDEATHSIG is not
inherited, and a child may fork, call setsid and fork again, so that
neither its process group nor its session holds what it started.  So the
master is a child subreaper (PR_SET_CHILD_SUBREAPER, `adopt_orphans`):
whatever a descendant leaves orphaned is reparented to the master instead
of init, whatever session or group it moved to, and stays its child.  Once
a child is reaped, `end_orphans(uid)` kills every child of the master
running as that uid (real, effective, saved and filesystem ids), reaps it
and looks again, until none is left: a process that dies orphans its own
children to the master before it can be reaped, and none can fork once
killed, so the tree ends generation by generation.  The uid is what tells
a child's descendants from other orphans (those of accountd, of a
`notify` command): a child dropped to its own uid can't change it
(PR_SET_NO_NEW_PRIVS, no capabilities), so the caller ends a uid's
orphans only when no other child of its runs as that uid.  A cgroup or a
PID namespace would need CAP_SYS_ADMIN or a writable cgroup tree, which
lacme.service does not give (RestrictNamespaces, ProtectControlGroups).

What a child writes is read up to a bound (`exchange`), past which the
child is killed: a child may write without end, the master must not hold
it all.

Interface:

    Credentials, resolve_credentials(user, group, section) -> Credentials | None
    child_ids(credentials) -> (uid, gid)
    clean_environment(credentials) -> dict[str, str]
    spawn(argv, credentials, *, cwd="/", pass_fds=(), stdin=DEVNULL,
          stdout=DEVNULL, env=None, isolate=True) -> Popen[bytes]
    wait(proc, timeout) -> int | None
    stop(proc, timeout=STOP_TIMEOUT, grace=0.0) -> int
    adopt_orphans()
    end_orphans(uid) -> int
    exchange(proc, data, limit) -> bytes
    access_errors(credentials, [(path, mode), ...]) -> [None | strerror, ...]

Configuration mistakes raise errors.ConfigError, failures to start a child
SpawnError (which the master's other set-up code raises too); both carry a
one-line message naming the culprit.

The master must be single-threaded when it calls spawn (the child runs a
preexec function between fork and exec).
"""

from __future__ import annotations

import functools
import grp
import os
import pwd
import selectors
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any, NamedTuple

from lacme.errors import ConfigError
from lacme.strict import user_name

Stream = int | IO[Any] | None

STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL
READ_SIZE = 1 << 16
USER_PATH = "/usr/bin:/bin"
ROOT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
CHILD_UMASK = 0o022
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
# Signals the master turns into exceptions; held back while ending orphans.
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})


class SpawnError(Exception):
    """Something could not be started or set up; the message says what."""


class OutputTooLong(SpawnError):
    """A child wrote more on its stdout than its reader takes (exchange)."""


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
            raise ConfigError(f"[{section}] user: no such user {user!r}") from None
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise ConfigError(f"[{section}] group: no such group {group!r}") from None
    if os.geteuid() != 0:
        # setgroups, which spawn calls whenever a group is set, and setuid
        # to another user take root.
        me = user_name(os.geteuid())
        raise ConfigError(
            f"[{section}] user = {user}, group = {group}: only root can start the {section} "
            f"as them, and lacme runs as {me}: run lacme as root, or set both empty to run "
            f"the {section} as {me}"
        )
    return Credentials(uid, gid)


def access_errors(
    credentials: Credentials | None, checks: Sequence[tuple[str, int]]
) -> list[str | None]:
    """For each (PATH, MODE) of CHECKS, whether a child started with
    CREDENTIALS could access(2) PATH for MODE (os.R_OK, W_OK, X_OK): None
    if so, else the reason (strerror).

    Asked of the kernel as that child, not guessed from mode bits (access
    control lists, read-only mounts, each directory's search permission,
    security modules all count): in a forked copy of this process that
    drops to CREDENTIALS as spawn does, makes access(2) calls and nothing
    else, and exits without unwinding anything of the master's (the stop
    signals stay blocked there).  Seteuid in the master itself would do
    too, but a master that failed to switch back would go on as the user."""
    if not checks:
        return []
    access = _access()
    if credentials is None:
        return [_strerror(access(path, mode)) for path, mode in checks]
    readable, writable = os.pipe()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's coverage is not collected
            status = 1
            try:
                os.close(readable)
                uid, gid = credentials
                if gid is not None:
                    os.setgroups([gid])
                    os.setgid(gid)
                if uid is not None:
                    os.setuid(uid)
                _check_dropped(credentials)
                codes = " ".join(str(access(path, mode)) for path, mode in checks)
                os.write(writable, codes.encode())
                status = 0
            finally:
                os._exit(status)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        os.close(writable)
    try:
        with os.fdopen(readable, "rb") as answer:
            data = answer.read(READ_SIZE)
    finally:
        _, status = os.waitpid(pid, 0)
    words = data.split()
    if status != 0 or len(words) != len(checks) or not all(word.isdigit() for word in words):
        raise SpawnError(f"can't check access as uid {child_ids(credentials)[0]}")
    return [_strerror(int(word)) for word in words]


def _strerror(code: int) -> str | None:
    return None if code == 0 else os.strerror(code)


@functools.cache
def _access() -> Callable[[str, int], int]:
    """access(2), returning 0 or the errno; os.access tells no errno."""
    import ctypes

    function = ctypes.CDLL(None, use_errno=True).access
    function.argtypes = [ctypes.c_char_p, ctypes.c_int]
    function.restype = ctypes.c_int

    def access(path: str, mode: int) -> int:
        return 0 if function(os.fsencode(path), mode) == 0 else ctypes.get_errno()

    return access


def child_ids(credentials: Credentials | None) -> tuple[int, int]:
    """The uid and gid a child started with CREDENTIALS runs as."""
    uid = credentials.uid if credentials is not None else None
    gid = credentials.gid if credentials is not None else None
    return (os.getuid() if uid is None else uid, os.getgid() if gid is None else gid)


def clean_environment(credentials: Credentials | None) -> dict[str, str]:
    """The environment a child started with CREDENTIALS gets, before the caller's additions."""
    uid, _ = child_ids(credentials)
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
    environment = clean_environment(credentials)
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


def wait(proc: subprocess.Popen[Any], timeout: float) -> int | None:
    """PROC's exit status once it has exited, within TIMEOUT seconds; None
    if it has not by then.  Popen.wait(timeout) polls with sleeps of up to
    50 ms, which a run's end would spend on each child: a pidfd wakes up
    as soon as the child exits."""
    if proc.returncode is not None:
        return proc.returncode
    try:
        pidfd = os.pidfd_open(proc.pid)
    except ProcessLookupError:  # exited and reaped already: wait() has its status
        return proc.wait()
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(pidfd, selectors.EVENT_READ)
            if not selector.select(timeout):
                return None
    finally:
        os.close(pidfd)
    return proc.wait()


def stop(proc: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT, grace: float = 0.0) -> int:
    """Reap PROC, giving it GRACE seconds to exit on its own, then SIGTERM,
    then SIGKILL after TIMEOUT seconds; return its exit status."""
    status = wait(proc, grace)
    if status is not None:
        return status
    proc.terminate()
    status = wait(proc, timeout)
    if status is not None:
        return status
    proc.kill()
    return proc.wait()


def adopt_orphans() -> None:
    """Make this process the reaper of what its descendants orphan (see above)."""
    _prctl()(PR_SET_CHILD_SUBREAPER, 1)


def _children_running_as(uid: int) -> list[int]:
    parent = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", encoding="utf-8", errors="replace") as status:
                fields = dict(line.partition(":")[::2] for line in status)
        except OSError:  # exited, and reaped by its parent, since listdir
            continue
        if int(fields["PPid"]) == parent and {int(i) for i in fields["Uid"].split()} == {uid}:
            found.append(int(entry))
    return found


def end_orphans(uid: int) -> int:
    """Kill and reap every child of this process running as UID, and those
    this orphans in turn, until none is left; how many (see above).  The
    stop signals are held back meanwhile, delivered afterwards."""
    ended = 0
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        while orphans := _children_running_as(uid):
            for pid in orphans:
                os.kill(pid, signal.SIGKILL)
            for pid in orphans:
                # Only this process reaps its children: the pid is still theirs.
                os.waitpid(pid, 0)
            ended += len(orphans)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return ended


def exchange(proc: subprocess.Popen[bytes], data: bytes | None, limit: int, name: str) -> bytes:
    """Write DATA on PROC's stdin while reading its stdout, until PROC exits;
    at most LIMIT bytes, past which PROC is killed and reaped, and
    OutputTooLong names NAME and the limit.  Either pipe may be absent;
    both are closed on return.  What PROC left running may hold stdout
    open: once PROC has exited, only what is in the pipe is read."""
    output = bytearray()
    pending = memoryview(data or b"")
    reading = proc.stdout is not None
    pidfd = os.pidfd_open(proc.pid)
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(pidfd, selectors.EVENT_READ)
            if proc.stdin is not None and pending:
                os.set_blocking(proc.stdin.fileno(), False)
                selector.register(proc.stdin.fileno(), selectors.EVENT_WRITE)
            elif proc.stdin is not None:
                proc.stdin.close()
            if proc.stdout is not None:
                os.set_blocking(proc.stdout.fileno(), False)
                selector.register(proc.stdout.fileno(), selectors.EVENT_READ)
            exited = False
            while not exited and (reading or pending):
                for key, _ in selector.select():
                    if key.fd == pidfd:
                        exited = True
                    elif proc.stdout is not None and key.fd == proc.stdout.fileno():
                        reading = _drain(key.fd, output, limit)
                    else:
                        pending = _feed(key.fd, pending)
                        if not pending and proc.stdin is not None:
                            selector.unregister(key.fd)
                            proc.stdin.close()  # the end of DATA
            if reading and proc.stdout is not None:
                _drain(proc.stdout.fileno(), output, limit)
    except OutputTooLong:
        proc.kill()
        proc.wait()
        raise OutputTooLong(f"{name} wrote more than {limit} bytes on stdout: killed") from None
    finally:
        os.close(pidfd)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()
    return bytes(output)


def _drain(fd: int, output: bytearray, limit: int) -> bool:
    """Read what non-blocking FD holds into OUTPUT; whether it is still open."""
    while True:
        try:
            chunk = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        output += chunk
        if len(output) > limit:
            raise OutputTooLong


def _feed(fd: int, pending: memoryview) -> memoryview:
    """Write what non-blocking FD takes of PENDING; what is left.  Nothing
    is left for a reader that closed its end."""
    try:
        return pending[os.write(fd, pending) :]
    except BlockingIOError:
        return pending
    except BrokenPipeError:
        return pending[:0]
