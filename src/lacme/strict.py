"""sshd's StrictModes for what the master reads or runs as root: its
configuration and the programs of `notify`.

Whoever can change such a file runs commands as root (a certificate
section's `notify`, the [client] command).  So the file, and every entry
the kernel goes through to reach it (each directory from /, each symbolic
link and what it points to), must be owned by root, or by the user lacme
runs as, and writable by nobody else: no group or other write bit, except
on a sticky directory (such as /tmp), where others may add entries but not
replace one they do not own.  Access control lists are not read.

Links are followed, each checked on the way: the link itself (its owner,
and the directory holding it, which whoever may write could point it
elsewhere) and then its target, as the file read is the target's.

Nobody else being able to change any of them, what is checked is what is
read next, so a check before opening leaves no race.
"""

from __future__ import annotations

import errno
import os
import pwd
import stat

# As the kernel's MAXSYMLINKS: more links than that, and the path loops.
MAX_LINKS = 40


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _entry_problems(status: os.stat_result, euid: int) -> list[str]:
    problems = []
    if status.st_uid not in (0, euid):
        trusted = "root" if euid == 0 else f"root or {user_name(euid)}"
        problems.append(f"owned by {user_name(status.st_uid)}, not {trusted}")
    mode = status.st_mode
    sticky_directory = stat.S_ISDIR(mode) and mode & stat.S_ISVTX
    # A link's own mode is always 0777 and means nothing; a character
    # device's says who may use it, not what reading it gives (/dev/null,
    # an empty configuration).
    if not (stat.S_ISLNK(mode) or stat.S_ISCHR(mode) or sticky_directory):
        writers = [
            name for name, bit in (("group", stat.S_IWGRP), ("others", stat.S_IWOTH)) if mode & bit
        ]
        if writers:
            problems.append(f"writable by {' and '.join(writers)} (mode {stat.S_IMODE(mode):04o})")
    return problems


def problem(path: str) -> str | None:
    """What lets another user than root (or the user lacme runs as) change
    the file at PATH, as described above: "owned by ..." or "writable by
    ...", after the entry's name if it is not PATH itself; None if nothing.
    OSError if an entry on the way can't be examined (missing, say)."""
    euid = os.geteuid()
    # Not os.path.abspath: `..` after a link is the target's parent.
    given = path if path.startswith("/") else os.path.join(os.getcwd(), path)
    names = [name for name in reversed(given.split("/")) if name]
    current = "/"
    links = 0
    status = os.lstat(current)
    while True:
        problems = _entry_problems(status, euid)
        if problems:
            what = ", and ".join(problems)
            if stat.S_ISLNK(status.st_mode):
                return f"link {current} is {what}"
            return what if current == os.path.normpath(given) else f"{current} is {what}"
        if stat.S_ISLNK(status.st_mode):
            links += 1
            if links > MAX_LINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
            target = os.readlink(current)
            current = "/" if target.startswith("/") else os.path.dirname(current)
            names.extend(name for name in reversed(target.split("/")) if name)
        if not names:
            return None
        name = names.pop()
        if name == "..":
            current = os.path.dirname(current)
        elif name != ".":
            current = os.path.join(current, name)
        status = os.lstat(current)
