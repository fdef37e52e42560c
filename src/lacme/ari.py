"""ACME Renewal Information (RFC 9773) for the master: when to renew.

The client fetches a certificate's renewal information (`renewalInfo
CERTID`, lacme.client_contract); the master decides with what is here.  RFC
9773 section 4.2's algorithm, for a program run from cron or a timer:
choose a uniformly random time within the suggested window, and renew once
it has come, or when it comes before the next run (`due`: a time in the
past, a window wholly in the past included, means now).

What the server says is weighed, not obeyed: it may be broken or hostile,
and the client that brought it compromised.  A window must be well formed
and start before the certificate expires (`renewal_info`), or it is refused
and min-days decides; whatever the window, a certificate is renewed at the
latest when a sixth of its lifetime is left, a day at least
(`latest_renewal`), so that no window can put renewal off until the
certificate has expired; Retry-After counts from a minute to a day (RFC
9773 section 4.3's example limits).

Retry-After says when to ask again; lacme runs and exits, so what it learnt
is kept in a small JSON file beside the certificate (`state_path`), replaced
atomically and synced to disk (lacme.files): the certID it is about, the
window, the chosen time and when to ask next.  Until then runs decide from
that file without asking the server; a new window gets a new random time,
the same one keeps it, so that runs do not draw again and again (which
would favour the window's start).
"""

from __future__ import annotations

import datetime
import json
import math
import secrets
from dataclasses import dataclass
from typing import Any

from lacme import files
from lacme.client_contract import RenewalInfoAnswer

# When the server gives no Retry-After: RFC 9773's example interval.
DEFAULT_RETRY_AFTER = datetime.timedelta(hours=6)
MIN_RETRY_AFTER = datetime.timedelta(minutes=1)
MAX_RETRY_AFTER = datetime.timedelta(days=1)
# CAs suggest renewing with about a third of the lifetime left (Let's
# Encrypt's 90-day certificates: from day 60); half of that still leaves
# 15 days (30 runs of lacme.timer) to retry a failure in, a day at least.
LATEST_FRACTION = 6
LATEST_MARGIN = datetime.timedelta(days=1)
STATE_SUFFIX = ".ari"


@dataclass(frozen=True)
class RenewalInfo:
    """What the client brought back for one certificate."""

    start: datetime.datetime
    end: datetime.datetime
    explanation_url: str | None
    retry_after: float | None  # seconds


@dataclass(frozen=True)
class State:
    cert_id: str
    start: datetime.datetime
    end: datetime.datetime
    renew_at: datetime.datetime
    next_check: datetime.datetime
    explanation_url: str | None


def _timestamp(value: Any, what: str) -> datetime.datetime:
    """An RFC 3339 timestamp, which must say its offset and be one in UTC too."""
    if not isinstance(value, str):
        raise ValueError(f"{what} is not a timestamp: {value!r:.100}")
    try:
        when = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{what} is not a timestamp: {value!r:.100}") from None
    if when.tzinfo is None:
        raise ValueError(f"{what} has no time zone: {value!r:.100}")
    try:
        return when.astimezone(datetime.UTC)
    except OverflowError:
        raise ValueError(f"{what} is out of range: {value!r:.100}") from None


def _utc(when: datetime.datetime) -> str:
    return f"{when:%Y-%m-%d %H:%M:%S} UTC"


def _check_window(
    start: datetime.datetime, end: datetime.datetime, expiry: datetime.datetime
) -> None:
    """ValueError unless START to END is a window for a certificate that
    expires at EXPIRY: one that ends after it starts (RFC 9773 section
    4.2), and starts before the expiry (else renewal would come too late)."""
    if end <= start:
        raise ValueError(f"suggestedWindow ends ({end}) before it starts ({start})")
    if start > expiry:
        raise ValueError(
            f"suggestedWindow starts at {_utc(start)}, "
            f"after the certificate expires at {_utc(expiry)}"
        )


def renewal_info(answer: RenewalInfoAnswer, expiry: datetime.datetime) -> RenewalInfo:
    """What the client's `renewalInfo` answer says of a certificate that
    expires at EXPIRY; ValueError if its window is malformed or refused
    (_check_window)."""
    info = answer.renewal_info
    window = info.get("suggestedWindow")
    if not isinstance(window, dict):
        raise ValueError("no suggestedWindow")
    start = _timestamp(window.get("start"), "suggestedWindow start")
    end = _timestamp(window.get("end"), "suggestedWindow end")
    _check_window(start, end, expiry)
    explanation = info.get("explanationURL")
    return RenewalInfo(
        start=start,
        end=end,
        explanation_url=explanation if isinstance(explanation, str) else None,
        retry_after=answer.retry_after,
    )


def retry_wait(retry_after: float | None) -> datetime.timedelta:
    """How long to believe an answer that came with RETRY_AFTER seconds:
    within [MIN_RETRY_AFTER, MAX_RETRY_AFTER], DEFAULT_RETRY_AFTER without
    a number."""
    if retry_after is None or math.isnan(retry_after):
        return DEFAULT_RETRY_AFTER
    seconds = min(
        max(retry_after, MIN_RETRY_AFTER.total_seconds()), MAX_RETRY_AFTER.total_seconds()
    )
    return datetime.timedelta(seconds=seconds)


def random_time(start: datetime.datetime, end: datetime.datetime) -> datetime.datetime:
    """A uniformly random time in [start, end), to the millisecond."""
    span = int((end - start) / datetime.timedelta(milliseconds=1))
    return start + datetime.timedelta(milliseconds=secrets.randbelow(max(span, 1)))


def next_state(
    previous: State | None, cert_id: str, info: RenewalInfo, now: datetime.datetime
) -> State:
    """The state after asking the server at NOW."""
    if previous is not None and (previous.start, previous.end) == (info.start, info.end):
        renew_at = previous.renew_at
    else:
        renew_at = random_time(info.start, info.end)
    return State(
        cert_id=cert_id,
        start=info.start,
        end=info.end,
        renew_at=renew_at,
        next_check=now + retry_wait(info.retry_after),
        explanation_url=info.explanation_url,
    )


def believed(state: State, now: datetime.datetime) -> bool:
    """Whether STATE still holds at NOW, without asking the server again: a
    time to ask again further off than MAX_RETRY_AFTER (from a state file of
    an older lacme, or tampered with) is not believed."""
    return _fresh(state.next_check, now)


def _fresh(next_check: datetime.datetime, now: datetime.datetime) -> bool:
    return now < next_check <= now + MAX_RETRY_AFTER


def latest_renewal(
    not_before: datetime.datetime, not_after: datetime.datetime
) -> datetime.datetime:
    """When a certificate valid from NOT_BEFORE to NOT_AFTER is renewed at
    the latest, whatever its window: a sixth of its lifetime before it
    expires, a day if that is more (at once, for a certificate of a day or less)."""
    return not_after - max((not_after - not_before) / LATEST_FRACTION, LATEST_MARGIN)


def due(when: datetime.datetime, now: datetime.datetime, lookahead: datetime.timedelta) -> bool:
    """Whether a renewal at WHEN is due at NOW, the next run coming within
    LOOKAHEAD: RFC 9773 section 4.2 renews at once when the time chosen
    comes before the client would wake up again."""
    return when <= now + lookahead


def span(duration: datetime.timedelta) -> str:
    """DURATION, rounded down: in days from two days on, else in hours."""
    if duration >= datetime.timedelta(days=2):
        return f"{duration.days} days"
    return f"{duration // datetime.timedelta(hours=1)} hours"


def state_path(certificate_path: str) -> str:
    return certificate_path + STATE_SUFFIX


def load_state(path: str, cert_id: str, expiry: datetime.datetime) -> State | None:
    """The state at PATH if it is about CERT_ID, which expires at EXPIRY;
    None if there is none, it is about another certificate (renewed since),
    it is unreadable, or its window would be refused now (_check_window)."""
    data = files.read_json_object(path)
    if data is None or data.get("certID") != cert_id:
        return None
    try:
        explanation = data.get("explanationURL")
        state = State(
            cert_id=cert_id,
            start=_timestamp(data.get("start"), "start"),
            end=_timestamp(data.get("end"), "end"),
            renew_at=_timestamp(data.get("renewAt"), "renewAt"),
            next_check=_timestamp(data.get("nextCheck"), "nextCheck"),
            explanation_url=explanation if isinstance(explanation, str) else None,
        )
        _check_window(state.start, state.end, expiry)
    except ValueError:
        return None
    return state


def save_state(path: str, state: State) -> None:
    """Replace the state at PATH atomically (it holds nothing secret: 0644);
    OSError if that fails."""
    data = {
        "certID": state.cert_id,
        "start": state.start.isoformat(),
        "end": state.end.isoformat(),
        "renewAt": state.renew_at.isoformat(),
        "nextCheck": state.next_check.isoformat(),
        "explanationURL": state.explanation_url,
    }
    files.replace(path, json.dumps(data, indent=2).encode() + b"\n", 0o644)


def not_offered(path: str, cert_id: str, now: datetime.datetime) -> bool:
    """Whether PATH says, still at NOW, that the server offers no renewal
    information (for CERT_ID, the certificate then installed)."""
    data = files.read_json_object(path)
    if data is None or data.get("certID") != cert_id or data.get("offered") is not False:
        return False
    try:
        next_check = _timestamp(data.get("nextCheck"), "nextCheck")
    except ValueError:
        return False
    return _fresh(next_check, now)


def save_not_offered(path: str, cert_id: str, now: datetime.datetime) -> None:
    """Record at PATH that the server offers no renewal information, for a
    day from NOW: the directory is not asked again meanwhile (a run with
    nothing due then contacts nobody).  OSError if that fails."""
    data = {"certID": cert_id, "offered": False, "nextCheck": (now + MAX_RETRY_AFTER).isoformat()}
    files.replace(path, json.dumps(data, indent=2).encode() + b"\n", 0o644)
