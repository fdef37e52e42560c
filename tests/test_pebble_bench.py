"""The Pebble test bench itself: reachable over verified TLS, configured as asked, cleaned up."""

from __future__ import annotations

import socket
import ssl
import struct
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from support.pebble import PebbleFactory, PebbleServer, running_pebble
from support.system import port_open

pytestmark = pytest.mark.e2e


def dns_query(port: int, name: str, qtype: int) -> list[bytes]:
    """Minimal DNS client: the RDATA of each answer for `name` over UDP.

    Assumes the server answers with uncompressed names, as
    pebble-challtestsrv does.
    """
    qname = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
    question = qname + struct.pack("!HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(struct.pack("!6H", 0x4C41, 0x0100, 1, 0, 0, 0) + question, ("127.0.0.1", port))
        reply = sock.recv(4096)
    ident, _, _, ancount, _, _ = struct.unpack("!6H", reply[:12])
    assert ident == 0x4C41
    offset, answers = 12 + len(question), []
    for _ in range(ancount):
        assert reply[offset : offset + len(qname)] == qname
        offset += len(qname)
        rtype, _, _, rdlength = struct.unpack("!HHIH", reply[offset : offset + 10])
        offset += 10
        if rtype == qtype:
            answers.append(reply[offset : offset + rdlength])
        offset += rdlength
    return answers


def test_directory_over_verified_tls(pebble: PebbleServer) -> None:
    directory = httpx.get(pebble.directory_url, verify=pebble.ssl_context()).json()
    assert {"newNonce", "newAccount", "newOrder", "revokeCert"} <= directory.keys()
    # The listener certificate really comes from our CA, not a system one.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(pebble.directory_url, verify=ssl.create_default_context())


def test_roots_file_holds_the_issuing_root(pebble: PebbleServer) -> None:
    roots = x509.load_pem_x509_certificates(pebble.roots_file.read_bytes())
    assert [r.public_bytes(Encoding.PEM).decode() for r in roots] == pebble.root_pems()
    (root,) = roots
    assert root.subject == root.issuer
    assert root.subject.rfc4514_string().startswith("CN=Pebble Root CA")


def test_alternate_roots(pebble_factory: PebbleFactory) -> None:
    server = pebble_factory(env={"PEBBLE_ALTERNATE_ROOTS": "2"})
    roots = x509.load_pem_x509_certificates(server.roots_file.read_bytes())
    assert len({r.subject for r in roots}) == 3


def test_settings_reach_pebble(pebble_factory: PebbleFactory) -> None:
    server = pebble_factory(
        nonce_reject=100,
        authz_reuse=50,
        va_sleep=True,
        env={"PEBBLE_CHAIN_LENGTH": "2", "PEBBLE_VA_SLEEPTIME": "1"},
        config={
            "externalAccountBindingRequired": True,
            "externalAccountMACKeys": {"kid-1": "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG4"},
        },
    )
    pid = server.processes[-1].pid
    environ = dict(
        item.split("=", 1)
        for item in Path(f"/proc/{pid}/environ").read_text().split("\0")
        if item.startswith("PEBBLE_")
    )
    assert environ == {
        "PEBBLE_WFE_NONCEREJECT": "100",
        "PEBBLE_AUTHZREUSE": "50",
        "PEBBLE_CHAIN_LENGTH": "2",
        "PEBBLE_VA_SLEEPTIME": "1",
    }
    assert "reject 100% of good nonces" in server.log()
    directory = httpx.get(server.directory_url, verify=server.ssl_context()).json()
    assert directory["meta"]["externalAccountRequired"] is True


def test_defaults(pebble: PebbleServer) -> None:
    assert pebble.env == {
        "PEBBLE_WFE_NONCEREJECT": "0",
        "PEBBLE_AUTHZREUSE": "0",
        "PEBBLE_VA_NOSLEEP": "1",
    }
    assert "reject 0% of good nonces" in pebble.log()
    assert "Disabling random VA sleeps" in pebble.log()


def test_mock_dns_answers_ipv4_only(pebble: PebbleServer) -> None:
    assert dns_query(pebble.dns_port, "a.example.test", 1) == [bytes([127, 0, 0, 1])]
    assert dns_query(pebble.dns_port, "a.example.test", 28) == []
    mock = {"host": "c.example.test", "addresses": ["127.0.0.2"]}
    httpx.post(f"{pebble.dns_management_url}/add-a", json=mock).raise_for_status()
    assert dns_query(pebble.dns_port, "c.example.test", 1) == [bytes([127, 0, 0, 2])]


@pytest.mark.root  # switching to _lacme-client
def test_files_readable_by_lacme_users(pebble: PebbleServer) -> None:
    for path in (pebble.ca_bundle, pebble.roots_file):
        subprocess.run(["cat", str(path)], user="_lacme-client", check=True, capture_output=True)


def test_everything_stopped_even_on_failure() -> None:
    started: list[PebbleServer] = []

    def failing_test() -> None:
        with running_pebble() as server:
            started.append(server)
            raise RuntimeError("test body failed")

    with pytest.raises(RuntimeError, match="test body failed"):
        failing_test()
    (server,) = started
    assert all(proc.returncode is not None for proc in server.processes)
    assert not any(Path(f"/proc/{proc.pid}").exists() for proc in server.processes)
    ports = [urlsplit(url).port for url in (server.directory_url, server.management_url)]
    assert not any(port_open(port) for port in [*ports, server.dns_port] if port)
    assert not server.workdir.exists()
