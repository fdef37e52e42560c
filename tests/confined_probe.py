"""A stand-in client or webserver that confines itself as the real one does,
then tries what confinement forbids and says what the kernel answered.

    python confined_probe.py ROLE SETTINGS SECRET OUTSIDE PORT OTHER_PORT PID

ROLE: `client` (lacme.client.confine as for a one-shot newOrder),
`session` (the session's two layers, lacme.client.confine then
confine_writing), `webserver` (lacme.webserver.confine), or `none` (not
confined, to show that the same user could otherwise).  SETTINGS: the
client settings (JSON), whose server is https://127.0.0.1:PORT; SECRET: a
world-readable file outside what the role reads; OUTSIDE: a world-writable
directory outside the working directory (the challenge directory); PORT and
OTHER_PORT: loopback TCP ports listened on (and OUTSIDE/socket, a UNIX
socket anyone may connect to); PID: a process of the same user,
not confined.  On stdout, one JSON object: each action, and the errno it
failed with, 0 when it succeeded.
"""

import ctypes
import json
import os
import signal
import socket
import sys
from collections.abc import Callable

from lacme import client, webserver
from lacme.client_contract import decode_settings

PTRACE_TRACEME = 0


def outcome(action: Callable[[], object]) -> int:
    try:
        action()
    except OSError as e:
        return e.errno or -1
    return 0


def read(path: str) -> None:
    with open(path, "rb") as file:
        file.read(1)


def create(path: str) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))


def connect(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass


def connect_unix(path: str) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(path)


def bind() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))


def execute() -> None:
    """execve /bin/true in a child, which could otherwise replace us."""
    pid = os.fork()
    if pid == 0:
        try:
            os.execv("/bin/true", ["true"])
        except OSError as e:
            os._exit(e.errno or 255)
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if status:
        raise OSError(status, os.strerror(status))


def trace_me() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)
    if libc.ptrace(PTRACE_TRACEME, 0, None, None) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def main() -> int:
    role, settings_json, secret, outside, port, other_port, pid = sys.argv[1:]
    settings = decode_settings(settings_json.encode())
    if role == "client":
        client.confine(settings, None, write=(".",))
    elif role == "session":
        client.confine(settings, None, keep_writing=True)
        client.confine_writing(settings, None)
    elif role == "webserver":
        webserver.confine(True)
    elif role != "none":
        print(f"unknown role {role}", file=sys.stderr)
        return 2
    results = {
        "read /etc/passwd": outcome(lambda: read("/etc/passwd")),
        "read a file elsewhere": outcome(lambda: read(secret)),
        "write in the challenge directory": outcome(lambda: create("token")),
        "write outside": outcome(lambda: create(os.path.join(outside, f"{role}.written"))),
        "connect to the server's port": outcome(lambda: connect(int(port))),
        "connect to another port": outcome(lambda: connect(int(other_port))),
        "bind a port": outcome(bind),
        "connect to a UNIX socket": outcome(lambda: connect_unix(os.path.join(outside, "socket"))),
        "execve /bin/true": outcome(execute),
        "signal another process": outcome(lambda: os.kill(int(pid), signal.SIGCONT)),
        # Last: unconfined, it makes this process a tracee.
        "ptrace": outcome(trace_me),
    }
    # A late import (an error path's) still works once confined.
    results["late import"] = outcome(lambda: __import__("email.mime.text"))
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
