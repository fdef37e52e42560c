"""When the master renews, as an administrator meets it: our master against
Pebble issuing certificates of short lifetimes (tests/test_renewal_timing.py
has the rules)."""

from __future__ import annotations

import datetime

import pytest

from support.masters import leaf_of, master_setup
from support.pebble import PebbleFactory, PebbleServer

pytestmark = [pytest.mark.e2e, pytest.mark.root]

DAY = datetime.timedelta(days=1)
WHEN = "%Y-%m-%d %H:%M:%S UTC"
SITE = {"subject": "/CN=a.example.test"}


def pebble_issuing(pebble_factory: PebbleFactory, lifetime: datetime.timedelta) -> PebbleServer:
    """A Pebble issuing certificates valid for LIFETIME: as Boulder, it
    makes them a second shorter than its validity period."""
    period = lifetime + datetime.timedelta(seconds=1)
    return pebble_factory(config={"certificateValidityPeriod": int(period.total_seconds())})


def said(when: datetime.datetime) -> str:
    return f"{when:{WHEN}}"


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
