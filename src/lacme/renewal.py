"""When a run of `lacme newOrder` renews a section's installed certificate,
and why: the schedule the master acts on (lacme.master) and `lacme status`
shows (lacme.status), from the certificate's validity and, when the CA gave
some, its renewal information (lacme.ari).

By min-days, as in lacme 0.8.2: renewal once the certificate expires within
`min-days` days (a third of its lifetime at most, so that days meant for
90-day certificates do not renew a 6-day one at every run), or within that
percentage of its lifetime (`33%`); a negative number (--force) renews at
once.  By renewal information: at the time chosen in the CA's window, but a
sixth of the lifetime before the expiry at the latest (ari.latest_renewal);
a run renews it when that time comes before the next run (RFC 9773 section
4.2, `renewal-lookahead`).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from lacme import ari
from lacme.config import Percent

# Why a certificate is renewed when it is (Schedule.reason).
MIN_DAYS = "min-days"
PERCENTAGE = "percentage"
FORCE = "force"
ARI = "ari"
ARI_LATEST = "ari-latest"
WHEN = "%Y-%m-%d %H:%M:%S UTC"


@dataclass(frozen=True)
class Schedule:
    """When the certificate is renewed (None: at once), why (REASON, one of
    the names above, and WHY, for a human), and whether a run renews it
    ahead of that time, when the next run would come too late (AHEAD)."""

    at: datetime.datetime | None
    reason: str
    why: str
    ahead: bool = False

    def due(self, now: datetime.datetime, lookahead: datetime.timedelta) -> bool:
        """Whether a run at NOW renews it, the next run coming within LOOKAHEAD."""
        if self.at is None:
            return True
        return ari.due(self.at, now, lookahead if self.ahead else datetime.timedelta(0))


def by_min_days(
    not_before: datetime.datetime, not_after: datetime.datetime, min_days: int | Percent
) -> Schedule:
    """The schedule of a certificate valid from NOT_BEFORE to NOT_AFTER by MIN_DAYS."""
    lifetime = not_after - not_before
    if isinstance(min_days, Percent):
        margin = lifetime * (min_days.value / 100)
        return Schedule(not_after - margin, PERCENTAGE, f"min-days = {min_days.value:g}%")
    if min_days < 0:
        return Schedule(None, FORCE, "--force")
    days = datetime.timedelta(days=min_days)
    if days <= lifetime / 3:
        return Schedule(not_after - days, MIN_DAYS, f"min-days = {min_days}")
    return Schedule(
        not_after - lifetime / 3,
        MIN_DAYS,
        f"min-days = {min_days}, at most a third of the {ari.span(lifetime)} lifetime",
    )


def window(state: ari.State) -> str:
    return f"renewal window {state.start:{WHEN}} to {state.end:{WHEN}}"


def by_ari(
    state: ari.State, not_before: datetime.datetime, not_after: datetime.datetime
) -> Schedule:
    """The schedule of a certificate valid from NOT_BEFORE to NOT_AFTER by
    its renewal information STATE: the time chosen in the window, unless
    that is later than ari.latest_renewal."""
    latest = ari.latest_renewal(not_before, not_after)
    if latest < state.renew_at:
        margin = ari.span(not_after - latest)
        return Schedule(
            latest, ARI_LATEST, f"{margin} before expiry ({window(state)} is later)", True
        )
    return Schedule(state.renew_at, ARI, window(state), True)
