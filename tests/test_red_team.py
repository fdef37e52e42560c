"""Issue 13's red team, finding by finding, against the installed system: a
compromised client (a program at `[client] command`, run by the real master
as root and dropped to _lacme-client), a hostile ACME server (Pebble behind
the fault proxy, tests/support/faults.py) and a local user with a
connection to accountd.  Each test makes the attack the issue describes and
asserts that it now does no harm: the master ends, within its bounds on
SIGTERM; nothing of _lacme-client's or _lacme-www's stays running; nothing
wrong is installed; accountd keeps serving its other connections.

1. One line kills a shared accountd:
   test_malformed_line_is_refused_and_only_its_connection_closed (no alg,
   100000-deep header and keyChange payload, an endless line),
   test_running_out_of_file_descriptors_pauses_accepting (EMFILE),
   test_client_hanging_up_before_the_greeting and
   test_stdio_client_hanging_up_before_the_greeting (no BrokenPipeError).
2. A compromised client hangs the root master:
   test_a_fifo_at_the_moved_challenge_directory_s_path_holds_nothing_up
   (rename the temporary directory, a FIFO at its path, then SIGTERM),
   test_a_directory_swapped_for_a_fifo_during_cleanup_holds_nothing_up
   (renameat2(RENAME_EXCHANGE) in `challenge-directory`),
   test_a_tree_1500_deep_is_removed (no RecursionError, no refusal of the
   next run).
3. Client processes outlive the run: test_what_a_child_leaves_running_ends_with_it
   (a double-forked setsid grandchild, of the client and of a webserver).
4. The master buffers the client's stdout without limit:
   test_a_client_writing_without_end_is_killed_at_the_limit.
5. The master installs what it should not:
   test_only_the_verified_path_is_installed (foreign certificates, 3,000
   intermediates), test_an_older_or_revoked_certificate_replaces_nothing.
6. Hostile server text: test_problem_detail_reaches_the_terminal_escaped,
   test_account_contacts_reach_the_terminal_escaped,
   test_an_http_resource_url_is_never_followed,
   test_nested_json_from_the_server_is_one_line,
   test_an_order_with_3000_authorizations_is_refused.
7. SIGKILL of the master leaves firewall rules and a challenge directory
   behind: test_what_a_killed_run_left_is_removed_by_the_next,
   test_a_killed_runs_lock_and_challenges_are_removed_by_the_next.
8. Configuration writable by others is accepted:
   test_a_certs_file_another_user_may_change_is_refused_and_its_notify_never_runs.

Unit tests of each refusal stay with their module (tests/test_challenges.py,
tests/test_accountd_protocol.py, tests/test_server_text.py,
tests/test_strict.py ...); the compromised-client programs are modes of
tests/fake_client.py, and tests/exchanging.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import resource
import select
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography import x509

from lacme.accountd_protocol import MAX_LINE
from lacme.acme_http import MAX_JSON_DEPTH
from lacme.acme_resources import MAX_IDENTIFIERS
from support.accountd import (
    Accountd,
    Connection,
    connect,
    request_line,
    signing_line,
    standalone_accountd,
    verify,
)
from support.commands import ACCOUNTD, LACME, TIMEOUT
from support.faults import Answer, FaultProxy, Request, problem
from support.hostile import HOSTILE_TEXT, SHOWN_TEXT
from support.masters import MasterSetup, master_setup
from support.offline import OLD_CERT, ORPHANING, Offline, alive, firewall, written
from support.pki import load_ca, new_key_file
from support.proc import descendants, running_as
from support.system import free_ports, wait_for
from support.users import client_user, www_user

# The master's bound once told to stop (its children's stop and the
# cleanup): only against a hang, nothing is asserted of how long it took.
STOPS_WITHIN = 30.0
EXCHANGING = Path(__file__).with_name("exchanging.py")


def nothing_left_running(offline: Offline) -> None:
    """No process of the client's or the webservers' user from this run."""
    for user in (client_user(), www_user()):
        assert running_as(user.pw_uid, offline.directory) == set(), user.pw_name


def stop_if_running(master: subprocess.Popen[bytes]) -> None:
    if master.poll() is None:
        master.kill()
        master.communicate()


@contextlib.contextmanager
def started(offline: Offline, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """`lacme ARGS` running; killed if the test leaves it running."""
    master = offline.start(*args)
    try:
        yield master
    finally:
        stop_if_running(master)


def still_running(master: subprocess.Popen[bytes]) -> None:
    if master.poll() is not None:
        out, err = master.communicate()
        pytest.fail(f"lacme exited {master.returncode}: {out!r} {err!r}")


# -- 1. One line kills a shared accountd ----------------------------------------


@contextlib.contextmanager
def serving_with_witness(
    tmp_path: Path, kind: str, **popen: Any
) -> Iterator[tuple[Accountd, Connection]]:
    """An accountd on a socket, with a KIND key and an empty configuration,
    and a connection to it that signs before, and (checked on exit) after
    whatever the test does; the daemon then exits 0 on SIGTERM, having
    written no traceback."""
    conf = tmp_path / "accountd.conf"
    conf.write_text("")
    key = tmp_path / "account.key"
    new_key_file(key, kind)
    with standalone_accountd(
        [ACCOUNTD], tmp_path / "S.lacme", f"--config={conf}", f"--privkey=file:{key}", **popen
    ) as daemon:
        witness = connect(daemon.socket)
        line = request_line(witness.greeting.alg, b"{}")
        verify(witness.greeting.jwk, line[:-2], witness.sign(line))
        yield daemon, witness
        verify(witness.greeting.jwk, line[:-2], witness.sign(line))
        witness.close()
        assert daemon.terminate() == 0, daemon.output()
    assert "Traceback" not in daemon.output()
    assert not daemon.socket.exists()


def hostile_lines(jwk: dict[str, Any], alg: str) -> dict[str, tuple[bytes, str]]:
    """What the red team sent, and what accountd logs for it."""
    key_change = {"alg": alg, "url": "https://ca.test/key-change", "jwk": jwk}
    return {
        "keyChange header without alg": (
            signing_line({"url": "https://ca.test/key-change", "jwk": jwk}),
            "NOSIGN [inner keyChange JWS has no alg]",
        ),
        "header nested 100000 deep": (
            signing_line(b"[" * 100000),
            "NOSIGN [invalid JWS Protected Header (nested deeper than 512)]",
        ),
        "keyChange payload nested 100000 deep": (
            signing_line(key_change, b"[" * 100000),
            "NOSIGN [inner keyChange JWS: payload nested deeper than 512]",
        ),
        "line longer than MAX_LINE": (
            b"e30." + b"A" * MAX_LINE + b"\r\n",
            f"NOSIGN [line longer than {MAX_LINE} bytes]",
        ),
    }


@pytest.mark.process
@pytest.mark.parametrize(
    "attack",
    [
        "keyChange header without alg",
        "header nested 100000 deep",
        "keyChange payload nested 100000 deep",
        "line longer than MAX_LINE",
    ],
)
def test_malformed_line_is_refused_and_only_its_connection_closed(
    tmp_path: Path, attack: str
) -> None:
    with serving_with_witness(tmp_path, "p256") as (daemon, witness):
        line, logged = hostile_lines(witness.greeting.jwk, witness.greeting.alg)[attack]
        attacker = connect(daemon.socket)
        attacker.sock.sendall(line)
        assert attacker.rfile.read() == b""  # no signature, the connection closed
        attacker.close()
        wait_for(lambda: logged in daemon.output(), logged)
        assert daemon.process.poll() is None


def process_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.mark.process
def test_client_hanging_up_before_the_greeting(tmp_path: Path) -> None:
    with serving_with_witness(tmp_path, "rsa2048") as (daemon, _):
        # Stopped, accountd accepts the connection only once it is closed.
        daemon.process.send_signal(signal.SIGSTOP)
        wait_for(lambda: process_state(daemon.process.pid) == "T", "accountd stopped")
        gone = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        gone.connect(str(daemon.socket))
        gone.close()
        daemon.process.send_signal(signal.SIGCONT)
        wait_for(lambda: "] connection lost: Broken pipe" in daemon.output(), "the hang-up")


@pytest.mark.process
def test_stdio_client_hanging_up_before_the_greeting(tmp_path: Path) -> None:
    conf = tmp_path / "accountd.conf"
    conf.write_text("")
    key = tmp_path / "account.key"
    new_key_file(key, "rsa2048")
    read_end, write_end = os.pipe()
    os.close(read_end)  # a peer gone before accountd writes anything
    with os.fdopen(write_end, "wb") as stdout:
        done = subprocess.run(
            [str(ACCOUNTD), f"--config={conf}", f"--privkey=file:{key}", "--stdio"],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    assert done.stderr == b"lacme-accountd: conversation on stdin/stdout lost: Broken pipe\n"


def limit_files(count: int) -> Callable[[], None]:
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))

    return preexec


@pytest.mark.process
def test_running_out_of_file_descriptors_pauses_accepting(tmp_path: Path) -> None:
    emfile = (
        "Error: accept: Too many open files: not accepting connections for 1 s or until one closes"
    )
    with serving_with_witness(tmp_path, "rsa2048", preexec_fn=limit_files(16)) as (
        daemon,
        witness,
    ):
        flood = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(24)]
        for sock in flood:
            sock.connect(str(daemon.socket))  # queued by the kernel, accepted or not
        wait_for(lambda: emfile in daemon.output(), "accept failing")
        line = request_line("RS256")
        for _ in range(3):
            verify(witness.greeting.jwk, line[:-2], witness.sign(line))
        greeted, _, _ = select.select(flood, [], [], 0)
        waiting = [sock for sock in flood if sock not in greeted]
        assert greeted
        assert waiting
        assert daemon.output().count(emfile) == 1
        for sock in greeted:
            sock.close()
        # Once those are gone, the rest are served.
        for sock in waiting:
            sock.settimeout(30)
            assert sock.recv(5) == b"1 OK "
            sock.close()


# -- 2. A compromised client hangs the root master ------------------------------


@pytest.mark.process
@pytest.mark.root
def test_a_fifo_at_the_moved_challenge_directory_s_path_holds_nothing_up(
    offline: Offline,
) -> None:
    """The temporary challenge directory is the client's, in a sticky
    directory anyone may write (as /tmp): the client moves it away and puts
    a FIFO at its path.  On SIGTERM the master empties the directory it
    opened, wherever it went, opens nothing at the path, says so, and ends."""
    offline.tmp.chmod(0o1777)
    offline.lacme_conf("fifo")
    before = offline.files()
    with started(offline, "newOrder") as master:
        fifo = wait_for(
            lambda: next(
                (p for p in offline.tmp.iterdir() if stat.S_ISFIFO(p.lstat().st_mode)), None
            ),
            "the client's FIFO",
            alive=lambda: still_running(master),
        )
        moved = fifo.with_name(fifo.name + ".moved")
        assert (moved / "token").exists()
        master.send_signal(signal.SIGTERM)
        _, stderr = master.communicate(timeout=STOPS_WITHIN)
    lines = stderr.decode().splitlines()
    assert master.returncode == 1, lines
    assert lines[-1] == "lacme: interrupted by SIGTERM"
    assert f"Warning: can't remove {fifo}: it was moved, and something else is there" in lines
    assert not any("Traceback" in line for line in lines), lines
    assert list(moved.iterdir()) == []
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    nothing_left_running(offline)
    assert offline.files() == before


def owned_challenge_directory(offline: Offline) -> Path:
    """A `challenge-directory` of the client's, no webserver of the master's."""
    challenges = offline.directory / "challenges"
    challenges.mkdir()
    os.chown(challenges, client_user().pw_uid, -1)
    return challenges


def use_challenge_directory(offline: Offline, mode: str, challenges: Path) -> None:
    offline.lacme_conf(mode, listen="", extra=f"[webserver]\nchallenge-directory = {challenges}\n")


def installed_leaf(offline: Offline) -> x509.Certificate:
    """The installed certificate: issued by the offline CA, not the old one."""
    files = offline.files()
    assert files["s.crt"] != OLD_CERT
    leaf = x509.load_pem_x509_certificate(files["s.crt"])
    assert leaf.issuer == load_ca(offline.directory / "ca").intermediate.subject
    return leaf


@pytest.mark.process
@pytest.mark.root
def test_a_directory_swapped_for_a_fifo_during_cleanup_holds_nothing_up(
    offline: Offline,
) -> None:
    """With `challenge-directory` set, a process of the client's user (left
    behind by an earlier client: started here, out of the master's reach)
    swaps a directory and a FIFO the client made there, with
    renameat2(RENAME_EXCHANGE), while the master empties it: the master
    opens no FIFO, ends, and says what it could not remove."""
    challenges = owned_challenge_directory(offline)
    use_challenge_directory(offline, "exchange", challenges)
    user = client_user()
    racer = subprocess.Popen(
        [sys.executable, str(EXCHANGING), str(challenges)],
        user=user.pw_uid,
        group=user.pw_gid,
        extra_groups=[],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        with started(offline, "newOrder") as master:
            _, stderr = master.communicate(timeout=TIMEOUT)
    finally:
        racer.terminate()
        swaps, _ = racer.communicate(timeout=STOPS_WITHIN)
    assert racer.returncode == 0
    assert int(swaps) > 0  # the race did run
    assert master.returncode == 0, stderr
    installed_leaf(offline)
    warnings = [line for line in stderr.decode().splitlines() if line.startswith("Warning:")]
    assert "Traceback" not in stderr.decode()
    for name in os.listdir(challenges):
        assert any(f"{challenges}/{name}" in line for line in warnings), (name, warnings)
    nothing_left_running(offline)


@pytest.mark.process
@pytest.mark.root
@pytest.mark.parametrize("where", ["temporary", "challenge-directory"])
def test_a_tree_1500_deep_is_removed(offline: Offline, where: str) -> None:
    """A tree 1,500 directories deep, a FIFO at the bottom: removed without
    a traceback, and the next run does not find the directory non-empty."""
    if where == "temporary":
        offline.lacme_conf("deep")
    else:
        challenges = owned_challenge_directory(offline)
        use_challenge_directory(offline, "deep", challenges)
    for args in (("newOrder",), ("newOrder", "--force")):
        result = offline.run(*args)
        assert result.returncode == 0, result.stderr
        # Nothing but what was installed: no traceback, no warning.
        said = [line for line in result.stderr.splitlines() if not line.startswith("Installing ")]
        assert said == []
        if where == "temporary":
            assert list(offline.tmp.iterdir()) == []
        else:
            assert list(challenges.iterdir()) == []
    installed_leaf(offline)
    nothing_left_running(offline)


# -- 3. Client processes outlive the run ---------------------------------------


@pytest.mark.process
@pytest.mark.root
@pytest.mark.parametrize("child", ["client", "webserver"])
def test_what_a_child_leaves_running_ends_with_it(offline: Offline, child: str) -> None:
    """The child forks, calls setsid and forks again, then exits: the
    grandchild, in no session or process group of the child's, ends too."""
    if child == "client":
        offline.lacme_conf("orphan")
    else:
        webserver = f"{sys.executable} {ORPHANING} {sys.executable} -I -m lacme.webserver"
        offline.lacme_conf("good", extra=f"[webserver]\ncommand = {webserver}\n")
    result = offline.run("newOrder")
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if line.startswith("orphan ")]
    assert len(said) == 1, result.stderr
    orphan = Path("/proc", said[0].rpartition(" ")[2])
    # Killed and reaped by the master: not even a zombie is left.
    assert not orphan.exists()
    nothing_left_running(offline)
    installed_leaf(offline)


# -- 4. The master buffers the client's stdout without limit ---------------------

# Runs a command, then prints the largest resident set size of a child it
# waited for, its own or a descendant's (ru_maxrss, KiB): here the master's.
PEAK_RSS = """
import resource, subprocess, sys
status = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
status = status.returncode
print(status, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


@pytest.mark.process
@pytest.mark.root
def test_a_client_writing_without_end_is_killed_at_the_limit(offline: Offline) -> None:
    offline.lacme_conf("flood")
    before = offline.files()
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *offline.argv("newOrder")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=offline.env,
    )
    status, peak = map(int, result.stdout.split())
    assert status == 1
    assert result.stderr == (
        f"Error: the client {sys.executable} wrote more than {10 << 20} bytes on stdout: killed\n"
    )
    # The client sent 256 MiB (fake_client.FLOOD).
    assert peak * 1024 < 64 << 20, peak
    assert offline.files() == before
    assert list(offline.tmp.iterdir()) == []
    nothing_left_running(offline)


# -- 5. The master installs what it should not ------------------------------------


@pytest.mark.process
@pytest.mark.root
def test_only_the_verified_path_is_installed(offline: Offline) -> None:
    """Another CA's certificates after the leaf, and 3,000 copies of the
    intermediate: the chain file gets the leaf and the intermediate."""
    offline.lacme_conf("padded")
    result = offline.run("newOrder")
    assert result.returncode == 0, result.stderr
    leaf, *rest = x509.load_pem_x509_certificates(offline.files()["s.chain"])
    ca = load_ca(offline.directory / "ca")
    assert rest == [ca.intermediate]
    assert x509.load_pem_x509_certificates(offline.files()["s.crt"]) == [leaf]


@pytest.mark.process
@pytest.mark.root
def test_an_older_or_revoked_certificate_replaces_nothing(offline: Offline) -> None:
    assert offline.run("newOrder").returncode == 0
    offline.lacme_conf("older")
    installed = ("s.crt", "s.chain")
    before = {name: offline.files()[name] for name in installed}
    result = offline.run("newOrder", "--force")
    assert result.returncode == 1
    assert re.fullmatch(
        r"\[s\] Error after issuance: the issued certificate \(from [-\d]+ [:\d]+ UTC\) "
        r"is older than the one installed \(from [-\d]+ [:\d]+ UTC\)\n",
        result.stderr,
    ), result.stderr
    assert {name: offline.files()[name] for name in installed} == before
    # Revoked, then sent back (a replay): the section is due, and refuses it.
    chain = offline.directory / "s.chain"
    (offline.directory / "ca" / "replay.pem").write_bytes(chain.read_bytes())
    assert offline.run("revokeCert", str(chain)).returncode == 0
    offline.lacme_conf("replay")
    result = offline.run("newOrder")
    assert result.returncode == 1
    assert (
        "[s] Error after issuance: the issued certificate is one lacme revoked "
        f"(`lacme revokeCert {chain}` on "
    ) in result.stderr
    assert chain.read_bytes() == (offline.directory / "ca" / "replay.pem").read_bytes()


# -- 6. Hostile server text --------------------------------------------------------

SITE = {"subject": "/CN=a.example.test", "subjectAltName": "DNS:www.a.example.test"}


def on_post(proxy: FaultProxy, resource_name: str, answer: Answer) -> None:
    """Make PROXY answer every POST to the directory's RESOURCE_NAME with ANSWER."""
    path = proxy.path(resource_name)

    def hook(request: Request) -> Answer | None:
        return answer if (request.method, request.path) == ("POST", path) else None

    proxy.hooks.append(hook)


def terminal_run(setup: MasterSetup, *args: str) -> tuple[int, bytes]:
    """`lacme ARGS` with a terminal as stdout and stderr, as root's; its exit
    status and everything it wrote there."""
    controller, terminal = pty.openpty()
    with contextlib.ExitStack() as stack:
        stack.callback(os.close, controller)
        with contextlib.closing(terminal_file := os.fdopen(terminal, "wb")):
            master = subprocess.Popen(
                [str(LACME), f"--config={setup.config}", *args],
                stdin=subprocess.DEVNULL,
                stdout=terminal_file,
                stderr=terminal_file,
            )
        stack.callback(stop_if_running, master)
        shown = b""
        while True:
            ready, _, _ = select.select([controller], [], [], TIMEOUT)
            assert ready, f"lacme wrote nothing for {TIMEOUT:g}s: {shown!r}"
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the terminal's last writer is gone
                break
            if not chunk:
                break
            shown += chunk
        return master.wait(timeout=STOPS_WITHIN), shown


@pytest.mark.e2e
@pytest.mark.root
def test_problem_detail_reaches_the_terminal_escaped(fault_proxy: FaultProxy) -> None:
    with master_setup(fault_proxy) as setup:
        setup.register()
        chain = setup.one_section(**SITE)
        on_post(fault_proxy, "newOrder", problem(400, "rejectedIdentifier", HOSTILE_TEXT))
        status, shown = terminal_run(setup, "newOrder")
        assert status == 1, shown
        assert b"\x1b" not in shown
        assert b"\x07" not in shown
        assert f"rejectedIdentifier: {SHOWN_TEXT}".encode() in shown
        assert not chain.exists()


@pytest.mark.e2e
@pytest.mark.root
def test_account_contacts_reach_the_terminal_escaped(fault_proxy: FaultProxy) -> None:
    with master_setup(fault_proxy) as setup:
        setup.register()
        new_account = fault_proxy.path("newAccount")

        def hostile_contact(request: Request, answer: Answer) -> None:
            if request.path == new_account and answer.status < 300:
                account = json.loads(answer.body)
                answer.body = json.dumps({**account, "contact": [HOSTILE_TEXT]}).encode()

        fault_proxy.answer_hooks.append(hostile_contact)
        status, shown = terminal_run(setup, "account")
        assert status == 0, shown
        assert b"\x1b" not in shown
        assert f"Contact:  {SHOWN_TEXT}\r\n".encode() in shown


@pytest.mark.e2e
@pytest.mark.root
# A nonce comes with every answer: newNonce is never asked.
@pytest.mark.parametrize("resource_name", ["newAccount", "newOrder"])
def test_an_http_resource_url_is_never_followed(
    fault_proxy: FaultProxy, resource_name: str
) -> None:
    """The directory's newAccount (a signed registration) or newOrder is
    http://: nothing goes out in clear."""
    with socket.create_server(("127.0.0.1", 0)) as plain, master_setup(fault_proxy) as setup:
        plain.setblocking(False)
        url = f"http://127.0.0.1:{plain.getsockname()[1]}/{resource_name}"
        directory = urlsplit(fault_proxy.directory_url).path
        args = ["account", "--register", "--tos-agreed"]
        if resource_name == "newOrder":
            setup.register()
            setup.one_section(**SITE)
            args = ["newOrder"]

        def plain_resource(request: Request, answer: Answer) -> None:
            if request.path == directory:
                resources = json.loads(answer.body)
                answer.body = json.dumps({**resources, resource_name: url}).encode()

        fault_proxy.answer_hooks.append(plain_resource)
        result = setup.run(*args, check=False)
        assert result.returncode == 1
        assert (
            f"POST {url}: refusing a URL that is not https:// (RFC 8555 section 6.1); "
            "nothing was sent\n"
        ) in result.stderr
        with pytest.raises(BlockingIOError):
            plain.accept()


@pytest.mark.e2e
@pytest.mark.root
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_nested_json_from_the_server_is_one_line(fault_proxy: FaultProxy, method: str) -> None:
    """The directory (GET), or the new order (POST), nested 100000 deep."""
    with master_setup(fault_proxy) as setup:
        setup.register()
        chain = setup.one_section(**SITE)
        path = urlsplit(fault_proxy.directory_url).path
        if method == "POST":
            path = fault_proxy.path("newOrder")

        def nested(request: Request) -> Answer | None:
            if (request.method, request.path) != (method, path):
                return None
            return Answer(200, httpx.Headers({"Content-Type": "application/json"}), b"[" * 100000)

        fault_proxy.hooks.append(nested)
        result = setup.run("newOrder", check=False)
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert (
            f"{method} {fault_proxy.base}{path}: body is not JSON "
            f"(nested deeper than {MAX_JSON_DEPTH} levels)\n"
        ) in result.stderr
        assert not chain.exists()


@pytest.mark.e2e
@pytest.mark.root
def test_an_order_with_3000_authorizations_is_refused(fault_proxy: FaultProxy) -> None:
    """Pebble's order, its one authorization listed 3,000 times: refused
    before any is fetched, so no token file is written."""
    new_order = fault_proxy.path("newOrder")
    listed: list[str] = []

    def thousands(request: Request, answer: Answer) -> None:
        if request.path == new_order and answer.status == 201:
            order = json.loads(answer.body)
            listed.extend([order["authorizations"][0]] * 3000)
            answer.body = json.dumps({**order, "authorizations": listed}).encode()

    fault_proxy.answer_hooks.append(thousands)
    with master_setup(fault_proxy) as setup:
        setup.register()
        chain = setup.one_section(**SITE)
        result = setup.run("newOrder", check=False)
        assert result.returncode == 1
        assert (
            "the server sent an order with 3000 authorizations, "
            f"more than the {MAX_IDENTIFIERS} names an order may have\n"
        ) in result.stderr
        assert not chain.exists()
    assert len(listed) == 3000
    authorization = urlsplit(listed[0]).path
    assert not any(e.request.path == authorization for e in fault_proxy.exchanges)


# -- 7. SIGKILL of the master leaves its firewall rules and challenge directory --


def kill_mid_run(offline: Offline, challenge: Callable[[], Path | None]) -> int:
    """Start `lacme newOrder` (with a hanging client), SIGKILL it once
    CHALLENGE finds the challenge file, wait for its children to end (they
    are told to when it dies): its pid."""
    master = offline.start("newOrder")
    try:
        written(master, challenge)
        children = descendants(master.pid)
    finally:
        master.kill()
        master.communicate()
    wait_for(lambda: not any(alive(pid) for pid in children), "the children's end")
    return master.pid


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Warning: ")]


def left_by(pid: int) -> str:
    return f"left by lacme process {pid}, which is no longer running"


@pytest.mark.process
@pytest.mark.root
@pytest.mark.debian("iptables")
def test_what_a_killed_run_left_is_removed_by_the_next(netns: None, offline: Offline) -> None:
    port, mapped = free_ports(2)
    listen = f"{offline.directory / 'www.sock'}, 127.0.0.1:{port} [::ffff:127.0.0.1]:{mapped}"
    offline.lacme_conf("hang", listen=listen, extra="[webserver]\niptables = Yes\n")
    # lacme 0.8.2's rule, the same but untagged, is not ours to remove.
    perl = ["INPUT", "-p", "tcp", "-m", "tcp", "--dport", str(port), "-j", "ACCEPT"]
    subprocess.run(["iptables", "-I", *perl], check=True)
    rules = firewall()
    pid = kill_mid_run(offline, lambda: next(offline.tmp.glob("acme-challenge.*/token"), None))
    (left,) = offline.tmp.iterdir()
    assert (left / "token").exists()
    tagged = [rule for rule in firewall() if f" --comment lacme-{pid}-" in rule]
    # In and out: IPv4 for 127.0.0.1:PORT and the mapped address's IPv4 side, IPv6 for that address.
    assert len(tagged) == 6, firewall()
    assert sorted(firewall()) == sorted(rules + tagged)

    offline.lacme_conf("good", listen=listen, extra="[webserver]\niptables = Yes\n")
    result = offline.run("newOrder")
    assert result.returncode == 0, result.stderr
    assert sorted(warnings(result.stderr)) == sorted(
        [
            f"Warning: removed 2 ip6tables rules {left_by(pid)}",
            f"Warning: removed 4 iptables rules {left_by(pid)}",
            f"Warning: removed {left}, {left_by(pid)}",
        ]
    )
    assert firewall() == rules
    assert list(offline.tmp.iterdir()) == []
    assert not (offline.directory / "www.sock").exists()
    assert offline.files()["s.crt"] != OLD_CERT


@pytest.mark.process
@pytest.mark.root
def test_a_killed_runs_lock_and_challenges_are_removed_by_the_next(offline: Offline) -> None:
    challenges = offline.directory / "challenges"
    challenges.mkdir()
    os.chown(challenges, client_user().pw_uid, -1)
    extra = f"[webserver]\nchallenge-directory = {challenges}\n"
    offline.lacme_conf("hang", listen="", extra=extra)
    token = challenges / "token"
    pid = kill_mid_run(offline, lambda: token if token.exists() else None)
    assert sorted(p.name for p in challenges.iterdir()) == [".lacme.lock", "token"]
    assert (challenges / ".lacme.lock").read_text().startswith(f"{pid}\nlacme-{pid}-")

    offline.lacme_conf("good", listen="", extra=extra)
    result = offline.run("newOrder")
    assert result.returncode == 0, result.stderr
    assert warnings(result.stderr) == [
        f"Warning: emptied {challenges} and replaced its .lacme.lock, {left_by(pid)}"
    ]
    assert list(challenges.iterdir()) == []
    assert offline.files()["s.crt"] != OLD_CERT


# -- 8. Configuration writable by others is accepted ------------------------------


@pytest.mark.process
@pytest.mark.root
def test_a_certs_file_another_user_may_change_is_refused_and_its_notify_never_runs(
    offline: Offline,
) -> None:
    """A world-writable lacme-certs.conf of _lacme-www's was read, and its
    notify run as root."""
    marker = offline.directory / "notified"
    offline.section(f"notify = touch {marker}\n")
    os.chown(offline.certs_config, www_user().pw_uid, -1)
    offline.certs_config.chmod(0o666)
    before = offline.files()
    result = offline.run("newOrder")
    assert (result.returncode, result.stderr.splitlines()) == (
        1,
        [
            f"Error: {offline.certs_config}: refused: owned by _lacme-www, not root, "
            "and writable by group and others (mode 0666)"
        ],
    )
    assert not marker.exists()
    assert offline.files() == before
    # Root's again, and only root's to write, it is read and notify runs.
    os.chown(offline.certs_config, 0, -1)
    offline.certs_config.chmod(0o644)
    assert offline.run("newOrder").returncode == 0
    assert marker.exists()
