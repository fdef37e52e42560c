"""A certificate section's `notify` command, for the master: what it is
told, how long it may take, and how it is run.

It runs with `/bin/sh -c`, as the master (root), once the section's
certificate is installed, typically to reload the services using it.  Its
environment is the master's without the variables that change how the
shell reads its input, with root's PATH on Debian (`nginx` and `apachectl`
live in /usr/sbin), and LACME_* variables saying what was installed.  It
reads nothing (stdin is /dev/null) and runs in a process group of its own,
so that a command that hangs can be stopped whole: after `notify-timeout`
seconds the group gets SIGTERM, then SIGKILL once the shell has exited or
GRACE seconds later.  A process that left the group (setsid, a daemon)
is its own.

lacme runs from a timer and exits, and a section whose certificate is valid
is skipped: a command that failed once would never run again, and the
services would keep the old certificate while every later run succeeds.  So
a notification is recorded as pending in a small JSON file beside the
certificate (`state_path`) from the moment the certificate is installed
until the command exits 0; each later run that walks the section runs it
again (`again`), due or not, and fails while it fails.  A run stopped while
the command runs leaves it pending too.  A certificate installed meanwhile
is notified once, for itself: what was pending was about the one it
replaced.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cryptography import x509

from lacme import certificate, files, log, strict
from lacme.certificate import CertificateError
from lacme.config import CertSection

# Debian's defaults (login.defs ENV_SUPATH and ENV_PATH), where lacme 0.8.2
# gave /usr/bin:/bin alone.
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
USER_PATH = "/usr/local/bin:/usr/bin:/bin"
UNSAFE_ENVIRONMENT = ("IFS", "CDPATH", "ENV", "BASH_ENV")
GRACE = 5.0  # seconds between SIGTERM and SIGKILL
STATE_SUFFIX = ".notify"
# What a notify command may start with that names no program to look up:
# POSIX sh's special and regular builtins and reserved words.
_SHELL_WORDS = (
    ". : [ alias bg break case cd command continue echo eval exec exit export false fg "
    "for getopts hash if jobs kill printf pwd read readonly return set shift test times "
    "trap true type ulimit umask unalias unset until wait while { ! ("
)
SHELL_WORDS = frozenset(_SHELL_WORDS.split())
SHELL_SYNTAX = re.compile(r"[=$`;|&<>(){}*?\[~]")


@dataclass(frozen=True)
class Pending:
    """A notification not done yet: since when, and how its last attempt
    ended, after "the last attempt" (None: it did not end, the run that
    made it was stopped)."""

    since: datetime.datetime
    last: str | None


def state_path(certificate_path: str) -> str:
    return certificate_path + STATE_SUFFIX


def load(path: str) -> Pending | None:
    """The notification pending at PATH; None if there is none.  A record
    that can't be read is pending all the same, since it was written."""
    try:
        written = os.stat(path).st_mtime
    except OSError:
        return None
    try:
        with open(path, "rb") as f:
            data = json.load(f)
        since = datetime.datetime.fromisoformat(data["since"])
        last = data["last"]
        if since.tzinfo is None or not isinstance(last, str | None):
            raise ValueError("not a pending notification")
    except (OSError, ValueError, TypeError, KeyError):
        return Pending(datetime.datetime.fromtimestamp(written, datetime.UTC), "is unknown")
    return Pending(since.astimezone(datetime.UTC), last)


def save(path: str, pending: Pending) -> None:
    """Record PENDING at PATH, atomically; OSError if that fails."""
    data = {"since": pending.since.isoformat(), "last": pending.last}
    files.replace(path, json.dumps(data).encode() + b"\n", 0o644)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def path(root: bool) -> str:
    """The PATH the command runs with; ROOT: the master runs as root."""
    return ROOT_PATH if root else USER_PATH


def _program(command: str) -> str | None:
    """The program the /bin/sh COMMAND starts with; None if that cannot be
    told without running the shell (a builtin, a keyword, an assignment,
    an expansion).  ValueError if COMMAND does not split."""
    words = shlex.split(command)
    if not words or words[0] in SHELL_WORDS or SHELL_SYNTAX.search(words[0]):
        return None
    return words[0]


def program_problem(command: str, path: str) -> str | None:
    """Why the program the /bin/sh COMMAND starts with would not be found
    with PATH, or may not run (program_refused); None if it would, or if
    that cannot be told without running the shell."""
    try:
        program = _program(command)
    except ValueError as e:
        return f"notify = {command}: not a shell command ({e})"
    if program is None:
        return None
    if "/" in program:
        if os.path.isdir(program) or not os.access(program, os.X_OK):
            return f"notify = {command}: can't execute {program}"
    elif shutil.which(program, path=path) is None:
        return f"notify = {command}: {program} not found in PATH {path}"
    refused = program_refused(command, path)
    return None if refused is None else f"notify = {command}: refused: {refused}"


def program_refused(command: str, path: str) -> str | None:
    """The program COMMAND starts with, found with PATH, and what is wrong,
    as "PROGRAM: WHAT", if others than root (or the user lacme runs as)
    could change it (lacme.strict); None if they can't, or if it is not
    known or not found (the shell says so)."""
    try:
        program = _program(command)
    except ValueError:
        return None
    found = program if program is None or "/" in program else shutil.which(program, path=path)
    if found is None:
        return None
    try:
        problem = strict.problem(found)
    except OSError:  # missing, say: the shell can't run it either, and says why
        return None
    return None if problem is None else f"{found}: {problem}"


def environment(
    section: CertSection, leaf: x509.Certificate, inherited: Mapping[str, str], root: bool
) -> dict[str, str]:
    """What SECTION's command runs with, LEAF being the certificate installed,
    INHERITED the master's environment; ROOT: the master runs as root.
    Every LACME_* variable is set, empty when its setting is unset, so that
    a script under `set -u` needs no test."""
    env = {k: v for k, v in inherited.items() if k not in UNSAFE_ENVIRONMENT}
    env["PATH"] = path(root)
    env["LACME_SECTION"] = section.name
    env["LACME_CERTIFICATE"] = section.certificate or ""
    env["LACME_CERTIFICATE_CHAIN"] = section.certificate_chain or ""
    env["LACME_NAMES"] = " ".join(section.identifiers)
    env["LACME_NOT_AFTER"] = leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    return env


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:  # a real-time signal
        return f"signal {number}"


def _exits(pidfd: int, timeout: float) -> bool:
    """Whether the process of PIDFD has exited or does within TIMEOUT seconds."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def _signal_group(group: int, signum: int) -> None:
    # Gone already, or only members the master may not signal left.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)


def _wait(shell: subprocess.Popen[bytes], timeout: int) -> bool:
    """Whether SHELL exits within TIMEOUT seconds; if not, its process group
    is stopped.  SHELL stays unreaped: its pid, which is its group's id,
    can't be another's yet."""
    pidfd = os.pidfd_open(shell.pid)
    try:
        if _exits(pidfd, timeout):
            return True
        _signal_group(shell.pid, signal.SIGTERM)
        _exits(pidfd, GRACE)
        _signal_group(shell.pid, signal.SIGKILL)
        return False
    finally:
        os.close(pidfd)


def run(command: str, env: Mapping[str, str], timeout: int) -> str | None:
    """Run COMMAND with `/bin/sh -c` as described above, for at most TIMEOUT
    seconds; None if it exits 0, else how it failed (after "notification
    command").  Interrupted, or anything else raised meanwhile, kills its
    process group before it goes on."""
    # Every signal held back until the shell is known: one raised as it
    # starts (Interrupted) would leave it running.  Not in the shell.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        shell = subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdin=subprocess.DEVNULL,
            env=env,
            process_group=0,
            preexec_fn=functools.partial(signal.pthread_sigmask, signal.SIG_SETMASK, mask),
        )
    except OSError as e:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        return f"could not be started: {e.strerror}"
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        raise
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        finished = _wait(shell, timeout)
    except BaseException:
        _signal_group(shell.pid, signal.SIGKILL)
        raise
    finally:
        status = shell.wait()
    if not finished:
        return f"timed out after {timeout} s (notify-timeout), its process group killed"
    if status < 0:
        return f"was killed by {_signal_name(-status)}"
    return None if status == 0 else f"exited with value {status}"


def after_install(section: CertSection, now: datetime.datetime) -> bool:
    """Run SECTION's command, if any, for the certificate installed at NOW;
    False, after an error, if it failed: it is pending then."""
    path = state_path(section.certificate_paths()[0])
    if section.notify is None:
        # What was pending was for the certificate replaced; a record that
        # can't be removed is the next run's to drop, or to warn of.
        with contextlib.suppress(OSError):
            _remove(path)
        return True
    pending = Pending(now, None)
    # Recorded first, so that a run stopped meanwhile leaves it pending.  If
    # it can't be, a failure tries again and says so.
    with contextlib.suppress(OSError):
        save(path, pending)
    return _attempt(section, section.notify, path, pending, None)


def again(section: CertSection, info: Callable[[str], None]) -> bool:
    """Run SECTION's command again if it is pending, for the certificate
    installed; False, after an error, if it fails again.  INFO says what
    --quiet silences."""
    path = state_path(section.certificate_paths()[0])
    pending = load(path)
    if pending is None:
        return True
    name = section.name
    if section.notify is None:
        try:
            _remove(path)
        except OSError as e:
            log.say(f"[{name}] Warning: can't remove {path}: {e.strerror}")
            return True
        info(f"[{name}] No notify command any more: the pending notification is dropped")
        return True
    log.say(
        f"[{name}] Notification pending since {pending.since:%Y-%m-%d %H:%M:%S} UTC, "
        f"the last attempt {pending.last or 'did not end'}: running it again"
    )
    done = f"[{name}] Notification command succeeded, no longer pending"
    return _attempt(section, section.notify, path, pending, lambda: info(done))


def _attempt(
    section: CertSection,
    command: str,
    path: str,
    pending: Pending,
    done: Callable[[], None] | None,
) -> bool:
    """Run COMMAND, PENDING at PATH: the record goes if it succeeds (then
    DONE is called), says how it failed otherwise."""
    name = section.name
    try:
        leaf = certificate.read_certificate(section.certificate_paths()[0])
    except CertificateError as e:
        log.say(f"[{name}] Error: {e}: the notification command stays pending")
        return False
    env = environment(section, leaf, os.environ, os.geteuid() == 0)
    refused = program_refused(command, env["PATH"])
    if refused is not None:
        failure: str | None = f"refused: {refused}"
    else:
        log.say(f"Running notification command `{command}`")
        failure = run(command, env, section.notify_timeout)
    if failure is None:
        try:
            _remove(path)
        except OSError as e:
            log.say(
                f"[{name}] Warning: can't remove {path}: {e.strerror}: "
                "the notification command runs again on the next run"
            )
            return True
        if done is not None:
            done()
        return True
    try:
        save(path, Pending(pending.since, failure))
    except OSError as e:
        log.say(
            f"[{name}] Error: notification command {failure}; can't save {path}: "
            f"{e.strerror}, so it won't run again"
        )
        return False
    log.say(f"[{name}] Error: notification command {failure}: it runs again on the next run")
    return False
