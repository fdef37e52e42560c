"""When the master renews, as an administrator meets it: our master against
Pebble, behind the fault proxy offering renewal information of the test's
choosing (Pebble 2.4 has none: support.faults.offer_renewal_info), and
Pebble issuing certificates of short lifetimes (tests/test_renewal_timing.py
has the rules)."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from lacme.certificate import ari_cert_id
from support.faults import FaultProxy, offer_renewal_info, running_fault_proxy
from support.masters import MasterSetup, leaf_of, master_setup
from support.pebble import PebbleFactory, PebbleServer

pytestmark = [pytest.mark.e2e, pytest.mark.root]

DAY = datetime.timedelta(days=1)
HOUR = datetime.timedelta(hours=1)
WHEN = "%Y-%m-%d %H:%M:%S UTC"
SITE = {"subject": "/CN=a.example.test"}


def pebble_issuing(pebble_factory: PebbleFactory, lifetime: datetime.timedelta) -> PebbleServer:
    """A Pebble issuing certificates valid for LIFETIME: as Boulder, it
    makes them a second shorter than its validity period."""
    period = lifetime + datetime.timedelta(seconds=1)
    return pebble_factory(config={"certificateValidityPeriod": int(period.total_seconds())})


def proxy_for(pebble_factory: PebbleFactory, lifetime: datetime.timedelta) -> Iterator[FaultProxy]:
    """The fault proxy in front of a Pebble issuing certificates valid for LIFETIME."""
    with running_fault_proxy(pebble_issuing(pebble_factory, lifetime)) as proxy:
        yield proxy


@pytest.fixture
def ten_days(pebble_factory: PebbleFactory) -> Iterator[FaultProxy]:
    yield from proxy_for(pebble_factory, 10 * DAY)


@pytest.fixture
def one_day(pebble_factory: PebbleFactory) -> Iterator[FaultProxy]:
    yield from proxy_for(pebble_factory, DAY)


def issued(setup: MasterSetup) -> tuple[Path, x509.Certificate]:
    """Register, and issue the certificate of SITE: its chain file and leaf."""
    setup.register()
    chain = setup.one_section(**SITE)
    setup.run("newOrder")
    return chain, leaf_of(chain)


def offer_window(
    proxy: FaultProxy,
    start_in: datetime.timedelta,
    end_in: datetime.timedelta,
    retry_after: str = "60",
) -> tuple[datetime.datetime, datetime.datetime]:
    """Make PROXY offer a window from START_IN to END_IN from now; the window."""
    now = datetime.datetime.now(datetime.UTC)
    start, end = now + start_in, now + end_in
    offer_renewal_info(proxy, (start.isoformat(), end.isoformat()), retry_after)
    return start, end


def said(when: datetime.datetime) -> str:
    return f"{when:{WHEN}}"


def replaces(proxy: FaultProxy) -> list[str | None]:
    """The `replaces` of each newOrder so far (None where there was none)."""
    return [e.request.payload.get("replaces") for e in proxy.sent("POST", "newOrder")]


@pytest.mark.parametrize(
    ("start", "end", "refusal"),
    [
        (
            "9999-12-01T00:00:00Z",
            "9999-12-31T00:00:00Z",
            "suggestedWindow starts at 9999-12-01 00:00:00 UTC, "
            "after the certificate expires at {expiry}",
        ),
        (
            "0001-01-01T00:30:00+01:00",
            "0001-01-02T00:00:00Z",
            "suggestedWindow start is out of range: '0001-01-01T00:30:00+01:00'",
        ),
        (
            "2026-03-02T00:00:00Z",
            "2026-03-01T00:00:00Z",
            "suggestedWindow ends (2026-03-01 00:00:00+00:00) "
            "before it starts (2026-03-02 00:00:00+00:00)",
        ),
    ],
)
def test_a_window_refused_leaves_renewal_to_min_days(
    fault_proxy: FaultProxy, start: str, end: str, refusal: str
) -> None:
    asked = offer_renewal_info(fault_proxy, (start, end), retry_after="999999999999")
    with master_setup(fault_proxy) as setup:
        chain, leaf = issued(setup)
        result = setup.run("newOrder")
        assert asked == [ari_cert_id(leaf)]
        expiry = said(leaf.not_valid_after_utc)
        assert result.stderr == (
            f"[site] Warning: no renewal information ({refusal.format(expiry=expiry)}), "
            "renewal goes by min-days\n"
            f"[site] Valid until {expiry}, skipping\n"
        )
        assert leaf_of(chain) == leaf
        # Nothing kept: the next run asks again.
        assert not Path(f"{chain}.ari").exists()


def test_retry_after_believed_for_a_day_at_most(fault_proxy: FaultProxy) -> None:
    # The client takes a day of it (acme_http.MAX_RETRY_AFTER), the master a day at most.
    start, end = offer_window(fault_proxy, 30 * DAY, 31 * DAY, retry_after="999999999999")
    with master_setup(fault_proxy) as setup:
        chain, _ = issued(setup)
        before = datetime.datetime.now(datetime.UTC)
        result = setup.run("newOrder")
        after = datetime.datetime.now(datetime.UTC)
        state = json.loads(Path(f"{chain}.ari").read_text())
        next_check = datetime.datetime.fromisoformat(state["nextCheck"])
        assert before + DAY <= next_check <= after + DAY
        renew_at = datetime.datetime.fromisoformat(state["renewAt"])
        assert result.stderr == (
            f"[site] Renewal at {said(renew_at)} "
            f"(renewal window {said(start)} to {said(end)}), skipping\n"
        )


def test_a_late_window_gives_way_to_the_latest_renewal(ten_days: FaultProxy) -> None:
    # A window starting a day before the expiry of a 10-day certificate: the
    # certificate is renewed with a sixth of its lifetime left (40 hours).
    start, end = offer_window(ten_days, 9 * DAY, 30 * DAY)
    with master_setup(ten_days) as setup:
        chain, leaf = issued(setup)
        expiry = leaf.not_valid_after_utc
        assert expiry - leaf.not_valid_before_utc == 10 * DAY
        result = setup.run("newOrder")
        assert result.stderr == (
            f"[site] Renewal at {said(expiry - 40 * HOUR)}, 40 hours before expiry "
            f"(renewal window {said(start)} to {said(end)} is later), skipping\n"
        )
        assert leaf_of(chain) == leaf


def test_too_late_a_window_renews_now(one_day: FaultProxy) -> None:
    # A one-day certificate is renewed at every run, whatever its window.
    start, end = offer_window(one_day, 20 * HOUR, 30 * HOUR)
    with master_setup(one_day) as setup:
        chain, leaf = issued(setup)
        result = setup.run("newOrder")
        assert result.stderr == (
            f"[site] Warning: renewing before the renewal window {said(start)} to {said(end)}, "
            f"which is too late: the certificate expires at {said(leaf.not_valid_after_utc)}, "
            "and lacme renews 24 hours before that at the latest\n"
            f"Installing X.509 certificate chain {chain}\n"
        )
        assert replaces(one_day) == [None, ari_cert_id(leaf)]
        assert leaf_of(chain).serial_number != leaf.serial_number


def test_a_window_before_the_next_run_is_not_missed(fault_proxy: FaultProxy) -> None:
    # Three hours, starting in two, between runs twelve hours apart.
    start, end = offer_window(fault_proxy, 2 * HOUR, 5 * HOUR)
    with master_setup(fault_proxy, defaults=["renewal-lookahead = 1h"]) as setup:
        chain, leaf = issued(setup)
        # Runs an hour apart wait for it.
        result = setup.run("newOrder")
        renew_at = datetime.datetime.fromisoformat(
            json.loads(Path(f"{chain}.ari").read_text())["renewAt"]
        )
        assert result.stderr == (
            f"[site] Renewal at {said(renew_at)} "
            f"(renewal window {said(start)} to {said(end)}), skipping\n"
        )
        # The default, lacme.timer's twelve hours, renews it now.
        setup.config.write_text(setup.config.read_text().replace("renewal-lookahead = 1h\n", ""))
        result = setup.run("newOrder")
        assert result.stderr == f"Installing X.509 certificate chain {chain}\n"
        assert replaces(fault_proxy) == [None, ari_cert_id(leaf)]


def test_min_days_beyond_a_third_of_the_lifetime(pebble_factory: PebbleFactory) -> None:
    # Without renewal information, the default 21 days would renew a 6-day
    # certificate at every run: it is renewed at two thirds of its lifetime.
    with master_setup(pebble_issuing(pebble_factory, 6 * DAY)) as setup:
        setup.register()
        chain = setup.one_section(**SITE)
        setup.run("newOrder")
        leaf = leaf_of(chain)
        assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == 6 * DAY
        result = setup.run("newOrder")
        assert result.stderr == f"[site] Valid until {said(leaf.not_valid_after_utc)}, skipping\n"
        assert leaf_of(chain) == leaf
