"""How every process writes a message on stderr: a whole line, flushed at
once (the master, its children and accountd may share a terminal and a
journal), a debugging line prefixed with the pid of the process it comes
from.  Standard library only, and neither typing nor re: the webserver
imports it."""

import os
import sys


def say(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def debug(message: str) -> None:
    say(f"[{os.getpid()}] {message}")


def warn(message: str) -> None:
    say(f"Warning: {message}")
