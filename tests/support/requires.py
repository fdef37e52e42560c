"""What a test needs of the machine, and the suite's rules on markers
(tests/conftest.py applies them).  A test that lacks what it needs fails
with one line naming what to install or how to run it; it never skips."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import subprocess

import pytest

# Perl lacme 0.8.2: what its master and accountd need beyond their Depends.
PERL_MASTER = ("lacme", "liblwp-protocol-https-perl")
PERL_ACCOUNTD = ("lacme-accountd", "libcrypt-openssl-rsa-perl")
ACME2CERTIFIER_SERIES = "0.46."
KINDS = ("unit", "process", "e2e")

# The markers of a test running Perl lacme's master (as root) or accountd.
perl_master = [pytest.mark.interop, pytest.mark.root, pytest.mark.debian(*PERL_MASTER)]
perl_accountd = [pytest.mark.interop, pytest.mark.debian(*PERL_ACCOUNTD)]


@functools.cache
def installed(package: str) -> bool:
    """Whether Debian package PACKAGE is installed."""
    result = subprocess.run(
        ["dpkg-query", "--show", "--showformat=${db:Status-Abbrev}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.startswith("ii")


def missing_packages(packages: tuple[str, ...]) -> list[str]:
    return [package for package in packages if not installed(package)]


def require_packages(*packages: str) -> None:
    if missing := missing_packages(packages):
        pytest.fail(
            f"needs Debian package {', '.join(missing)}: run scripts/setup as root "
            f"(or apt-get install --no-install-recommends {' '.join(missing)})",
            pytrace=False,
        )


def require_root(why: str = "privilege separation is tested for real") -> None:
    if os.geteuid() != 0:
        pytest.fail(f"needs root ({why}): run as root, or select -m unit", pytrace=False)


def require_acme2certifier() -> None:
    """What the acme2certifier bench (support.a2c) needs."""
    require_root("a network namespace of the test's own")
    require_packages("pebble", "iproute2")
    try:
        version = importlib.metadata.version("acme2certifier")
    except importlib.metadata.PackageNotFoundError:
        version = "none"
    if not version.startswith(ACME2CERTIFIER_SERIES):
        pytest.fail(
            f"needs acme2certifier {ACME2CERTIFIER_SERIES}x from PyPI, not {version}: "
            "run scripts/setup (it installs the test extra, pip install '.[test]')",
            pytrace=False,
        )


def check_kinds(items: list[pytest.Item]) -> None:
    """Refuse a test without exactly one kind, or a unit test that is more."""
    wrong = []
    for item in items:
        kinds = [kind for kind in KINDS if item.get_closest_marker(kind)]
        extra = [name for name in ("root", "interop", "debian") if item.get_closest_marker(name)]
        if len(kinds) != 1 or (kinds == ["unit"] and extra):
            wrong.append(f"{item.nodeid}: marked {', '.join(kinds + extra) or 'nothing'}")
    if wrong:
        raise pytest.UsageError(
            "each test is exactly one of unit, process or e2e, and a unit test "
            "needs neither root nor a package:\n  " + "\n  ".join(wrong)
        )


def check_needs(item: pytest.Item) -> None:
    """Fail ITEM, before it runs, if the machine lacks what its markers need."""
    if item.get_closest_marker("root"):
        require_root()
    for marker in item.iter_markers("debian"):
        require_packages(*marker.args)
