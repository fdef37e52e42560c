"""The suite's own rules (support.requires, applied by tests/conftest.py):
every test is of one kind, and a test whose needs are not met fails with one
line naming them, never skips."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
# The inner runs apply the real rules; their markers are not registered there.
CONFTEST = """
from support.requires import check_kinds, check_needs


def pytest_collection_modifyitems(items):
    check_kinds(items)


def pytest_runtest_setup(item):
    check_needs(item)
"""
OPTIONS = ("-p", "no:cacheprovider", "-W", "ignore::pytest.PytestUnknownMarkWarning")


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.syspathinsert(TESTS)
    pytester.makeconftest(CONFTEST)
    return pytester


@pytest.mark.unit
@pytest.mark.parametrize(
    ("marks", "named"),
    [
        ("", "marked nothing"),
        ("@pytest.mark.unit\n@pytest.mark.e2e\n", "marked unit, e2e"),
        ("@pytest.mark.unit\n@pytest.mark.root\n", "marked unit, root"),
        ('@pytest.mark.unit\n@pytest.mark.debian("pebble")\n', "marked unit, debian"),
    ],
)
def test_a_test_of_no_kind_or_two_is_refused(
    inner: pytest.Pytester, marks: str, named: str
) -> None:
    inner.makepyfile(f"import pytest\n\n{marks}def test_it():\n    pass\n")
    result = inner.runpytest(*OPTIONS)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*test_a_test_of_no_kind_or_two_is_refused.py::test_it: {named}"])


def setup_failure(inner: pytest.Pytester, test: str) -> str:
    """What the inner run says of TEST, which must fail in its set-up."""
    inner.makepyfile(test)
    recorder = inner.inline_run(*OPTIONS)
    recorder.assertoutcome(passed=0, skipped=0, failed=1)
    (report,) = [r for r in recorder.getreports("pytest_runtest_logreport") if r.failed]
    assert report.when == "setup"
    return str(report.longrepr)


@pytest.mark.unit
def test_a_root_test_fails_without_root(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    failure = setup_failure(
        inner,
        "import pytest\n\n@pytest.mark.process\n@pytest.mark.root\ndef test_it():\n    pass\n",
    )
    assert failure == (
        "needs root (privilege separation is tested for real): run as root, or select -m unit"
    )


@pytest.mark.process  # dpkg-query
def test_a_missing_package_fails_naming_it(inner: pytest.Pytester) -> None:
    failure = setup_failure(
        inner,
        "import pytest\n\n"
        '@pytest.mark.process\n@pytest.mark.debian("no-such-package-here", "dpkg")\n'
        "def test_it():\n    pass\n",
    )
    assert failure == (
        "needs Debian package no-such-package-here: run scripts/setup as root "
        "(or apt-get install --no-install-recommends no-such-package-here)"
    )
