"""Writing files so that a crash leaves either the old content or the new,
never a part: a complete temporary file beside the target (content, mode,
owner, fsync), then a rename, then an fsync of the directory; and reading
back the small JSON state files the master keeps beside certificates."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable
from typing import Any


def stage(path: str, data: bytes, mode: int, uid: int = -1, gid: int = -1) -> str:
    """A temporary file next to PATH holding DATA with its final mode and
    owner, on disk; removed again if anything fails."""
    directory, name = os.path.split(path)
    fd, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            # chown first: it may clear set-id bits that chmod then sets.
            if uid != -1 or gid != -1:
                os.fchown(f.fileno(), uid, gid)
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(temporary)
        raise
    return temporary


def sync_directories(paths: Iterable[str]) -> None:
    """fsync the directories holding PATHS, so that renames there survive a crash."""
    for directory in {os.path.dirname(path) or "." for path in paths}:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def replace(path: str, data: bytes, mode: int) -> None:
    """Replace PATH by DATA atomically; OSError if that fails, PATH as it was."""
    temporary = stage(path, data, mode)
    try:
        os.rename(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    sync_directories([path])


def read_json_object(path: str) -> dict[str, Any] | None:
    """The JSON object in the small state file at PATH; None if there is
    none, or it holds anything else (the state is then as if unrecorded)."""
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
