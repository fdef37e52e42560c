"""Inspecting processes through /proc: the process tree, and what one
process holds (open descriptors, status fields, environment).  PID "self"
is the calling process, as from a stand-in program the master started."""

from __future__ import annotations

import os
from pathlib import Path


def open_fds(pid: int | str = "self") -> set[int]:
    """The descriptors PID has open."""
    listed = {int(name) for name in os.listdir(f"/proc/{pid}/fd")}
    if pid != "self":
        return listed
    alive = set()
    for fd in listed:
        try:
            os.fstat(fd)
        except OSError:
            continue  # the one listdir used
        alive.add(fd)
    return alive


def status_fields(pid: int | str = "self") -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {name: value.strip() for name, _, value in (line.partition(":") for line in lines)}


def environment(pid: int | str = "self") -> dict[str, str]:
    """The environment PID was executed with."""
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode()
    return dict(item.split("=", 1) for item in raw.split("\0") if item)


def _stats() -> dict[int, list[str]]:
    """Every process's /proc/PID/stat fields after the parenthesised
    command name: state, ppid, pgrp, ..."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        found[int(entry.name)] = stat.rsplit(")", 1)[1].split()
    return found


def parents() -> dict[int, int]:
    """Every process's parent pid, zombies included."""
    return {pid: int(fields[1]) for pid, fields in _stats().items()}


def alive(pid: int) -> bool:
    """Whether PID is a process but a zombie."""
    fields = _stats().get(pid)
    return fields is not None and fields[0] != "Z"


def living_members(group: int) -> set[int]:
    """Pids of the processes of process group GROUP but zombies, which are
    dead (this machine's init may never reap them)."""
    return {pid for pid, fields in _stats().items() if int(fields[2]) == group and fields[0] != "Z"}


def children(parent: int) -> list[int]:
    """Pids of PARENT's children (zombies included)."""
    return [pid for pid, ppid in parents().items() if ppid == parent]


def descendants(ancestor: int) -> set[int]:
    """Pids of ANCESTOR's children, their children, and so on."""
    by_parent: dict[int, list[int]] = {}
    for pid, ppid in parents().items():
        by_parent.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    todo = [ancestor]
    while todo:
        for child in by_parent.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def running_as(uid: int, under: Path) -> set[int]:
    """Pids of the processes (but zombies) whose real uid is UID and whose
    command line or working directory names something under UNDER: those a
    test's run left, not the other runs' on this machine."""
    found = set()
    for pid, fields in _stats().items():
        if fields[0] == "Z":
            continue
        try:
            if int(status_fields(pid)["Uid"].split()[0]) != uid:
                continue
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except (OSError, KeyError):
            continue  # gone meanwhile
        if str(under) in cmdline or cwd == str(under) or cwd.startswith(f"{under}/"):
            found.add(pid)
    return found
