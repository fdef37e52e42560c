"""The contract between the master and the http-01 webserver process, as
lacme 0.8.2's, so that either side can be the Perl one:

    COMMAND... [--unconfined] FD

- FD, the last argument, in decimal: a listening stream socket (TCP over
  IPv4 or IPv6, or UNIX) that the master bound, left open across exec;
- `--unconfined`, beyond 0.8.2 (whose master never passes it, but which a
  [webserver] command may end with): no Landlock or seccomp confinement
  (lacme.confinement), with a warning;
- the working directory is the challenge directory: the client writes each
  key authorization there, in a file named after its token, for the
  webserver to serve;
- environment: DEBUG, "1" to log every request on stderr; "0" (what both
  masters pass otherwise), empty or absent not to;
- a token is one or more characters of TOKEN_ALPHABET (base64url, RFC 8555
  section 8.3).  Whoever publishes one makes a file of that name, so
  anything else ('/', '..', NUL) is refused: by the ACME client in what
  the server sends, by the webserver in request paths.

The functions below encode each of them on the master's side (argv,
environment) and decode them on the webserver's (parse_argv, listener,
debug); the working directory is the `cwd` the master spawns it with.

lacme.webserver imports this: standard library only, and neither `re` nor
`typing` (a megabyte of resident memory between them).
"""

from __future__ import annotations

import socket

# Not typing's: importing typing is what this module must not do.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

TOKEN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"  # noqa: S105 - not a secret
_TOKEN_CHARACTERS = frozenset(TOKEN_ALPHABET)
_TOKEN_BYTES = frozenset(TOKEN_ALPHABET.encode("ascii"))
USAGE = "usage: python -m lacme.webserver [--unconfined] FD (a listening socket)"
UNCONFINED = "--unconfined"


def valid_token(token: str | bytes) -> bool:
    """Whether TOKEN (text, or its ASCII bytes) may name a challenge file."""
    if isinstance(token, bytes):
        return bool(token) and _TOKEN_BYTES.issuperset(token)
    return bool(token) and _TOKEN_CHARACTERS.issuperset(token)


def argv(command: Sequence[str], fd: int, confined: bool = True) -> list[str]:
    """The webserver's command line: the words of COMMAND, UNCONFINED
    unless CONFINED, then FD."""
    return [*command, *(() if confined else (UNCONFINED,)), str(fd)]


def parse_argv(args: Sequence[str]) -> tuple[int, bool]:
    """FD, and whether to confine, from the webserver's arguments (its argv
    after the command); ValueError(USAGE) unless they are one decimal
    number, UNCONFINED before it or not."""
    confined = not args or args[0] != UNCONFINED
    number = args[0 if confined else 1 :]
    if len(number) != 1 or not (number[0].isascii() and number[0].isdigit()):
        raise ValueError(USAGE)
    return int(number[0]), confined


def listener(fd: int) -> socket.socket:
    """The listening stream socket FD, as a socket object owning it.

    ValueError naming FD when it is not one; FD is then left as it was.
    """
    try:
        sock = socket.socket(fileno=fd)
    except OSError as e:
        raise ValueError(f"file descriptor {fd}: {e.strerror}") from None
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(
        socket.SOL_SOCKET, socket.SO_ACCEPTCONN
    ):
        sock.detach()
        raise ValueError(f"file descriptor {fd} is not a listening stream socket")
    return sock


def environment(debug: bool) -> dict[str, str]:
    """What the master adds to the webserver's environment."""
    return {"DEBUG": "1" if debug else "0"}


def debug(environ: Mapping[str, str]) -> bool:
    """Whether the webserver's environment ENVIRON asks it to log every request."""
    return environ.get("DEBUG", "") not in ("", "0")
