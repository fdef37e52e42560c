"""Account key rollover, external account binding and the account lookup
output, end to end through our four processes; failure paths included.
Rollover and external account binding run against Pebble and acme2certifier
in turn (the `bench` fixture)."""

from __future__ import annotations

import base64
import json
import os
import pty
import subprocess
from pathlib import Path

import pytest

from lacme.acme import NO_ACCOUNT
from support import requires
from support.accountd import standalone_accountd
from support.commands import ACCOUNTD, CONTACT, LACME, PERL_ACCOUNTD
from support.masters import MasterSetup, PrivateKey, leaf_of, master_setup
from support.pebble import PebbleServer
from support.pki import new_key_file, public_jwk
from support.servers import Bench

pytestmark = [pytest.mark.e2e, pytest.mark.root]


def accountd_config(
    setup: MasterSetup, name: str, *lines: str, kind: str = "p256"
) -> tuple[Path, PrivateKey]:
    """A lacme-accountd.conf NAME.conf holding a fresh key of KIND, and that key."""
    key = new_key_file(setup.directory / f"{name}.key", kind)
    conf = setup.directory / f"{name}.conf"
    conf.write_text("\n".join([f"privkey = file:{setup.directory / name}.key", *lines]) + "\n")
    return conf, key


# --- account key rollover ---------------------------------------------------------


def test_rollover_to_a_spawned_accountd(bench: Bench) -> None:
    with master_setup(bench.start()) as setup:
        account = setup.register()
        new_conf, new_key = accountd_config(setup, "new")
        result = setup.run("account", "--rollover", str(new_conf))
        moved = json.loads(result.stdout)
        assert moved["key"] == public_jwk(new_key)  # fetched with the new key
        assert moved["contact"] == account["contact"]
        assert "Account key changed" in result.stderr

        # The old key is refused now...
        old = setup.run("account", check=False)
        assert old.returncode == 1
        assert NO_ACCOUNT in old.stderr, old.stderr
        # ...and a second rollover from it too: the server no longer knows it.
        again, _ = accountd_config(setup, "again")
        assert setup.run("account", f"--rollover={again}", check=False).returncode == 1

        # The new key works, for lookups and orders.
        accountd_conf = setup.directory / "lacme-accountd.conf"
        accountd_conf.write_text(new_conf.read_text())
        assert json.loads(setup.run("account").stdout)["key"] == public_jwk(new_key)
        chain = setup.one_section("after", subject="/CN=after.example.test")
        setup.run("newOrder")
        assert leaf_of(chain).subject.rfc4514_string() == "CN=after.example.test"


def test_rollover_to_an_accountd_on_a_socket(bench: Bench, tmp_path: Path) -> None:
    with master_setup(bench.start()) as setup:
        setup.register()
        new_key = new_key_file(tmp_path / "new.key", "p384")
        with standalone_accountd(
            [ACCOUNTD], tmp_path / "S.new", f"--privkey=file:{tmp_path / 'new.key'}"
        ) as accountd:
            result = setup.run("account", f"--rollover-socket={accountd.socket}")
            assert json.loads(result.stdout)["key"] == public_jwk(new_key)
            # The new accountd signed exactly one inner keyChange JWS (nonce-less)
            # and the request fetching the account.
            log = accountd.output()
            assert log.count("SIGNED") == 2, log
            assert '"oldKey"' in log
        assert NO_ACCOUNT in setup.run("account", check=False).stderr


@pytest.mark.interop
@pytest.mark.debian(*requires.PERL_ACCOUNTD)
def test_rollover_from_perl_accountd(pebble: PebbleServer, tmp_path: Path) -> None:
    # The old key's accountd signs only ordinary requests: Perl's will do.
    # The new key's must sign the inner JWS: Perl's refuses, ours does.
    with master_setup(pebble, account_key_kind="rsa2048", accountd=(str(PERL_ACCOUNTD),)) as setup:
        setup.register()
        perl_new, _ = accountd_config(setup, "perl-new", kind="rsa2048")
        refused = setup.run("account", f"--rollover={perl_new}", check=False)
        assert refused.returncode == 1
        assert "0.8.2's lacme-accountd signs no key change" in refused.stderr, refused.stderr
        new_key = new_key_file(tmp_path / "new.key", "p256")
        with standalone_accountd(
            [ACCOUNTD], tmp_path / "S.new", f"--privkey=file:{tmp_path / 'new.key'}"
        ) as accountd:
            result = setup.run("account", f"--rollover-socket={accountd.socket}")
        assert json.loads(result.stdout)["key"] == public_jwk(new_key)


def test_rollover_refusals(pebble: PebbleServer) -> None:
    with master_setup(pebble) as setup:
        setup.register()
        # To the same key: refused before anything is sent.
        same = setup.run(
            "account", f"--rollover={setup.directory / 'lacme-accountd.conf'}", check=False
        )
        assert same.returncode == 1
        assert "the new key is the account's current key" in same.stderr
        # To an accountd with a Key ID: it does not send its key.
        keyid, _ = accountd_config(setup, "keyid", "keyid = https://ca.test/acct/1")
        refused = setup.run("account", f"--rollover={keyid}", check=False)
        assert refused.returncode == 1
        assert "has a Key ID configured" in refused.stderr
        # Both options, or an empty one: usage errors.
        both = setup.run("account", "--rollover=a", "--rollover-socket=b", check=False)
        assert "exclude each other" in both.stderr
        assert setup.run("account", "--rollover=", check=False).returncode == 1
        # The account still has its key.
        assert setup.run("account").returncode == 0


# --- external account binding -----------------------------------------------------


def mac_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


def write_mac_file(setup: MasterSetup, secret: str) -> Path:
    path = setup.directory / "eab-hmac.secret"
    path.touch(mode=0o600)
    path.write_text(secret + "\n")
    return path


def test_external_account_binding(bench: Bench) -> None:
    secret = mac_key()
    with master_setup(bench.start(eab_keys={"kid-good": secret})) as setup:
        accountd_conf = setup.directory / "lacme-accountd.conf"
        base = accountd_conf.read_text()

        # No binding: our client says what to configure before trying.
        refused = setup.run("account", "--register", "--tos-agreed", check=False)
        assert refused.returncode == 1
        assert "requires an external account binding" in refused.stderr

        # A wrong MAC, then an unknown key identifier: the server refuses.
        mac_file = write_mac_file(setup, mac_key())
        accountd_conf.write_text(base + f"eab-kid = kid-good\neab-hmac-key = {mac_file}\n")
        wrong = setup.run("account", "--register", "--tos-agreed", check=False)
        assert wrong.returncode == 1
        assert "unauthorized" in wrong.stderr, wrong.stderr
        write_mac_file(setup, secret)
        accountd_conf.write_text(base + f"eab-kid = kid-bad\neab-hmac-key = {mac_file}\n")
        unknown = setup.run("account", "--register", "--tos-agreed", check=False)
        assert unknown.returncode == 1
        assert bench.unknown_kid in unknown.stderr, unknown.stderr

        # The right one: registered, then usable without a binding.
        accountd_conf.write_text(base + f"eab-kid = kid-good\neab-hmac-key = {mac_file}\n")
        setup.register()
        chain = setup.one_section("eab", subject="/CN=eab.example.test")
        setup.run("newOrder")
        assert chain.exists()

        # The HMAC key never left accountd: not in the client's settings nor
        # its command line (it gets no file of it either).
        debug = setup.run("--debug", "account")
        assert secret not in debug.stderr
        assert secret not in debug.stdout


# --- account lookup output --------------------------------------------------------------


def run_on_terminal(setup: MasterSetup, *args: str) -> str:
    """`lacme ARGS` with a terminal as stdout; what it wrote there."""
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.run(
            [str(LACME), f"--config={setup.config}", *args],
            stdout=terminal,
            stderr=subprocess.PIPE,
            timeout=120,
            check=False,
        )
        os.close(terminal)
        terminal = -1
        assert proc.returncode == 0, proc.stderr
        output = b""
        while True:
            try:
                data = os.read(controller, 4096)
            except OSError:  # EIO: the terminal is closed and drained
                break
            if not data:
                break
            output += data
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    return output.decode().replace("\r\n", "\n")


def test_account_lookup_output(pebble: PebbleServer) -> None:
    with master_setup(pebble) as setup:
        account = setup.register()
        # For a human: short and readable.
        expected = f"Status:   valid\nContact:  {CONTACT}\nOrders:   {account['orders']}\n"
        assert run_on_terminal(setup, "account") == expected
        # --json: the object, at a terminal too.
        assert json.loads(run_on_terminal(setup, "account", "--json")) == account
        # For a script (not a terminal), as lacme 0.8.2: the object.
        assert json.loads(setup.run("account").stdout) == account
        assert json.loads(setup.run("account", "--json").stdout) == account
