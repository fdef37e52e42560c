"""lacme.rate_limits: when a rate limit the CA reported ends, as the master
keeps it between runs (end to end: tests/test_faults_e2e.py)."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from lacme import rate_limits

pytestmark = pytest.mark.unit

NOW = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)
HOUR = datetime.timedelta(hours=1)


def test_a_limit_is_kept_until_it_ends(tmp_path: Path) -> None:
    path = rate_limits.state_path(str(tmp_path / "site.crt"))
    assert path == str(tmp_path / "site.crt.rate-limit")
    assert rate_limits.load(path, NOW) is None
    end = rate_limits.until(NOW, 3600)
    assert end == NOW + HOUR
    rate_limits.save(path, end)
    assert rate_limits.load(path, NOW) == end
    assert rate_limits.load(path, end - datetime.timedelta(seconds=1)) == end
    assert rate_limits.load(path, end) is None


def test_a_wait_is_believed_for_a_week_at_most(tmp_path: Path) -> None:
    assert rate_limits.until(NOW, 1e300) == NOW + rate_limits.MAX_WAIT
    path = str(tmp_path / "far")
    Path(path).write_text(json.dumps({"until": "9999-12-31T23:59:59+00:00"}))
    assert rate_limits.load(path, NOW) == NOW + rate_limits.MAX_WAIT


@pytest.mark.parametrize("seconds", [-1.0, float("nan"), float("inf")])
def test_a_wait_that_is_none_is_refused(seconds: float) -> None:
    with pytest.raises(ValueError, match=r"^not a wait in seconds: "):
        rate_limits.until(NOW, seconds)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        '{"until": 3}',
        '{"until": "soon"}',
        '{"until": "2026-12-01T13:00:00"}',  # no time zone: no telling when
        '{"since": "2026-12-01T13:00:00+00:00"}',
    ],
)
def test_an_unreadable_record_asks_the_server_again(tmp_path: Path, text: str) -> None:
    path = tmp_path / "site.crt.rate-limit"
    path.write_text(text)
    assert rate_limits.load(str(path), NOW) is None
