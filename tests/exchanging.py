"""A process a compromised client left behind, racing the master's cleanup
of the challenge directory (issue 13, finding 2):

    python exchanging.py DIRECTORY

swaps DIRECTORY's entries `d` and `f` with renameat2(RENAME_EXCHANGE) as
fast as it can (a directory one moment, a FIFO the next, at the same name)
until SIGTERM, then prints how many swaps it made.  Either may be missing
meanwhile: the swap is tried again.
"""

import ctypes
import errno
import os
import signal
import sys
import time

RENAME_EXCHANGE = 2


def main() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
    stopped = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopped
        stopped = True

    signal.signal(signal.SIGTERM, stop)
    swaps = 0
    while not stopped:
        if libc.renameat2(fd, b"d", fd, b"f", RENAME_EXCHANGE) == 0:
            swaps += 1
        elif ctypes.get_errno() != errno.ENOENT:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        else:
            time.sleep(0.001)  # not made yet, or removed: wait for the client
    print(swaps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
