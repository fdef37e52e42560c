"""lacme.notify.run with real commands: how each one ends, what it runs
in, and that a command that hangs, or is running when the master is
interrupted, goes with its whole process group."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from lacme import notify
from support.proc import alive, living_members
from support.system import wait_for

pytestmark = pytest.mark.process

# A shell that records its pid and that of a child, then waits for the child.
HANG = "echo $$ > {pids}; sleep 600 & echo $! >> {pids}; wait"


def pids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()]


def all_gone(record: Path) -> None:
    """The shell and child whose pids are in RECORD are dead, and so is
    anything else of the shell's process group."""
    shell, child = pids(record)
    # SIGKILL takes effect in the orphaned child on its own time.
    wait_for(
        lambda: not alive(child) and not living_members(shell),
        f"process group {shell} to die",
        timeout=10,
    )


@pytest.mark.parametrize(
    ("command", "outcome"),
    [
        ("true", None),
        ("exit 3", "exited with value 3"),
        ("exit 1", "exited with value 1"),
        ("kill -SEGV $$", "was killed by SIGSEGV"),
        # No name in the signal module: SIGRTMIN + 1.
        ("kill -35 $$", "was killed by signal 35"),
    ],
)
def test_how_a_command_ends(command: str, outcome: str | None) -> None:
    assert notify.run(command, {"PATH": notify.ROOT_PATH}, 30) == outcome


def test_the_command_reads_nothing_in_a_group_of_its_own(tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    # The shell's blocked signals, read by itself: while it waits for a
    # child, dash has none.
    own_mask = 'while read -r key value; do [ "$key" = SigBlk: ] && echo $value; done'
    # Field 5 of /proc/PID/stat: the process group.
    command = (
        f"{{ {own_mask} < /proc/$$/status; readlink /proc/$$/fd/0; echo $$; "
        f"cut -d' ' -f5 /proc/$$/stat; }} > {seen}"
    )
    assert notify.run(command, {"PATH": notify.ROOT_PATH}, 30) is None
    blocked, stdin, pid, group = seen.read_text().split()
    # The master holds signals back while it starts the shell, not the shell.
    assert int(blocked, 16) == 0
    assert stdin == "/dev/null"
    assert group == pid


def test_a_command_that_hangs_is_killed_with_its_group(tmp_path: Path) -> None:
    record = tmp_path / "pids"
    outcome = notify.run(HANG.format(pids=record), {"PATH": notify.ROOT_PATH}, 1)
    assert outcome == "timed out after 1 s (notify-timeout), its process group killed"
    all_gone(record)


def test_a_group_deaf_to_sigterm_gets_sigkill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notify, "GRACE", 0.5)
    record = tmp_path / "pids"
    command = "trap '' TERM; " + HANG.format(pids=record)
    outcome = notify.run(command, {"PATH": notify.ROOT_PATH}, 1)
    assert outcome == "timed out after 1 s (notify-timeout), its process group killed"
    all_gone(record)


class Stop(BaseException):
    """What the master's Interrupted is to lacme.notify: anything raised."""


@pytest.fixture
def stop_on_sigusr1() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise Stop

    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR1, previous)


@pytest.mark.usefixtures("stop_on_sigusr1")
def test_an_interruption_kills_the_group(tmp_path: Path) -> None:
    record = tmp_path / "pids"
    # The command interrupts the master itself once its child runs.
    command = f"echo $$ > {record}; sleep 600 & echo $! >> {record}; kill -USR1 $PPID; wait"
    with pytest.raises(Stop):
        notify.run(command, {"PATH": notify.ROOT_PATH}, 60)
    all_gone(record)
