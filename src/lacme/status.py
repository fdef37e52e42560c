"""`lacme status [--json] [SECTION ...]`: each certificate section as the
next `lacme newOrder` will find it, for an administrator or a monitoring
check.  Part of the master, run as root like newOrder.

What it reads: lacme.conf and the certificate configuration (lacme.config),
each section's service key (whether the certificate is still for it) and
certificate files, and what the master keeps beside them: renewal
information (lacme.ari), a certificate kept for installation, an order to
resume (lacme.installed), a rate limit (lacme.rate_limits), a pending
notification (lacme.notify).  When and why renewal comes is lacme.renewal's
schedule, the one newOrder acts on, and the checks newOrder makes before
ordering are master.before_ordering.  It writes nothing, starts no process
and talks to nobody (no accountd, no client, no network): what newOrder
would learn from the CA, a new renewal window, it cannot know, so it says
what it goes by.

A section is `ok`, or `due` (the next run renews it), or in one of the
states that make the exit status 1: `overdue` (a run should have renewed
it, more than `renewal-lookahead` ago, or the certificate it renewed is not
installed or notified yet), `expired`, `missing` (none installed) or
`broken` (its configuration, key or certificate can't be read, or the next
renewal would fail before ordering).
"""

from __future__ import annotations

import datetime
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from lacme import (
    ari,
    certificate,
    config,
    confinement,
    installed,
    log,
    notify,
    rate_limits,
    renewal,
)
from lacme.certificate import CertificateError
from lacme.config import CertSection, CertSource, Config, Percent
from lacme.errors import ConfigError
from lacme.master import before_ordering
from lacme.master_command import Arguments
from lacme.parsing import yes_no

OK = "ok"
DUE = "due"
OVERDUE = "overdue"
EXPIRED = "expired"
MISSING = "missing"
BROKEN = "broken"
# Worst first; the states from OVERDUE on make the exit status 1.
STATES = (BROKEN, EXPIRED, MISSING, OVERDUE, DUE, OK)
FAILING = frozenset({BROKEN, EXPIRED, MISSING, OVERDUE})
# Schedule.reason of what comes before any schedule (lacme.master._prepare).
PENDING_INSTALL = "pending-install"
NO_CERTIFICATE = "no-certificate"
CHANGED = "changed"
WHEN = renewal.WHEN
DAY = datetime.timedelta(days=1)


@dataclass
class SectionStatus:
    """What `status` shows of a section; times in UTC."""

    name: str
    file: str
    certificate: str | None = None
    names: list[str] = field(default_factory=list)
    key_type: str | None = None
    issuer: str | None = None
    serial: str | None = None
    not_before: datetime.datetime | None = None
    not_after: datetime.datetime | None = None
    installed: datetime.datetime | None = None  # when the certificate file was written
    renewal: renewal.Schedule | None = None
    due: bool = False
    ari: ari.State | None = None
    kept: str | None = None  # a certificate issued, not installed yet
    resumes: str | None = None  # an order cut short
    rate_limited: datetime.datetime | None = None
    notify: notify.Pending | None = None
    overdue: str | None = None  # why, when it is
    late: bool = False  # overdue for its renewal time
    missing: bool = False
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def state(self, now: datetime.datetime) -> str:
        if self.problems:
            return BROKEN
        if self.not_after is not None and self.not_after <= now:
            return EXPIRED
        if self.missing:
            return MISSING
        if self.overdue is not None:
            return OVERDUE
        return DUE if self.due else OK


def _min_days(section: CertSection, given: int | Percent | None) -> int | Percent:
    if given is not None:
        return given
    return section.min_days if section.min_days is not None else config.DEFAULT_MIN_DAYS


def _read(status: SectionStatus, section: CertSection) -> x509.Certificate | None:
    """The certificate installed for SECTION, its fields in STATUS; None if
    there is none, or one of its files can't be read (a problem then)."""
    leaf = None
    for path in section.certificate_paths():
        try:
            cert = certificate.read_certificate(path)
        except CertificateError as e:
            if isinstance(e.__cause__, FileNotFoundError):
                status.missing = True
            else:
                status.problems.append(str(e))
            return None
        if leaf is None:
            leaf = cert
            status.installed = datetime.datetime.fromtimestamp(os.stat(path).st_mtime, datetime.UTC)
    if leaf is None:
        return None
    status.names = sorted(installed.certificate_names(leaf))
    status.issuer = log.printable(leaf.issuer.rfc4514_string())
    status.serial = f"{leaf.serial_number:x}"
    status.not_before = leaf.not_valid_before_utc
    status.not_after = leaf.not_valid_after_utc
    return leaf


def _kept(
    status: SectionStatus, section: CertSection, key: certificate.ServiceKey, now: datetime.datetime
) -> bool:
    """Whether the next run installs a certificate an earlier one kept
    (lacme.master._install_kept), said in STATUS."""
    path = installed.kept_path(section.certificate_paths()[0])
    chain, reason = installed.kept_for(section, key, now)
    if reason is not None:
        status.notes.append(f"the next run discards the certificate kept in {path}: {reason}")
    if chain is None:
        return False
    status.kept = path
    return True


def _schedule(
    section: CertSection,
    cert: x509.Certificate,
    status: SectionStatus,
    given: int | Percent | None,
    now: datetime.datetime,
) -> renewal.Schedule:
    """When newOrder renews CERT, as lacme.master._renewal_due decides, from
    the renewal information recorded only."""
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    if given == -1:
        return renewal.by_min_days(not_before, not_after, given)
    cert_id = certificate.ari_cert_id(cert)
    path = ari.state_path(section.certificate_paths()[0])
    state = None if cert_id is None else ari.load_state(path, cert_id, not_after)
    if state is not None:
        status.ari = state
        if not ari.believed(state, now):
            status.notes.append(
                f"renewal information recorded until {state.next_check:{WHEN}}: "
                "the next run asks the CA again"
            )
        return renewal.by_ari(state, not_before, not_after)
    if cert_id is not None and ari.not_offered(path, cert_id, now):
        status.notes.append("the CA offers no renewal information")
    elif cert_id is not None:
        status.notes.append("no renewal window recorded: the next run asks the CA if it offers any")
    return renewal.by_min_days(not_before, not_after, _min_days(section, given))


def section_status(
    source: CertSource,
    now: datetime.datetime,
    lookahead: datetime.timedelta,
    min_days: int | Percent | None = None,
) -> SectionStatus:
    """SOURCE's section at NOW, the next run coming within LOOKAHEAD, with
    the command line's MIN_DAYS (-1: --force)."""
    status = SectionStatus(source.name, source.filename)
    try:
        section = config.parse_section(source)
    except ConfigError as e:
        status.problems.append(str(e))
        return status
    status.certificate = section.certificate_paths()[0]
    status.names = list(section.identifiers)
    key: certificate.ServiceKey | None = None
    try:
        key = certificate.load_key(section.certificate_key)
        status.key_type = certificate.key_type(key)
    except CertificateError as e:
        status.problems.append(str(e))
    status.problems += (
        f"the next renewal fails before ordering: {problem}" for problem in before_ordering(section)
    )
    cert = _read(status, section)
    paths = section.certificate_paths()
    if key is not None and _kept(status, section, key, now):
        status.renewal = renewal.Schedule(
            None, PENDING_INSTALL, f"the next run installs the certificate kept in {status.kept}"
        )
        status.overdue = "a certificate issued is not installed"
    elif cert is None:
        status.renewal = renewal.Schedule(None, NO_CERTIFICATE, "no certificate installed")
    elif key is not None and (mismatch := installed.mismatch(section, cert, key)) is not None:
        status.renewal = renewal.Schedule(None, CHANGED, mismatch)
    else:
        status.renewal = _schedule(section, cert, status, min_days, now)
    status.due = status.renewal.due(now, lookahead)
    at = status.renewal.at
    if at is not None and now - at > lookahead:
        status.late = True
        status.overdue = f"renewal was due {ari.span(now - at)} ago"
    status.rate_limited = rate_limits.load(rate_limits.state_path(paths[0]), now)
    # The URL the client announced, as the CA sent it.
    resumes = installed.load_order(installed.order_path(paths[0]), section.identifiers)
    status.resumes = None if resumes is None else log.printable(resumes)
    status.notify = notify.load(notify.state_path(paths[0]))
    if status.notify is not None:
        if section.notify is None:
            status.notes.append("no notify command any more: the next run drops the pending one")
            status.notify = None
        elif status.overdue is None:
            status.overdue = "the certificate installed is not notified yet"
    return status


def last_result(status: SectionStatus) -> tuple[str | None, datetime.datetime | None, str]:
    """What the last runs left of STATUS's section, failures first: an
    outcome name, when, and a line for a human."""
    if status.kept is not None:
        return "not-installed", None, f"issued, not installed: kept in {status.kept}"
    if status.notify is not None:
        last = log.printable(status.notify.last or "did not end")
        return (
            "notify-pending",
            status.notify.since,
            f"installed, notification pending since {status.notify.since:{WHEN}} "
            f"(the last attempt {last})",
        )
    if status.rate_limited is not None:
        until = status.rate_limited
        return "rate-limited", None, f"rate limited by the CA until {until:{WHEN}}"
    if status.resumes is not None:
        return "interrupted", None, f"order cut short: the next run resumes {status.resumes}"
    if status.installed is not None:
        return "installed", status.installed, f"installed {status.installed:{WHEN}}"
    return None, None, "none recorded"


def _ago(when: datetime.datetime, now: datetime.datetime) -> str:
    return f"in {ari.span(when - now)}" if when > now else f"{ari.span(now - when)} ago"


def days_left(status: SectionStatus, now: datetime.datetime) -> int | None:
    return None if status.not_after is None else (status.not_after - now) // DAY


def _renewal_line(status: SectionStatus, now: datetime.datetime) -> str | None:
    schedule = status.renewal
    if schedule is None:
        return None
    if schedule.at is None:
        return f"at the next run: {schedule.why}"
    line = f"{schedule.at:{WHEN}} ({_ago(schedule.at, now)}), {schedule.why}"
    if status.late:
        return f"{line}: overdue"
    return f"{line}: at the next run" if status.due else line


def format_text(statuses: Sequence[SectionStatus], now: datetime.datetime) -> str:
    """A block per section, for a human."""
    blocks = []
    for status in statuses:
        rows: list[tuple[str, str | None]] = [
            ("certificate", status.certificate),
            ("names", ", ".join(status.names) or None),
            ("key", status.key_type),
            ("issuer", status.issuer),
        ]
        if status.not_after is not None:
            left = days_left(status, now)
            rows.append(("not after", f"{status.not_after:{WHEN}} ({left} days left)"))
        rows.append(("renewal", _renewal_line(status, now)))
        if status.ari is not None and status.ari.explanation_url is not None:
            rows.append(("explained", log.printable(status.ari.explanation_url)))
        if status.overdue is not None:
            rows.append(("overdue", status.overdue))
        if status.notify is not None:
            rows.append(("notify", "pending: the next run runs it again"))
        if status.rate_limited is not None:
            rows.append(("rate limit", f"until {status.rate_limited:{WHEN}}: runs skip it"))
        if status.resumes is not None:
            rows.append(("order", f"the next run resumes {status.resumes}"))
        rows.append(("last result", last_result(status)[2]))
        rows += [("note", note) for note in status.notes]
        rows += [("problem", problem) for problem in status.problems]
        lines = [f"[{status.name}] {status.state(now)}"]
        lines += [f"  {label:<12} {value}" for label, value in rows if value is not None]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def _time(when: datetime.datetime | None) -> str | None:
    return None if when is None else when.isoformat()


def section_json(status: SectionStatus, now: datetime.datetime) -> dict[str, Any]:
    """STATUS as an object of the --json document (lacme(8) gives its schema)."""
    schedule = status.renewal
    state = status.ari
    outcome, at, text = last_result(status)
    return {
        "section": status.name,
        "file": status.file,
        "state": status.state(now),
        "certificate": status.certificate,
        "names": status.names,
        "key_type": status.key_type,
        "issuer": status.issuer,
        "serial": status.serial,
        "not_before": _time(status.not_before),
        "not_after": _time(status.not_after),
        "days_left": days_left(status, now),
        "renewal": None
        if schedule is None
        else {
            "at": _time(schedule.at),
            "reason": schedule.reason,
            "why": schedule.why,
            "due": status.due,
        },
        "overdue": status.overdue,
        "ari": None
        if state is None
        else {
            "start": _time(state.start),
            "end": _time(state.end),
            "renew_at": _time(state.renew_at),
            "next_check": _time(state.next_check),
            "explanation_url": state.explanation_url,
        },
        "kept": status.kept,
        "resumes_order": status.resumes,
        "rate_limited_until": _time(status.rate_limited),
        "notify_pending": None
        if status.notify is None
        else {"since": _time(status.notify.since), "last": status.notify.last},
        "last_result": {"outcome": outcome, "at": _time(at), "text": text},
        "notes": status.notes,
        "problems": status.problems,
    }


def confinements(conf: Config) -> dict[str, str]:
    """What confinement (lacme.confinement) the client and the webserver
    CONF starts will have on this kernel; accountd's is its own
    configuration's, which may be on another host."""
    client = conf.client
    client_on = yes_no(client.confinement or "", True) and "--unconfined" not in (
        client.command.split()
    )
    web_on = conf.webserver.confinement and "--unconfined" not in conf.webserver.command.split()
    return {
        "client": confinement.expected(client_on),
        "webserver": confinement.expected(web_on),
    }


def format_confinements(confined: dict[str, str]) -> str:
    return "confinement\n" + "".join(f"  {name:<12} {what}\n" for name, what in confined.items())


def show(conf: Config, args: Arguments, now: datetime.datetime) -> int:
    """Print the status of the sections ARGS asks for (all by default) at
    NOW: 1 if one is failing (FAILING), or not configured (a line each)."""
    files = config.certificate_files(conf, args.config_certs)
    sources = config.load_certs(files)
    where = ", ".join(files) or "no certificate configuration file"
    unknown = [name for name in args.arguments if name not in sources]
    for name in unknown:
        log.say(f"Error: no section [{name}] in {where}")
    if unknown:
        return 1
    sections = [
        section_status(sources[name], now, conf.renewal_lookahead, args.min_days)
        for name in dict.fromkeys(args.arguments or sorted(sources))
    ]
    failing = any(status.state(now) in FAILING for status in sections)
    confined = confinements(conf)
    if args.json:
        document = {
            "now": now.isoformat(),
            "ok": not failing,
            "sections": [section_json(status, now) for status in sections],
            "confinement": confined,
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        blocks = format_text(sections, now)
        sys.stdout.write(blocks + ("\n" if blocks else "") + format_confinements(confined))
    sys.stdout.flush()
    return 1 if failing else 0


def run(args: Arguments) -> int:
    """`lacme status`, on the system clock."""
    try:
        conf = config.load(args.config, args.socket)
        return show(conf, args, datetime.datetime.now(datetime.UTC))
    except (ConfigError, OSError) as e:
        log.say(f"Error: {e}")
        return 1
