"""Rate limits the CA reported, per certificate section, for the master.

A CA refusing a newOrder with `rateLimited` (HTTP 429, RFC 8555 section
6.6) says with Retry-After when to ask again; asking earlier only burns
more of the limit.  lacme runs and exits, so the time is kept in a small
JSON file beside the section's certificate (`state_path`), and runs before
it skip the section without asking.  A successful installation removes it.
"""

from __future__ import annotations

import datetime
import json
import math

from lacme import files

STATE_SUFFIX = ".rate-limit"
# What the master believes of the client's word: a week is beyond Let's
# Encrypt's longest window (duplicate certificates, 168 h), and a longer
# wait, from a broken client or server, must not switch renewal off.
MAX_WAIT = datetime.timedelta(days=7)


def state_path(certificate_path: str) -> str:
    return certificate_path + STATE_SUFFIX


def until(now: datetime.datetime, retry_after: float) -> datetime.datetime:
    """When a limit the server reported at NOW, to retry after RETRY_AFTER
    seconds, ends (within MAX_WAIT)."""
    if not math.isfinite(retry_after) or retry_after < 0:
        raise ValueError(f"not a wait in seconds: {retry_after!r}")
    return now + datetime.timedelta(seconds=min(retry_after, MAX_WAIT.total_seconds()))


def load(path: str, now: datetime.datetime) -> datetime.datetime | None:
    """When the limit recorded at PATH ends, if it has not by NOW; None if
    there is none, or it is unreadable (then the server is asked again)."""
    data = files.read_json_object(path)
    until = None if data is None else data.get("until")
    if not isinstance(until, str):
        return None
    try:
        end = datetime.datetime.fromisoformat(until)
    except ValueError:
        return None
    if end.tzinfo is None or end <= now:
        return None
    return min(end, now + MAX_WAIT)


def save(path: str, end: datetime.datetime) -> None:
    """Record at PATH, atomically, a limit that ends at END; OSError if that fails."""
    data = {"until": end.isoformat()}
    files.replace(path, json.dumps(data).encode() + b"\n", 0o644)
