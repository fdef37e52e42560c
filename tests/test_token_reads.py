"""When the server has fetched the tokens (lacme.token_reads), with real
inotify on a temporary directory, and how the client's looks at an order
follow it (AcmeSession.wait_for_order on a fake clock)."""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from lacme import token_reads
from lacme.acme import POLL_SOON, AcmeSession
from lacme.acme_http import Patience, Response
from lacme.acme_resources import Order
from support.clock import FakeClock

pytestmark = pytest.mark.unit


def publish(directory: Path, reads: token_reads.Tokens, token: str) -> Path:
    path = directory / token
    # As the client writes it: a close after writing is not a fetch.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, b"key authorization")
    os.close(fd)
    reads.publish(token)
    return path


def test_every_token_read_ends_the_wait(tmp_path: Path) -> None:
    watch = token_reads.watch(str(tmp_path))
    assert watch is not None
    try:
        reads, others = watch.tokens(), watch.tokens()
        first = publish(tmp_path, reads, "t1")
        second = publish(tmp_path, reads, "t2")
        third = publish(tmp_path, others, "t3")
        assert not reads.wait(0)
        first.read_bytes()
        (tmp_path / "not-a-token").write_text("x")
        (tmp_path / "not-a-token").read_text()
        assert not reads.wait(0)
        assert watch.read == {"t1"}
        third.read_bytes()  # another order's
        assert not reads.wait(0)
        assert others.wait(60)
        second.read_bytes()
        assert reads.wait(60)
        assert reads.wait(0)  # and from then on at once
    finally:
        watch.close()


def test_orders_waiting_in_threads_each_see_their_tokens(tmp_path: Path) -> None:
    watch = token_reads.watch(str(tmp_path))
    assert watch is not None
    try:
        orders = [watch.tokens() for _ in range(4)]
        paths = [publish(tmp_path, tokens, f"t{i}") for i, tokens in enumerate(orders)]
        results: list[bool] = []
        threads = [threading.Thread(target=lambda t=t: results.append(t.wait(60))) for t in orders]
        for thread in threads:
            thread.start()
        for path in paths:
            path.read_bytes()
        for thread in threads:
            thread.join()
        assert results == [True] * 4
    finally:
        watch.close()


def test_nothing_to_watch_is_none(tmp_path: Path) -> None:
    assert token_reads.watch(str(tmp_path / "absent")) is None


class Answer:
    """What wait_for_order reads of a response: the order, and a Retry-After."""

    def __init__(self, status: str, retry_after: float | None = None) -> None:
        self.order = {"status": status, "finalize": "https://ca.test/finalize"}
        self.wait = retry_after
        self.status = 200

    def json(self) -> dict[str, Any]:
        return self.order

    def retry_after(self) -> float | None:
        return self.wait

    def problem(self) -> None:
        return None


class ScriptedOrder(AcmeSession):
    """An order whose looks and finalize get ANSWERS in turn."""

    def __init__(self, clock: FakeClock, answers: list[Answer]) -> None:
        super().__init__(
            "https://ca.test/dir",
            context=ssl.create_default_context(),
            sign=lambda _: "",
            alg="RS256",
            jwk={},
            thumbprint="",
            kid="https://ca.test/acct/1",
            patience=Patience(30, clock=clock, sleep=clock.sleep),
            warn=lambda _: None,
        )
        self.answers = answers

    def post(self, url: str, payload: dict[str, Any] | None = None, **_: Any) -> Response:
        return cast(Response, self.answers.pop(0))


def fetched_at_once(asked: list[float]) -> Callable[[float], bool]:
    """Tokens the server has fetched already, recording what each wait was for."""

    def wait(seconds: float) -> bool:
        asked.append(seconds)
        return True

    return wait


def test_fetched_tokens_bring_one_early_look_then_the_schedule() -> None:
    clock = FakeClock()
    asked: list[float] = []
    session = ScriptedOrder(
        clock,
        [
            Answer("pending"),  # the early look: validation not done yet
            Answer("ready"),
            Answer("processing"),  # finalize
            Answer("processing"),
            Answer("valid"),
        ],
    )
    order = session.wait_for_order(
        "https://ca.test/order/1",
        Order.parse({"status": "pending"}),
        b"csr",
        fetched_at_once(asked),
    )
    assert order.status == "valid"
    assert asked == [0.1]  # once, bounded by the schedule's first wait
    # The schedule goes on (0.2), and processing is first looked at soon.
    assert clock.slept == [0.2, POLL_SOON, 0.1]


def test_without_fetches_the_schedule_alone() -> None:
    clock = FakeClock()
    session = ScriptedOrder(clock, [Answer("pending"), Answer("valid")])
    session.wait_for_order("https://ca.test/order/1", Order.parse({"status": "pending"}), b"csr")
    assert clock.slept == [0.1, 0.2]


def test_a_retry_after_outweighs_the_fetches() -> None:
    clock = FakeClock()
    asked: list[float] = []
    session = ScriptedOrder(clock, [Answer("pending", retry_after=3), Answer("valid")])
    session.wait_for_order(
        "https://ca.test/order/1",
        Order.parse({"status": "pending"}),
        b"csr",
        fetched_at_once(asked),
    )
    assert asked == [0.1]
    assert clock.slept == [3]
