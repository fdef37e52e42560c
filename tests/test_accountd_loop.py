"""Unit tests of lacme-accountd's event loop (lacme.accountd._Server): what
goes wrong with one connection, or with accepting one, stops nothing else."""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from lacme.accountd import ACCEPT_PAUSE, Log, RequestSigner, _Server
from lacme.accountkey import AccountKey
from support.accountd import request_line

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

pytestmark = pytest.mark.unit

OWN = {"crv": "P-256", "kty": "EC", "x": "eA", "y": "eQ"}


class FailingListener(socket.socket):
    """A listening socket whose accept(2) fails with FAILURE."""

    def __init__(self, failure: int) -> None:
        super().__init__(socket.AF_UNIX, socket.SOCK_STREAM)
        self.failure = failure

    def accept(self) -> tuple[socket.socket, str]:
        raise OSError(self.failure, os.strerror(self.failure))


def broken_sign(signing_input: bytes) -> bytes:
    raise RuntimeError("the token was pulled out")


@contextlib.contextmanager
def serving(failure: int = errno.EMFILE) -> Iterator[_Server]:
    """An event loop whose accept(2) fails with FAILURE, and whose key fails
    to sign."""
    signer = RequestSigner(AccountKey("ES256", OWN, broken_sign), None, Log(Log.VERBOSE))
    with selectors.DefaultSelector() as selector, FailingListener(failure) as listener:
        selector.register(listener, selectors.EVENT_READ)
        yield _Server(selector, listener, signer)


def listening(server: _Server) -> bool:
    return server.listener in [key.fileobj for key in server.selector.get_map().values()]


@pytest.mark.parametrize("failure", [errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM])
def test_accept_short_of_resources_pauses_and_is_logged_once(
    failure: int, capsys: pytest.CaptureFixture[str]
) -> None:
    with serving(failure) as server:
        server.accept()
        assert not listening(server)
        assert server.resume_at is not None
        server.resume_accepting()
        assert listening(server)
        server.accept()
        assert not listening(server)
    assert capsys.readouterr().err == (
        f"Error: accept: {os.strerror(failure)}: not accepting connections "
        f"for {ACCEPT_PAUSE:g} s or until one closes\n"
    )


def test_accept_of_an_aborted_connection_goes_on_at_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with serving(errno.ECONNABORTED) as server:
        server.accept()
        server.accept()
        assert listening(server)
        assert server.resume_at is None
    assert capsys.readouterr().err == (
        "Error: accept: Software caused connection abort: connection dropped\n"
    )


class FullSelector(selectors.DefaultSelector):
    """A selector that can watch its first file only, as epoll(7) out of
    watches or memory."""

    def __init__(self, failure: int) -> None:
        super().__init__()
        self.failure = failure

    def register(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        if self.get_map():
            raise OSError(self.failure, os.strerror(self.failure))
        return super().register(fileobj, events, data)


@pytest.mark.parametrize(
    ("failure", "then"),
    [
        (errno.ENOMEM, f"not accepting connections for {ACCEPT_PAUSE:g} s or until one closes"),
        (errno.ENOSPC, "connection dropped"),
    ],
)
def test_a_connection_the_selector_cannot_watch_is_dropped(
    failure: int, then: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ours, theirs = socket.socketpair()
    with serving() as server, ours:
        server.selector = FullSelector(failure)
        server.selector.register(server.listener, selectors.EVENT_READ)
        server.accept_conversation(theirs)
        assert theirs.fileno() == -1
        assert ours.recv(1) == b""
        assert listening(server) == (failure == errno.ENOSPC)
        server.selector.close()
    assert capsys.readouterr().err.splitlines() == [
        "[0] Accepted new connection",
        f"Error: watching a new connection: {os.strerror(failure)}: {then}",
    ]


def test_a_conversation_closing_resumes_accepting() -> None:
    ours, theirs = socket.socketpair()
    with serving() as server, ours:
        server.accept_conversation(theirs)
        server.accept()
        assert not listening(server)
        ours.close()
        server.step(server.selector.get_key(theirs).data, selectors.EVENT_READ)
        assert listening(server)
        assert server.resume_at is None


def test_an_error_of_ours_ends_that_conversation_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ours, theirs = socket.socketpair()
    other, others = socket.socketpair()
    with serving() as server, ours, other:
        server.accept_conversation(theirs)
        server.accept_conversation(others)
        ours.sendall(request_line("ES256"))
        server.step(server.selector.get_key(theirs).data, selectors.EVENT_READ)
        assert ours.recv(1 << 16).endswith(b"}\r\n")  # the greeting
        assert ours.recv(1) == b""  # and no signature
        assert theirs.fileno() == -1
        assert server.selector.get_key(others)
    assert capsys.readouterr().err.splitlines()[-2:] == [
        "[0] NOSIGN [internal error: RuntimeError: the token was pulled out]",
        "[0] Connection terminated",
    ]
