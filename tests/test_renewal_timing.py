"""When the master renews, on a clock of the test's own: the renewal
information it refuses (lacme.ari), the bound on Retry-After, the latest
renewal whatever the window, the lookahead to the next run (lacme.conf's
`renewal-lookahead`), min-days for short-lived certificates
(lacme.certificate), and the state file written whole or not at all
(lacme.files)."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from lacme import ari, certificate, config
from lacme.client_contract import decode_renewal_info
from lacme.errors import ConfigError
from support.pki import IssuingCA, generate_key

pytestmark = pytest.mark.unit

UTC = datetime.UTC
NOW = datetime.datetime(2026, 1, 1, tzinfo=UTC)
DAY = datetime.timedelta(days=1)
HOUR = datetime.timedelta(hours=1)
EXPIRY = NOW + 90 * DAY


def answer(start: str, end: str, retry_after: str = "null") -> bytes:
    # As a client would print it; JSON has no NaN nor infinity, Python's reader does.
    window = json.dumps({"suggestedWindow": {"start": start, "end": end}})
    return f'{{"renewalInfo": {window}, "retryAfter": {retry_after}}}'.encode()


# --- windows refused ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        # Year 1 in UTC is before datetime's first day.
        (
            "0001-01-01T00:30:00+01:00",
            "2026-03-01T00:00:00Z",
            "suggestedWindow start is out of range: '0001-01-01T00:30:00+01:00'",
        ),
        (
            "2026-03-01T00:00:00Z",
            "9999-12-31T23:30:00-01:00",
            "suggestedWindow end is out of range: '9999-12-31T23:30:00-01:00'",
        ),
        (
            "9999-12-01T00:00:00Z",
            "9999-12-31T00:00:00Z",
            "suggestedWindow starts at 9999-12-01 00:00:00 UTC, "
            "after the certificate expires at 2026-04-01 00:00:00 UTC",
        ),
        (
            "2026-04-01T00:00:01Z",
            "2026-04-02T00:00:00Z",
            "suggestedWindow starts at 2026-04-01 00:00:01 UTC, "
            "after the certificate expires at 2026-04-01 00:00:00 UTC",
        ),
        (
            "2026-03-02T00:00:00Z",
            "2026-03-01T00:00:00Z",
            "suggestedWindow ends (2026-03-01 00:00:00+00:00) "
            "before it starts (2026-03-02 00:00:00+00:00)",
        ),
    ],
)
def test_window_refused(start: str, end: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"^suggestedWindow ") as refused:
        ari.renewal_info(decode_renewal_info(answer(start, end)), EXPIRY)
    assert str(refused.value) == message


def test_window_up_to_the_expiry_and_beyond_is_taken() -> None:
    # Only a start after the expiry is refused: the latest renewal (below)
    # stands in for an end after it.
    info = ari.renewal_info(
        decode_renewal_info(answer("2026-04-01T00:00:00Z", "9999-12-31T00:00:00Z")), EXPIRY
    )
    assert (info.start, info.end.year) == (EXPIRY, 9999)


def saved_state(tmp_path: Path, start: datetime.datetime, next_check: datetime.datetime) -> str:
    path = str(tmp_path / "cert.pem.ari")
    ari.save_state(
        path, ari.State("a.b", start, start + DAY, start, next_check, "https://ca.example/why")
    )
    return path


def test_saved_window_refused_now_is_no_state(tmp_path: Path) -> None:
    # Kept by a lacme that took any window: asked again, as if there were none.
    path = saved_state(tmp_path, datetime.datetime(9999, 1, 1, tzinfo=UTC), NOW + HOUR)
    assert ari.load_state(path, "a.b", EXPIRY) is None
    path = saved_state(tmp_path, NOW + 60 * DAY, NOW + HOUR)
    assert ari.load_state(path, "a.b", EXPIRY) is not None


# --- Retry-After -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_after", "wait"),
    [
        ("null", ari.DEFAULT_RETRY_AFTER),
        ("NaN", ari.DEFAULT_RETRY_AFTER),
        ("Infinity", DAY),
        ("1e300", DAY),
        ("86401", DAY),
        ("7200", 2 * HOUR),
        ("60", datetime.timedelta(minutes=1)),
        ("0.5", datetime.timedelta(minutes=1)),
        ("-Infinity", datetime.timedelta(minutes=1)),
    ],
)
def test_retry_after_is_a_minute_to_a_day(retry_after: str, wait: datetime.timedelta) -> None:
    info = ari.renewal_info(
        decode_renewal_info(answer("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z", retry_after)),
        EXPIRY,
    )
    assert ari.next_state(None, "a.b", info, NOW).next_check == NOW + wait


def test_state_believed_until_the_next_check_a_day_at_most(tmp_path: Path) -> None:
    state = ari.load_state(saved_state(tmp_path, NOW + 60 * DAY, NOW + DAY), "a.b", EXPIRY)
    assert state is not None
    assert ari.believed(state, NOW)
    assert ari.believed(state, NOW + HOUR)
    assert not ari.believed(state, NOW + DAY)
    # Kept by a lacme that believed any Retry-After: asked again now.
    assert not ari.believed(state, NOW - HOUR)


# --- the latest renewal, whatever the window ------------------------------------------


@pytest.mark.parametrize(
    ("lifetime", "margin", "said"),
    [
        (90 * DAY, 15 * DAY, "15 days"),
        (5 * 365 * DAY, 5 * 365 * DAY / 6, "304 days"),
        # Let's Encrypt's shortlived profile: 160 hours.
        (160 * HOUR, 160 * HOUR / 6, "26 hours"),
        (6 * DAY, DAY, "24 hours"),
        (3 * DAY, DAY, "24 hours"),
        # A day or less: renewed at once, at every run.
        (12 * HOUR, DAY, "24 hours"),
    ],
)
def test_latest_renewal_a_sixth_of_the_lifetime_a_day_at_least(
    lifetime: datetime.timedelta, margin: datetime.timedelta, said: str
) -> None:
    not_after = NOW + lifetime
    latest = ari.latest_renewal(NOW, not_after)
    assert not_after - latest == margin
    assert ari.span(not_after - latest) == said


def test_ordinary_windows_keep_their_say() -> None:
    # A window that ends with a third of the lifetime left is never cut
    # short, down to a lifetime of three days.
    for lifetime in (90 * DAY, 47 * DAY, 160 * HOUR, 3 * DAY):
        assert NOW + lifetime * 2 / 3 <= ari.latest_renewal(NOW, NOW + lifetime)


# --- due before the next run -----------------------------------------------------------


def test_due_before_the_next_run() -> None:
    # A three-hour window between two runs twelve hours apart is not missed.
    assert ari.due(NOW + 3 * HOUR, NOW, 12 * HOUR)
    assert ari.due(NOW + 12 * HOUR, NOW, 12 * HOUR)
    assert not ari.due(NOW + 12 * HOUR + datetime.timedelta(seconds=1), NOW, 12 * HOUR)
    assert not ari.due(NOW + 3 * HOUR, NOW, datetime.timedelta(0))
    assert ari.due(NOW - DAY, NOW, datetime.timedelta(0))


@pytest.mark.parametrize(
    ("text", "lookahead"),
    [
        ("12h", 12 * HOUR),
        ("90m", 90 * datetime.timedelta(minutes=1)),
        ("1d", DAY),
        ("0h", datetime.timedelta(0)),
        ("7d", 7 * DAY),
        ("3600s", HOUR),
    ],
)
def test_renewal_lookahead_setting(
    tmp_path: Path, text: str, lookahead: datetime.timedelta
) -> None:
    path = tmp_path / "lacme.conf"
    path.write_text(f"renewal-lookahead = {text}\n[client]\n")
    assert config.load(str(path)).renewal_lookahead == lookahead
    path.write_text("")
    assert config.load(str(path)).renewal_lookahead == 12 * HOUR


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("12", "not a duration such as 12h, 90m, 1d or 0h"),
        ("-1h", "not a duration such as 12h, 90m, 1d or 0h"),
        ("12 h", "not a duration such as 12h, 90m, 1d or 0h"),
        ("1w", "not a duration such as 12h, 90m, 1d or 0h"),
        ("", "not a duration such as 12h, 90m, 1d or 0h"),
        ("8d", "more than 7d: run lacme newOrder at least once a week"),
        ("9" * 30 + "d", "more than 7d: run lacme newOrder at least once a week"),
    ],
)
def test_renewal_lookahead_refused(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "lacme.conf"
    path.write_text(f"renewal-lookahead = {text}\n")
    with pytest.raises(ConfigError) as refused:
        config.load(str(path))
    assert str(refused.value) == f"{path}: renewal-lookahead = {text}: {reason}"


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


# --- the state file, whole or not at all ------------------------------------------------------


def test_state_file_is_synced_then_renamed_then_its_directory_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps: list[str] = []
    renamed: list[bytes] = []
    fsync, rename = os.fsync, os.rename

    def record_fsync(fd: int) -> None:
        steps.append(f"fsync {os.readlink(f'/proc/self/fd/{fd}')}")
        fsync(fd)

    def record_rename(source: str, target: str) -> None:
        steps.append(f"rename {source} {target}")
        renamed.append(Path(source).read_bytes())
        rename(source, target)

    monkeypatch.setattr(os, "fsync", record_fsync)
    monkeypatch.setattr(os, "rename", record_rename)
    path = saved_state(tmp_path, NOW + 60 * DAY, NOW + HOUR)
    temporary = steps[0].removeprefix("fsync ")
    assert os.path.dirname(temporary) == str(tmp_path)
    assert steps == [f"fsync {temporary}", f"rename {temporary} {path}", f"fsync {tmp_path}"]
    # Complete, and with its mode, before it took the place of the old one.
    assert renamed == [Path(path).read_bytes()]
    assert os.stat(path).st_mode & 0o777 == 0o644


def test_state_file_kept_whole_when_the_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = saved_state(tmp_path, NOW + 60 * DAY, NOW + HOUR)
    before = Path(path).read_bytes()

    def fail(source: str, target: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "rename", fail)
    with pytest.raises(OSError, match="No space left"):
        saved_state(tmp_path, NOW + 61 * DAY, NOW + HOUR)
    assert Path(path).read_bytes() == before
    assert os.listdir(tmp_path) == ["cert.pem.ari"]


# --- a server without renewal information, remembered ----------------------------------


def test_a_server_without_renewal_information_is_remembered_for_a_day(tmp_path: Path) -> None:
    path = str(tmp_path / "site.chain.ari")
    assert not ari.not_offered(path, "id.1", NOW)
    ari.save_not_offered(path, "id.1", NOW)
    assert ari.not_offered(path, "id.1", NOW)
    assert ari.not_offered(path, "id.1", NOW + datetime.timedelta(hours=23))
    assert not ari.not_offered(path, "id.1", NOW + datetime.timedelta(days=1))
    # About the certificate then installed only, and never a window kept.
    assert not ari.not_offered(path, "id.2", NOW)
    assert ari.load_state(path, "id.1", NOW + datetime.timedelta(days=90)) is None
    # A time to ask again further off than a day is not believed.
    far = {"certID": "id.1", "offered": False, "nextCheck": "2026-01-03T00:00:00+00:00"}
    Path(path).write_text(json.dumps(far))
    assert not ari.not_offered(path, "id.1", NOW)


@pytest.mark.parametrize("text", ["", "[]", '{"certID": "id.1", "offered": false}'])
def test_an_unreadable_record_says_nothing(tmp_path: Path, text: str) -> None:
    path = tmp_path / "site.chain.ari"
    path.write_text(text)
    assert not ari.not_offered(str(path), "id.1", NOW)
    assert ari.load_state(str(path), "id.1", NOW + datetime.timedelta(days=90)) is None


def test_renewal_information_kept_is_known_without_asking(tmp_path: Path) -> None:
    path = str(tmp_path / "site.chain.ari")
    start, end = NOW + datetime.timedelta(days=50), NOW + datetime.timedelta(days=60)
    state = ari.State("id.1", start, end, start, NOW + datetime.timedelta(hours=6), None)
    ari.save_state(path, state)
    kept = ari.load_state(path, "id.1", NOW + datetime.timedelta(days=90))
    assert kept == state
    assert ari.believed(kept, NOW)
    assert not ari.believed(kept, NOW + datetime.timedelta(hours=6))
    assert not ari.not_offered(path, "id.1", NOW)
