"""What a newOrder run shows while it waits (lacme.progress): at a
terminal its main steps, timed by the clock it is given; nothing when
stderr is no terminal; every step with -v."""

from __future__ import annotations

import os
import pty
from collections.abc import Iterator
from contextlib import ExitStack
from typing import TextIO

import pytest

from lacme.progress import Progress
from support.clock import FakeClock

pytestmark = pytest.mark.unit


@pytest.fixture
def terminal() -> Iterator[tuple[TextIO, int]]:
    """A pty: its slave as a text stream, and the master's descriptor."""
    master, slave = pty.openpty()
    with ExitStack() as stack:
        stack.callback(os.close, master)
        stream = stack.enter_context(open(slave, "w", encoding="utf-8"))
        yield stream, master


def run(progress: Progress, clock: FakeClock) -> None:
    progress.begin("www", "ordering 2 names")
    clock.sleep(0.25)
    progress.step("www", "order placed", detail=True)
    progress.step("www", "validating 2 names...")
    clock.sleep(15.5)
    progress.step("www", "finalizing...")
    clock.sleep(1)
    progress.step("www", "installed")


def read_all(fd: int) -> str:
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 1 << 16).decode()
    except BlockingIOError:
        return ""


def test_at_a_terminal_the_main_steps_with_their_seconds(terminal: tuple[TextIO, int]) -> None:
    stream, master = terminal
    clock = FakeClock()
    run(Progress(stream, verbose=False, quiet=False, clock=clock), clock)
    assert read_all(master).splitlines() == [
        "[www] validating 2 names... (0.2 s)",
        "[www] finalizing... (15.8 s)",
        "[www] installed (16.8 s)",
    ]


def test_quiet_at_a_terminal_shows_nothing(terminal: tuple[TextIO, int]) -> None:
    stream, master = terminal
    clock = FakeClock()
    run(Progress(stream, verbose=False, quiet=True, clock=clock), clock)
    assert read_all(master) == ""


def piped(*, verbose: bool, quiet: bool) -> str:
    """What the run shows on a pipe."""
    read_end, write_end = os.pipe()
    with open(write_end, "w") as stream:
        clock = FakeClock()
        run(Progress(stream, verbose=verbose, quiet=quiet, clock=clock), clock)
    with open(read_end) as lines:
        return lines.read()


def test_nothing_when_not_at_a_terminal() -> None:
    assert piped(verbose=False, quiet=False) == ""


def test_verbose_shows_every_step_anywhere() -> None:
    assert piped(verbose=True, quiet=True).splitlines() == [
        "[www] ordering 2 names (0.0 s)",
        "[www] order placed (0.2 s)",
        "[www] validating 2 names... (0.2 s)",
        "[www] finalizing... (15.8 s)",
        "[www] installed (16.8 s)",
    ]
