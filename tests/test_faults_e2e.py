"""Our master end to end against Pebble behind the fault proxy
(tests/support/faults.py): what real CAs send and Pebble does not."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import verification

from lacme.certificate import ari_cert_id
from support.faults import Answer, FaultProxy, Request, offer_renewal_info, problem
from support.masters import MasterSetup, leaf_of, master_setup, names_of

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


# --- `replaces` refused ---------------------------------------------------------------


def refuse_replaces(proxy: FaultProxy, status: int, type_: str) -> None:
    """Make PROXY answer every newOrder carrying `replaces` with a STATUS
    problem of TYPE_, as a CA refusing it would; the others go to Pebble."""
    new_order = proxy.path("newOrder")

    def hook(request: Request) -> Answer | None:
        payload = request.payload
        if request.path == new_order and isinstance(payload, dict) and "replaces" in payload:
            return problem(status, type_, "not yours to replace")
        return None

    proxy.hooks.append(hook)


def issue_then_renew(
    setup: MasterSetup, proxy: FaultProxy, status: int, type_: str
) -> tuple[x509.Certificate, Path, subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """Issue a certificate through PROXY, then renew it as its renewal
    window says, with the newOrder carrying `replaces` refused; the first
    certificate, the chain file, the renewal's result and its newOrders'
    payloads.

    Pebble 2.4 has no ARI, so the master would never send it `replaces`: the
    proxy shapes what Pebble cannot do, adding `renewalInfo` to the directory
    and answering it itself with a window already past (the master renews,
    with `replaces`), then refusing that newOrder itself."""
    now = datetime.datetime.now(datetime.UTC)
    window = (now - datetime.timedelta(days=2), now - datetime.timedelta(days=1))
    asked = offer_renewal_info(proxy, (window[0].isoformat(), window[1].isoformat()))
    setup.register()
    # min-days 21 would keep this 90-day certificate: ARI decides.
    chain = setup.one_section(**SITE)
    setup.run("newOrder")
    first = check_installed(setup, proxy, chain)
    assert asked == []
    refuse_replaces(proxy, status, type_)
    before = len(proxy.sent("POST", "newOrder"))
    result = setup.run("newOrder", check=False)
    assert asked == [ari_cert_id(first)]
    renewal = proxy.sent("POST", "newOrder")[before:]
    assert renewal[0].canned
    orders = [e.request.payload for e in renewal]
    assert orders[0]["replaces"] == ari_cert_id(first)
    return first, chain, result, orders


@pytest.mark.parametrize(
    ("status", "type_"), [(403, "unauthorized"), (400, "malformed"), (409, "conflict")]
)
def test_replaces_refused_orders_again_without(
    fault_proxy: FaultProxy, status: int, type_: str
) -> None:
    """A CA refusing `replaces` other than as alreadyReplaced: one warning,
    one newOrder without it (ARI and the refusal come from the proxy, see
    issue_then_renew)."""
    with master_setup(fault_proxy) as setup:
        first, chain, result, orders = issue_then_renew(setup, fault_proxy, status, type_)
        assert result.returncode == 0, result.stderr + fault_proxy.log()
        warning = (
            f"Warning: refused to replace {ari_cert_id(first)}: {type_}: not yours to replace; "
            "ordering without `replaces`\n"
        )
        assert result.stderr == f"{warning}Installing X.509 certificate chain {chain}\n"
        # Exactly one retry, without `replaces`, otherwise the same order.
        assert len(orders) == 2
        assert orders[1] == {k: v for k, v in orders[0].items() if k != "replaces"}
        second = check_installed(setup, fault_proxy, chain)
        assert second.serial_number != first.serial_number


def test_replaces_rate_limited_is_not_retried(fault_proxy: FaultProxy) -> None:
    """rateLimited says nothing against `replaces`: no retry (ARI and the
    refusal come from the proxy, see issue_then_renew)."""
    with master_setup(fault_proxy) as setup:
        first, chain, result, orders = issue_then_renew(setup, fault_proxy, 429, "rateLimited")
        assert result.returncode == 1
        assert "rateLimited: not yours to replace" in result.stderr
        assert "ordering without `replaces`" not in result.stderr
        assert len(orders) == 1
        assert leaf_of(chain) == first
