"""lacme-accountd as a process: command line, configuration, keys, socket
and stdio modes, refusals and clean shutdown.  What one hostile peer does to
a shared accountd (issue 13) is in tests/test_red_team.py."""

import json
import os
import pty
import select
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lacme import __version__
from lacme.accountd_protocol import parse_greeting
from support.accountd import (
    connect,
    request_line,
    run_accountd,
    standalone_accountd,
    thumbprint,
    unb64url,
    verify,
)
from support.commands import ACCOUNTD
from support.pki import new_key_file, write_mismatched_rsa_key

ALG = {"rsa2048": "RS256", "p256": "ES256", "p384": "ES384"}
pytestmark = pytest.mark.process


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    """An empty configuration file, so the test never reads /etc."""
    path = tmp_path / "accountd.conf"
    path.write_text("")
    return path


@pytest.fixture
def public_tmp() -> Iterator[Path]:
    """A directory other users can traverse (pytest's tmp_path is under a 0700 one)."""
    path = Path(tempfile.mkdtemp(prefix="lacme-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def nobody_key(directory: Path) -> Path:
    key = directory / "k.pem"
    new_key_file(key, "p256")
    shutil.chown(key, "nobody")
    return key


@pytest.fixture
def rsa_key(tmp_path: Path) -> Path:
    path = tmp_path / "account.key"
    new_key_file(path, "rsa2048")
    return path


def refused(done: subprocess.CompletedProcess[bytes], message: str) -> None:
    """The process failed with MESSAGE on one stderr line and printed nothing."""
    assert done.returncode != 0
    assert done.stdout == b""
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert message in lines[0]


# -- command line ----------------------------------------------------------


def test_version_and_help() -> None:
    assert run_accountd("--version").stdout.decode() == f"lacme-accountd (lacme) {__version__}\n"
    helped = run_accountd("--help")
    assert helped.returncode == 0
    for option in ("--config", "--privkey", "--socket", "--stdio", "--quiet", "--debug"):
        assert option.encode() in helped.stdout


def test_unknown_option_is_refused() -> None:
    refused(run_accountd("--bogus"), "unknown option: --bogus")


def test_abbreviated_option_is_refused() -> None:
    refused(run_accountd("--priv=file:/k", "--stdio"), "unknown option: --priv")


# -- stdio mode: greeting and signatures -----------------------------------


@pytest.mark.parametrize("kind", ALG)
def test_stdio_signs_with_each_key_type(tmp_path: Path, conf: Path, kind: str) -> None:
    key_path = tmp_path / "k.pem"
    new_key_file(key_path, kind)
    alg = ALG[kind]
    lines = [
        request_line(alg),
        request_line(alg, b'{"termsOfServiceAgreed":true}', kid=None, jwk={"kty": "x"}),
    ]
    done = run_accountd(
        f"--config={conf}", f"--privkey=file:{key_path}", "--stdio", stdin=b"".join(lines)
    )
    assert done.returncode == 0, done.stderr
    first, second, *signatures = done.stdout.split(b"\r\n")
    greeting = parse_greeting(first + b"\r\n", second + b"\r\n")
    assert greeting.alg == alg
    assert greeting.kid is None
    assert greeting.jwk_thumbprint == thumbprint(greeting.jwk)
    assert first.startswith(b"1 OK {")
    assert signatures[-1] == b""
    for line, signature in zip(lines, signatures[:-1], strict=True):
        verify(greeting.jwk, line[:-2], signature)
    assert done.stderr.decode().count("SIGNED") == 2


def test_keyid_is_sent_and_jwk_withheld(tmp_path: Path, rsa_key: Path) -> None:
    conf = tmp_path / "c.conf"
    conf.write_text(f"privkey = file:{rsa_key}\nkeyid = https://ca.test/acct/7\nquiet = Yes\n")
    done = run_accountd(f"--config={conf}", "--stdio")
    first, second, _ = done.stdout.split(b"\r\n")
    assert json.loads(first[len("1 OK ") :])["kid"] == "https://ca.test/acct/7"
    assert second == b"{}"
    assert done.stderr == b""


def test_refused_line_closes_the_conversation(conf: Path, rsa_key: Path) -> None:
    good = request_line("RS256")
    stdin = good + b"bm90IGpzb24.\r\n" + good
    done = run_accountd(
        f"--config={conf}", f"--privkey=file:{rsa_key}", "--stdio", "-q", stdin=stdin
    )
    assert done.returncode == 0
    # greeting (2 lines) and one signature, nothing for the line after the bad one
    assert done.stdout.count(b"\r\n") == 3
    assert b"NOSIGN [invalid JWS Protected Header (not JSON)]" in done.stderr


def test_wrong_alg_is_refused(conf: Path, rsa_key: Path) -> None:
    done = run_accountd(
        f"--config={conf}", f"--privkey=file:{rsa_key}", "--stdio", stdin=request_line("ES256")
    )
    assert done.stdout.count(b"\r\n") == 2
    assert b"has alg 'ES256', the key signs RS256" in done.stderr


def test_overlong_line_is_refused(conf: Path, rsa_key: Path) -> None:
    done = run_accountd(
        f"--config={conf}",
        f"--privkey=file:{rsa_key}",
        "--stdio",
        stdin=b"A" * (2 << 20) + b".\r\n",
    )
    assert done.stdout.count(b"\r\n") == 2
    assert b"NOSIGN [line longer than" in done.stderr


# -- configuration -----------------------------------------------------------


def test_command_line_wins_over_configuration(tmp_path: Path, rsa_key: Path) -> None:
    conf = tmp_path / "c.conf"
    conf.write_text("privkey = file:/nonexistent/key\nquiet = No\n")
    done = run_accountd(
        f"--config={conf}",
        f"--privkey=file:{rsa_key}",
        "--quiet",
        "--stdio",
        stdin=request_line("RS256"),
    )
    assert done.returncode == 0
    assert done.stdout.count(b"\r\n") == 3
    assert done.stderr == b""


def test_logfile_gets_requests_even_when_quiet(tmp_path: Path, rsa_key: Path) -> None:
    log = tmp_path / "accountd.log"
    conf = tmp_path / "c.conf"
    conf.write_text(f"privkey = file:{rsa_key}\nlogfile = {log}\nquiet = yes\n")
    done = run_accountd(f"--config={conf}", "--stdio", stdin=request_line("RS256", b"{}"))
    assert done.stderr == b""
    logged = log.read_text()
    assert "] [" in logged
    assert '"url": "https://ca.test/new-acct"' in logged
    assert "SIGNED" in logged
    assert "payload={}" in logged


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("privkey = file:/k\nsocket_path = /x\n", "c.conf: unknown key 'socket_path'"),
        ("[accountd]\nprivkey = file:/k\n", "c.conf: [accountd] is lacme.conf's section: "),
        ("[webserver]\nprivkey = file:/k\n", "c.conf: unknown section [webserver]"),
        ("quiet = maybe\n", "c.conf: quiet: expected Yes or No, not 'maybe'"),
        (
            "privkey = file:/k\nconfinement = off\n",
            "c.conf: confinement: expected Yes or No, not 'off'",
        ),
        ("privkey = file:/k\n  junk\n", "c.conf:2: syntax error"),
        ("privkey = pkcs11:slot0\n", "unsupported privkey 'pkcs11:slot0'"),
        ("privkey = file:\n", "unsupported privkey 'file:'"),
        ("", "no account key: set 'privkey'"),
        ("privkey = file:/k/%Z\n", "unknown specifier %Z"),
        ("logfile = /nonexistent/dir/log\nprivkey = file:/k\n", "can't open log file"),
    ],
)
def test_configuration_refusals(tmp_path: Path, content: str, message: str) -> None:
    conf = tmp_path / "c.conf"
    conf.write_text(content)
    refused(run_accountd(f"--config={conf}", "--stdio"), message)


def test_a_configuration_others_may_write_is_refused(tmp_path: Path) -> None:
    # Its gpg runs as accountd's user: root when the master spawns it.
    conf = tmp_path / "c.conf"
    conf.write_text("privkey = gpg:/k\ngpg = /tmp/anyone-s-program\n")
    conf.chmod(0o646)
    refused(
        run_accountd(f"--config={conf}", "--stdio"),
        f"configuration file {conf}: refused: writable by others (mode 0646)",
    )


def test_missing_explicit_configuration_is_an_error(tmp_path: Path) -> None:
    refused(
        run_accountd(f"--config={tmp_path}/none.conf", "--stdio"),
        f"can't read configuration file {tmp_path}/none.conf: No such file or directory",
    )


@pytest.mark.root  # switching to user nobody
def test_missing_default_configuration_counts_as_empty(public_tmp: Path) -> None:
    key = nobody_key(public_tmp)
    done = run_accountd(
        f"--privkey=file:{key}",
        "--stdio",
        "--debug",
        user="nobody",
        env={"HOME": "/nonexistent", "XDG_CONFIG_HOME": str(public_tmp / "none")},
    )
    assert done.returncode == 0, done.stderr
    assert b"Ignoring missing configuration file at default location" in done.stderr
    assert done.stdout.startswith(b"1 OK ")


@pytest.mark.root  # switching to user nobody
def test_default_socket_needs_xdg_runtime_dir_for_users(public_tmp: Path) -> None:
    key = nobody_key(public_tmp)
    done = run_accountd(
        f"--privkey=file:{key}",
        user="nobody",
        env={"HOME": "/nonexistent", "XDG_CONFIG_HOME": str(public_tmp)},
    )
    refused(done, 'undefined expansion %t in "%t/S.lacme"')


# -- account keys ------------------------------------------------------------


def keyfile_refused(conf: Path, key: Path, message: str, **kw: Any) -> None:
    refused(run_accountd(f"--config={conf}", f"--privkey=file:{key}", "--stdio", **kw), message)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("ed25519", "unsupported key type Ed25519 (supported: RSA, ECDSA P-256, ECDSA P-384)"),
        ("p521", "unsupported ECDSA curve secp521r1"),
        ("rsa1024", "RSA key of 1024 bits is too short"),
    ],
)
def test_unsupported_keys_are_refused(tmp_path: Path, conf: Path, kind: str, message: str) -> None:
    key = tmp_path / "k.pem"
    new_key_file(key, kind)
    keyfile_refused(conf, key, message)


def test_public_key_is_refused(tmp_path: Path, conf: Path, rsa_key: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    private = serialization.load_pem_private_key(rsa_key.read_bytes(), None)
    public = tmp_path / "pub.pem"
    public.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    keyfile_refused(conf, public, f"{public}: not a private key (this is a public key)")


def test_mismatched_rsa_key_is_refused(tmp_path: Path, conf: Path) -> None:
    key = tmp_path / "mismatched.pem"
    write_mismatched_rsa_key(key)
    keyfile_refused(conf, key, f"{key}: the key's private half does not sign for its public half")


def test_garbage_key_is_refused(tmp_path: Path, conf: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    keyfile_refused(conf, garbage, f"{garbage}: not a PEM private key")


def test_missing_key_is_refused(tmp_path: Path, conf: Path) -> None:
    keyfile_refused(
        conf,
        tmp_path / "none.pem",
        f"can't read account key {tmp_path}/none.pem: No such file or directory",
    )


@pytest.mark.root  # switching to user nobody
def test_unreadable_key_is_refused(public_tmp: Path) -> None:
    conf = public_tmp / "c.conf"
    conf.write_text("")
    key = public_tmp / "root-only.pem"
    new_key_file(key, "rsa2048")
    keyfile_refused(conf, key, f"can't read account key {key}: Permission denied", user="nobody")


def test_key_readable_by_others_gets_a_warning(tmp_path: Path, conf: Path, rsa_key: Path) -> None:
    rsa_key.chmod(0o644)
    done = run_accountd(f"--config={conf}", f"--privkey=file:{rsa_key}", "--stdio", "-q")
    assert done.returncode == 0
    assert b"is accessible to group or others (mode 0644)" in done.stderr


def test_encrypted_key_without_terminal_is_refused(tmp_path: Path, conf: Path) -> None:
    key = tmp_path / "enc.pem"
    new_key_file(key, "p256", passphrase=b"s3cret")
    keyfile_refused(
        conf, key, "the key is encrypted and there is no terminal", start_new_session=True
    )


class OnTerminal:
    """A process whose controlling terminal is a pseudo-terminal we hold."""

    def __init__(self, argv: list[str]) -> None:
        self.pid, self.master = pty.fork()
        if self.pid == 0:
            os.execv(argv[0], argv)
        self.output = b""

    def read_until(self, marker: bytes) -> bool:
        """Collect output until MARKER shows up (True) or the terminal closes."""
        while marker not in self.output:
            ready, _, _ = select.select([self.master], [], [], 30)
            try:
                chunk = os.read(self.master, 4096) if ready else b""
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            if not chunk:
                return False
            self.output += chunk
        return True

    def finish(self) -> int:
        self.read_until(b"\0never\0")
        os.close(self.master)
        return os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])


def test_encrypted_key_asks_the_terminal(tmp_path: Path, conf: Path) -> None:
    key = tmp_path / "enc.pem"
    new_key_file(key, "rsa2048", passphrase=b"s3cret")
    sock = tmp_path / "S.lacme"
    daemon = OnTerminal(
        [str(ACCOUNTD), f"--config={conf}", f"--privkey=file:{key}", f"--socket={sock}"]
    )
    assert daemon.read_until(f"Passphrase for {key}: ".encode())
    os.write(daemon.master, b"s3cret\n")
    assert daemon.read_until(b"Starting lacme Account Key Manager")
    assert b"s3cret" not in daemon.output  # not echoed
    conn = connect(sock)
    line = request_line("RS256")
    verify(conn.greeting.jwk, line[:-2], conn.sign(line))
    conn.close()
    os.kill(daemon.pid, signal.SIGTERM)
    assert daemon.finish() == 0
    assert not sock.exists()


def test_wrong_passphrase_is_refused(tmp_path: Path, conf: Path) -> None:
    key = tmp_path / "enc.pem"
    new_key_file(key, "p256", passphrase=b"s3cret")
    prompted = OnTerminal([str(ACCOUNTD), f"--config={conf}", f"--privkey=file:{key}", "--stdio"])
    assert prompted.read_until(b"Passphrase for")
    os.write(prompted.master, b"wrong\n")
    assert prompted.finish() != 0
    assert f"{key}: wrong passphrase".encode() in prompted.output


# -- gpg ---------------------------------------------------------------------


@pytest.mark.debian("gnupg")
def test_gpg_encrypted_key(tmp_path: Path) -> None:
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    key = tmp_path / "k.pem"
    new_key_file(key, "p384")
    gpg = [
        "gpg",
        "--homedir",
        str(home),
        "--batch",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "pw",
    ]
    try:
        subprocess.run(
            [*gpg, "--symmetric", "-o", f"{key}.gpg", str(key)], check=True, capture_output=True
        )
        key.unlink()
        conf = tmp_path / "c.conf"
        conf.write_text(f"privkey = gpg:{key}.gpg\ngpg = {' '.join(gpg)} --quiet\n")
        done = run_accountd(f"--config={conf}", "--stdio", "-q", stdin=request_line("ES384"))
        assert done.returncode == 0, done.stderr
        first, second, signature, _ = done.stdout.split(b"\r\n")
        greeting = parse_greeting(first + b"\r\n", second + b"\r\n")
        verify(greeting.jwk, request_line("ES384")[:-2], signature)
        assert len(unb64url(signature)) == 96
    finally:
        # gpg started an agent for this home: it would outlive the test.
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=True)


@pytest.mark.parametrize(
    ("gpg", "message"),
    [
        ("/bin/false", "/bin/false failed to decrypt"),
        ("/nonexistent/gpg --quiet", "can't run gpg command '/nonexistent/gpg'"),
    ],
)
def test_failing_gpg_is_refused(tmp_path: Path, gpg: str, message: str) -> None:
    conf = tmp_path / "c.conf"
    conf.write_text(f"privkey = gpg:{tmp_path}/k.gpg\ngpg = {gpg}\n")
    refused(run_accountd(f"--config={conf}", "--stdio"), message)


# -- socket mode -------------------------------------------------------------


def test_socket_serves_concurrent_clients_and_is_private(
    tmp_path: Path, conf: Path, rsa_key: Path
) -> None:
    sock = tmp_path / "S.lacme"
    with standalone_accountd([ACCOUNTD], sock, f"--config={conf}", f"--privkey=file:{rsa_key}"):
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        idle = connect(sock)  # holds a connection open without asking anything
        busy = connect(sock)
        line = request_line("RS256")
        verify(busy.greeting.jwk, line[:-2], busy.sign(line))
        verify(idle.greeting.jwk, line[:-2], idle.sign(line))
        # a refused request ends only its own connection
        assert busy.sign(b"garbage\r\n") == b""
        verify(idle.greeting.jwk, line[:-2], idle.sign(line))
        idle.close()
        busy.close()


def test_socket_answers_pipelined_lines_before_closing_on_a_refusal(
    tmp_path: Path, conf: Path, rsa_key: Path
) -> None:
    sock = tmp_path / "S.lacme"
    with standalone_accountd([ACCOUNTD], sock, f"--config={conf}", f"--privkey=file:{rsa_key}"):
        client = connect(sock)
        good = request_line("RS256", b"{}")
        client.sock.sendall(good * 20 + b"not a request\r\n" + good)
        answers = client.rfile.read()  # until accountd closes the connection
        client.close()
    signatures = answers.split(b"\r\n")
    assert len(signatures) == 21
    assert signatures[-1] == b""
    for signature in signatures[:-1]:
        verify(client.greeting.jwk, good[:-2], signature)


def test_socket_serves_while_many_clients_idle(tmp_path: Path, conf: Path, rsa_key: Path) -> None:
    sock = tmp_path / "S.lacme"
    with standalone_accountd([ACCOUNTD], sock, f"--config={conf}", f"--privkey=file:{rsa_key}"):
        idle = [connect(sock) for _ in range(50)]
        half_line = socket.socket(socket.AF_UNIX)
        half_line.connect(str(sock))
        half_line.sendall(b"eyJhbGciOi")  # a request that never ends
        busy = connect(sock)
        line = request_line("RS256")
        verify(busy.greeting.jwk, line[:-2], busy.sign(line))
        for conn in [*idle, busy]:
            conn.close()
        half_line.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_removes_the_socket(tmp_path: Path, conf: Path, rsa_key: Path, signum: int) -> None:
    sock = tmp_path / "S.lacme"
    with standalone_accountd(
        [ACCOUNTD], sock, f"--config={conf}", f"--privkey=file:{rsa_key}"
    ) as daemon:
        client = connect(sock)
        assert daemon.terminate(signum) == 0, daemon.output()
        assert not sock.exists()
        client.close()


def test_insecure_socket_directory_is_refused(tmp_path: Path, conf: Path, rsa_key: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    refused(
        run_accountd(f"--config={conf}", f"--privkey=file:{rsa_key}", f"--socket={shared}/S.lacme"),
        f"insecure permissions on {shared} (mode 1777)",
    )
    assert not (shared / "S.lacme").exists()


def test_missing_socket_directory_is_refused(tmp_path: Path, conf: Path, rsa_key: Path) -> None:
    missing = tmp_path / "missing"
    refused(
        run_accountd(
            f"--config={conf}", f"--privkey=file:{rsa_key}", f"--socket={missing}/S.lacme"
        ),
        f"can't stat socket directory {missing}: No such file or directory",
    )


def test_existing_socket_path_is_refused_and_kept(
    tmp_path: Path, conf: Path, rsa_key: Path
) -> None:
    existing = tmp_path / "S.lacme"
    existing.write_text("precious")
    refused(
        run_accountd(f"--config={conf}", f"--privkey=file:{rsa_key}", f"--socket={existing}"),
        f"{existing} already exists",
    )
    assert existing.read_text() == "precious"
