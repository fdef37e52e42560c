"""When the ACME server has fetched the http-01 tokens, for the client
(lacme.client): the client publishes them in its working directory, and
validation can only be done once something has read each of them.  Knowing
that, the client looks at the order then, instead of on a fixed schedule.

It watches the directory with inotify(7) for files closed after reading
(IN_CLOSE_NOWRITE): whoever serves them, lacme's webserver or an HTTP
daemon reading the same directory, the kernel sees it.  The client's own
writes close a file opened for writing, which is another event.  The
orders of a session, each in its thread, share one watch.

    watch(directory) -> Watch | None     None where inotify can't watch it
    Watch.tokens() -> Tokens             the tokens of one order
    Tokens.publish(token)                a token the server will fetch
    Tokens.wait(seconds) -> bool         up to SECONDS, until each is read
"""

from __future__ import annotations

import ctypes
import os
import select
import struct
import threading
import time

# <sys/inotify.h>
IN_CLOSE_NOWRITE = 0x00000010
IN_Q_OVERFLOW = 0x00004000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
# struct inotify_event { int wd; uint32_t mask; uint32_t cookie; uint32_t len;
# char name[len]; }, name NUL-padded.
EVENT_HEADER = struct.Struct("=iIII")
# Enough for a few hundred events (a token is 43 characters, padded to 48).
READ_SIZE = 64 * 1024


class Watch:
    """The inotify descriptor FD watching one directory, the tokens
    published there and which of them were read; one thread at a time
    reads FD, the others wait for what it finds."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.published: set[str] = set()
        self.read: set[str] = set()
        # Events were lost (the queue overflowed): any token may have been read.
        self.lost = False
        self._condition = threading.Condition()
        self._reading = False

    def tokens(self) -> Tokens:
        return Tokens(self)

    def publish(self, token: str) -> None:
        with self._condition:
            self.published.add(token)

    def wait_for(self, tokens: set[str], seconds: float) -> bool:
        """Wait up to SECONDS for every one of TOKENS to have been read;
        whether they all have (at once if they already had)."""
        end = time.monotonic() + seconds
        with self._condition:
            while not (self.lost or tokens <= self.read):
                left = end - time.monotonic()
                if self._reading:
                    if left <= 0:
                        return False
                    self._condition.wait(left)
                    continue
                self._reading = True
                self._condition.release()
                try:
                    found = self._events(max(0.0, left))
                finally:
                    self._condition.acquire()
                    self._reading = False
                    self._condition.notify_all()
                if found is None:
                    return self.lost or tokens <= self.read
        return True

    def _events(self, seconds: float) -> bool | None:
        """Take the events that come within SECONDS into `read` (with
        `_condition` released: other threads only publish meanwhile);
        None if none came."""
        ready, _, _ = select.select([self.fd], [], [], seconds)
        if not ready:
            return None
        try:
            data = os.read(self.fd, READ_SIZE)
        except BlockingIOError:
            return False
        offset = 0
        while offset + EVENT_HEADER.size <= len(data):
            _, mask, _, length = EVENT_HEADER.unpack_from(data, offset)
            offset += EVENT_HEADER.size
            name = data[offset : offset + length].rstrip(b"\0").decode("ascii", "replace")
            offset += length
            if mask & IN_Q_OVERFLOW:
                # A look at the order costs one request, a missed read the whole wait.
                self.lost = True
            elif name in self.published:
                self.read.add(name)
        return True

    def close(self) -> None:
        os.close(self.fd)


class Tokens:
    """The tokens one order published."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch
        self.mine: set[str] = set()

    def publish(self, token: str) -> None:
        self.watch.publish(token)
        self.mine.add(token)

    def wait(self, seconds: float) -> bool:
        return self.watch.wait_for(self.mine, seconds)


def watch(directory: str) -> Watch | None:
    """Reads of the files in DIRECTORY, or None where inotify can't watch
    it (no inotify, no watch left, a file system without events): the order
    is then looked at on the schedule alone."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    if fd < 0:
        return None
    if libc.inotify_add_watch(fd, os.fsencode(directory), IN_CLOSE_NOWRITE) < 0:
        os.close(fd)
        return None
    return Watch(fd)
