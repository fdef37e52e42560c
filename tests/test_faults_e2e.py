"""Our master end to end against Pebble behind the fault proxy
(tests/support/faults.py): what real CAs send and Pebble does not."""

from __future__ import annotations

import datetime
import json
import re
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from lacme.certificate import ari_cert_id
from support.faults import Answer, FaultProxy, Request, offer_renewal_info, problem
from support.masters import MasterSetup, check_issued, leaf_of, master_setup
from support.pki import new_key_file, public_jwk

pytestmark = [pytest.mark.e2e, pytest.mark.root]

SITE = {"subject": "/CN=a.example.test", "subjectAltName": "DNS:www.a.example.test"}
NAMES = ["a.example.test", "www.a.example.test"]


def check_installed(setup: MasterSetup, proxy: FaultProxy, chain: Path) -> x509.Certificate:
    """The certificate chain installed at CHAIN: for the section's key and
    names, verified against Pebble's roots, and valid at Pebble; its leaf."""
    key = serialization.load_pem_private_key((setup.directory / "site.key").read_bytes(), None)
    certificates = x509.load_pem_x509_certificates(chain.read_bytes())
    leaf = check_issued(proxy.roots_file, certificates, NAMES, key.public_key())
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


def test_an_issuance_takes_twelve_requests(fault_proxy: FaultProxy) -> None:
    """Looking at the order as soon as the answer can be there costs Pebble
    no more requests: the directory, a nonce, the account, the order, two
    authorizations and their challenges, finalize, the certificate, and a
    look at the order after validation and after finalize, at most two
    more if a look came too soon."""
    with master_setup(fault_proxy) as setup:
        setup.register()
        chain = setup.one_section(**SITE)
        fault_proxy.exchanges.clear()
        setup.run("newOrder")
        check_installed(setup, fault_proxy, chain)
    looks = [e for e in fault_proxy.exchanges if e.request.path.startswith("/my-order/")]
    assert 2 <= len(looks) <= 4, fault_proxy.log()
    assert len(fault_proxy.exchanges) == 10 + len(looks), fault_proxy.log()


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


# --- waits: `timeout` bounds each, the server's own are honoured ------------------


class OrderPaths:
    """The paths of the orders Pebble hands out through PROXY, read from its
    newOrder answers: `order` (polled) and `finalize`, of the latest order."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.order = self.finalize = "(no order yet)"
        new_order = proxy.path("newOrder")

        def watch(request: Request, answer: Answer) -> None:
            if request.path == new_order and answer.status == 201:
                self.order = urlsplit(answer.headers["Location"]).path
                self.finalize = urlsplit(json.loads(answer.body)["finalize"]).path

        proxy.answer_hooks.append(watch)

    def polls(self, request: Request) -> bool:
        return (request.method, request.path, request.payload) == ("POST", self.order, None)


def failed_order(proxy: FaultProxy, extra_client: Sequence[str] = ()) -> str:
    """Register, then order the certificate of SITE through PROXY, which
    fails: nothing is installed.  Its stderr."""
    with master_setup(proxy, extra_client=extra_client) as setup:
        setup.register()
        chain = setup.one_section(**SITE)
        result = setup.run("newOrder", check=False)
        assert result.returncode == 1
        assert not chain.exists()
    return result.stderr


def statuses(proxy: FaultProxy, path: str) -> list[int]:
    return [e.status for e in proxy.exchanges if e.request.path == path]


def answer_first_finalize(proxy: FaultProxy, paths: OrderPaths, answer: Answer) -> None:
    """Make PROXY answer the first finalize itself with ANSWER."""
    answered: list[Request] = []

    def hook(request: Request) -> Answer | None:
        if request.path != paths.finalize or answered:
            return None
        answered.append(request)
        return answer

    proxy.hooks.append(hook)


def test_a_server_error_waited_for_as_long_as_the_server_asks(fault_proxy: FaultProxy) -> None:
    """Boulder answers 500 serverInternal with Retry-After: 60.  The wait the
    server asks for is not the client's own: here 2 s with `timeout` 1 s."""
    paths = OrderPaths(fault_proxy)
    failure = problem(500, "serverInternal", "Error finalizing order", retry_after="2")
    answer_first_finalize(fault_proxy, paths, failure)
    with master_setup(fault_proxy, extra_client=["timeout = 1"]) as setup:
        setup.register()
        chain = setup.one_section(**SITE)
        setup.run("newOrder")
        check_installed(setup, fault_proxy, chain)
    assert statuses(fault_proxy, paths.finalize) == [500, 200]


def test_giving_up_shows_the_servers_last_word(fault_proxy: FaultProxy) -> None:
    new_order = fault_proxy.path("newOrder")

    def always_fails(request: Request) -> Answer | None:
        if request.path != new_order:
            return None
        answer = problem(
            503, "serverInternal", "The service is down for maintenance", retry_after="0"
        )
        body = json.loads(answer.body) | {"instance": "https://status.example.test/incident/7"}
        answer.body = json.dumps(body).encode()
        answer.headers["Link"] = '<https://status.example.test/>;rel="help"'
        return answer

    fault_proxy.hooks.append(always_fails)
    stderr = failed_order(fault_proxy)
    assert statuses(fault_proxy, new_order) == [503] * 6
    url = re.escape(fault_proxy.base + new_order)
    assert re.search(
        rf"error: giving up after 6 attempts: POST {url}: HTTP 503: serverInternal: "
        r"The service is down for maintenance\n"
        r"  instance: https://status\.example\.test/incident/7\n"
        r"  help: https://status\.example\.test/\n"
        r"  retry after \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(in 0s\)\n",
        stderr,
    ), stderr


def processing(answer: Answer, retry_after: str | None) -> None:
    """Make ANSWER, an order, say it is still processing."""
    order = json.loads(answer.body)
    order["status"] = "processing"
    order.pop("certificate", None)
    answer.body = json.dumps(order).encode()
    if retry_after is not None:
        answer.headers["Retry-After"] = retry_after


def test_long_processing_is_waited_for(fault_proxy: FaultProxy) -> None:
    """Let's Encrypt, ZeroSSL and Google finalize asynchronously: processing,
    with Retry-After, for longer than `timeout` in all (2 s against 1 s)."""
    paths = OrderPaths(fault_proxy)
    held: list[Request] = []

    def slow_issuance(request: Request, answer: Answer) -> None:
        if request.path == paths.finalize:
            processing(answer, "1")
        elif paths.polls(request) and len(held) < 2:
            held.append(request)
            processing(answer, "1")

    fault_proxy.answer_hooks.append(slow_issuance)
    with master_setup(fault_proxy, extra_client=["timeout = 1"]) as setup:
        setup.register()
        chain = setup.one_section(**SITE)
        setup.run("newOrder")
        check_installed(setup, fault_proxy, chain)
    assert len(held) == 2


def test_processing_without_retry_after_times_out(fault_proxy: FaultProxy) -> None:
    paths = OrderPaths(fault_proxy)

    def never_issued(request: Request, answer: Answer) -> None:
        if paths.polls(request) or request.path == paths.finalize:
            processing(answer, None)

    fault_proxy.answer_hooks.append(never_issued)
    stderr = failed_order(fault_proxy, ["timeout = 1"])
    assert (
        f"error: timeout (1s) exceeded polling order {fault_proxy.base}{paths.order}: "
        "the order is processing\n"
    ) in stderr


# --- non-idempotent requests -------------------------------------------------------


def test_a_spurious_order_not_ready_is_finalized_again(fault_proxy: FaultProxy) -> None:
    """certbot#10239: a server updating order status lazily refuses the
    finalize of an order it calls ready."""
    paths = OrderPaths(fault_proxy)
    refusal = problem(403, "orderNotReady", 'Order\'s status ("pending") is not acceptable')
    answer_first_finalize(fault_proxy, paths, refusal)
    with master_setup(fault_proxy) as setup:
        setup.register()
        chain = setup.one_section(**SITE)
        setup.run("newOrder")
        check_installed(setup, fault_proxy, chain)
    assert statuses(fault_proxy, paths.finalize) == [403, 200]


def lose_first_answer(proxy: FaultProxy, path: Callable[[], str]) -> list[int]:
    """Make PROXY turn Pebble's first answer to a POST at PATH() into a 500,
    as a request that went through but whose answer was lost; the statuses
    Pebble gave are appended to the list returned."""
    given: list[int] = []

    def lose(request: Request, answer: Answer) -> None:
        if request.method == "POST" and request.path == path():
            given.append(answer.status)
            if len(given) == 1:
                lost = problem(500, "serverInternal", "the answer was lost", retry_after="0")
                answer.status, answer.headers, answer.body = lost.status, lost.headers, lost.body

    proxy.answer_hooks.append(lose)
    return given


def test_a_resent_finalize_continues_from_the_orders_state(fault_proxy: FaultProxy) -> None:
    paths = OrderPaths(fault_proxy)
    given = lose_first_answer(fault_proxy, lambda: paths.finalize)
    with master_setup(fault_proxy) as setup:
        setup.register()
        chain = setup.one_section(**SITE)
        setup.run("newOrder")
        check_installed(setup, fault_proxy, chain)
    # Pebble finalized the first, and refused the second: not ready (any more).
    assert given == [200, 403]
    assert [e.status for e in fault_proxy.sent("POST", "newOrder")] == [201]


def test_a_resent_key_change_that_worked_is_a_success(fault_proxy: FaultProxy) -> None:
    given = lose_first_answer(fault_proxy, lambda: fault_proxy.path("keyChange"))
    with master_setup(fault_proxy) as setup:
        setup.register()
        new_key = new_key_file(setup.directory / "new.key", "p256")
        new_conf = setup.directory / "new.conf"
        new_conf.write_text(f"privkey = file:{setup.directory / 'new.key'}\n")
        result = setup.run("account", f"--rollover={new_conf}")
        assert json.loads(result.stdout)["key"] == public_jwk(new_key)
        assert "Account key changed" in result.stderr
    # Pebble changed the key, then refused the resend, signed with the old one.
    assert len(given) == 2
    assert (given[0], given[1] >= 400) == (200, True)


def test_a_resent_revocation_that_worked_is_a_success(fault_proxy: FaultProxy) -> None:
    given = lose_first_answer(fault_proxy, lambda: fault_proxy.path("revokeCert"))
    with master_setup(fault_proxy) as setup:
        setup.register()
        chain = setup.one_section(**SITE)
        setup.run("newOrder")
        leaf = check_installed(setup, fault_proxy, chain)
        result = setup.run("revokeCert", str(chain))
        assert "Couldn't revoke" not in result.stderr
    assert given == [200, 400]
    assert fault_proxy.pebble.cert_status(leaf.serial_number)["Status"] == "Revoked"


# --- changed terms of service ------------------------------------------------------


def test_changed_terms_of_service_agreed_again(fault_proxy: FaultProxy) -> None:
    """RFC 8555 section 7.3.3: the terms changed, so every newOrder is refused
    as userActionRequired, with the page to act on and the new terms, until
    the account agrees again (the proxy plays the CA; Pebble has no terms
    that change)."""
    terms = "https://ca.example.test/terms-v2.pdf"
    instance = "https://ca.example.test/agree?account=1"
    new_order = fault_proxy.path("newOrder")
    new_account = fault_proxy.path("newAccount")
    agreed: list[Request] = []

    def terms_changed(request: Request) -> Answer | None:
        payload = request.payload
        if isinstance(payload, dict) and payload.get("termsOfServiceAgreed") is True:
            agreed.append(request)
            if request.path != new_account:
                # Pebble refuses an update carrying nothing else as empty:
                # the CA whose terms changed takes it.
                account = {"status": "valid", "termsOfServiceAgreed": True}
                headers = httpx.Headers({"Content-Type": "application/json"})
                return Answer(200, headers, json.dumps(account).encode())
        if request.path != new_order or agreed:
            return None
        answer = problem(403, "userActionRequired", "Terms of service have changed")
        body = json.loads(answer.body) | {"instance": instance}
        answer.body = json.dumps(body).encode()
        answer.headers["Link"] = f'<{terms}>;rel="terms-of-service"'
        return answer

    fault_proxy.hooks.append(terms_changed)
    with master_setup(fault_proxy) as setup:
        setup.register()
        agreed.clear()  # the registration agreed to the terms before they changed
        chain = setup.one_section(**SITE)
        refused = setup.run("newOrder", check=False)
        assert refused.returncode == 1
        url = fault_proxy.base + new_order
        assert (
            f"error: POST {url}: HTTP 403: userActionRequired: Terms of service have changed\n"
            f"  instance: {instance}\n"
            f"  terms of service: {terms}\n"
            "  to agree to them: lacme account --tos-agreed\n"
        ) in refused.stderr
        assert not chain.exists()

        setup.run("account", "--tos-agreed")
        # An update of the existing account (at its Key ID), not a registration.
        assert len(agreed) == 1
        assert agreed[0].protected is not None
        assert agreed[0].path == urlsplit(agreed[0].protected["kid"]).path
        assert agreed[0].payload == {"termsOfServiceAgreed": True}
        setup.run("newOrder")
        check_installed(setup, fault_proxy, chain)


# --- rate limits ---------------------------------------------------------------------


def test_a_rate_limit_is_shown_and_kept_until_it_ends(fault_proxy: FaultProxy) -> None:
    """Let's Encrypt's 429 rateLimited, with Retry-After and a help link:
    shown, and the next runs skip the section until then without asking."""
    new_order = fault_proxy.path("newOrder")
    help_url = "https://letsencrypt.example.test/docs/rate-limits/"

    def rate_limited(request: Request) -> Answer | None:
        if request.path != new_order:
            return None
        answer = problem(
            429,
            "rateLimited",
            "too many certificates (5) already issued for this exact set of identifiers",
            retry_after="3600",
        )
        answer.headers["Link"] = f'<{help_url}>;rel="help"'
        return answer

    fault_proxy.hooks.append(rate_limited)
    with master_setup(fault_proxy) as setup:
        setup.register()
        chain = setup.one_section(**SITE)
        before = datetime.datetime.now(datetime.UTC)
        refused = setup.run("newOrder", check=False)
        after = datetime.datetime.now(datetime.UTC)
        assert refused.returncode == 1
        assert f"  help: {help_url}\n" in refused.stderr
        assert re.search(r"\n  retry after [-\d]+ [:\d]+ UTC \(in 3600s\)\n", refused.stderr)
        recorded = json.loads(Path(f"{chain}.rate-limit").read_text())
        until = datetime.datetime.fromisoformat(recorded["until"])
        hour = datetime.timedelta(hours=1)
        assert before + hour - datetime.timedelta(seconds=1) <= until <= after + hour
        assert refused.stderr.endswith(
            "[site] Error: Couldn't issue X.509 certificate!\n"
            f"[site] Rate limited: the next runs skip this section until "
            f"{until:%Y-%m-%d %H:%M:%S} UTC\n"
        )
        assert len(fault_proxy.sent("POST", "newOrder")) == 1

        skipped = setup.run("newOrder", check=False)
        assert skipped.returncode == 1
        assert skipped.stderr == (
            f"[site] Error: rate limited by the CA until {until:%Y-%m-%d %H:%M:%S} UTC, "
            "skipping (--force asks anyway)\n"
        )
        assert len(fault_proxy.sent("POST", "newOrder")) == 1
        forced = setup.run("newOrder", "--force", check=False)
        assert "Rate limited: the next runs skip" in forced.stderr
        assert len(fault_proxy.sent("POST", "newOrder")) == 2

        # Once the limit has ended (as if an hour had passed), the CA is asked again.
        fault_proxy.hooks.remove(rate_limited)
        Path(f"{chain}.rate-limit").write_text(
            json.dumps({"until": (before - hour).isoformat()}) + "\n"
        )
        setup.run("newOrder")
        check_installed(setup, fault_proxy, chain)
        assert not Path(f"{chain}.rate-limit").exists()


def test_an_answer_dripped_a_byte_at_a_time_is_cut_at_the_timeout(
    fault_proxy: FaultProxy,
) -> None:
    """Each byte would reset a timeout per read: the bound is on the whole
    exchange, and the run ends with why."""
    new_order = fault_proxy.path("newOrder")
    dripped: list[Request] = []

    def drip(request: Request, answer: Answer) -> None:
        if request.path == new_order:
            dripped.append(request)
            answer.drip = 0.05  # a few hundred bytes: 10 s or more in all

    fault_proxy.answer_hooks.append(drip)
    stderr = failed_order(fault_proxy, ["timeout = 1"])
    assert (
        f"error: timeout (1s) exceeded retrying: POST {fault_proxy.base}{new_order}: "
        "no complete answer within 1s\n"
    ) in stderr, stderr
    assert len(dripped) == 1
