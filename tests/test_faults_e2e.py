"""Our master end to end against Pebble behind the fault proxy
(tests/support/faults.py): what real CAs send and Pebble does not."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import verification

from support.faults import Answer, FaultProxy, Request
from support.masters import MasterSetup, master_setup, names_of

pytestmark = [pytest.mark.e2e, pytest.mark.root]

SITE = {"subject": "/CN=a.example.test", "subjectAltName": "DNS:www.a.example.test"}
NAMES = ["a.example.test", "www.a.example.test"]


def check_installed(setup: MasterSetup, proxy: FaultProxy, chain: Path) -> x509.Certificate:
    """The certificate chain installed at CHAIN: for the section's key and
    names, verified against Pebble's roots, and valid at Pebble; its leaf."""
    leaf, *intermediates = x509.load_pem_x509_certificates(chain.read_bytes())
    assert intermediates, "certificate-chain has no intermediate"
    key = serialization.load_pem_private_key((setup.directory / "site.key").read_bytes(), None)
    assert leaf.public_key() == key.public_key()
    assert names_of(leaf) == NAMES
    roots = x509.load_pem_x509_certificates(proxy.roots_file.read_bytes())
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store(roots))
        .build_server_verifier(x509.DNSName(NAMES[0]))
    )
    verifier.verify(leaf, intermediates)
    assert proxy.pebble.cert_status(leaf.serial_number)["Status"] == "Valid"
    return leaf


def test_plain_issuance_through_the_proxy(fault_proxy: FaultProxy) -> None:
    with master_setup(fault_proxy) as setup:
        setup.register()
        chain = setup.one_section(**SITE)
        setup.run("newOrder")
        check_installed(setup, fault_proxy, chain)
    # Everything went to Pebble and back, unaltered, and the URLs Pebble
    # gave out pointed at the proxy (its listener CA is not Pebble's: the
    # client could not have reached Pebble directly).
    exchanges = fault_proxy.exchanges
    assert exchanges
    assert not any(e.canned for e in exchanges)
    assert all(e.status < 400 for e in exchanges), fault_proxy.log()
    assert [e.status for e in fault_proxy.sent("POST", "newOrder")] == [201]
    assert {e.request.method for e in exchanges} == {"GET", "HEAD", "POST"}


def test_invalid_replay_nonces_are_ignored(fault_proxy: FaultProxy) -> None:
    # RFC 8555 section 6.5.1: clients MUST ignore invalid Replay-Nonce values.
    def spoil_nonce(request: Request, answer: Answer) -> None:
        if request.method == "POST":
            answer.headers["Replay-Nonce"] = "not a nonce!"

    fault_proxy.answer_hooks.append(spoil_nonce)
    with master_setup(fault_proxy) as setup:
        setup.register()
        chain = setup.one_section(**SITE)
        setup.run("newOrder")
        check_installed(setup, fault_proxy, chain)
    # Each POST signed with a fresh nonce from newNonce, none rejected.
    posts = [e for e in fault_proxy.exchanges if e.request.method == "POST"]
    assert len(fault_proxy.sent("HEAD", "newNonce")) == len(posts)
    assert all(e.status < 400 for e in posts), fault_proxy.log()
