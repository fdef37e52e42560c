"""A process left behind the way a daemon does it, for the tests that
check that children's descendants end with them."""

import os
import sys
import time


def leave_orphan() -> None:
    """Fork a grandchild in no session or process group of this process's
    (fork, setsid, fork), which says `orphan PID` on stderr, closes its
    standard streams and sleeps; return once its parent has exited."""
    if os.fork() != 0:
        os.wait()
        return
    os.setsid()
    if os.fork() != 0:
        os._exit(0)
    sys.stderr.write(f"orphan {os.getpid()}\n")
    sys.stderr.flush()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    while True:
        time.sleep(60)
