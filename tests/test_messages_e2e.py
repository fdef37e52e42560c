"""Messages that point at the fix (issue 15, point 4), as an administrator
meets them: our master against Pebble behind the fault proxy, which records
every request.  Each mistake is one line naming file, section and key,
before anything reaches the CA, with no follow-up line from the client, the
master or accountd.  The rules: tests/test_messages.py."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lacme import __version__
from lacme.acme import NO_ACCOUNT
from support.commands import LACME, TIMEOUT
from support.faults import FaultProxy
from support.masters import MasterSetup, master_setup

pytestmark = [pytest.mark.e2e, pytest.mark.root]


def one_line(setup: MasterSetup, *args: str) -> str:
    """What `lacme ARGS` says on stderr, checked to be one line, failing."""
    result = setup.run(*args, check=False)
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr.removesuffix("\n")


def test_a_client_setting_is_refused_once(fault_proxy: FaultProxy) -> None:
    with master_setup(fault_proxy, extra_client=["timeout = 30s"]) as setup:
        chain = setup.one_section(subject="/CN=a.example.test")
        for command in ("newOrder", "account"):
            assert one_line(setup, command) == (
                f"Error: {setup.config}: [client] timeout = 30s: not a number of seconds, "
                "such as 30 (without a unit)"
            )
        assert fault_proxy.exchanges == []
        assert not chain.exists()


def test_ssl_cafile_the_client_user_cannot_read(fault_proxy: FaultProxy, shared_dir: Path) -> None:
    private = shared_dir / "private"
    private.mkdir(mode=0o700)
    cafile = private / "ca.pem"
    shutil.copy(fault_proxy.ca_bundle, cafile)
    with master_setup(
        fault_proxy, ssl_cafile=False, extra_client=[f"SSL_CAfile = {cafile}"]
    ) as setup:
        assert one_line(setup, "account") == (
            f"Error: {setup.config}: [client] SSL_CAfile = {cafile}: not readable by "
            "_lacme-client (Permission denied)"
        )
        assert fault_proxy.exchanges == []
        # Readable, it is what the client trusts.
        private.chmod(0o755)
        setup.register()


def test_a_challenge_directory_the_client_cannot_write(fault_proxy: FaultProxy) -> None:
    with master_setup(fault_proxy) as setup:
        setup.register()
        challenges = setup.directory / "challenges"
        challenges.mkdir(mode=0o755)
        setup.config.write_text(
            setup.config.read_text().replace(
                "[webserver]\n", f"[webserver]\nchallenge-directory = {challenges}\n"
            )
        )
        chain = setup.one_section(subject="/CN=a.example.test")
        assert one_line(setup, "newOrder") == (
            f"Error: {setup.config}: [webserver] challenge-directory = {challenges}: not "
            "writable by _lacme-client, which writes the challenge files there "
            "(Permission denied)"
        )
        assert fault_proxy.sent("POST", "newOrder") == []
        assert not chain.exists()


def test_what_needs_root(fault_proxy: FaultProxy) -> None:
    with master_setup(fault_proxy) as setup:
        result = subprocess.run(
            ["runuser", "-u", "nobody", "--", str(LACME), f"--config={setup.config}", "account"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert (result.returncode, result.stderr) == (
            1,
            "Error: [client] user = _lacme-client, group = nogroup: only root can start the "
            "client as them, and lacme runs as nobody: run lacme as root, or set both empty "
            "to run the client as nobody\n",
        )
        assert fault_proxy.exchanges == []


def test_a_regular_file_at_socket(fault_proxy: FaultProxy) -> None:
    with master_setup(fault_proxy, accountd=None) as setup:
        run = setup.directory / "run"
        run.mkdir(mode=0o700)
        path = run / "S.lacme"
        path.write_text("")
        path.chmod(0o644)
        assert one_line(setup, f"--socket={path}", "account") == (
            f"Error: {path}: a regular file, not a socket (lacme-accountd --socket= makes one "
            "there)"
        )


def test_an_accountd_failure_is_one_line(fault_proxy: FaultProxy) -> None:
    with master_setup(fault_proxy) as setup:
        setup.register()
        chain = setup.one_section(subject="/CN=a.example.test")
        missing = setup.directory / "missing.key"
        (setup.directory / "lacme-accountd.conf").write_text(f"privkey = file:{missing}\n")
        sent = len(fault_proxy.exchanges)
        for command in ("newOrder", "account"):
            assert one_line(setup, command) == (
                f"lacme-accountd: can't read account key {missing}: No such file or directory"
            )
        assert not chain.exists()
        assert len(fault_proxy.exchanges) == sent


def test_perl_era_privkey_in_lacme_conf(fault_proxy: FaultProxy) -> None:
    with master_setup(fault_proxy) as setup:
        accountd_conf = setup.directory / "lacme-accountd.conf"
        with setup.config.open("a") as conf:
            conf.write(f"privkey = file:{setup.account_key_path}\n")
        assert one_line(setup, "account") == (
            f"Error: {setup.config}: [accountd] privkey: lacme 0.8 moved it to "
            f"lacme-accountd.conf; write `privkey = file:{setup.account_key_path}` in "
            f"{accountd_conf} ([accountd] config), before any section, and remove it here"
        )
        # Copied into lacme-accountd.conf with its section header.
        accountd_conf.write_text(f"[accountd]\nprivkey = file:{setup.account_key_path}\n")
        setup.config.write_text(setup.config.read_text().replace("privkey = ", "# privkey = "))
        assert one_line(setup, "account") == (
            f"lacme-accountd: {accountd_conf}: [accountd] is lacme.conf's section: remove that "
            "line here, and these keys then come before any section (privkey)"
        )
        assert fault_proxy.exchanges == []


def test_account_without_one_says_how_to_register(fault_proxy: FaultProxy) -> None:
    with master_setup(fault_proxy) as setup:
        assert one_line(setup, "account") == f"lacme-client {__version__}: error: {NO_ACCOUNT}"
        chain = setup.one_section(subject="/CN=a.example.test")
        result = setup.run("newOrder", check=False)
        assert f"lacme-client {__version__}: error: {NO_ACCOUNT}\n" in result.stderr
        assert not chain.exists()
