"""`lacme status` on a clock of the test's own (lacme.status): each field,
each reason for the next renewal (lacme.renewal), each state and its exit
status, the refusals, the --json document; end to end, with Pebble:
tests/test_status_e2e.py."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from lacme import (
    ari,
    certificate,
    config,
    confinement,
    installed,
    notify,
    rate_limits,
    renewal,
    status,
)
from lacme.master_command import Arguments, parse_args
from support.pki import IssuingCA, generate_key, pem, write_key

pytestmark = pytest.mark.unit

UTC = datetime.UTC
NOW = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DAY = datetime.timedelta(days=1)
HOUR = datetime.timedelta(hours=1)
LOOKAHEAD = 12 * HOUR
NAMES = ["a.example.test", "www.a.example.test"]
KEY = generate_key("p256")
NOT_ASKED = "no renewal window recorded: the next run asks the CA if it offers any"
# What this kernel gives the client and the webserver (lacme.confinement).
CONFINED = confinement.expected(True)


class Site:
    """A section [site] in TMP_PATH: its key, CAfile, chain file and configuration."""

    def __init__(self, tmp_path: Path, ca: IssuingCA, **settings: str) -> None:
        self.directory = tmp_path
        self.ca = ca
        self.key = tmp_path / "site.key"
        write_key(self.key, KEY)
        self.cafile = tmp_path / "roots.pem"
        self.cafile.write_bytes(ca.root_pem())
        self.chain = tmp_path / "site.chain"
        self.certs_conf = tmp_path / "lacme-certs.conf"
        self.conf = tmp_path / "lacme.conf"
        self.conf.write_text(f"config-certs = {self.certs_conf}\n")
        self.write(**settings)

    def write(self, **settings: str) -> None:
        values = {
            "certificate-key": str(self.key),
            "certificate-chain": str(self.chain),
            "CAfile": str(self.cafile),
            "subject": f"/CN={NAMES[0]}",
            "subjectAltName": f"DNS:{NAMES[1]}",
            **settings,
        }
        lines = ["[site]", *(f"{key} = {value}" for key, value in values.items())]
        self.certs_conf.write_text("\n".join(lines) + "\n")

    def install(
        self, days: float = 90, not_before: datetime.datetime = NOW - DAY, key: Any = KEY
    ) -> x509.Certificate:
        leaf = self.ca.issue(key.public_key(), NAMES, not_before=not_before, days=days)
        self.chain.write_bytes(pem(leaf, self.ca.intermediate))
        written = (NOW - 2 * HOUR).timestamp()
        os.utime(self.chain, (written, written))
        return leaf

    def source(self) -> config.CertSource:
        return config.load_certs([str(self.certs_conf)])["site"]

    def status(
        self, now: datetime.datetime = NOW, min_days: int | config.Percent | None = None
    ) -> status.SectionStatus:
        return status.section_status(self.source(), now, LOOKAHEAD, min_days)

    def show(self, *argv: str, now: datetime.datetime = NOW) -> int:
        parsed = parse_args(["status", *argv])
        assert isinstance(parsed, Arguments)
        return status.show(config.load(str(self.conf)), parsed, now)


@pytest.fixture
def site(tmp_path: Path, ca: IssuingCA) -> Site:
    return Site(tmp_path, ca)


def ari_state(leaf: x509.Certificate, start: datetime.datetime, renew_at: datetime.datetime) -> str:
    cert_id = certificate.ari_cert_id(leaf)
    assert cert_id is not None
    return json.dumps(
        {
            "certID": cert_id,
            "start": start.isoformat(),
            "end": (start + 2 * DAY).isoformat(),
            "renewAt": renew_at.isoformat(),
            "nextCheck": (NOW + 6 * HOUR).isoformat(),
            "explanationURL": None,
        }
    )


# --- the fields ---------------------------------------------------------------------


def test_every_field_of_an_installed_certificate(site: Site) -> None:
    leaf = site.install()
    got = site.status()
    assert got.certificate == str(site.chain)
    assert got.names == NAMES
    assert got.key_type == "ECDSA P-256"
    assert got.issuer == site.ca.intermediate.subject.rfc4514_string()
    assert got.serial == f"{leaf.serial_number:x}"
    assert got.not_before == NOW - DAY
    assert got.not_after == NOW + 89 * DAY
    assert status.days_left(got, NOW) == 89
    assert status.days_left(got, NOW + HOUR) == 88
    assert got.installed == NOW - 2 * HOUR
    assert got.renewal == renewal.Schedule(NOW + 68 * DAY, renewal.MIN_DAYS, "min-days = 21")
    assert (got.due, got.overdue, got.problems, got.notes) == (False, None, [], [NOT_ASKED])
    assert got.state(NOW) == status.OK
    assert status.last_result(got) == (
        "installed",
        NOW - 2 * HOUR,
        "installed 2026-12-01 10:00:00 UTC",
    )


def test_the_names_shown_are_the_certificate_s(site: Site) -> None:
    site.install()
    site.write(subjectAltName="DNS:shop.a.example.test")
    got = site.status()
    assert got.names == NAMES
    assert got.renewal == renewal.Schedule(
        None, status.CHANGED, "names changed: + shop.a.example.test, - www.a.example.test"
    )
    assert got.due
    assert got.state(NOW) == status.DUE


def test_the_human_block(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    site.install()
    assert site.show() == 0
    issuer = site.ca.intermediate.subject.rfc4514_string()
    assert capsys.readouterr().out == (
        "[site] ok\n"
        f"  certificate  {site.chain}\n"
        "  names        a.example.test, www.a.example.test\n"
        "  key          ECDSA P-256\n"
        f"  issuer       {issuer}\n"
        "  not after    2027-02-28 12:00:00 UTC (89 days left)\n"
        "  renewal      2027-02-07 12:00:00 UTC (in 68 days), min-days = 21\n"
        "  last result  installed 2026-12-01 10:00:00 UTC\n"
        f"  note         {NOT_ASKED}\n"
        "\n"
        "confinement\n"
        f"  client       {CONFINED}\n"
        f"  webserver    {CONFINED}\n"
    )


# --- why the next renewal comes when it does --------------------------------------------


def test_confinement_turned_off_is_said_so(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    site.install()
    site.conf.write_text(
        site.conf.read_text() + "[client]\nconfinement = No\n[webserver]\nconfinement = No\n"
    )
    assert site.show("--json") == 0
    off = "off (confinement = No, or --unconfined in its command)"
    assert json.loads(capsys.readouterr().out)["confinement"] == {"client": off, "webserver": off}


@pytest.mark.parametrize(
    ("days", "min_days", "given", "at", "why"),
    [
        (90, "", None, 69 * DAY, "min-days = 21"),
        (90, "30", None, 60 * DAY, "min-days = 30"),
        (90, "30", 10, 80 * DAY, "min-days = 10"),
        (6, "", None, 4 * DAY, "min-days = 21, at most a third of the 6 days lifetime"),
        (6, "50%", None, 3 * DAY, "min-days = 50%"),
        (90, "", config.Percent(10), 81 * DAY, "min-days = 10%"),
    ],
)
def test_min_days_and_percentage(
    site: Site,
    days: int,
    min_days: str,
    given: int | config.Percent | None,
    at: datetime.timedelta,
    why: str,
) -> None:
    if min_days:
        site.write(**{"min-days": min_days})
    site.install(days=days)
    got = site.status(min_days=given)
    assert got.renewal is not None
    assert (got.renewal.at, got.renewal.why) == (NOW - DAY + at, why)
    assert got.renewal.reason == (renewal.PERCENTAGE if "%" in why else renewal.MIN_DAYS)


def test_force_renews_at_once(site: Site) -> None:
    site.install()
    got = site.status(min_days=-1)
    assert got.renewal == renewal.Schedule(None, renewal.FORCE, "--force")
    assert got.due
    assert got.state(NOW) == status.DUE


def test_the_renewal_window_recorded_decides(site: Site) -> None:
    leaf = site.install()
    Path(f"{site.chain}.ari").write_text(ari_state(leaf, NOW + 40 * DAY, NOW + 41 * DAY))
    got = site.status()
    window = "renewal window 2027-01-10 12:00:00 UTC to 2027-01-12 12:00:00 UTC"
    assert got.renewal == renewal.Schedule(NOW + 41 * DAY, renewal.ARI, window, ahead=True)
    assert got.ari is not None
    assert got.ari.renew_at == NOW + 41 * DAY
    assert not got.due
    # A run renews it when the time comes before the next run.
    assert site.status(NOW + 41 * DAY - LOOKAHEAD).due
    assert not site.status(NOW + 41 * DAY - LOOKAHEAD - HOUR).due
    # A window the next run would ask for again, in a day: said so.
    assert site.status(NOW + DAY).notes == [
        "renewal information recorded until 2026-12-01 18:00:00 UTC: the next run asks the CA again"
    ]


def test_the_ca_s_explanation_is_shown(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    leaf = site.install()
    state = json.loads(ari_state(leaf, NOW + 40 * DAY, NOW + 41 * DAY))
    state["explanationURL"] = "https://ca.example/why\x1b[2J"
    Path(f"{site.chain}.ari").write_text(json.dumps(state))
    assert site.show() == 0
    assert "  explained    https://ca.example/why\\x1b[2J\n" in capsys.readouterr().out


def test_a_window_too_late_gives_way_to_the_latest_renewal(site: Site) -> None:
    leaf = site.install(days=12, not_before=NOW)
    Path(f"{site.chain}.ari").write_text(ari_state(leaf, NOW + 10 * DAY, NOW + 11 * DAY))
    got = site.status()
    assert got.renewal == renewal.Schedule(
        NOW + 10 * DAY,
        renewal.ARI_LATEST,
        "2 days before expiry (renewal window 2026-12-11 12:00:00 UTC to "
        "2026-12-13 12:00:00 UTC is later)",
        ahead=True,
    )


def test_a_ca_without_renewal_information_leaves_it_to_min_days(site: Site) -> None:
    leaf = site.install()
    cert_id = certificate.ari_cert_id(leaf)
    assert cert_id is not None
    ari.save_not_offered(f"{site.chain}.ari", cert_id, NOW - HOUR)
    got = site.status()
    assert got.renewal is not None
    assert got.renewal.reason == renewal.MIN_DAYS
    assert got.notes == ["the CA offers no renewal information"]


@pytest.mark.parametrize(
    ("settings", "why"),
    [
        ({"profile": "shortlived"}, "profile changed: (none) -> shortlived"),
        ({"certificate-key": "other"}, "is not the certificate's key"),
    ],
)
def test_changes_renew_at_the_next_run(site: Site, settings: dict[str, str], why: str) -> None:
    site.install()
    installed.save_ordered(str(site.chain), config.parse_section(site.source()))
    if settings.get("certificate-key") == "other":
        other = site.directory / "other.key"
        write_key(other, generate_key("p256"))
        settings = {"certificate-key": str(other)}
    site.write(**settings)
    got = site.status()
    assert got.renewal is not None
    assert (got.renewal.at, got.renewal.reason) == (None, status.CHANGED)
    assert why in got.renewal.why
    assert got.state(NOW) == status.DUE


def test_a_certificate_kept_is_installed_by_the_next_run(site: Site) -> None:
    site.install()
    newer = site.ca.issue(KEY.public_key(), NAMES, not_before=NOW)
    kept = f"{site.chain}.issued"
    installed.save_kept(kept, [newer, site.ca.intermediate])
    got = site.status()
    assert got.renewal == renewal.Schedule(
        None, status.PENDING_INSTALL, f"the next run installs the certificate kept in {kept}"
    )
    assert got.state(NOW) == status.OVERDUE
    assert status.last_result(got) == (
        "not-installed",
        None,
        f"issued, not installed: kept in {kept}",
    )


def test_a_certificate_kept_for_other_names_is_discarded(site: Site) -> None:
    site.install()
    other = site.ca.issue(KEY.public_key(), ["b.example.test"], not_before=NOW)
    kept = f"{site.chain}.issued"
    installed.save_kept(kept, [other])
    got = site.status()
    assert got.renewal is not None
    assert got.renewal.reason == renewal.MIN_DAYS
    assert got.notes == [
        f"the next run discards the certificate kept in {kept}: names changed: "
        "+ a.example.test, + www.a.example.test, - b.example.test",
        NOT_ASKED,
    ]


def test_a_pending_notification_is_overdue(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    site.write(notify="true")
    site.install()
    notify.save(f"{site.chain}.notify", notify.Pending(NOW - HOUR, "exited with value 1"))
    got = site.status()
    assert got.overdue == "the certificate installed is not notified yet"
    assert got.state(NOW) == status.OVERDUE
    assert site.show() == 1
    out = capsys.readouterr().out
    assert "  renewal      2027-02-07 12:00:00 UTC (in 68 days), min-days = 21\n" in out
    assert "  overdue      the certificate installed is not notified yet\n" in out
    assert "  notify       pending: the next run runs it again\n" in out
    assert status.last_result(got) == (
        "notify-pending",
        NOW - HOUR,
        "installed, notification pending since 2026-12-01 11:00:00 UTC "
        "(the last attempt exited with value 1)",
    )
    # Without a notify command, the next run drops it.
    site.write()
    got = site.status()
    assert (got.notify, got.state(NOW)) == (None, status.OK)
    assert got.notes == [
        NOT_ASKED,
        "no notify command any more: the next run drops the pending one",
    ]


def test_a_rate_limit_and_an_order_to_resume(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    site.install(not_before=NOW - 69 * DAY)
    rate_limits.save(f"{site.chain}.rate-limit", NOW + 3 * HOUR)
    got = site.status()
    assert got.rate_limited == NOW + 3 * HOUR
    assert status.last_result(got)[:2] == ("rate-limited", None)
    os.unlink(f"{site.chain}.rate-limit")
    url = "https://ca.example/order/1"
    installed.save_order(f"{site.chain}.order", url, list(reversed(NAMES)))
    got = site.status()
    assert got.resumes == url
    assert status.last_result(got) == (
        "interrupted",
        None,
        f"order cut short: the next run resumes {url}",
    )
    assert site.show() == 0
    assert f"  order        the next run resumes {url}\n" in capsys.readouterr().out


# --- states and the exit status --------------------------------------------------------------


def test_due_then_overdue_then_expired(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    site.install()
    at = NOW + 68 * DAY
    assert site.status(at - HOUR).state(at - HOUR) == status.OK
    assert site.status(at).state(at) == status.DUE
    assert site.show(now=at + LOOKAHEAD) == 0
    assert "2027-02-07 12:00:00 UTC (12 hours ago), min-days = 21: at the next run\n" in (
        capsys.readouterr().out
    )
    late = at + LOOKAHEAD + HOUR
    got = site.status(late)
    assert (got.state(late), got.overdue) == (status.OVERDUE, "renewal was due 13 hours ago")
    assert site.show(now=late) == 1
    out = capsys.readouterr().out
    assert out.startswith("[site] overdue\n")
    assert "  overdue      renewal was due 13 hours ago\n" in out
    expired = NOW + 89 * DAY
    assert site.status(expired).state(expired) == status.EXPIRED
    assert site.show(now=expired) == 1
    assert "(0 days left)" in capsys.readouterr().out


def test_no_certificate_yet_is_missing(site: Site) -> None:
    got = site.status()
    assert got.renewal == renewal.Schedule(None, status.NO_CERTIFICATE, "no certificate installed")
    assert got.state(NOW) == status.MISSING
    assert status.last_result(got) == (None, None, "none recorded")
    assert site.show() == 1


# --- refusals ---------------------------------------------------------------------------


def test_an_unreadable_certificate_is_broken(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    site.chain.write_text("not a certificate\n")
    got = site.status()
    assert got.problems == [f"{site.chain} holds no PEM certificate"]
    assert got.state(NOW) == status.BROKEN
    assert site.show() == 1
    out = capsys.readouterr().out
    assert out.startswith("[site] broken\n")
    assert f"  problem      {site.chain} holds no PEM certificate\n" in out


def test_an_unreadable_key_is_broken(site: Site) -> None:
    site.install()
    site.key.write_text("garbage\n")
    got = site.status()
    assert got.problems == [f"certificate-key {site.key} is not a private key"]
    assert got.state(NOW) == status.BROKEN
    # What needs no key is still shown.
    assert (got.names, got.not_after) == (NAMES, NOW + 89 * DAY)


def test_a_renewal_that_would_fail_before_ordering_is_broken(site: Site) -> None:
    site.install()
    site.cafile.unlink()
    got = site.status()
    assert got.problems == [
        "the next renewal fails before ordering: "
        f"can't read CAfile {site.cafile}: No such file or directory"
    ]
    assert got.state(NOW) == status.BROKEN


def test_a_section_misconfigured_is_broken(site: Site) -> None:
    site.write(**{"min-days": "soon"})
    got = site.status()
    assert got.problems == [f"{site.certs_conf}: [site] min-days = soon: not an integer"]
    assert site.show() == 1


def test_an_unknown_section_in_one_line(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    site.install()
    assert site.show("site", "nosuch") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"Error: no section [nosuch] in {site.certs_conf}\n"


# --- --json ---------------------------------------------------------------------------------


def test_the_json_document(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    leaf = site.install()
    assert site.show("--json", "site") == 0
    document = json.loads(capsys.readouterr().out)
    assert document == {
        "now": "2026-12-01T12:00:00+00:00",
        "ok": True,
        "sections": [
            {
                "section": "site",
                "file": str(site.certs_conf),
                "state": "ok",
                "certificate": str(site.chain),
                "names": NAMES,
                "key_type": "ECDSA P-256",
                "issuer": site.ca.intermediate.subject.rfc4514_string(),
                "serial": f"{leaf.serial_number:x}",
                "not_before": "2026-11-30T12:00:00+00:00",
                "not_after": "2027-02-28T12:00:00+00:00",
                "days_left": 89,
                "renewal": {
                    "at": "2027-02-07T12:00:00+00:00",
                    "reason": "min-days",
                    "why": "min-days = 21",
                    "due": False,
                },
                "overdue": None,
                "ari": None,
                "kept": None,
                "resumes_order": None,
                "rate_limited_until": None,
                "notify_pending": None,
                "last_result": {
                    "outcome": "installed",
                    "at": "2026-12-01T10:00:00+00:00",
                    "text": "installed 2026-12-01 10:00:00 UTC",
                },
                "notes": [NOT_ASKED],
                "problems": [],
            }
        ],
        "confinement": {"client": CONFINED, "webserver": CONFINED},
    }


def test_the_json_document_of_a_failing_section(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    leaf = site.install()
    Path(f"{site.chain}.ari").write_text(ari_state(leaf, NOW - 3 * DAY, NOW - 2 * DAY))
    assert site.show("--json") == 1
    document = json.loads(capsys.readouterr().out)
    assert document["ok"] is False
    (section,) = document["sections"]
    assert section["state"] == "overdue"
    assert section["renewal"]["reason"] == "ari"
    assert section["renewal"]["due"] is True
    assert section["ari"] == {
        "start": "2026-11-28T12:00:00+00:00",
        "end": "2026-11-30T12:00:00+00:00",
        "renew_at": "2026-11-29T12:00:00+00:00",
        "next_check": "2026-12-01T18:00:00+00:00",
        "explanation_url": None,
    }


# --- the command line -----------------------------------------------------------------------


def test_status_on_the_command_line() -> None:
    assert parse_args(["status", "--json", "a", "b"]) == Arguments("status", ("a", "b"), json=True)


def test_an_unreadable_configuration_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "lacme.conf"
    assert status.run(Arguments("status", (), config=str(missing))) == 1
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == (
        "",
        f"Error: can't read {missing}: No such file or directory\n",
    )


def test_sections_in_order_once_each_from_config_certs(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    site.install()
    other = site.directory / "other.conf"
    other.write_text(site.certs_conf.read_text().replace("[site]", "[b]") + "[a]\n")
    assert site.show(f"--config-certs={other}") == 1
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("[")] == ["[a] broken", "[b] ok"]
    assert site.show(f"--config-certs={other}", "b", "b") == 0
    assert capsys.readouterr().out.count("[b] ok\n") == 1
