"""lacme.leftovers: an owner is gone only when it provably is."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from lacme.leftovers import Owner, current, gone, left_by, of

pytestmark = pytest.mark.unit


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def owner_of(pid: int) -> Owner:
    owner = of(pid)
    assert owner is not None
    return owner


def test_this_process_is_an_owner_that_is_not_gone() -> None:
    me = owner_of(os.getpid())
    assert current() == me
    assert Owner.parse(me.tag) == me
    assert me.tag.startswith(f"lacme-{os.getpid()}-")
    assert not gone(me)


def test_a_killed_process_is_gone_once_reaped_and_as_a_zombie(
    sleeper: subprocess.Popen[bytes],
) -> None:
    owner = owner_of(sleeper.pid)
    assert not gone(owner)
    sleeper.kill()
    # Not reaped yet: a zombie, whose pid still names it.
    os.waitid(os.P_PID, sleeper.pid, os.WEXITED | os.WNOWAIT)
    assert gone(owner)
    sleeper.wait()
    assert gone(owner)


def test_the_same_pid_started_at_another_time_is_another_process(
    sleeper: subprocess.Popen[bytes],
) -> None:
    owner = owner_of(sleeper.pid)
    assert gone(owner._replace(start=owner.start + 1))


@pytest.mark.parametrize("field", ["pidns", "boot"])
def test_an_owner_of_another_pid_namespace_or_boot_is_never_gone(field: str) -> None:
    """Its pid means nothing here, even unused (another machine's, on NFS)."""
    me = owner_of(os.getpid())
    unused = me._replace(pid=2**22 + 1)  # above pid_max's ceiling
    assert gone(unused)
    elsewhere = {
        "pidns": unused._replace(pidns=unused.pidns + 1),
        "boot": unused._replace(boot="0" * 32),
    }
    assert not gone(elsewhere[field])


@pytest.mark.parametrize(
    "text",
    [
        "lacme-1-2-3",
        "lacme-1-2-3-" + "g" * 32,
        "lacme-1-2-3-" + "a" * 31,
        "lacme:1:2:3:" + "a" * 32,
        "lacme-1-2-3-" + "a" * 32 + "\n",
        " lacme-1-2-3-" + "a" * 32,
        "1234",
        "",
    ],
)
def test_what_is_no_tag(text: str) -> None:
    assert Owner.parse(text) is None


def test_the_warning_names_the_pid() -> None:
    owner = Owner(1234, 5, 6, "a" * 32)
    assert left_by(owner) == "left by lacme process 1234, which is no longer running"
