"""Our commands and Perl lacme 0.8.2's, and running them.

Ours are the ones installed beside the interpreter running the tests (the
test virtual environment, see scripts/setup); Perl's come from Debian's
`lacme` and `lacme-accountd` packages (support.requires.PERL_MASTER,
PERL_ACCOUNTD).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
LACME = BIN / "lacme"
ACCOUNTD = BIN / "lacme-accountd"
CLIENT = [sys.executable, "-m", "lacme.client"]

PERL_LACME = Path("/usr/sbin/lacme")
PERL_CLIENT = Path("/usr/libexec/lacme/client")
PERL_WEBSERVER = Path("/usr/libexec/lacme/webserver")
PERL_ACCOUNTD = Path("/usr/bin/lacme-accountd")

# A contact is needed: without one lacme follows the registration with an
# empty account update, which Pebble rejects.
CONTACT = "mailto:admin@example.test"
# Only against a hang: a run that takes this long has failed anyway.
TIMEOUT = 120.0


def run_checked(
    argv: Sequence[str | Path],
    *,
    check: bool = True,
    timeout: float = TIMEOUT,
    explain: Callable[[], str] = str,
) -> subprocess.CompletedProcess[str]:
    """Run ARGV, its output captured as text; unless CHECK is false, fail the
    test with that output, and what EXPLAIN adds (a server's log), unless it
    succeeds."""
    result = subprocess.run(
        [str(arg) for arg in argv], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(result.args)} exited {result.returncode}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}\n"
            f"{explain()}"
        )
    return result


def run_client(
    command: str,
    *args: str,
    settings: dict[str, Any],
    accountd: socket.socket,
    stdin: bytes = b"",
    cwd: Path | str = "/",
    env: dict[str, str] | None = None,
    timeout: float = 60,
    client: Sequence[str] = CLIENT,
) -> subprocess.CompletedProcess[bytes]:
    """`python -m lacme.client COMMAND CONFIG_FD SOCKET_FD ARGS`, as lacme's
    master runs it; CLIENT, the [client] command."""
    with tempfile.TemporaryFile() as config:
        config.write(json.dumps(settings).encode())
        config.seek(0)
        return subprocess.run(
            [*client, command, str(config.fileno()), str(accountd.fileno()), *args],
            input=stdin,
            capture_output=True,
            pass_fds=(config.fileno(), accountd.fileno()),
            cwd=cwd,
            env={**os.environ, "DEBUG": "0", **(env or {})},
            timeout=timeout,
            check=False,
        )
