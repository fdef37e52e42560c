"""Telling what a killed master left behind from what a running one still
uses: the master tags what outlives it if it is killed (its firewall rules,
its lock in `challenge-directory`, the name of its temporary challenge
directory) with an Owner, and the next master removes only what is tagged
with an owner that is provably gone.

    Owner(pid, start, pidns, boot), owner.tag, Owner.parse(text) -> Owner | None
    of(pid) -> Owner | None, current() -> Owner | None
    gone(owner) -> bool
    left_by(owner) -> str

A pid alone proves nothing: it is reused, means another process in another
pid namespace, and another machine's process when `challenge-directory` is
on NFS.  So an owner is the pid with the process's start time, its pid
namespace and the boot it ran in; only an owner of this boot and pid
namespace whose pid is unused, a zombie's or a later process's is gone.
What was made by anyone else (lacme 0.8.2, whose lock holds a bare pid and
whose rules are untagged) is never judged gone.
"""

from __future__ import annotations

import errno
import os
import re
from typing import NamedTuple

_TAG = re.compile(r"lacme-([0-9]{1,10})-([0-9]{1,20})-([0-9]{1,20})-([0-9a-f]{32})")
# /proc/PID/stat after the command's closing parenthesis: the state is the
# first field there (the 3rd in proc(5)), the start time the 20th (the 22nd).
_STATE, _START = 0, 19


class Owner(NamedTuple):
    """A master process, told apart from every other process of the machine."""

    pid: int
    start: int  # clock ticks after boot (proc(5), /proc/PID/stat starttime)
    pidns: int  # the inode of its pid namespace
    boot: str  # /proc/sys/kernel/random/boot_id without its hyphens

    @property
    def tag(self) -> str:
        """The owner as text, in a firewall rule's comment, a lock, a file name."""
        return f"lacme-{self.pid}-{self.start}-{self.pidns}-{self.boot}"

    @classmethod
    def parse(cls, text: str) -> Owner | None:
        """The owner TEXT is the tag of, or None."""
        match = _TAG.fullmatch(text)
        if match is None:
            return None
        return cls(int(match[1]), int(match[2]), int(match[3]), match[4])


def _here() -> tuple[int, str] | None:
    """This process's pid namespace and boot; None when /proc is not this
    pid namespace's (then no pid found there means anything)."""
    try:
        if os.readlink("/proc/self") != str(os.getpid()):
            return None
        pidns = os.stat("/proc/self/ns/pid").st_ino
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            boot = f.read().strip().replace("-", "")
    except (OSError, ValueError):
        return None
    return (pidns, boot) if re.fullmatch("[0-9a-f]{32}", boot) else None


def _process(pid: int) -> tuple[str, int] | None:
    """The state and start time of process PID, None if there is none
    (OSError if that can't be told)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ESRCH):
            return None
        raise
    fields = data.rpartition(b")")[2].split()
    return fields[_STATE].decode("ascii"), int(fields[_START])


def of(pid: int) -> Owner | None:
    """Process PID as an owner; None if /proc does not say."""
    here = _here()
    if here is None:
        return None
    try:
        process = _process(pid)
    except (OSError, ValueError, IndexError):
        return None
    return None if process is None else Owner(pid, process[1], *here)


def current() -> Owner | None:
    """This process as an owner; None if /proc does not say (then nothing
    is tagged)."""
    return of(os.getpid())


def gone(owner: Owner) -> bool:
    """Whether OWNER is provably no longer running."""
    if _here() != (owner.pidns, owner.boot):
        return False
    try:
        process = _process(owner.pid)
    except (OSError, ValueError, IndexError):
        return False
    if process is None:
        return True
    state, start = process
    return state in ("Z", "X") or start != owner.start


def left_by(owner: Owner) -> str:
    """The end of the warning that says what was removed."""
    return f"left by lacme process {owner.pid}, which is no longer running"
