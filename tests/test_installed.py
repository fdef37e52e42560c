"""Whether an installed certificate still matches its section (lacme.installed),
and what the master checks before ordering (lacme.certificate.installation_problems,
lacme.notify.program_problem); end to end: tests/test_renewal_mismatch_e2e.py."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes

from lacme import config, installed
from lacme.certificate import installation_problems
from lacme.notify import ROOT_PATH, program_problem
from support.pki import generate_key, make_ca

pytestmark = pytest.mark.unit

NOW = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)


def section(tmp_path: Path, **settings: str) -> config.CertSection:
    values = {
        "certificate-key": str(tmp_path / "site.key"),
        "certificate-chain": str(tmp_path / "site.chain"),
        "subject": "/CN=a.example.test",
        "subjectAltName": "DNS:www.a.example.test, IP:2001:db8::1",
        **settings,
    }
    return config.parse_section(
        config.CertSource(
            "site", "/f.conf", {k: config.Setting(k, v, "/f.conf") for k, v in values.items()}
        )
    )


KEY = generate_key("p256")
CERT = make_ca().issue(
    KEY.public_key(), ["A.example.test", "www.a.example.test", "2001:db8:0:0:0:0:0:1"]
)


def test_a_matching_certificate(tmp_path: Path) -> None:
    assert installed.mismatch(section(tmp_path), CERT, KEY) is None


def test_names_changed(tmp_path: Path) -> None:
    changed = section(tmp_path, subjectAltName="DNS:shop.a.example.test, IP:2001:db8::1")
    assert installed.mismatch(changed, CERT, KEY) == (
        "names changed: + shop.a.example.test, - www.a.example.test"
    )


def test_key_changed(tmp_path: Path) -> None:
    assert installed.mismatch(section(tmp_path), CERT, generate_key("p256")) == (
        f"certificate-key {tmp_path / 'site.key'} is not the certificate's key"
    )


def test_ordered_with_other_settings(tmp_path: Path) -> None:
    chain = str(tmp_path / "site.chain")
    installed.save_ordered(chain, section(tmp_path, profile="classic"))
    assert installed.load_ordered(chain) == installed.Ordered("classic", None)
    assert installed.mismatch(section(tmp_path, profile="classic"), CERT, KEY) is None
    assert installed.mismatch(section(tmp_path, profile="shortlived"), CERT, KEY) == (
        "profile changed: classic -> shortlived"
    )
    assert installed.mismatch(section(tmp_path), CERT, KEY) == "profile changed: classic -> (none)"
    preferred = section(tmp_path, profile="classic", **{"preferred-chain": "ISRG Root X2"})
    assert installed.mismatch(preferred, CERT, KEY) == (
        "preferred-chain changed: (none) -> ISRG Root X2"
    )


def test_a_certificate_for_the_section_whatever_the_installed_one_was_ordered_with(
    tmp_path: Path,
) -> None:
    """A chain kept after issuance (lacme.master) is judged by its names and
    key: the record of the installed certificate is not about it."""
    installed.save_ordered(str(tmp_path / "site.chain"), section(tmp_path, profile="classic"))
    renewed = section(tmp_path, profile="shortlived")
    assert installed.not_for(renewed, CERT, KEY) is None
    assert installed.mismatch(renewed, CERT, KEY) == "profile changed: classic -> shortlived"
    assert installed.not_for(renewed, CERT, generate_key("p256")) is not None


def test_unrecorded_or_unreadable_settings_are_not_held_against_it(tmp_path: Path) -> None:
    chain = tmp_path / "site.chain"
    assert installed.load_ordered(str(chain)) is None
    Path(installed.ordered_path(str(chain))).write_text("[not an object]")
    assert installed.load_ordered(str(chain)) is None
    assert installed.mismatch(section(tmp_path, profile="shortlived"), CERT, KEY) is None


def test_revoked_by_this_lacme(tmp_path: Path) -> None:
    chain = str(tmp_path / "site.chain")
    installed.save_revoked(chain, CERT, NOW)
    assert installed.mismatch(section(tmp_path), CERT, KEY) == (
        f"revoked with `lacme revokeCert {chain}` on 2026-12-01 12:00:00 UTC"
    )
    # Another certificate than the one revoked is not.
    other = make_ca().issue(KEY.public_key(), ["a.example.test"])
    installed.save_revoked(chain, other, NOW)
    assert installed.mismatch(section(tmp_path), CERT, KEY) is None


def test_revoked_through_the_certificate_file(tmp_path: Path) -> None:
    cert = str(tmp_path / "site.crt")
    installed.save_revoked(cert, CERT, NOW)
    assert installed.mismatch(section(tmp_path, certificate=cert), CERT, KEY) == (
        f"revoked with `lacme revokeCert {cert}` on 2026-12-01 12:00:00 UTC"
    )
    Path(installed.revoked_path(cert)).write_text(
        f'{{"sha256": "{CERT.fingerprint(hashes.SHA256()).hex()}", "revoked": "?"}}'
    )
    assert installed.mismatch(section(tmp_path, certificate=cert), CERT, KEY) == (
        f"revoked with `lacme revokeCert {cert}` at a time not recorded"
    )


# --- before ordering ------------------------------------------------------------------


def test_nothing_stops_installation(tmp_path: Path) -> None:
    roots = tmp_path / "roots.pem"
    roots.write_bytes(make_ca().root_pem())
    assert installation_problems(section(tmp_path, CAfile=str(roots))) == []
    assert installation_problems(section(tmp_path, CAfile="")) == []


def test_cafile_unusable(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    assert installation_problems(section(tmp_path, CAfile=str(missing))) == [
        f"can't read CAfile {missing}: No such file or directory"
    ]
    (tmp_path / "empty.pem").write_text("")
    assert installation_problems(section(tmp_path, CAfile=str(tmp_path / "empty.pem"))) == [
        f"CAfile {tmp_path / 'empty.pem'} holds no PEM certificate"
    ]


def test_destinations_unusable(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "site.pem"
    (tmp_path / "site.crt").mkdir()
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o555)
    problems = installation_problems(
        section(
            tmp_path,
            CAfile="",
            certificate=str(tmp_path / "site.crt"),
            **{"certificate-chain": str(missing)},
        )
    )
    assert problems == [
        f"certificate {tmp_path / 'site.crt'} is a directory",
        f"certificate-chain {missing}: no directory {missing.parent}",
    ]
    if os.geteuid() != 0:  # root may write anywhere not read-only
        chain = read_only / "site.chain"
        assert installation_problems(
            section(tmp_path, CAfile="", **{"certificate-chain": str(chain)})
        ) == [f"certificate-chain {chain}: can't write in {read_only}"]


@pytest.mark.parametrize(
    "command",
    [
        "systemctl reload nginx",
        "/bin/true",
        "cd /etc && true",
        "FOO=1 anything",
        "$RELOAD",
        "if true; then :; fi",
        "",
    ],
)
def test_notify_programs_found_or_not_to_be_told(command: str) -> None:
    assert program_problem(command, ROOT_PATH) is None


@pytest.mark.parametrize(
    ("command", "problem"),
    [
        ("nginx-typo -s reload", f"nginx-typo not found in PATH {ROOT_PATH}"),
        ("/usr/sbin/no-such-program", "can't execute /usr/sbin/no-such-program"),
        ("/etc reload", "can't execute /etc"),
        ("echo 'unbalanced", "not a shell command (No closing quotation)"),
    ],
)
def test_notify_programs_not_found(command: str, problem: str) -> None:
    assert program_problem(command, ROOT_PATH) == f"notify = {command}: {problem}"


def test_an_order_is_resumed_only_for_the_same_names(tmp_path: Path) -> None:
    path = installed.order_path(str(tmp_path / "site.chain"))
    assert installed.load_order(path, ["a.test"]) is None
    installed.save_order(path, "https://ca.test/order/1", ["b.test", "a.test"])
    assert installed.load_order(path, ["a.test", "b.test"]) == "https://ca.test/order/1"
    assert installed.load_order(path, ["a.test"]) is None
    Path(path).write_text('{"url": "file:///etc/passwd", "identifiers": ["a.test"]}')
    assert installed.load_order(path, ["a.test"]) is None
