"""How every process writes a message on stderr: a whole line, flushed at
once (the master, its children and accountd may share a terminal and a
journal), a debugging line prefixed with the pid of the process it comes
from.  Standard library only, and neither typing nor re: the webserver
imports it."""

import os
import sys

# Where say() puts its lines instead while the master holds them back (held).
_held: list[str] | None = None


def say(message: str) -> None:
    if _held is not None:
        _held.append(message)
        return
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


class held:
    """Within it, say() appends to LINES instead of writing: the master's
    messages about a section stay together while an earlier one is under way."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def __enter__(self) -> list[str]:
        global _held
        self.outer, _held = _held, self.lines
        return self.lines

    def __exit__(self, *exc_info: object) -> None:
        global _held
        _held = self.outer


def release(lines: list[str]) -> None:
    """Write the lines held back, and forget them."""
    for line in lines:
        say(line)
    lines.clear()


def debug(message: str) -> None:
    say(f"[{os.getpid()}] {message}")


def warn(message: str) -> None:
    say(f"Warning: {message}")


def printable(text: str) -> str:
    """TEXT safe to show on a terminal, whoever wrote it (an ACME server, an
    HTTP client): every character str.isprintable() refuses (C0 and C1
    controls, DEL, line separators, bidirectional overrides, lone
    surrogates) escaped as in a Python string literal, a byte that was not
    UTF-8 (decoded with surrogateescape) as the byte, \\xNN.  Backslashes
    stay, so that text escaped once is escaped no further."""
    if text.isprintable():
        return text
    return "".join(map(_escaped, text))


def _escaped(char: str) -> str:
    if char.isprintable():
        return char
    if "\udc80" <= char <= "\udcff":
        return f"\\x{ord(char) - 0xDC00:02x}"
    return char.encode("unicode_escape").decode("ascii")
