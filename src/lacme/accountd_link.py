"""The master's end of its conversations with lacme-accountd: a spawned
accountd on a socketpair, or one already listening on a UNIX socket.

Holds no key and touches nothing but that socket and the accountd process
it starts (through lacme.privdrop); what is said on the socket is the
client's business (lacme.accountd_protocol), never the master's, which only
waits for its first byte before lending it to a client.

    running_accountd(command, credentials, *, config, quiet, debug)
        -> socket                             (context manager)
    started_accountd(...) -> Started          (context manager, not waiting)
        .greeted() -> socket                  (waiting for the greeting)
    spawn_accountd(command, credentials, *, config, quiet, debug)
        -> (socket, Popen[bytes])
    connect_accountd(path) -> socket

The accountd `command` is %-expanded "after privilege drop" (lacme(8)):
here the master expands it for the child's identity, uid, gid and the clean
environment the child gets (specifiers.Identity), which is what the child
would compute itself, without an extra interpreter in between, and with
expansion errors reported before anything is started.

Configuration mistakes raise errors.ConfigError (SpecifierError included), failures
SpawnError; both carry a one-line message naming the culprit.  An accountd
that ends the conversation before its greeting raises AccountdFailed (a
SpawnError), which says whether accountd told why itself.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import stat
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from lacme import log, specifiers
from lacme.errors import ConfigError
from lacme.privdrop import (
    READ_SIZE,
    Credentials,
    SpawnError,
    child_ids,
    clean_environment,
    spawn,
    stop,
)
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
    with started_accountd(command, credentials, config=config, quiet=quiet, debug=debug) as started:
        yield started.greeted()


class Started:
    """An accountd started, on the master's end SOCK of its conversation."""

    def __init__(self, sock: socket.socket, proc: subprocess.Popen[bytes]) -> None:
        self.sock = sock
        self.proc = proc
        self.waited = False

    def greeted(self) -> socket.socket:
        """SOCK, once accountd has started the conversation; AccountdFailed
        if it ended it first."""
        self.waited = True
        if not _greets(self.sock):
            raise _failed(self.proc)
        return self.sock

    def settle(self) -> None:
        """Before the hang-up of an accountd never waited for: give it
        ACCOUNTD_GRACE seconds to greet, which it would otherwise find it
        can't (a broken pipe), and report as a failure of its own."""
        if not self.waited:
            with selectors.DefaultSelector() as selector:
                selector.register(self.sock, selectors.EVENT_READ)
                selector.select(ACCOUNTD_GRACE)


@contextmanager
def started_accountd(
    command: str, credentials: Credentials | None, *, config: str, quiet: bool, debug: bool
) -> Iterator[Started]:
    """As running_accountd, without waiting for the greeting: so that the
    master goes on while accountd starts, and waits (Started.greeted) only
    when the conversation is needed."""
    sock, proc = spawn_accountd(command, credentials, config=config, quiet=quiet, debug=debug)
    with ExitStack() as stack:
        # Last in, first out: the conversation ends, then accountd exits.
        stack.callback(stop, proc, grace=ACCOUNTD_GRACE)
        stack.callback(_hang_up, sock, debug)
        started = Started(sock, proc)
        stack.callback(started.settle)
        yield started


class AccountdFailed(SpawnError):
    """lacme-accountd ended the conversation before its greeting; REPORTED:
    it has said why on the master's stderr already, and nothing more need be."""

    def __init__(self, message: str, reported: bool = False) -> None:
        super().__init__(message)
        self.reported = reported


def _greets(sock: socket.socket) -> bool:
    """Whether accountd on SOCK starts the conversation, waiting for as long
    as it takes (a passphrase to type, an ssh connection).  Only peeked at:
    what it says is the client's to read.  The master waits rather than
    the client so that an accountd which fails is told of once, not again
    by the client that found no greeting and by the master that lost it."""
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except ConnectionResetError:
        return False


def _failed(proc: subprocess.Popen[bytes]) -> AccountdFailed:
    """Why PROC, which closed its conversation without a greeting, failed."""
    try:
        status = proc.wait(ACCOUNTD_GRACE)
    except subprocess.TimeoutExpired:
        return AccountdFailed("lacme-accountd closed the conversation without a greeting")
    if status > 0:
        # Its own error line, or its command's (ssh's), is on stderr already.
        return AccountdFailed(f"lacme-accountd exited with status {status}", reported=True)
    if status < 0:
        return AccountdFailed(f"lacme-accountd was killed by {signal.Signals(-status).name}")
    return AccountdFailed("lacme-accountd exited without a greeting")


def _hang_up(sock: socket.socket, debug: bool) -> None:
    if debug:
        log.debug("Shutting down lacme-accountd")
    with contextlib.suppress(OSError):  # accountd is gone already
        sock.shutdown(socket.SHUT_RDWR)
        # What nobody read (the greeting, when the client failed first)
        # would reach accountd as a reset, which it reports as a failure of
        # its own.  No more can come after the shutdown than its buffer holds.
        sock.setblocking(False)
        while sock.recv(READ_SIZE):
            pass
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
    # Before the permissions: those of a file that is no socket mean nothing.
    if not stat.S_ISSOCK(mode):
        kind = "a regular file" if stat.S_ISREG(mode) else "a device or FIFO"
        kind = "a directory" if stat.S_ISDIR(mode) else kind
        raise SpawnError(f"{path}: {kind}, not a socket (lacme-accountd --socket= makes one there)")
    if mode & 0o066:
        raise SpawnError(f"insecure permissions on {path}: open to group or others")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise SpawnError(
            f"can't connect to {path}: {e.strerror} (is lacme-accountd running?)"
        ) from e
    if not _greets(sock):
        sock.close()
        raise AccountdFailed(f"lacme-accountd on {path} closed the connection without a greeting")
    return sock
