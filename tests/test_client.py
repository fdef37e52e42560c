"""The ACME client process (lacme.client, lacme.acme).

Unit tests of its refusals, the client run directly against a hand-made
hostile server, and Perl lacme 0.8.2's master driving it against Pebble.
"""

from __future__ import annotations

import email.utils
import json
import os
import re
import socket
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

import lacme
from lacme.acme import Trial
from lacme.acme_http import (
    ERROR_NS,
    EXCHANGE_TIMEOUT,
    MAX_SERVER_WAIT,
    AcmeError,
    AcmeTimeout,
    Patience,
    Problem,
    parse_retry_after,
    valid_nonce,
)
from lacme.acme_resources import Authorization
from lacme.client import Accountd, Fatal, read_settings, tls_version_range, validation_of
from lacme.client_contract import (
    EXIT_UNREACHABLE,
    FAILED,
    MAX_MESSAGE,
    REUSED,
    UNFINISHED,
    VALIDATED,
    Validation,
)
from support import requires
from support.accountd import GREETING, fake_accountd, standalone_accountd
from support.clock import FakeClock
from support.commands import ACCOUNTD, CLIENT, CONTACT, PERL_ACCOUNTD, run_client
from support.hostile import PEM, TOKEN, Answer, HostileServer
from support.masters import PerlMasterSetup, perl_master_setup
from support.pebble import PebbleFactory, PebbleServer
from support.system import free_ports

CSR = b"0\x82not really a CSR"


# -- Units ------------------------------------------------------------------


@pytest.mark.unit
def test_retry_after_seconds() -> None:
    assert parse_retry_after("120", now=0) == 120
    assert parse_retry_after(" 0 ", now=0) == 0
    assert parse_retry_after("9" * 400, now=0) == 86400


@pytest.mark.unit
def test_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 90, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(90)
    # A date in the past means now.
    assert parse_retry_after(email.utils.formatdate(now - 90, usegmt=True), now=now) == 0


@pytest.mark.unit
@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "Fri, 99 Foo 2026", "٣"])
def test_retry_after_garbage(value: str | None) -> None:
    assert parse_retry_after(value, now=0) is None


@pytest.mark.unit
@pytest.mark.parametrize("value", ["oFvnlFP1wIhRlYS2jTaXbA", "a-_9", "AAAAAA", "ABCDEFG"])
def test_valid_nonce(value: str) -> None:
    assert valid_nonce(value)


@pytest.mark.unit
@pytest.mark.parametrize(
    # Not the alphabet (base64's own, padding, spaces, non-ASCII digits), or
    # a length no octet string encodes to.
    "value",
    ["not a nonce!", "ab+/", "YQ==", "ab\n", " abcd", "٣٣", "A", "ABCDE"],
)
def test_invalid_nonce(value: str) -> None:
    assert not valid_nonce(value)


@pytest.mark.unit
def test_problem_with_subproblems() -> None:
    problem = Problem.from_json(
        {
            "type": "urn:ietf:params:acme:error:rejectedIdentifier",
            "detail": "some names were rejected",
            "status": 400,
            "subproblems": [
                {
                    "type": "urn:ietf:params:acme:error:caa",
                    "detail": "CAA forbids",
                    "identifier": {"type": "dns", "value": "a.example.test"},
                }
            ],
        }
    )
    assert str(problem) == (
        "rejectedIdentifier: some names were rejected\n  dns:a.example.test: caa: CAA forbids"
    )


@pytest.mark.unit
def test_problem_not_an_object() -> None:
    assert "malformed problem document" in str(Problem.from_json(["x"]))


def settings_fd(text: bytes) -> int:
    read, write = os.pipe()
    os.write(write, text)
    os.close(write)
    return read


@pytest.mark.unit
def test_settings_from_perl_master() -> None:
    # What lacme 0.8.2's master writes: every [client] key, unset ones null.
    settings = read_settings(
        settings_fd(
            b'{"server":"https://ca.test/dir","timeout":"12","SSL_verify":"no",'
            b'"SSL_version":null,"SSL_cipher_list":null,"socket":"/run/S","user":"u",'
            b'"group":"g","command":"/x"}'
        )
    )
    assert settings.server == "https://ca.test/dir"
    assert settings.timeout == 12
    assert not settings.verify
    assert settings.cafile is None


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"[]", "not a JSON object"),
        (b"{", "can't read"),
        (b'{"timeout":"soon"}', "timeout"),
        (b'{"timeout":"-1"}', "timeout"),
        (b'{"SSL_ca_path":"/x"}', "unknown setting"),
    ],
)
def test_settings_refused(text: bytes, message: str) -> None:
    with pytest.raises(Fatal, match=message):
        read_settings(settings_fd(text))


def signed_by(answer: bytes) -> str:
    """What the client makes of ANSWER, followed by end of file, as accountd's
    answer to its request line (which must be as lacme 0.8.2's)."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(GREETING + answer)
        theirs.shutdown(socket.SHUT_WR)
        accountd = Accountd(ours)
        try:
            return accountd.sign(b"e30.e30", Patience(0))
        finally:
            accountd.file.close()
            assert theirs.recv(100) == b"e30.e30\r\n"


@pytest.mark.unit
def test_accountd_signature_taken() -> None:
    assert signed_by(b"c2ln\r\n") == "c2ln"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"", "lacme-accountd closed the connection: it refused to sign"),
        # Taken before at end of file; Perl lacme 0.8.2's client refuses it too.
        (b"c2ln", "lacme-accountd sent a malformed signature b'c2ln'"),
        (b"c2k=\r\n", "lacme-accountd sent a malformed signature b'c2k=\\r\\n'"),
    ],
)
def test_accountd_signature_refused(answer: bytes, message: str) -> None:
    with pytest.raises(AcmeError) as refused:
        signed_by(answer)
    assert str(refused.value) == message


@pytest.mark.unit
def test_tls_versions() -> None:
    v = ssl.TLSVersion
    assert tls_version_range("TLSv1_2") == (v.TLSv1_2, v.TLSv1_2)
    assert tls_version_range("SSLv23:!SSLv3:!TLSv1:!TLSv1_1") == (v.TLSv1_2, v.TLSv1_3)
    assert tls_version_range("!TLSv1_3") == (v.TLSv1, v.TLSv1_2)
    with pytest.raises(Fatal, match="allows no TLS"):
        tls_version_range("SSLv3")
    with pytest.raises(Fatal, match="unknown"):
        tls_version_range("QUIC")


# -- Against a hand-made hostile server ---------------------------------------


def new_order(
    hostile: HostileServer, workdir: Path, env: dict[str, str] | None = None, **settings: object
) -> tuple[int, str, str]:
    with fake_accountd() as accountd:
        result = run_client(
            "newOrder",
            "a.example.test",
            settings=hostile.settings(**settings),
            accountd=accountd,
            stdin=CSR,
            cwd=workdir,
            env=env,
        )
    # Whatever happened, nothing was written beside the challenge directory.
    assert [p.name for p in workdir.parent.iterdir()] == [workdir.name]
    return result.returncode, result.stdout.decode(), result.stderr.decode()


@pytest.mark.process
def test_hostile_happy_path(hostile: HostileServer, workdir: Path) -> None:
    """The hand-made server works: the refusals below are about what they change."""
    status, out, err = new_order(hostile, workdir)
    assert status == 0, err
    assert out == PEM
    assert (workdir / TOKEN).read_text() == f"{TOKEN}.thumb"
    assert oct((workdir / TOKEN).stat().st_mode & 0o777) == oct(0o644 & ~_umask())
    # Keep-alive: one connection for the whole conversation.
    assert hostile.connections == 1, hostile.requests


@pytest.mark.process
@pytest.mark.parametrize("said", [True, False], ids=["connection-close", "unsaid"])
def test_a_connection_the_server_closes_is_opened_again(
    hostile: HostileServer, workdir: Path, said: bool
) -> None:
    """A server closing the keep-alive connection after an answer, saying
    so or not: the next request goes on a new connection, the first time
    (no failure to retry)."""

    def hang_up(handler: BaseHTTPRequestHandler) -> None:
        body = b'{"status":"valid"}'
        handler.send_header("Location", f"{hostile.base}/acct/1")
        handler.send_header("Content-Length", str(len(body)))
        if said:
            handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(body)
        # Now, not once the handler is done: before the client's next request.
        handler.connection.shutdown(socket.SHUT_RDWR)
        handler.close_connection = True

    hostile.overrides["/acct"] = (200, "application/json", hang_up, {})
    status, out, err = new_order(hostile, workdir, env={"DEBUG": "1"})
    assert status == 0, err
    assert out == PEM
    assert "!!! " not in err
    assert hostile.connections == 2, hostile.requests
    assert len(set(hostile.requests)) == len(hostile.requests), hostile.requests


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.process
@pytest.mark.parametrize("token", ["../escape", "a/b", "..", "", "tok en", "tök", "a\x00b"])
def test_bad_token(hostile: HostileServer, workdir: Path, token: str) -> None:
    hostile.token = token
    status, out, err = new_order(hostile, workdir)
    assert status != 0
    assert out == ""
    assert "token" in err
    assert list(workdir.iterdir()) == []


@pytest.mark.process
def test_existing_token_file_kept(hostile: HostileServer, workdir: Path) -> None:
    (workdir / TOKEN).symlink_to("/etc/passwd")
    status, _, err = new_order(hostile, workdir)
    assert "File exists" in err
    assert (workdir / TOKEN).is_symlink()
    assert status == 0


@pytest.mark.process
def test_wrong_content_type(hostile: HostileServer, workdir: Path) -> None:
    hostile.overrides["/dir"] = (200, "text/html", b"<html>{}</html>", {})
    status, _, err = new_order(hostile, workdir)
    assert status != 0
    assert "Content-Type text/html, not application/json" in err


@pytest.mark.process
def test_encoded_body_refused(hostile: HostileServer, workdir: Path) -> None:
    """The client asks for no encoding (identity): a body in gzip is refused,
    not decompressed past its bound."""
    hostile.overrides["/dir"] = (200, "application/json", b"\x1f\x8b", {"Content-Encoding": "gzip"})
    status, _, err = new_order(hostile, workdir)
    assert status != 0
    assert f"GET {hostile.base}/dir: refusing a body in Content-Encoding gzip" in err


@pytest.mark.process
def test_non_json_body(hostile: HostileServer, workdir: Path) -> None:
    hostile.overrides["/authz/1"] = (200, "application/json", b"{not json", {})
    status, _, err = new_order(hostile, workdir)
    assert status != 0
    assert "body is not JSON" in err


@pytest.mark.process
def test_oversized_body_announced(hostile: HostileServer, workdir: Path) -> None:
    def huge(handler: BaseHTTPRequestHandler) -> None:
        handler.send_header("Content-Length", str(50 << 20))
        handler.end_headers()
        handler.wfile.write(b"{" + b" " * (1 << 20))

    hostile.overrides["/new-order"] = (201, "application/json", huge, {})
    status, _, err = new_order(hostile, workdir)
    assert status != 0
    assert f"refusing a {50 << 20}-byte body" in err


@pytest.mark.process
def test_oversized_body_streamed(hostile: HostileServer, workdir: Path) -> None:
    """50 MB without a Content-Length: refused once past the bound, not read whole."""

    def huge(handler: BaseHTTPRequestHandler) -> None:
        handler.send_header("Connection", "close")
        handler.end_headers()
        for _ in range(50):
            handler.wfile.write(b" " * (1 << 20))

    hostile.overrides["/new-order"] = (201, "application/json", huge, {})
    status, _, err = new_order(hostile, workdir)
    assert status != 0
    assert f"refusing a body over {1 << 20} bytes" in err


@pytest.mark.process
def test_certificate_html(hostile: HostileServer, workdir: Path) -> None:
    hostile.overrides["/cert/1"] = (200, "text/html", b"<html>a certificate</html>", {})
    status, out, err = new_order(hostile, workdir)
    assert status != 0
    assert out == ""
    assert "Content-Type text/html, not application/pem-certificate-chain" in err


@pytest.mark.process
def test_certificate_not_pem(hostile: HostileServer, workdir: Path) -> None:
    hostile.overrides["/cert/1"] = (200, "application/pem-certificate-chain", b"<html>", {})
    status, _, err = new_order(hostile, workdir)
    assert status != 0
    assert "not PEM" in err


@pytest.mark.process
def test_order_never_valid(hostile: HostileServer, workdir: Path) -> None:
    hostile.order_status = "pending"

    def authorization(http_01_status: str | None) -> Answer:
        http_01 = {"type": "http-01", "token": TOKEN, "url": f"{hostile.base}/chall/1"}
        if http_01_status is not None:
            http_01["status"] = http_01_status
        dns_01 = {"type": "dns-01", "token": TOKEN, "url": f"{hostile.base}/chall/2"}
        authz = {
            "status": "pending",
            "identifier": {"type": "dns", "value": "a.example.test"},
            "challenges": [http_01, dns_01],
        }
        return 200, "application/json", json.dumps(authz).encode(), {}

    hostile.queued["/authz/1"] = [authorization(None)]
    hostile.overrides["/authz/1"] = authorization("processing")
    status, out, err = new_order(hostile, workdir, timeout="2")
    assert status != 0
    assert out == ""
    # Where validation stands, for each name.
    assert err == (
        f"lacme-client {lacme.__version__}: error: timeout (2s) exceeded polling order "
        f"{hostile.base}/order/1: the order is pending\n"
        "  dns:a.example.test: authorization pending, http-01 challenge processing\n"
    )


@pytest.mark.process
def test_headers_dripping_are_cut_at_the_timeout(hostile: HostileServer, workdir: Path) -> None:
    """A server sending its headers a byte at a time resets any timeout per
    read: the bound is on the whole exchange."""
    dripped: list[int] = []

    def drip(handler: BaseHTTPRequestHandler) -> None:
        handler.flush_headers()
        handler.wfile.write(b"X-Drip: ")
        # Far longer than the timeout, but finite, should the client wait.
        for _ in range(600):
            handler.wfile.write(b"a")
            handler.wfile.flush()
            dripped.append(1)
            time.sleep(0.05)
        handler.wfile.write(b"\r\nContent-Length: 2\r\n\r\n{}")

    hostile.overrides["/dir"] = (200, "application/json", drip, {})
    status, _, err = new_order(hostile, workdir, timeout="1")
    assert status != 0
    assert err == (
        f"lacme-client {lacme.__version__}: error: timeout (1s) exceeded retrying: "
        f"GET {hostile.base}/dir: no complete answer within 1s\n"
    )
    assert hostile.requests == ["GET /dir"]
    assert len(dripped) < 600


@pytest.mark.process
def test_retry_after_beyond_what_lacme_waits(hostile: HostileServer, workdir: Path) -> None:
    hostile.order_status = "processing"
    hostile.overrides["/order/1"] = (
        200,
        "application/json",
        b'{"status":"processing"}',
        {"Retry-After": "3600"},
    )
    status, _, err = new_order(hostile, workdir, timeout="20")
    assert status != 0
    assert err == (
        f"lacme-client {lacme.__version__}: error: giving up polling order "
        f"{hostile.base}/order/1: the server asked to wait 3600s more, past the "
        f"{MAX_SERVER_WAIT:g}s lacme waits for it in all: the order is processing\n"
    )


@pytest.mark.unit
def test_problem_document_shown(hostile: HostileServer, workdir: Path) -> None:
    hostile.overrides["/new-order"] = (
        400,
        "application/problem+json",
        b'{"type":"urn:ietf:params:acme:error:rejectedIdentifier","detail":"nope",'
        b'"subproblems":[{"type":"urn:ietf:params:acme:error:malformed","detail":"bad name",'
        b'"identifier":{"type":"dns","value":"a.example.test"}}]}',
        {},
    )
    status, _, err = new_order(hostile, workdir)
    assert status != 0
    assert "rejectedIdentifier: nope" in err
    assert "dns:a.example.test: malformed: bad name" in err


@pytest.mark.process
def test_5xx_and_bad_nonce_retried(hostile: HostileServer, workdir: Path) -> None:
    bad_nonce: Answer = (
        400,
        "application/problem+json",
        b'{"type":"urn:ietf:params:acme:error:badNonce","detail":"stale"}',
        {},
    )
    hostile.queued["/authz/1"] = [(503, "", b"", {"Retry-After": "0"}), (502, "", b"", {})]
    hostile.queued["/chall/1"] = [bad_nonce] * 5
    status, _, err = new_order(hostile, workdir)
    assert status == 0, err
    assert hostile.requests.count("POST /authz/1") == 3
    assert hostile.requests.count("POST /chall/1") == 6


@pytest.mark.process
def test_bad_nonce_bounded(hostile: HostileServer, workdir: Path) -> None:
    hostile.overrides["/chall/1"] = (
        400,
        "application/problem+json",
        b'{"type":"urn:ietf:params:acme:error:badNonce","detail":"stale"}',
        {},
    )
    status, _, err = new_order(hostile, workdir)
    assert status != 0
    assert "21 nonces rejected: badNonce: stale" in err


@pytest.mark.process
def test_bad_greeting(hostile: HostileServer, workdir: Path) -> None:
    with fake_accountd(b'2 OK {"alg":"ES256"}\r\n{}\r\n') as accountd:
        result = run_client("account", "0", settings=hostile.settings(), accountd=accountd)
    assert result.returncode != 0
    assert "protocol version 2" in result.stderr.decode()
    assert hostile.requests == []


@pytest.mark.process
def test_accountd_unreachable(hostile: HostileServer) -> None:
    ours, theirs = socket.socketpair()
    theirs.close()
    with ours:
        result = run_client("account", "0", settings=hostile.settings(), accountd=ours)
    assert result.returncode != 0
    assert "without a greeting" in result.stderr.decode()
    assert hostile.requests == []


@pytest.mark.process
@pytest.mark.parametrize("server", ["ftp://127.0.0.1/dir", "https://[::1/dir"])
def test_bad_server_url(server: str) -> None:
    with fake_accountd() as accountd:
        result = run_client("account", "0", settings={"server": server}, accountd=accountd)
    assert result.returncode == 1
    assert f"GET {server}: " in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()


@pytest.mark.process
def test_an_unreachable_server_is_its_own_exit_status(hostile: HostileServer) -> None:
    """Connection refused for as long as the client tries: EXIT_UNREACHABLE,
    for the master to ask nothing more in the run; an answering server
    failing is not that."""
    (port,) = free_ports(1)
    down = f"https://127.0.0.1:{port}/dir"
    with fake_accountd() as accountd:
        settings = {"server": down, "timeout": "1"}
        result = run_client("directory", settings=settings, accountd=accountd)
    assert result.returncode == EXIT_UNREACHABLE
    assert result.stderr.decode().startswith(
        f"lacme-client {lacme.__version__}: error: timeout (1s) exceeded retrying: GET {down}: "
    )
    hostile.overrides["/dir"] = (503, "", b"", {"Retry-After": "0"})
    with fake_accountd() as accountd:
        result = run_client("directory", settings=hostile.settings(), accountd=accountd)
    assert result.returncode == 1
    assert "giving up after 6 attempts" in result.stderr.decode()


@pytest.mark.process
def test_ssl_verify_on_by_default(hostile: HostileServer) -> None:
    """Without SSL_CAfile the hand-made CA is unknown: refused."""
    with fake_accountd() as accountd:
        result = run_client(
            "account", "0", settings={"server": hostile.directory_url}, accountd=accountd
        )
    assert result.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr.decode()


@pytest.mark.process
def test_ssl_cert_file(hostile: HostileServer) -> None:
    with fake_accountd() as accountd:
        result = run_client(
            "account",
            "0",
            settings={"server": hostile.directory_url},
            accountd=accountd,
            env={"SSL_CERT_FILE": str(hostile.ca_bundle)},
        )
    assert result.returncode == 0, result.stderr.decode()


@pytest.mark.process
def test_ssl_verify_no(hostile: HostileServer) -> None:
    with fake_accountd() as accountd:
        result = run_client(
            "account",
            "0",
            settings={"server": hostile.directory_url, "SSL_verify": "No"},
            accountd=accountd,
        )
    assert result.returncode == 0, result.stderr.decode()
    assert "Warning: SSL_verify = No" in result.stderr.decode()


@pytest.mark.process
def test_user_agent_and_debug(hostile: HostileServer) -> None:
    with fake_accountd() as accountd:
        result = run_client(
            "account", "0", settings=hostile.settings(), accountd=accountd, env={"DEBUG": "1"}
        )
    assert result.returncode == 0
    assert hostile.user_agents == {f"lacme/{lacme.__version__}"}
    assert ">>> GET " in result.stderr.decode()
    assert '"onlyReturnExisting": true' in result.stderr.decode()


# -- Perl lacme 0.8.2's master driving our client against Pebble ---------------


@pytest.fixture(
    params=["our-accountd", pytest.param("perl-accountd", marks=requires.perl_accountd)]
)
def either_accountd(request: pytest.FixtureRequest) -> list[str]:
    """Our lacme-accountd, then Perl's."""
    return [str(ACCOUNTD if request.param == "our-accountd" else PERL_ACCOUNTD)]


def serial(setup: PerlMasterSetup) -> int:
    return x509.load_pem_x509_certificate(setup.certificate.read_bytes()).serial_number


@pytest.mark.e2e
@pytest.mark.interop
@pytest.mark.root
@pytest.mark.debian(*requires.PERL_MASTER)
def test_perl_master_register_issue_revoke(
    pebble: PebbleServer, either_accountd: list[str]
) -> None:
    with perl_master_setup(
        pebble, accountd_command=either_accountd, client_command=CLIENT
    ) as setup:
        setup.register_and_issue()
        # Under Perl's master too, the client confines itself (lacme.confinement).
        debug = setup.run("--debug", "newOrder", "--force").stderr
        assert re.search(
            r"\[\d+\] confinement: Landlock ABI \d+: fs\+net\+scope; seccomp: on", debug
        ), debug
        # Looking the account up (no --register) prints it too.
        assert json.loads(setup.run("account").stdout)["contact"] == [CONTACT]
        updated = json.loads(setup.run("account", "mailto:new@example.test").stdout)
        assert updated["contact"] == ["mailto:new@example.test"]
        setup.run("revokeCert", str(setup.certificate))
        assert pebble.cert_status(serial(setup))["Status"] == "Revoked"
        deactivated = json.loads(setup.run("account", "--deactivate").stdout)
        assert deactivated["status"] == "deactivated"
        failed = setup.run("newOrder", "--force", check=False)
        assert failed.returncode != 0
        assert "unauthorized" in failed.stderr or "deactivated" in failed.stderr, failed.stderr


@pytest.mark.e2e
@pytest.mark.interop
@pytest.mark.root
@pytest.mark.debian(*requires.PERL_MASTER)
def test_perl_master_revoke_with_certificate_key(pebble: PebbleServer, tmp_path: Path) -> None:
    """accountd holding the certificate's own key (no account): signed with jwk."""
    with perl_master_setup(
        pebble, accountd_command=[str(ACCOUNTD)], client_command=CLIENT
    ) as setup:
        setup.register_and_issue()
        with standalone_accountd(
            [ACCOUNTD],
            tmp_path / "S.lacme",
            f"--privkey=file:{setup.directory / 'service.key'}",
            "--quiet",
        ) as accountd:
            setup.run("revokeCert", str(setup.certificate), socket=accountd.socket)
        assert pebble.cert_status(serial(setup))["Status"] == "Revoked"


@pytest.mark.e2e
@pytest.mark.interop
@pytest.mark.root
@pytest.mark.debian(*requires.PERL_MASTER)
def test_perl_master_accountd_with_keyid(pebble: PebbleServer, tmp_path: Path) -> None:
    """accountd configured with the Key ID greets with it and an empty JWK:
    no account lookup, every request signed with kid."""
    with perl_master_setup(
        pebble, accountd_command=[str(ACCOUNTD)], client_command=CLIENT
    ) as setup:
        setup.run("account", "--register", "--tos-agreed", CONTACT)
        kid = setup.run("account").stderr.split("Key ID: ", 1)[1].split()[0]
        config = tmp_path / "lacme-accountd.conf"
        config.write_text(f"privkey = file:{setup.account_key_path}\nkeyid = {kid}\n")
        with standalone_accountd(
            [ACCOUNTD], tmp_path / "S.lacme", f"--config={config}"
        ) as accountd:
            account = json.loads(setup.run("account", socket=accountd.socket).stdout)
            assert account["contact"] == [CONTACT]
            setup.run("newOrder", socket=accountd.socket)
            setup.check_certificate()
            log = accountd.output()
        assert '"kid"' in log
        assert '"jwk"' not in log


@pytest.mark.e2e
@pytest.mark.interop
@pytest.mark.root
@pytest.mark.debian(*requires.PERL_MASTER)
def test_perl_master_ten_certificates_half_nonces_rejected(
    pebble_factory: PebbleFactory, either_accountd: list[str]
) -> None:
    """The acceptance test, with our client and webserver: Perl's own client
    installs none of these."""
    pebble = pebble_factory(nonce_reject=50)
    with perl_master_setup(
        pebble,
        accountd_command=either_accountd,
        client_command=CLIENT,
        webserver_command=[sys.executable, "-m", "lacme.webserver"],
    ) as setup:
        setup.register_and_issue()
        serials = {serial(setup)}
        for _ in range(9):
            setup.run("newOrder", "--force")
            setup.check_certificate()
            serials.add(serial(setup))
        assert len(serials) == 10


@pytest.mark.e2e
@pytest.mark.interop
@pytest.mark.root
@pytest.mark.debian(*requires.PERL_MASTER)
def test_perl_master_slow_validation(pebble_factory: PebbleFactory) -> None:
    pebble = pebble_factory(va_sleep=True, env={"PEBBLE_VA_SLEEPTIME": "3"})
    with perl_master_setup(
        pebble, accountd_command=[str(ACCOUNTD)], client_command=CLIENT
    ) as setup:
        setup.register_and_issue()


@pytest.mark.e2e
@pytest.mark.interop
@pytest.mark.root
@pytest.mark.debian(*requires.PERL_MASTER)
def test_perl_master_timeout(pebble_factory: PebbleFactory) -> None:
    """Validation sleeps up to 15 s per name, at random: with three names, all
    valid within a 0.5 s timeout is one run in 27,000 (2 s was one in 420,
    and happened)."""
    pebble = pebble_factory(va_sleep=True)
    names = ("a.example.test", "b.example.test", "c.example.test")
    with perl_master_setup(
        pebble,
        accountd_command=[str(ACCOUNTD)],
        client_command=CLIENT,
        client_timeout=0.5,
        names=names,
    ) as setup:
        setup.run("account", "--register", "--tos-agreed", "mailto:admin@example.test")
        result = setup.run("newOrder", check=False)
        assert result.returncode != 0
        assert "timeout (0.5s)" in result.stderr
        assert not setup.certificate.exists()


@pytest.mark.unit
def test_wait_bounds_our_own_waits_by_the_timeout() -> None:
    clock = FakeClock()
    wait = Patience(30, clock=clock, sleep=clock.sleep).wait("polling")
    wait.sleep(20, server_asked=False, why="the order is pending")
    # The last of our own waits ends at the timeout, for one last look.
    wait.sleep(20, server_asked=False, why="the order is pending")
    assert clock.slept == [20, 10]
    with pytest.raises(
        AcmeTimeout, match=r"^timeout \(30s\) exceeded polling: the order is pending$"
    ):
        wait.sleep(1, server_asked=False, why="the order is pending")


@pytest.mark.unit
def test_wait_honours_what_the_server_asks_beyond_the_timeout() -> None:
    """Boulder's Retry-After: 60 after a 500, with the default 30 s timeout:
    the server's waits do not count against it, ours still do."""
    clock = FakeClock()
    wait = Patience(30, clock=clock, sleep=clock.sleep).wait("retrying")
    wait.sleep(60, server_asked=True, why="HTTP 500")
    wait.sleep(60, server_asked=True, why="HTTP 500")
    wait.sleep(25, server_asked=False, why="HTTP 502")
    assert clock.slept == [60, 60, 25]
    clock.now += 5  # the exchanges took the rest of the timeout
    with pytest.raises(AcmeTimeout, match=r"^timeout \(30s\) exceeded retrying: HTTP 502$"):
        wait.sleep(1, server_asked=False, why="HTTP 502")


@pytest.mark.unit
def test_wait_refuses_server_waits_past_its_limit() -> None:
    clock = FakeClock()
    wait = Patience(30, clock=clock, sleep=clock.sleep).wait("polling order X")
    wait.sleep(MAX_SERVER_WAIT - 100, server_asked=True, why="processing")
    with pytest.raises(
        AcmeTimeout,
        match=rf"^giving up polling order X: the server asked to wait 101s more, past the "
        rf"{MAX_SERVER_WAIT:g}s lacme waits for it in all: processing$",
    ):
        wait.sleep(101, server_asked=True, why="processing")
    assert clock.slept == [MAX_SERVER_WAIT - 100]
    # A new wait (the next request, the next state of the order) starts afresh.
    Patience(30, clock=clock, sleep=clock.sleep).wait("polling").sleep(
        MAX_SERVER_WAIT, server_asked=True, why="processing"
    )


@pytest.mark.unit
def test_timeout_0_leaves_polling_unbounded_but_not_exchanges() -> None:
    clock = FakeClock()
    patience = Patience(0, clock=clock, sleep=clock.sleep)
    wait = patience.wait("polling")
    clock.now += 1e9
    wait.sleep(3600, server_asked=False, why="pending")
    assert clock.slept == [3600]
    with pytest.raises(AcmeTimeout, match="past the"):
        wait.sleep(MAX_SERVER_WAIT + 1, server_asked=True, why="processing")
    assert patience.exchange == EXCHANGE_TIMEOUT
    assert Patience(5).exchange == 5


def _trial(status: str, created: bool = True, **fields: Any) -> Trial:
    challenge = {"type": "http-01", "url": "https://ca.test/c", "token": "t", **fields}
    authz = {"identifier": {"type": "dns", "value": "a.test"}, "status": status}
    return Trial(
        "https://ca.test/a", Authorization.parse({**authz, "challenges": [challenge]}), created
    )


@pytest.mark.unit
@pytest.mark.parametrize(
    ("trial", "validation"),
    [
        (_trial("valid"), Validation("dns:a.test", VALIDATED)),
        (_trial("valid", created=False), Validation("dns:a.test", REUSED)),
        (
            _trial("invalid", error={"type": ERROR_NS + "connection", "detail": "refused"}),
            Validation("dns:a.test", FAILED, "connection: refused"),
        ),
        (_trial("invalid"), Validation("dns:a.test", FAILED, "the authorization is invalid")),
        (_trial("pending"), Validation("dns:a.test", UNFINISHED, "the authorization is pending")),
        (
            _trial("invalid", error={"detail": "\u00e9" * 5000}),
            Validation("dns:a.test", FAILED, "\u00e9" * (MAX_MESSAGE - 3) + "..."),
        ),
    ],
)
def test_what_a_dry_run_says_of_each_authorization(trial: Trial, validation: Validation) -> None:
    assert validation_of(trial) == validation
