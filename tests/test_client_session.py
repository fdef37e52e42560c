"""A client session (lacme.client_contract `session`, lacme.client_link):
the codec both ways, what the master refuses of what the client sends, and
a client that breaks off the session, each request then failing on its own."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from lacme import config
from lacme.client_contract import (
    ACCOUNTD_FD,
    DIRECTORY,
    MAX_CHAIN_OUTPUT,
    MAX_MESSAGE,
    MAX_MESSAGES,
    MAX_REQUEST,
    MAX_SESSION_LINE,
    NEW_ORDER,
    VALIDATE,
    VALIDATING,
    Announce,
    Answer,
    ContractError,
    OrderSettings,
    Request,
    Step,
    decode_answer,
    decode_request,
    encode_announce,
    encode_answer,
    encode_descriptor,
    encode_request,
    encode_step,
)
from lacme.client_link import ORDERED, ClientSession
from lacme.errors import ConfigError


@pytest.mark.unit
def test_requests_and_answers_come_out_as_they_went_in() -> None:
    request = Request(
        7,
        NEW_ORDER,
        ("a.example.test", "192.0.2.1"),
        b"\x30\x82csr",
        OrderSettings("Root X1", "shortlived", "aki.serial", "https://ca.test/order/1"),
    )
    assert decode_request(encode_request(request)) == request
    lookup = Request(8, DIRECTORY)
    assert decode_request(encode_request(lookup)) == lookup
    validate = Request(9, VALIDATE, ("a.example.test",), order=OrderSettings(profile="classic"))
    assert decode_request(encode_request(validate)) == validate
    assert decode_request(encode_descriptor(ACCOUNTD_FD)) == ACCOUNTD_FD
    answer = Answer(7, 75, b'{"rateLimited": {"retryAfter": 60}}\n', ("Warning: x", "error"))
    assert decode_answer(encode_answer(answer)) == answer
    announce = Announce(7, "https://ca.test/order/1")
    assert decode_answer(encode_announce(announce)) == announce
    step = Step(7, VALIDATING)
    assert decode_answer(encode_step(step)) == step


def line(obj: object) -> bytes:
    return json.dumps(obj).encode() + b"\n"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("data", "refusal"),
    [
        (b"[]\n", "not a JSON object"),
        (b'{"id": 1, "command": "directory"}', "not a line"),
        (b"x" * MAX_REQUEST + b"\n", "not a line"),
        (line({"id": 1, "command": "account"}), "unknown session request: 'account'"),
        (line({"id": -1, "command": "directory"}), "no request id"),
        (line({"id": True, "command": "directory"}), "no request id"),
        (line({"id": 1, "command": "newOrder", "stdin": "!!"}), "stdin is not base64url"),
        (line({"id": 1, "command": "newOrder", "order": {"order-fd": 3}}), "order keys"),
        (line({"id": 1, "command": "newOrder", "order": {"profile": 3}}), "not strings"),
        (line({"id": 1, "command": "newOrder", "arguments": [1]}), "not a list of strings"),
        (line({"descriptor": "stdin"}), "unknown descriptor"),
    ],
)
def test_the_client_refuses_what_is_no_request(data: bytes, refusal: str) -> None:
    with pytest.raises(ContractError, match=refusal):
        decode_request(data)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("data", "refusal"),
    [
        (b"x" * MAX_SESSION_LINE + b"\n", "not a line"),
        (line({"id": "1", "status": 0, "output": "", "messages": []}), "no request id"),
        (line({"id": 1, "status": 256, "output": "", "messages": []}), "no exit status"),
        (line({"id": 1, "status": 0, "output": b"".hex(), "messages": "x"}), "messages"),
        (line({"id": 1, "status": 0, "messages": []}), "no output"),
        (
            line({"id": 1, "status": 0, "output": "x" * (MAX_CHAIN_OUTPUT + 1), "messages": []}),
            "output over",
        ),
        (
            line({"id": 1, "status": 1, "output": "", "messages": ["x"] * (MAX_MESSAGES + 1)}),
            "at most",
        ),
        (
            line({"id": 1, "status": 1, "output": "", "messages": ["x" * (MAX_MESSAGE + 1)]}),
            "a message over",
        ),
        (line({"id": 1, "orderUrl": "ftp://ca.test/order"}), "not an order URL"),
        (line({"id": 1, "orderUrl": "https://ca.test/\u00e9"}), "not an order URL"),
        (line({"id": 1, "orderUrl": "https://ca.test/o", "status": 0}), "not a string"),
        (line({"id": 1, "step": "issuing"}), "unknown step: 'issuing'"),
        (line({"id": 1, "step": "validating", "status": 0}), "unknown step"),
    ],
)
def test_the_master_refuses_what_is_no_answer(data: bytes, refusal: str) -> None:
    with pytest.raises(ContractError, match=refusal):
        decode_answer(data)


@pytest.fixture
def hostile_session(tmp_path: Path) -> Iterator[tuple[ClientSession, Path]]:
    """A session with a stand-in client that runs the Python statements the
    test writes into its script (with `control`, its socket, and `read()`,
    the next request)."""
    script = tmp_path / "client.py"
    ours, theirs = socket.socketpair()
    with theirs:
        process = subprocess.Popen(
            [sys.executable, str(script), str(theirs.fileno())], pass_fds=(theirs.fileno(),)
        )
    session = ClientSession(process, ours, "stand-in")
    try:
        yield session, script
    finally:
        session.close()
        process.kill()
        process.wait()


def stand_in(script: Path, body: str) -> None:
    script.write_text(
        textwrap.dedent(
            """\
            import json, socket, sys, time
            control = socket.socket(fileno=int(sys.argv[1]))
            requests = control.makefile("rb")
            def read():
                return json.loads(requests.readline())
            def send(obj):
                control.sendall(json.dumps(obj).encode() + b"\\n")
            """
        )
        + textwrap.dedent(body)
    )


def ask_two(session: ClientSession) -> tuple[int, int]:
    return session.ask(DIRECTORY), session.ask(NEW_ORDER, ["a.example.test"], b"csr")


@pytest.mark.process
@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("control.shutdown(socket.SHUT_RDWR)\ntime.sleep(60)\n", "it ended the session"),
        ("sys.exit(3)\n", "it exited with status 3"),
        (
            'control.sendall(b"not json\\n")\ntime.sleep(60)\n',
            "it sent what the contract refuses: not JSON: Expecting value: "
            "line 1 column 1 (char 0)",
        ),
        (
            'send({"id": 99, "status": 0, "output": "", "messages": []})\ntime.sleep(60)\n',
            "it answered request 99, which is not under way",
        ),
        (
            'send({"id": 0, "orderUrl": "https://ca.test/o"})\ntime.sleep(60)\n',
            "it sent an order URL for request 0",
        ),
        (
            'send({"id": 1, "step": "validating"})\ntime.sleep(60)\n',
            "it sent a step for request 1, which placed no order",
        ),
        (
            f'control.sendall(b"x" * {MAX_SESSION_LINE + 1})\ntime.sleep(60)\n',
            f"it sent a line over {MAX_SESSION_LINE} bytes",
        ),
    ],
)
def test_a_client_breaking_off_the_session_fails_each_request(
    hostile_session: tuple[ClientSession, Path], body: str, why: str
) -> None:
    session, script = hostile_session
    stand_in(script, "read(); read()\n" + body)
    lookup, order = ask_two(session)
    assert session.wait({lookup, order}) == lookup
    result = session.result(lookup)
    assert result.status == 1
    assert result.messages == (f"Error: the client stand-in broke off the session: {why}",)
    assert session.wait({order}) == order
    assert session.result(order).status == 1
    # Killed and reaped, and what is asked of it later fails at once.
    assert session.process.returncode is not None
    later = session.ask(DIRECTORY)
    assert session.wait({later}) == later
    assert session.result(later).status == 1


@pytest.mark.process
def test_answers_in_any_order_with_the_announced_url(
    hostile_session: tuple[ClientSession, Path],
) -> None:
    session, script = hostile_session
    stand_in(
        script,
        """\
        read(); read()
        send({"id": 1, "orderUrl": "https://ca.test/order/1"})
        send({"id": 1, "status": 0, "output": "chain", "messages": ["Warning: \\u001b[2J"]})
        send({"id": 0, "status": 0, "output": "{}", "messages": []})
        """,
    )
    lookup, order = ask_two(session)
    assert session.wait({lookup, order}) == order
    result = session.result(order)
    assert (result.status, result.output, result.url) == (0, b"chain", "https://ca.test/order/1")
    # What the client says is shown escaped.
    assert result.messages == ("Warning: \\x1b[2J",)
    assert session.wait({lookup}) == lookup
    assert session.result(lookup).output == b"{}"


@pytest.mark.process
def test_a_dry_run_announces_its_order_too(hostile_session: tuple[ClientSession, Path]) -> None:
    session, script = hostile_session
    stand_in(
        script,
        """\
        read()
        send({"id": 0, "orderUrl": "https://ca.test/order/1"})
        send({"id": 0, "step": "validating"})
        send({"id": 0, "status": 1, "output": "", "messages": []})
        """,
    )
    steps: list[tuple[int, str]] = []
    session.on_step = lambda request, step: steps.append((request, step))
    request = session.ask(VALIDATE, ["a.example.test"])
    assert session.wait_or_placed({request}) is None
    assert session.reached
    assert session.wait({request}) == request
    assert session.result(request).url == "https://ca.test/order/1"
    assert steps == [(request, ORDERED), (request, VALIDATING)]


@pytest.mark.unit
def test_parallel_orders_setting(tmp_path: Path) -> None:
    path = tmp_path / "lacme.conf"
    path.write_text("parallel-orders = 10\n")
    assert config.load(str(path)).parallel_orders == 10
    path.write_text("")
    assert config.load(str(path)).parallel_orders == config.DEFAULT_PARALLEL_ORDERS


@pytest.mark.unit
@pytest.mark.parametrize("text", ["0", "101", "-1", "4.5", "four", ""])
def test_parallel_orders_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "lacme.conf"
    path.write_text(f"parallel-orders = {text}\n")
    with pytest.raises(ConfigError) as refused:
        config.load(str(path))
    assert str(refused.value) == (
        f"{path}: parallel-orders = {text}: not a number from 1 to {config.MAX_PARALLEL_ORDERS}"
    )
