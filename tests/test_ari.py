"""ACME Renewal Information (RFC 9773): lacme.ari and the certID, then,
against hand-made fakes, what neither Pebble (no ARI) nor acme2certifier
(tests/test_ari_and_profiles_e2e.py) can be made to send: an `alreadyReplaced`
newOrder (the hostile server of tests/support/hostile.py), an explanationURL, a malformed
window and a missing Retry-After (a fake ARI server, for the master)."""

from __future__ import annotations

import datetime
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from lacme import ari
from lacme.certificate import ari_cert_id
from lacme.client_contract import decode_renewal_info
from support.accountd import fake_accountd
from support.commands import run_client
from support.hostile import PEM, hostile_server
from support.masters import master_setup
from support.pki import make_ca, write_tls_material
from support.system import temporary_directory

UTC = datetime.UTC
NOW = datetime.datetime(2026, 1, 1, tzinfo=UTC)
# When the certificates the renewal information is about expire.
EXPIRY = NOW + datetime.timedelta(days=90)


def certificate(serial: int, aki: bytes | None) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOW)
        .not_valid_after(NOW + datetime.timedelta(days=1))
    )
    if aki is not None:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier(aki, None, None), False)
    return builder.sign(key, hashes.SHA256())


@pytest.mark.unit
def test_cert_id_as_in_rfc_9773() -> None:
    # Section 4.1's example, a serial whose high bit asks for a leading zero.
    aki = bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4")
    assert ari_cert_id(certificate(0x87654321, aki)) == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
    assert ari_cert_id(certificate(0x7F, aki)) == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.fw"
    assert ari_cert_id(certificate(1, None)) is None


def answer(start: str, end: str, **extra: Any) -> bytes:
    return json.dumps(
        {"renewalInfo": {"suggestedWindow": {"start": start, "end": end}}, **extra}
    ).encode()


@pytest.mark.unit
def test_renewal_info_from_the_client_answer() -> None:
    info = ari.renewal_info(
        decode_renewal_info(
            json.dumps(
                {
                    "renewalInfo": {
                        "suggestedWindow": {
                            "start": "2026-01-03T00:00:00Z",
                            "end": "2026-01-07T00:00:00.5+01:00",
                        },
                        "explanationURL": "https://ca.example/why",
                    },
                    "retryAfter": 21600,
                }
            ).encode()
        ),
        EXPIRY,
    )
    assert info.start == datetime.datetime(2026, 1, 3, tzinfo=UTC)
    assert info.end == datetime.datetime(2026, 1, 6, 23, 0, 0, 500000, tzinfo=UTC)
    assert info.explanation_url == "https://ca.example/why"
    assert info.retry_after == 21600


@pytest.mark.unit
@pytest.mark.parametrize(
    ("output", "message"),
    [
        (b"<html>", "not JSON"),
        (b'{"renewalinfo": {}}', "no renewalInfo object"),
        (b'{"renewalInfo": {}}', "no suggestedWindow"),
        (answer("2026-01-03T00:00:00", "2026-01-07T00:00:00Z"), "has no time zone"),
        (answer("yesterday", "2026-01-07T00:00:00Z"), "not a timestamp"),
        (answer("2026-01-07T00:00:00Z", "2026-01-07T00:00:00Z"), "ends"),
        (answer("2026-01-07T00:00:00Z", "2026-01-03T00:00:00Z"), "before it starts"),
    ],
)
def test_malformed_renewal_information(output: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ari.renewal_info(decode_renewal_info(output), EXPIRY)


def info(start_day: int, end_day: int, retry_after: float | None = None) -> ari.RenewalInfo:
    return ari.RenewalInfo(
        start=NOW + datetime.timedelta(days=start_day),
        end=NOW + datetime.timedelta(days=end_day),
        explanation_url=None,
        retry_after=retry_after,
    )


@pytest.mark.unit
def test_renewal_time_is_drawn_once_per_window() -> None:
    first = ari.next_state(None, "a.b", info(10, 20, 3600), NOW)
    assert first.start <= first.renew_at < first.end
    assert first.next_check == NOW + datetime.timedelta(hours=1)
    later = NOW + datetime.timedelta(hours=2)
    same = ari.next_state(first, "a.b", info(10, 20), later)
    assert same.renew_at == first.renew_at
    # No Retry-After: six hours.
    assert same.next_check == later + ari.DEFAULT_RETRY_AFTER
    moved = [ari.next_state(first, "a.b", info(1, 2), later).renew_at for _ in range(20)]
    assert all(
        NOW + datetime.timedelta(days=1) <= when < NOW + datetime.timedelta(days=2)
        for when in moved
    )
    assert len(set(moved)) > 1


@pytest.mark.unit
def test_state_round_trip(tmp_path: Path) -> None:
    path = ari.state_path(str(tmp_path / "cert.pem"))
    state = ari.next_state(None, "a.b", info(10, 20), NOW)
    ari.save_state(path, state)
    assert ari.load_state(path, "a.b", EXPIRY) == state
    # About another certificate (renewed since), or broken: no state.
    assert ari.load_state(path, "c.d", EXPIRY) is None
    Path(path).write_text("{")
    assert ari.load_state(path, "a.b", EXPIRY) is None
    assert [p.name for p in tmp_path.iterdir()] == ["cert.pem.ari"]


@pytest.mark.process
def test_already_replaced_orders_again_without_replaces(tmp_path: Path) -> None:
    # RFC 9773 section 5: the certificate has a replacement already (say, from
    # a run whose installation failed); a new certificate is still wanted.
    problem = json.dumps(
        {"type": "urn:ietf:params:acme:error:alreadyReplaced", "detail": "replaced"}
    ).encode()
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    with hostile_server() as hostile, fake_accountd() as accountd:
        hostile.queued["/new-order"] = [(409, "application/problem+json", problem, {})]
        result = run_client(
            "newOrder",
            "a.example.test",
            settings=hostile.settings(replaces="a.b", profile="classic"),
            accountd=accountd,
            stdin=csr,
            cwd=tmp_path,
            env={"DEBUG": "1"},
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == PEM
    orders = [line for line in result.stderr.decode().splitlines() if '"identifiers"' in line]
    assert len(orders) == 2
    assert '"profile": "classic", "replaces": "a.b"}' in orders[0]
    assert orders[1].endswith('"profile": "classic"}')
    assert (
        "Warning: refused to replace a.b: alreadyReplaced: replaced; ordering without `replaces`"
        in result.stderr.decode()
    )


# -- The master against a hand-made fake ARI server ---------------------------


@dataclass
class FakeAri:
    """An HTTPS server with a directory and renewalInfo, nothing else;
    a support.servers.AcmeTestServer, as master_setup() takes."""

    directory_url: str
    roots_file: Path
    ca_bundle: Path
    # What renewalInfo answers: status, body, headers.
    renewal_info: tuple[int, bytes, dict[str, str]] = (404, b"", {})
    requests: list[str] = field(default_factory=list)
    http_port: int = 0

    def log(self) -> str:
        return "\n".join(self.requests)


@pytest.fixture
def fake_ari(tmp_path: Path) -> Iterator[FakeAri]:
    roots = tmp_path / "roots.pem"
    roots.write_bytes(b"")
    stack = ExitStack()
    # The client, unprivileged, reads the listener's CA.
    ca_bundle, cert, key = write_tls_material(temporary_directory(stack, "lacme-fake-ari-"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server.requests.append(self.path)
            headers: dict[str, str]
            if self.path == "/directory":
                base = f"https://127.0.0.1:{httpd.server_address[1]}"
                status, body, headers = (
                    200,
                    json.dumps(
                        {"newNonce": f"{base}/nonce", "renewalInfo": f"{base}/renewal-info"}
                    ).encode(),
                    {},
                )
            elif self.path.startswith("/renewal-info/"):
                status, body, headers = server.renewal_info
            else:
                status, body, headers = 404, b"", {}
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    server = FakeAri(
        directory_url=f"https://127.0.0.1:{httpd.server_address[1]}/directory",
        roots_file=roots,
        ca_bundle=ca_bundle,
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    with stack:
        try:
            yield server
        finally:
            httpd.shutdown()
            httpd.server_close()


def window(start: datetime.datetime, end: datetime.datetime, **extra: Any) -> bytes:
    return json.dumps(
        {"suggestedWindow": {"start": start.isoformat(), "end": end.isoformat()}, **extra}
    ).encode()


@pytest.mark.process
def test_client_lookups_without_accountd(fake_ari: FakeAri) -> None:
    # As the master runs them: SOCKET_FD with nobody behind it.
    nobody, peer = socket.socketpair()
    peer.close()
    settings = {"server": fake_ari.directory_url, "SSL_CAfile": str(fake_ari.ca_bundle)}
    fake_ari.renewal_info = (200, b'{"suggestedWindow": {}}', {"Retry-After": "60"})
    with nobody:
        found = run_client("renewalInfo", "a.b", settings=settings, accountd=nobody)
        assert found.returncode == 0, found.stderr
        assert json.loads(found.stdout) == {
            "renewalInfo": {"suggestedWindow": {}},
            "retryAfter": 60.0,
        }
        directory = run_client("directory", settings=settings, accountd=nobody)
        assert json.loads(directory.stdout)["renewalInfo"].endswith("/renewal-info")
        # A certID goes into the URL's path: nothing else does.
        refused = run_client("renewalInfo", "../../directory", settings=settings, accountd=nobody)
        assert refused.returncode == 1
        assert b"not an ARI certID: '../../directory'" in refused.stderr
    assert fake_ari.requests == ["/directory", "/renewal-info/a.b", "/directory"]


@pytest.mark.process
@pytest.mark.root  # the master
def test_explanation_url_and_retry_after(fake_ari: FakeAri) -> None:
    now = datetime.datetime.now(UTC)
    start, end = now + datetime.timedelta(days=50), now + datetime.timedelta(days=60)
    fake_ari.renewal_info = (
        200,
        # Escaped: the server wrote it, and it reaches root's terminal.
        window(start, end, explanationURL="https://ca.example/why\x1b[2J\n[site] forged"),
        {"Retry-After": "120"},
    )
    with master_setup(fake_ari) as setup:
        key_path, key = setup.service_key("site", "p256")
        chain = setup.directory / "site.chain"
        leaf = make_ca().issue(key.public_key(), ["a.example.test"])
        chain.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        setup.write_sections(
            {
                "site": {
                    "certificate-key": str(key_path),
                    "certificate-chain": str(chain),
                    "subject": "/CN=a.example.test",
                }
            }
        )
        before = datetime.datetime.now(UTC)
        result = setup.run("newOrder", "--debug")
        after = datetime.datetime.now(UTC)
        # The directory once for the run's client session.
        assert fake_ari.requests == ["/directory", f"/renewal-info/{ari_cert_id(leaf)}"]
        # Lookups sign nothing: no accountd is started for them.
        assert "lacme-accountd" not in result.stderr
        assert (
            "[site] The CA explains its renewal window at "
            "https://ca.example/why\\x1b[2J\\n[site] forged\n"
        ) in result.stderr
        assert "), skipping\n" in result.stderr
        state = json.loads(Path(f"{chain}.ari").read_text())
        # Asked at some instant of the run: Retry-After from then.
        next_check = datetime.datetime.fromisoformat(state["nextCheck"])
        retry_after = datetime.timedelta(seconds=120)
        assert before + retry_after <= next_check <= after + retry_after

        # A malformed window (RFC 9773 section 4.2) once Retry-After has
        # passed: min-days decides; the state stays as it was.
        state["nextCheck"] = now.isoformat()
        Path(f"{chain}.ari").write_text(json.dumps(state))
        fake_ari.renewal_info = (200, window(end, start), {})
        result = setup.run("newOrder")
        assert result.stderr.startswith(
            "[site] Warning: no renewal information (suggestedWindow ends ("
        )
        assert result.stderr.endswith(" UTC, skipping\n")
        assert "Valid until" in result.stderr

        # No Retry-After: asked again in six hours.
        fake_ari.renewal_info = (200, window(start, end), {})
        before = datetime.datetime.now(UTC)
        setup.run("newOrder")
        after = datetime.datetime.now(UTC)
        state = json.loads(Path(f"{chain}.ari").read_text())
        next_check = datetime.datetime.fromisoformat(state["nextCheck"])
        assert before + ari.DEFAULT_RETRY_AFTER <= next_check <= after + ari.DEFAULT_RETRY_AFTER
