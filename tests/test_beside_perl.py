"""Living beside Debian's lacme 0.8.2: both read /etc/lacme.  Which of our
settings make Perl's lacme or lacme-accountd refuse a shared file, found by
running them on a file with each of our keys, and what the README says of
it (its section "Beside Debian's lacme").

Perl's lacme is run in a network namespace of its own: with no certificate
section, or one whose key cannot be read, it stops before any connection,
but nothing here may reach out if it did not.
"""

from __future__ import annotations

import datetime
import re
import subprocess
from pathlib import Path

import pytest

from lacme import accountd, config
from support import requires
from support.commands import PERL_ACCOUNTD, PERL_LACME
from support.pki import make_ca, new_key_file, pem

TOP = Path(__file__).parent.parent
# What the README says Perl refuses: (file, section, key), section None
# for lacme-accountd.conf, which has none.
REFUSED = {
    ("lacme.conf", "client", "SSL_CAfile"),
    ("lacme.conf", "client", "confinement"),
    ("lacme.conf", "webserver", "confinement"),
    ("lacme-certs.conf", "x", "notify-timeout"),
    ("lacme-certs.conf", "x", "preferred-chain"),
    ("lacme-certs.conf", "x", "profile"),
    ("lacme-accountd.conf", None, "eab-kid"),
    ("lacme-accountd.conf", None, "eab-hmac-key"),
    ("lacme-accountd.conf", None, "eab-alg"),
    ("lacme-accountd.conf", None, "confinement"),
}
TIMEOUT = 60

pytestmark = [
    pytest.mark.process,
    *requires.perl_master,
    pytest.mark.debian(*requires.PERL_ACCOUNTD),
]


def examples(name: str) -> dict[tuple[str, str], str]:
    """The `#key = value` lines of our shipped NAME, by (section, key)."""
    found: dict[tuple[str, str], str] = {}
    section = "_"
    for line in (TOP / "etc" / name).read_text().splitlines():
        if header := re.fullmatch(r"#?\[(.+)\]", line):
            section = header[1]
        elif setting := re.fullmatch(r"#([A-Za-z][A-Za-z0-9_-]*) =(?: (.*))?", line):
            found.setdefault((section, setting[1]), setting[2] or "")
    return found


def perl_lacme(directory: Path, conf: str, certs: str) -> subprocess.CompletedProcess[str]:
    """Perl's `lacme newOrder` on lacme.conf CONF, whose certificate file
    holds CERTS."""
    (directory / "lacme.conf").write_text(f"config-certs = certs.conf\n{conf}")
    (directory / "certs.conf").write_text(certs)
    return subprocess.run(
        ["unshare", "--net", str(PERL_LACME), f"--config={directory}/lacme.conf", "newOrder"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def perl_accountd(directory: Path, conf: str) -> subprocess.CompletedProcess[str]:
    """Perl's lacme-accountd serving no one on stdio, configured with CONF."""
    (directory / "lacme-accountd.conf").write_text(conf)
    return subprocess.run(
        [str(PERL_ACCOUNTD), f"--config={directory}/lacme-accountd.conf", "--stdio"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def refused(result: subprocess.CompletedProcess[str], where: str, key: str) -> bool:
    """Whether RESULT is a refusal of KEY, and nothing else's."""
    unknown = re.search(rf"(?m)^(?:Error: )?Unknown option\(s\){where}: (.*)$", result.stderr)
    if unknown is None:
        return False
    assert result.returncode != 0, result
    assert unknown[1] == key, result
    return True


def test_what_perl_refuses_of_ours(tmp_path: Path) -> None:
    found: set[tuple[str, str | None, str]] = set()
    lacme_conf = examples("lacme.conf")
    tables = {
        "_": config.LACME_KEYS,
        "client": config._CLIENT_KEYS,
        "webserver": config._WEBSERVER_KEYS,
        "accountd": config._ACCOUNTD_KEYS,
    }
    for section, keys in tables.items():
        for key in keys:
            setting = f"{key} = {lacme_conf[section, key]}\n"
            sections = {name: "" for name in tables if name != "_"}
            sections[section] = setting
            conf = sections.pop("_", "") + "".join(
                f"[{name}]\n{text}" for name, text in sections.items()
            )
            if refused(perl_lacme(tmp_path, conf, ""), f" in \\[{section}\\]", key):
                found.add(("lacme.conf", section, key))
    # A section Perl gets as far as making its CSR for, and then skips: its
    # key is missing.
    section = (
        "[x]\nsubject = /CN=x.example.org\n"
        f"certificate-key = {tmp_path}/missing.key\ncertificate = {tmp_path}/x.pem\n"
    )
    certs = examples("lacme-certs.conf")
    for key in config.CERT_KEYS:
        value = certs.get(("_", key)) or certs.get(("www.example.org", key)) or "x"
        result = perl_lacme(tmp_path, "[client]\n", f"{section}{key} = {value}\n")
        if refused(result, " in \\[x\\]", key):
            found.add(("lacme-certs.conf", "x", key))
        else:
            # Past the check of its keys, stopped at the CSR.
            assert "[x] Warning: Couldn't generate CSR, skipping" in result.stderr, result
    rsa = tmp_path / "rsa.key"
    new_key_file(rsa, "rsa2048")
    accountd_conf = examples("lacme-accountd.conf")
    for key in accountd.CONFIG_KEYS:
        setting = f"{key} = {accountd_conf['_', key]}\n" if key != "privkey" else ""
        if refused(perl_accountd(tmp_path, f"privkey = file:{rsa}\n{setting}"), "", key):
            found.add(("lacme-accountd.conf", None, key))
    assert found == REFUSED


def certificate_with(path: Path, days_left: int, lifetime: int) -> Path:
    """A certificate at PATH of LIFETIME days, DAYS_LEFT of them left; its
    key's path."""
    key_path = path.with_suffix(".key")
    key = new_key_file(key_path, "p256")
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=lifetime - days_left)
    leaf = make_ca().issue(key.public_key(), ["x.example.org"], not_before=start, days=lifetime)
    path.write_bytes(pem(leaf))
    return key_path


def test_perl_reads_a_percentage_min_days_as_days(tmp_path: Path) -> None:
    # 100 days left of 200: ours reads min-days = 60% as 60% of the lifetime
    # (due: 50% left); Perl as 60 days, with a warning, and skips.
    certificate = tmp_path / "x.pem"
    key = certificate_with(certificate, days_left=100, lifetime=200)
    certs = (
        "[x]\nsubject = /CN=x.example.org\n"
        f"certificate-key = {key}\ncertificate = {certificate}\nmin-days = 60%\n"
    )
    result = perl_lacme(tmp_path, "[client]\n", certs)
    assert result.returncode == 0, result
    assert 'Argument "60%" isn\'t numeric' in result.stderr
    assert re.search(r"(?m)^\[x\] Valid until .*, skipping$", result.stderr), result
    (source,) = config.load_certs([str(tmp_path / "certs.conf")]).values()
    assert config.parse_section(source).min_days == config.Percent(60)


def test_perl_accountd_refuses_an_ec_account_key(tmp_path: Path) -> None:
    key = tmp_path / "account.key"
    new_key_file(key, "p256")
    result = perl_accountd(tmp_path, f"privkey = file:{key}\n")
    assert result.returncode != 0
    assert "expecting an rsa key" in result.stderr


def test_the_readme_way_keeps_both_reading(tmp_path: Path) -> None:
    # The shared lacme.conf and certificate file, read by both; ours.conf
    # and ours-certs.conf.d/, by ours only, with what Perl refuses.
    shared = "[www]\nsubject = /CN=www.example.org\n"
    shared += f"certificate-key = {tmp_path}/missing.key\ncertificate = {tmp_path}/www.pem\n"
    result = perl_lacme(tmp_path, "[client]\n[webserver]\n[accountd]\n", shared)
    assert "Unknown option" not in result.stderr, result
    assert "[www] Warning: Couldn't generate CSR, skipping" in result.stderr, result
    (tmp_path / "ours.conf").write_text(
        "config-certs = certs.conf ours-certs.conf.d/\n"
        "[client]\nSSL_CAfile = /etc/ssl/certs/ca-certificates.crt\n[webserver]\n[accountd]\n"
    )
    (tmp_path / "ours-certs.conf.d").mkdir()
    (tmp_path / "ours-certs.conf.d/short.conf").write_text(
        "[short]\nsubject = /CN=short.example.org\ncertificate-key = /k\ncertificate = /c\n"
        "profile = shortlived\npreferred-chain = ISRG Root X1\nmin-days = 33%\n"
    )
    ours = config.load(str(tmp_path / "ours.conf"))
    sections = config.load_certs(config.certificate_files(ours))
    assert list(sections) == ["www", "short"]
    assert config.parse_section(sections["short"]).min_days == config.Percent(33)


def test_readme_names_what_perl_refuses() -> None:
    readme = (TOP / "README.md").read_text()
    part = readme.split("\n## Beside Debian's lacme\n", 1)[1].split("\n## ", 1)[0]
    for name, section, key in REFUSED:
        where = f"[{section}] {key}" if name == "lacme.conf" else key
        assert f"`{where}`" in part, where
        assert f"`{name}`" in part
    for safe in ("renewal-lookahead", "parallel-orders", "min-days = 33%", "RSA"):
        assert safe in part, safe
