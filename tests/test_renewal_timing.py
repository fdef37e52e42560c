"""When the master renews, on a clock of the test's own: min-days for
short-lived certificates (lacme.certificate)."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from lacme import certificate, config
from support.pki import IssuingCA, generate_key

pytestmark = pytest.mark.unit

UTC = datetime.UTC
NOW = datetime.datetime(2026, 1, 1, tzinfo=UTC)
DAY = datetime.timedelta(days=1)
HOUR = datetime.timedelta(hours=1)


# --- min-days and short lifetimes ---------------------------------------------------------


def certificate_file(tmp_path: Path, ca: IssuingCA, lifetime: datetime.timedelta) -> str:
    key = generate_key("p256").public_key()
    cert = ca.issue(key, ["a.example.org"], not_before=NOW, days=lifetime / DAY)
    path = tmp_path / "cert.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


@pytest.mark.parametrize(
    ("lifetime", "min_days", "renewal"),
    [
        # The default 21 days, for a 6-day certificate: at two thirds of it.
        (6 * DAY, 21, 4 * DAY),
        (160 * HOUR, 21, 160 * HOUR * 2 / 3),
        (90 * DAY, 45, 60 * DAY),
        (90 * DAY, 30, 60 * DAY),
        # Within a third of the lifetime, or a percentage: as set.
        (90 * DAY, 21, 69 * DAY),
        (6 * DAY, 1, 5 * DAY),
        (6 * DAY, config.Percent(50), 3 * DAY),
        (6 * DAY, 0, 6 * DAY),
    ],
)
def test_min_days_at_most_a_third_of_the_lifetime(
    tmp_path: Path,
    ca: IssuingCA,
    lifetime: datetime.timedelta,
    min_days: int | config.Percent,
    renewal: datetime.timedelta,
) -> None:
    path = certificate_file(tmp_path, ca, lifetime)
    second = datetime.timedelta(seconds=1)
    assert certificate.valid_until(path, min_days, NOW + renewal - second) == NOW + lifetime
    assert certificate.valid_until(path, min_days, NOW + renewal) is None
    assert certificate.valid_until(path, -1, NOW) is None
