"""The master's end of its conversations with lacme-accountd: a spawned
accountd on a socketpair, or one already listening on a UNIX socket.

Holds no key and touches nothing but that socket and the accountd process
it starts (through lacme.privdrop); what is said on the socket is the
client's business (lacme.accountd_protocol), never the master's.

    running_accountd(command, credentials, *, config, quiet, debug)
        -> socket                             (context manager)
    spawn_accountd(command, credentials, *, config, quiet, debug)
        -> (socket, Popen[bytes])
    connect_accountd(path) -> socket

The accountd `command` is %-expanded "after privilege drop" (lacme(8)):
here the master expands it for the child's identity, uid, gid and the clean
environment the child gets (specifiers.Identity), which is what the child
would compute itself, without an extra interpreter in between, and with
expansion errors reported before anything is started.

Configuration mistakes raise errors.ConfigError (SpecifierError included), failures
SpawnError; both carry a one-line message naming the culprit.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from lacme import log, specifiers
from lacme.errors import ConfigError
from lacme.privdrop import Credentials, SpawnError, child_ids, clean_environment, spawn, stop
from lacme.socket_directory import InsecureDirectory, check_socket_directory

ACCOUNTD_GRACE = 5.0  # seconds accountd gets to exit once its conversation is over


def spawn_accountd(
    command: str, credentials: Credentials | None, *, config: str, quiet: bool, debug: bool
) -> tuple[socket.socket, subprocess.Popen[bytes]]:
    """Start `COMMAND --stdio ...` on a socketpair; return the master's end.

    Each word of COMMAND is %-expanded for the child's identity.  The caller
    ends the conversation by closing the socket, then stops PROC with some
    grace: running_accountd does both.
    """
    environment = clean_environment(credentials)
    identity = specifiers.Identity(*child_ids(credentials), environment)
    argv = [specifiers.expand(word, identity) for word in command.split()]
    if not argv:
        raise ConfigError("[accountd] command is empty")
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
        log.debug(f"Forking lacme-accountd, child PID {proc.pid}")
    return ours, proc


@contextmanager
def running_accountd(
    command: str, credentials: Credentials | None, *, config: str, quiet: bool, debug: bool
) -> Iterator[socket.socket]:
    """spawn_accountd for the duration of the block, yielding the master's end.

    On the way out, whatever the way out, the conversation ends (accountd
    reads EOF), then accountd gets ACCOUNTD_GRACE seconds to exit.
    """
    sock, proc = spawn_accountd(command, credentials, config=config, quiet=quiet, debug=debug)
    with ExitStack() as stack:
        # Last in, first out: the conversation ends, then accountd exits.
        stack.callback(stop, proc, grace=ACCOUNTD_GRACE)
        stack.callback(_hang_up, sock, debug)
        yield sock


def _hang_up(sock: socket.socket, debug: bool) -> None:
    if debug:
        log.debug("Shutting down lacme-accountd")
    with contextlib.suppress(OSError):  # accountd is gone already
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def connect_accountd(path: str) -> socket.socket:
    """Connect to accountd's socket PATH, refusing one others could tamper with."""
    try:
        check_socket_directory(path)
    except InsecureDirectory as e:
        raise SpawnError(
            f"insecure permissions on {e.directory}: writable by group or others"
        ) from e
    except OSError as e:
        raise SpawnError(f"can't stat {e.filename}: {e.strerror}") from e
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
