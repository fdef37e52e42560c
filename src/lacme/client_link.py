"""The master's end of a client session (lacme.client_contract `session`):
lacme's own client, started once for a run, asked for lookups and orders
on its control socket, several orders under way at once.

    ClientSession(process, control, name, on_step)
        .lend(kind, fd)                  the accountd stream, the challenge directory
        .holding                         what those were lent from, ended after the client
        .ask(command, arguments, stdin, order) -> id
        .wait(ids) -> id                 one of IDS answered
        .wait_or_placed(ids) -> id | None  or an order placed
        .result(id) -> Result            and forget it
        .close()                         ask nothing more, let it finish

ON_STEP(id, step) is told, as it comes, each step an order reaches:
ORDERED when its URL is announced, then those of the client (STEPS).

What the client sends is checked line by line (decode_answer) and read no
further than MAX_SESSION_LINE a line; a client that breaks the contract,
or exits, is killed, and every request still unanswered fails with a
Result that says why, so that the master never waits on it.  Requests are
small and the client reads them as they come: they are sent blocking, as
the stop signals interrupt that too.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import NamedTuple

from lacme import log
from lacme.client_contract import (
    MAX_SESSION_LINE,
    ORDERING,
    Announce,
    Answer,
    ContractError,
    OrderSettings,
    Request,
    Step,
    decode_answer,
    encode_descriptor,
    encode_request,
)
from lacme.privdrop import stop, wait

READ_SIZE = 1 << 16
# A client that closes the session as it exits takes no longer than this.
EXIT_GRACE = 1.0
NO_ORDER_SETTINGS = OrderSettings()
# The step of an order whose URL the client announced: the server has it.
ORDERED = "ordered"


class Result(NamedTuple):
    """What a request came to: as a one-shot client's exit STATUS, OUTPUT
    and stderr MESSAGES, and the URL of the order it announced, if any."""

    status: int
    output: bytes
    messages: tuple[str, ...]
    url: str | None


class ClientSession:
    """The client PROCESS (NAME, its program), its end of the control
    socket CONTROL; ON_STEP told of each order's steps."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        control: socket.socket,
        name: str,
        on_step: Callable[[int, str], None] = lambda request_id, step: None,
    ) -> None:
        self.process = process
        self.control = control
        self.name = name
        self.on_step = on_step
        self.broken: str | None = None
        self.lent: set[str] = set()  # the kinds of descriptor lent, each once
        # What the master lent it from (the accountd conversation), to end
        # once the client has stopped.
        self.holding = ExitStack()
        # Whether an order was placed: the server is there, and the account.
        self.reached = False
        self._next_id = 0
        self._commands: dict[int, str] = {}  # the requests unanswered
        self._urls: dict[int, str] = {}
        self._results: dict[int, Result] = {}
        self._buffered = b""

    def lend(self, kind: str, fd: int) -> None:
        """The descriptor FD, as KIND (lacme.client_contract DESCRIPTORS)."""
        self.lent.add(kind)
        if self.broken is None:
            try:
                socket.send_fds(self.control, [encode_descriptor(kind)], [fd])
            except OSError as e:
                self._break(f"can't lend it the {kind}: {e.strerror}")

    def ask(
        self,
        command: str,
        arguments: Sequence[str] = (),
        stdin: bytes = b"",
        order: OrderSettings = NO_ORDER_SETTINGS,
    ) -> int:
        """Send a request; its id."""
        request_id = self._next_id
        self._next_id += 1
        self._commands[request_id] = command
        if self.broken is None:
            request = Request(request_id, command, tuple(arguments), stdin, order)
            try:
                self.control.sendall(encode_request(request))
            except OSError as e:
                self._break(f"can't send it a request: {e.strerror}")
        else:
            self._fail(request_id)
        return request_id

    def wait(self, ids: set[int]) -> int:
        """Read what the client sends until one of IDS has its result; that one."""
        while True:
            done = ids & self._results.keys()
            if done:
                return min(done)
            self._receive()

    def wait_or_placed(self, ids: set[int]) -> int | None:
        """As wait(), or until an order is placed (`reached`): then None."""
        while not self.reached:
            done = ids & self._results.keys()
            if done:
                return min(done)
            self._receive()
        return None

    def result(self, request_id: int) -> Result:
        return self._results.pop(request_id)

    def url(self, request_id: int) -> str | None:
        """The order URL request ID announced so far, if any."""
        return self._urls.get(request_id)

    def _receive(self) -> None:
        """One line from the client, taken into the results; or the session
        broken if that is not what the contract allows."""
        while b"\n" not in self._buffered:
            if len(self._buffered) > MAX_SESSION_LINE:
                self._break(f"it sent a line over {MAX_SESSION_LINE} bytes")
                return
            try:
                data = self.control.recv(READ_SIZE)
            except OSError as e:
                self._break(f"can't read from it: {e.strerror}")
                return
            if not data:
                status = wait(self.process, EXIT_GRACE)
                if status is None:
                    self._break("it ended the session")
                else:
                    self._break(f"it exited with status {status}")
                return
            self._buffered += data
        line, self._buffered = self._buffered.split(b"\n", 1)
        try:
            message = decode_answer(line + b"\n")
        except ContractError as e:
            self._break(f"it sent what the contract refuses: {e}")
            return
        command = self._commands.get(message.id)
        if command is None:
            self._break(f"it answered request {message.id}, which is not under way")
        elif isinstance(message, Announce):
            if command not in ORDERING or message.id in self._urls:
                self._break(f"it sent an order URL for request {message.id}")
            else:
                self._urls[message.id] = message.url
                self.reached = True
                self.on_step(message.id, ORDERED)
        elif isinstance(message, Step):
            if message.id not in self._urls:
                self._break(f"it sent a step for request {message.id}, which placed no order")
            else:
                self.on_step(message.id, message.step)
        else:
            self._answered(message)

    def _answered(self, answer: Answer) -> None:
        del self._commands[answer.id]
        self._results[answer.id] = Result(
            answer.status,
            answer.output,
            tuple(log.printable(message) for message in answer.messages),
            self._urls.pop(answer.id, None),
        )

    def _break(self, why: str) -> None:
        """End the session: the client is killed, and what it had not
        answered fails."""
        self.broken = f"the client {self.name} broke off the session: {why}"
        stop(self.process, grace=0)
        for request_id in list(self._commands):
            self._fail(request_id)

    def _fail(self, request_id: int) -> None:
        self._commands.pop(request_id, None)
        self._results[request_id] = Result(
            1, b"", (f"Error: {self.broken}",), self._urls.pop(request_id, None)
        )

    def close(self) -> None:
        """Ask nothing more: the client finishes what it was asked, and exits."""
        self.control.close()
