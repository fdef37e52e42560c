"""Debian's Perl lacme 0.8.2 master issuing from Pebble through lacme-accountd.

The all-Perl run proves the bench; the others are the acceptance tests of our
lacme-accountd (or of the one given with --accountd=), spawned by lacme with
--stdio or standing alone on a socket.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from support import requires
from support.accountd import standalone_accountd
from support.commands import PERL_ACCOUNTD
from support.masters import KeyType, perl_master_setup
from support.pebble import PebbleServer

pytestmark = [pytest.mark.e2e, *requires.perl_master]


@pytest.fixture
def accountd_under_test(request: pytest.FixtureRequest) -> list[str]:
    """The lacme-accountd of --accountd=, ours by default."""
    path = Path(request.config.getoption("--accountd"))
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"{path} is not executable: install the package into the venv "
            "(pip install --no-deps --force-reinstall .) or pass --accountd="
        )
    return [str(path)]


@pytest.fixture(params=["rsa", "ec"])
def account_key_type(request: pytest.FixtureRequest, accountd_under_test: list[str]) -> KeyType:
    key_type: KeyType = request.param
    if key_type == "ec" and Path(accountd_under_test[0]).resolve() == PERL_ACCOUNTD:
        pytest.skip("Perl's lacme-accountd only supports RSA account keys")
    return key_type


@pytest.mark.debian(*requires.PERL_ACCOUNTD)
def test_all_perl(pebble: PebbleServer) -> None:
    with perl_master_setup(pebble, accountd_command=[str(PERL_ACCOUNTD)]) as setup:
        setup.register_and_issue()


def test_spawned_accountd(
    pebble: PebbleServer, accountd_under_test: list[str], account_key_type: KeyType
) -> None:
    with perl_master_setup(
        pebble, account_key_type=account_key_type, accountd_command=accountd_under_test
    ) as setup:
        setup.register_and_issue()


def test_standalone_accountd(
    pebble: PebbleServer, accountd_under_test: list[str], account_key_type: KeyType, tmp_path: Path
) -> None:
    # tmp_path is private (0700): lacme refuses a socket in a directory others can write.
    with (
        perl_master_setup(pebble, account_key_type=account_key_type) as setup,
        standalone_accountd(
            accountd_under_test,
            tmp_path / "S.lacme",
            f"--privkey=file:{setup.account_key_path}",
            "--quiet",
        ) as accountd,
    ):
        # lacme refuses a socket other users could use; say so before it does.
        assert stat.S_IMODE(accountd.socket.stat().st_mode) == 0o600
        setup.register_and_issue(socket=accountd.socket)
        assert accountd.terminate() == 0, accountd.output()
        assert not accountd.socket.exists()
