"""When the ACME server has fetched the http-01 tokens, for the client
(lacme.client): the client publishes them in its working directory, and
validation can only be done once something has read each of them.  Knowing
that, the client looks at the order then, instead of on a fixed schedule.

It watches the directory with inotify(7) for files closed after reading
(IN_CLOSE_NOWRITE): whoever serves them, lacme's webserver or an HTTP
daemon reading the same directory, the kernel sees it.  The client's own
writes close a file opened for writing, which is another event.

    watch(directory) -> TokenReads | None   None where inotify is unavailable
    TokenReads.publish(token)               a token the server will fetch
    TokenReads.wait(seconds) -> bool        up to SECONDS, until each is read
"""

from __future__ import annotations

import ctypes
import os
import select
import struct
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


class TokenReads:
    """The tokens published in one directory, watched by the inotify
    descriptor FD, and which of them nothing has read yet."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.unread: set[str] = set()

    def publish(self, token: str) -> None:
        self.unread.add(token)

    def wait(self, seconds: float) -> bool:
        """Wait up to SECONDS for every published token to have been read;
        whether they all have (at once if they already had)."""
        end = time.monotonic() + seconds
        while self.unread:
            left = max(0.0, end - time.monotonic())
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                return False
            self._take_events()
        return True

    def _take_events(self) -> None:
        try:
            data = os.read(self.fd, READ_SIZE)
        except BlockingIOError:
            return
        offset = 0
        while offset + EVENT_HEADER.size <= len(data):
            _, mask, _, length = EVENT_HEADER.unpack_from(data, offset)
            offset += EVENT_HEADER.size
            name = data[offset : offset + length].rstrip(b"\0")
            offset += length
            if mask & IN_Q_OVERFLOW:
                # Events were lost: the reads may have happened; a look at
                # the order costs one request, a missed one the whole wait.
                self.unread.clear()
                return
            self.unread.discard(name.decode("ascii", "replace"))

    def close(self) -> None:
        os.close(self.fd)


def watch(directory: str) -> TokenReads | None:
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
    return TokenReads(fd)
