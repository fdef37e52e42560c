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
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import signal
import subprocess
from collections.abc import Mapping

from cryptography import x509

from lacme import certificate, log
from lacme.certificate import CertificateError
from lacme.config import CertSection

# Debian's defaults (login.defs ENV_SUPATH and ENV_PATH), where lacme 0.8.2
# gave /usr/bin:/bin alone.
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
USER_PATH = "/usr/local/bin:/usr/bin:/bin"
UNSAFE_ENVIRONMENT = ("IFS", "CDPATH", "ENV", "BASH_ENV")
GRACE = 5.0  # seconds between SIGTERM and SIGKILL


def environment(
    section: CertSection, leaf: x509.Certificate, inherited: Mapping[str, str], root: bool
) -> dict[str, str]:
    """What SECTION's command runs with, LEAF being the certificate installed,
    INHERITED the master's environment; ROOT: the master runs as root.
    Every LACME_* variable is set, empty when its setting is unset, so that
    a script under `set -u` needs no test."""
    env = {k: v for k, v in inherited.items() if k not in UNSAFE_ENVIRONMENT}
    env["PATH"] = ROOT_PATH if root else USER_PATH
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


def after_install(section: CertSection) -> bool:
    """Run SECTION's command, if any, for the certificate just installed;
    False, after an error, if it failed."""
    if section.notify is None:
        return True
    try:
        leaf = certificate.read_certificate(section.certificate_paths()[0])
    except CertificateError as e:
        log.say(f"[{section.name}] Error: {e}: the notification command is not run")
        return False
    log.say(f"Running notification command `{section.notify}`")
    env = environment(section, leaf, os.environ, os.geteuid() == 0)
    failure = run(section.notify, env, section.notify_timeout)
    if failure is not None:
        log.say(f"[{section.name}] Error: notification command {failure}")
        return False
    return True
