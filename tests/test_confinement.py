"""Landlock and seccomp confinement (lacme.confinement, issue 16).

The kernel's refusals are shown from inside a confined child: the
stand-in tests/confined_probe.py confines itself through the same functions
the client and webserver call, tries each forbidden action and reports the
errno.  The same probe unconfined, as the same user, succeeds at each: what
refuses is the confinement, not the file modes or the uid.  How the rules
degrade on older kernels is tested by injecting the ABI number.
"""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from lacme import confinement, privdrop
from lacme.client import server_port, trust_store
from lacme.client_contract import ClientSettings, encode_settings
from lacme.confinement import (
    FS_IOCTL_DEV,
    FS_REFER,
    FS_TRUNCATE,
    NET_BIND_TCP,
    NET_CONNECT_TCP,
    SCOPE_ABSTRACT_UNIX_SOCKET,
    SCOPE_SIGNAL,
    WRITE,
    Policy,
    handled,
)
from support.commands import CLIENT, run_client
from support.system import temporary_directory
from support.users import client_credentials, www_credentials

PROBE = Path(__file__).parent / "confined_probe.py"
ALL_FS_ABI_1 = (1 << 13) - 1
EACCES, EPERM = errno.EACCES, errno.EPERM

EVERYTHING_ALLOWED = {
    "read /etc/passwd": 0,
    "read a file elsewhere": 0,
    "write in the challenge directory": 0,
    "write outside": 0,
    "connect to the server's port": 0,
    "connect to another port": 0,
    "bind a port": 0,
    "connect to a UNIX socket": 0,
    "execve /bin/true": 0,
    "signal another process": 0,
    "ptrace": 0,
    "late import": 0,
}
# Landlock refuses files and TCP with EACCES; the scoping of signals and
# the seccomp filter (UNIX sockets included) with EPERM.
CLIENT_REFUSALS = {
    **EVERYTHING_ALLOWED,
    "read /etc/passwd": EACCES,
    "read a file elsewhere": EACCES,
    "write outside": EACCES,
    "connect to another port": EACCES,
    "bind a port": EACCES,
    "connect to a UNIX socket": EPERM,
    "execve /bin/true": EPERM,
    "signal another process": EPERM,
    "ptrace": EPERM,
}
WEBSERVER_REFUSALS = {
    **CLIENT_REFUSALS,
    "write in the challenge directory": EACCES,
    "connect to the server's port": EACCES,
}


@pytest.mark.unit
@pytest.mark.parametrize(
    ("abi", "fs", "net", "scoped"),
    [
        (1, ALL_FS_ABI_1, 0, 0),
        (2, ALL_FS_ABI_1 | FS_REFER, 0, 0),
        (3, ALL_FS_ABI_1 | FS_REFER | FS_TRUNCATE, 0, 0),
        (4, ALL_FS_ABI_1 | FS_REFER | FS_TRUNCATE, NET_BIND_TCP | NET_CONNECT_TCP, 0),
        (
            5,
            ALL_FS_ABI_1 | FS_REFER | FS_TRUNCATE | FS_IOCTL_DEV,
            NET_BIND_TCP | NET_CONNECT_TCP,
            0,
        ),
        *(
            (
                abi,
                ALL_FS_ABI_1 | FS_REFER | FS_TRUNCATE | FS_IOCTL_DEV,
                NET_BIND_TCP | NET_CONNECT_TCP,
                SCOPE_SIGNAL | SCOPE_ABSTRACT_UNIX_SOCKET,
            )
            for abi in (6, 7, 8)
        ),
    ],
)
def test_each_abi_restricts_what_it_knows(abi: int, fs: int, net: int, scoped: int) -> None:
    assert handled(abi, Policy()) == (fs, net, scoped)
    # The session's first layer leaves creating and writing files alone,
    # its second restricts only those.
    assert handled(abi, Policy(keep_writing=True)) == (fs & ~WRITE, net, scoped)
    assert handled(abi, Policy(only_writing=True)) == (WRITE, 0, 0)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("abi", "text"),
    [
        (0, "Landlock: unavailable"),
        (1, "Landlock ABI 1: fs"),
        (3, "Landlock ABI 3: fs"),
        (4, "Landlock ABI 4: fs+net"),
        (5, "Landlock ABI 5: fs+net"),
        (7, "Landlock ABI 7: fs+net+scope"),
    ],
)
def test_what_each_abi_is_reported_as(abi: int, text: str) -> None:
    assert confinement.describe(abi) == text


@pytest.mark.unit
@pytest.mark.parametrize("code", [errno.ENOSYS, errno.EOPNOTSUPP])
def test_a_kernel_without_landlock_is_abi_0(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    def fail(*args: object) -> int:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(confinement, "_syscall", fail)
    assert confinement.abi_version() == 0


@pytest.mark.unit
def test_another_landlock_failure_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object) -> int:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))

    monkeypatch.setattr(confinement, "_syscall", fail)
    with pytest.raises(confinement.ConfinementError, match=r"^Landlock: can't ask the ABI version"):
        confinement.abi_version()


@pytest.mark.unit
def test_the_kernel_here_offers_abi_6_or_later() -> None:
    # The machines have ABI 7; the tests below need the scoping of 6.
    assert confinement.abi_version() >= 6


def _confined_python(code: str) -> dict[str, Any]:
    """CODE's JSON output, run in a child of its own (confining this
    process would confine pytest)."""
    done = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    result: dict[str, Any] = json.loads(done.stdout)
    result["stderr"] = done.stderr
    return result


INJECTED = """
import json, os, socket, sys
from lacme import confinement
listener = socket.create_server(("127.0.0.1", 0))
policy = confinement.Policy(read=confinement.interpreter_paths())
report = confinement.confine("probe", policy, abi={abi})
def outcome(action):
    try:
        action()
    except OSError as e:
        return e.errno
    return 0
json.dump({{
    "report": report,
    "read": outcome(lambda: open("/etc/passwd").close()),
    "connect": outcome(lambda: socket.create_connection(listener.getsockname()).close()),
    "execve": outcome(lambda: os.execv("/bin/true", ["true"])),
}}, sys.stdout)
"""


@pytest.mark.process
@pytest.mark.parametrize(
    ("abi", "report", "read", "connect"),
    [
        (0, "Landlock: unavailable; seccomp: on", 0, 0),
        (1, "Landlock ABI 1: fs; seccomp: on", EACCES, 0),
        (3, "Landlock ABI 3: fs; seccomp: on", EACCES, 0),
        (4, "Landlock ABI 4: fs+net; seccomp: on", EACCES, EACCES),
        (6, "Landlock ABI 6: fs+net+scope; seccomp: on", EACCES, EACCES),
    ],
)
def test_an_older_abi_gets_the_rules_it_has(abi: int, report: str, read: int, connect: int) -> None:
    result = _confined_python(INJECTED.format(abi=abi))
    assert (result["report"], result["read"], result["connect"]) == (report, read, connect)
    # seccomp whatever Landlock offers.
    assert result["execve"] == EPERM
    no_landlock = "Warning: probe: the kernel has no Landlock: files and network not confined\n"
    assert result["stderr"] == (no_landlock if abi == 0 else "")


@pytest.mark.process
def test_confinement_off_says_so() -> None:
    code = (
        "import json, os, sys\n"
        "from lacme import confinement\n"
        "report = confinement.confine('probe', confinement.Policy(), enabled=False)\n"
        "json.dump({'report': report, 'read': len(open('/etc/passwd').read(1))}, sys.stdout)\n"
    )
    result = _confined_python(code)
    assert (result["report"], result["read"]) == ("Landlock: off; seccomp: off", 1)
    assert result["stderr"] == (
        "Warning: probe: confinement = No: not confined (Landlock and seccomp off)\n"
    )


@pytest.mark.process
def test_confine_refuses_a_second_thread() -> None:
    code = (
        "import json, sys, threading\n"
        "from lacme import confinement\n"
        "event = threading.Event()\n"
        "threading.Thread(target=event.wait, daemon=True).start()\n"
        "try:\n"
        "    confinement.confine('probe', confinement.Policy())\n"
        "except confinement.ConfinementError as e:\n"
        "    json.dump({'error': str(e)}, sys.stdout)\n"
    )
    assert _confined_python(code)["error"] == (
        "2 threads running: only the calling one would be confined"
    )


class Setting:
    """What the probe tries its actions on."""

    def __init__(self, stack: ExitStack, uid: int) -> None:
        self.challenges = temporary_directory(stack, "lacme-probe-challenges-", 0o755)
        os.chown(self.challenges, uid, -1)
        self.outside = temporary_directory(stack, "lacme-probe-outside-", 0o777)
        self.secret = temporary_directory(stack, "lacme-probe-secret-", 0o755) / "secret"
        self.secret.write_text("not for the client\n")
        self.secret.chmod(0o644)
        self.server = stack.enter_context(socket.create_server(("127.0.0.1", 0), backlog=8))
        self.other = stack.enter_context(socket.create_server(("127.0.0.1", 0), backlog=8))
        self.unix = stack.enter_context(socket.socket(socket.AF_UNIX))
        self.unix.bind(str(self.outside / "socket"))
        (self.outside / "socket").chmod(0o777)
        self.unix.listen(8)


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


def probe(stack: ExitStack, role: str, credentials: privdrop.Credentials) -> dict[str, int]:
    """What the kernel answered the probe in ROLE, run as the master runs
    the client and webserver (lacme.privdrop, as CREDENTIALS)."""
    uid = privdrop.child_ids(credentials)[0]
    setting = Setting(stack, uid)
    # A process of the same user, outside the probe's domain.
    sibling = privdrop.spawn(["sleep", "60"], credentials)
    stack.callback(privdrop.stop, sibling)
    port = setting.server.getsockname()[1]
    settings = encode_settings({"server": f"https://127.0.0.1:{port}/dir"})
    argv = [
        sys.executable,
        "-I",
        str(PROBE),
        role,
        settings.decode(),
        str(setting.secret),
        str(setting.outside),
        str(port),
        str(setting.other.getsockname()[1]),
        str(sibling.pid),
    ]
    proc = privdrop.spawn(argv, credentials, cwd=str(setting.challenges), stdout=subprocess.PIPE)
    output = privdrop.exchange(proc, None, 1 << 16, "the probe")
    assert proc.wait() == 0
    assert sibling.poll() is None  # not stopped, nor killed
    results: dict[str, int] = json.loads(output)
    return results


@pytest.mark.process
@pytest.mark.root
@pytest.mark.debian("lacme")  # its users
@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("none", EVERYTHING_ALLOWED),
        ("client", CLIENT_REFUSALS),
        ("session", CLIENT_REFUSALS),
    ],
)
def test_the_kernel_refuses_the_client(
    stack: ExitStack, role: str, expected: dict[str, int]
) -> None:
    assert probe(stack, role, client_credentials()) == expected


@pytest.mark.process
@pytest.mark.root
@pytest.mark.debian("lacme")  # its users
@pytest.mark.parametrize(
    ("role", "expected"), [("none", EVERYTHING_ALLOWED), ("webserver", WEBSERVER_REFUSALS)]
)
def test_the_kernel_refuses_the_webserver(
    stack: ExitStack, role: str, expected: dict[str, int]
) -> None:
    assert probe(stack, role, www_credentials()) == expected


def _seccomp_mode(pid: int) -> str:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return next(line.split()[1] for line in status if line.startswith("Seccomp:"))


@pytest.mark.process
@pytest.mark.parametrize(
    ("args", "mode", "message"),
    [
        ((), "2", ""),
        (
            ("--unconfined",),
            "0",
            "Warning: lacme-webserver: --unconfined given:"
            " not confined (Landlock and seccomp off)\n",
        ),
    ],
)
def test_the_webserver_confines_itself_unless_told(
    stack: ExitStack, args: tuple[str, ...], mode: str, message: str
) -> None:
    listener = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
    directory = temporary_directory(stack, "lacme-probe-challenges-")
    proc = subprocess.Popen(
        [sys.executable, "-I", "-m", "lacme.webserver", *args, str(listener.fileno())],
        pass_fds=[listener.fileno()],
        cwd=directory,
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={"PATH": os.environ["PATH"], "DEBUG": "0"},
    )
    stack.callback(proc.wait)
    stack.callback(proc.terminate)
    (directory / "tok").write_text("key authorization")
    # It serves once confined, and what it serves is still readable.
    with socket.create_connection(listener.getsockname(), timeout=10) as sock:
        sock.sendall(b"GET /.well-known/acme-challenge/tok HTTP/1.0\r\n\r\n")
        answer = sock.makefile("rb").read()
    assert answer.startswith(b"HTTP/1.1 200 ") or answer.startswith(b"HTTP/1.0 200 "), answer
    assert answer.endswith(b"key authorization")
    assert _seccomp_mode(proc.pid) == mode
    proc.terminate()
    assert proc.wait(10) == 0
    assert proc.stderr is not None
    assert proc.stderr.read().decode() == message


@pytest.mark.process
@pytest.mark.parametrize(
    ("confinement", "flag", "warning"),
    [
        (None, False, None),
        ("Yes", False, None),
        ("No", False, "Warning: lacme-client: [client] confinement = No: not confined"),
        # A [client] command ending with --unconfined, for Perl's master.
        ("Yes", True, "Warning: lacme-client: --unconfined given: not confined"),
    ],
)
def test_the_client_confines_itself_unless_told(
    stack: ExitStack, confinement: str | None, flag: bool, warning: str | None
) -> None:
    """`directory` from a server that is not there: the client confines
    itself before its first connection, and says so with --debug."""
    port = stack.enter_context(socket.create_server(("127.0.0.1", 0))).getsockname()[1]
    settings: dict[str, Any] = {"server": f"https://127.0.0.1:{port}/dir", "timeout": 1}
    if confinement is not None:
        settings["confinement"] = confinement
    unused, accountd = socket.socketpair()
    stack.enter_context(unused)
    stack.enter_context(accountd)
    result = run_client(
        "directory",
        settings=settings,
        accountd=accountd,
        env={"DEBUG": "1"},
        client=[*CLIENT, "--unconfined"] if flag else CLIENT,
    )
    lines = result.stderr.decode().splitlines()
    assert result.returncode == 69, lines  # unreachable: the listener never answers TLS
    reports = [line for line in lines if re.fullmatch(r"\[\d+\] confinement: .*", line)]
    assert len(reports) == 1, lines
    if warning is None:
        assert re.fullmatch(
            r"\[\d+\] confinement: Landlock ABI \d+: fs\S*; seccomp: on", reports[0]
        )
    else:
        assert lines[0].startswith(warning), lines
        assert reports[0].endswith("] confinement: Landlock: off; seccomp: off")


@pytest.mark.unit
def test_the_trust_store_includes_where_its_links_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, elsewhere, other = tmp_path / "certs", tmp_path / "share" / "mozilla", tmp_path / "more"
    for directory in (store, elsewhere, other):
        directory.mkdir(parents=True)
    (elsewhere / "root.crt").write_text("")
    (store / "root.pem").symlink_to(elsewhere / "root.crt")
    (store / "1234abcd.0").symlink_to("root.pem")  # a link within: nothing more
    monkeypatch.setattr(
        ssl, "get_default_verify_paths", lambda: ssl.DefaultVerifyPaths("", "", "", "", "", "")
    )
    monkeypatch.setenv("SSL_CERT_DIR", f"{store}:{other}")
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    assert list(trust_store(ClientSettings())) == [str(store), str(other), str(elsewhere)]
    # SSL_CAfile alone, when set: OpenSSL's defaults are then not read.
    assert list(trust_store(ClientSettings(cafile="/ca.pem"))) == ["/ca.pem"]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("server", "port"),
    [
        ("https://acme.test/dir", 443),
        ("https://127.0.0.1:14000/dir", 14000),
        ("http://acme.test/dir", 80),
        ("https://acme.test:99999/dir", None),  # out of range: the session reports it
        ("ftp://acme.test/dir", None),
    ],
)
def test_the_client_connects_to_the_servers_port(server: str, port: int | None) -> None:
    assert server_port(server) == port
