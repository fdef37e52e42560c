"""The issue-6 features end to end against Pebble, through our four processes:
account key rollover, external account binding, revocation reasons, IP
identifiers, preferred chain, account lookup output; failure paths included.
Rollover, external account binding and revocation reasons run against
acme2certifier too (tests/acme2certifier.py), the second, independent server."""

from __future__ import annotations

import base64
import json
import os
import pty
import subprocess
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import cast

import pytest
from accountd_helpers import standalone_accountd
from acme2certifier import A2CServer, missing, running_acme2certifier
from cryptography import x509
from cryptography.x509.oid import NameOID
from keys import new_key_file, public_jwk
from lacme_perl import PERL_ACCOUNTD
from master_helpers import CONTACT, LACME, OUR_ACCOUNTD, MasterSetup, leaf_of, master_setup
from pebble import PebbleFactory, PebbleServer

from lacme.client_contract import REVOCATION_REASONS

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="lacme's master must run as root")


class PebbleBench:
    """Pebble, for the tests run against both servers."""

    # Its detail for an EAB key identifier it has no MAC key for.
    unknown_kid = "not known to the ACME server"

    def __init__(self, factory: PebbleFactory) -> None:
        self.factory = factory
        self.server: PebbleServer | None = None

    def start(self, eab_keys: Mapping[str, str] | None = None) -> PebbleServer:
        config = (
            {}
            if eab_keys is None
            else {"externalAccountBindingRequired": True, "externalAccountMACKeys": dict(eab_keys)}
        )
        self.server = self.factory(config=config)
        return self.server

    def revocation(self, serial: int) -> int | None:
        """The reason code the certificate is revoked with; None if valid."""
        assert self.server is not None
        status = self.server.cert_status(serial)
        return int(status["Reason"]) if status["Status"] == "Revoked" else None


class A2CBench:
    """acme2certifier, for the tests run against both servers."""

    # It says the same of an unknown key identifier as of a wrong MAC.
    unknown_kid = "invalid eab credentials"

    def __init__(self, namespace: ExitStack) -> None:
        self.namespace = namespace
        self.server: A2CServer | None = None

    def start(self, eab_keys: Mapping[str, str] | None = None) -> PebbleServer:
        self.server = self.namespace.enter_context(running_acme2certifier(eab_keys=eab_keys))
        # master_setup() reads only attributes both servers have.
        return cast(PebbleServer, self.server)

    def revocation(self, serial: int) -> int | None:
        """The reason code the certificate is revoked with; None if valid."""
        assert self.server is not None
        reason = self.server.revocations().get(serial)
        return None if reason is None else REVOCATION_REASONS[reason]


Bench = PebbleBench | A2CBench


@pytest.fixture(
    params=[
        "pebble",
        pytest.param(
            "acme2certifier",
            marks=pytest.mark.skipif(missing() is not None, reason=missing() or ""),
        ),
    ]
)
def bench(request: pytest.FixtureRequest) -> Bench:
    """Each ACME server in turn, started by the test with its settings."""
    if request.param == "pebble":
        return PebbleBench(request.getfixturevalue("pebble_factory"))
    return A2CBench(request.getfixturevalue("a2c_namespace"))


def register(setup: MasterSetup) -> dict[str, object]:
    account: dict[str, object] = json.loads(
        setup.run("account", "--register", "--tos-agreed", CONTACT).stdout
    )
    assert account["status"] == "valid"
    return account


def one_section(setup: MasterSetup, name: str, **settings: str) -> Path:
    """Write a section NAME for a fresh P-256 key; the chain file it installs."""
    key_path, _ = setup.service_key(name, "p256")
    chain = setup.directory / f"{name}.chain"
    setup.write_sections(
        {name: {"certificate-key": str(key_path), "certificate-chain": str(chain), **settings}}
    )
    return chain


def accountd_config(
    setup: MasterSetup, name: str, *lines: str, kind: str = "p256"
) -> tuple[Path, object]:
    """A lacme-accountd.conf NAME.conf holding a fresh key of KIND, and that key."""
    key = new_key_file(setup.directory / f"{name}.key", kind)
    conf = setup.directory / f"{name}.conf"
    conf.write_text("\n".join([f"privkey = file:{setup.directory / name}.key", *lines]) + "\n")
    return conf, key


# --- account key rollover ---------------------------------------------------------


def test_rollover_to_a_spawned_accountd(bench: Bench) -> None:
    with master_setup(bench.start()) as setup:
        account = register(setup)
        new_conf, new_key = accountd_config(setup, "new")
        result = setup.run("account", "--rollover", str(new_conf))
        moved = json.loads(result.stdout)
        assert moved["key"] == public_jwk(new_key)  # fetched with the new key
        assert moved["contact"] == account["contact"]
        assert "Account key changed" in result.stderr

        # The old key is refused now...
        old = setup.run("account", check=False)
        assert old.returncode == 1
        assert "accountDoesNotExist" in old.stderr, old.stderr
        # ...and a second rollover from it too: the server no longer knows it.
        again, _ = accountd_config(setup, "again")
        assert setup.run("account", f"--rollover={again}", check=False).returncode == 1

        # The new key works, for lookups and orders.
        accountd_conf = setup.directory / "lacme-accountd.conf"
        accountd_conf.write_text(new_conf.read_text())
        assert json.loads(setup.run("account").stdout)["key"] == public_jwk(new_key)
        chain = one_section(setup, "after", subject="/CN=after.example.test")
        setup.run("newOrder")
        assert leaf_of(chain).subject.rfc4514_string() == "CN=after.example.test"


def test_rollover_to_an_accountd_on_a_socket(bench: Bench, tmp_path: Path) -> None:
    with master_setup(bench.start()) as setup:
        register(setup)
        new_key = new_key_file(tmp_path / "new.key", "p384")
        with standalone_accountd(
            [OUR_ACCOUNTD], tmp_path / "S.new", f"--privkey=file:{tmp_path / 'new.key'}"
        ) as accountd:
            result = setup.run("account", f"--rollover-socket={accountd.socket}")
            assert json.loads(result.stdout)["key"] == public_jwk(new_key)
            # The new accountd signed exactly one inner keyChange JWS (nonce-less)
            # and the request fetching the account.
            log = accountd.output()
            assert log.count("SIGNED") == 2, log
            assert '"oldKey"' in log
        assert "accountDoesNotExist" in setup.run("account", check=False).stderr


@pytest.mark.skipif(not PERL_ACCOUNTD.exists(), reason="Debian package lacme-accountd missing")
def test_rollover_from_perl_accountd(pebble: PebbleServer, tmp_path: Path) -> None:
    # The old key's accountd signs only ordinary requests: Perl's will do.
    # The new key's must sign the inner JWS: Perl's refuses, ours does.
    with master_setup(pebble, account_key_kind="rsa2048", accountd=(str(PERL_ACCOUNTD),)) as setup:
        register(setup)
        perl_new, _ = accountd_config(setup, "perl-new", kind="rsa2048")
        refused = setup.run("account", f"--rollover={perl_new}", check=False)
        assert refused.returncode == 1
        assert "0.8.2's lacme-accountd signs no key change" in refused.stderr, refused.stderr
        new_key = new_key_file(tmp_path / "new.key", "p256")
        with standalone_accountd(
            [OUR_ACCOUNTD], tmp_path / "S.new", f"--privkey=file:{tmp_path / 'new.key'}"
        ) as accountd:
            result = setup.run("account", f"--rollover-socket={accountd.socket}")
        assert json.loads(result.stdout)["key"] == public_jwk(new_key)


def test_rollover_refusals(pebble: PebbleServer) -> None:
    with master_setup(pebble) as setup:
        register(setup)
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
        register(setup)
        chain = one_section(setup, "eab", subject="/CN=eab.example.test")
        setup.run("newOrder")
        assert chain.exists()

        # The HMAC key never left accountd: not in the client's settings nor
        # its command line (it gets no file of it either).
        debug = setup.run("--debug", "account")
        assert secret not in debug.stderr
        assert secret not in debug.stdout


# --- revocation reasons -----------------------------------------------------------


def test_revocation_reasons(bench: Bench) -> None:
    with master_setup(bench.start()) as setup:
        register(setup)
        chains = {}
        for name in ("by-name", "by-code", "bad"):
            chains[name] = one_section(setup, name, subject=f"/CN={name}.example.test")
            setup.run("newOrder")
        serials = {name: leaf_of(chain).serial_number for name, chain in chains.items()}

        setup.run("revokeCert", "--reason=keyCompromise", str(chains["by-name"]))
        assert bench.revocation(serials["by-name"]) == 1
        setup.run("revoke-cert", "--reason", "4", str(chains["by-code"]))
        assert bench.revocation(serials["by-code"]) == 4

        unknown = setup.run("revokeCert", "--reason=compromised", str(chains["bad"]), check=False)
        assert unknown.returncode == 1
        assert unknown.stdout == ""
        assert unknown.stderr.count("\n") == 1
        assert unknown.stderr.startswith("Error: --reason=compromised: unknown revocation reason")
        assert "keyCompromise (1)" in unknown.stderr
        assert setup.run("revokeCert", "--reason=7", str(chains["bad"]), check=False).returncode
        assert bench.revocation(serials["bad"]) is None


# --- IP identifiers ------------------------------------------------------------------


def test_ip_certificate(pebble: PebbleServer) -> None:
    # Pebble validates an IP identifier over http-01 at that address, on its
    # httpPort: where the webserver listens, on both loopback addresses.
    port = pebble.http_port
    with master_setup(pebble, listen=f"127.0.0.1:{port} [::1]:{port}") as setup:
        register(setup)
        chain = one_section(
            setup, "ip", subject="/", subjectAltName="IP:127.0.0.1, IP:0:0:0:0:0:0:0:1"
        )
        result = setup.run("newOrder")
        leaf = leaf_of(chain)
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
        assert san.get_values_for_type(x509.DNSName) == []
        assert "(127.0.0.1, ::1)" in result.stdout


# --- preferred chain ------------------------------------------------------------------


def top_issuer(chain: Path) -> str:
    top = x509.load_pem_x509_certificates(chain.read_bytes())[-1]
    return str(top.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_preferred_chain(pebble_factory: PebbleFactory) -> None:
    pebble = pebble_factory(env={"PEBBLE_ALTERNATE_ROOTS": "2", "PEBBLE_CHAIN_LENGTH": "3"})
    roots = [
        x509.load_pem_x509_certificate(root.encode())
        .subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0]
        .value
        for root in pebble.root_pems()
    ]
    assert len(set(roots)) == 3
    with master_setup(pebble) as setup:
        register(setup)
        chain = one_section(setup, "chain", subject="/CN=chain.example.test")

        def prefer(name: str) -> subprocess.CompletedProcess[str]:
            setup.write_sections(
                {
                    "chain": {
                        "certificate-key": str(setup.directory / "chain.key"),
                        "certificate-chain": str(chain),
                        "subject": "/CN=chain.example.test",
                        "preferred-chain": name,
                    }
                }
            )
            return setup.run("newOrder", "--force")

        # An alternate, by its root's name (case aside), then the default one.
        for wanted in (roots[2], roots[1].upper(), roots[0]):
            result = prefer(str(wanted))
            assert top_issuer(chain).casefold() == str(wanted).casefold()
            assert "Warning" not in result.stderr
            # Leaf and intermediates, verified against the roots in CAfile.
            assert len(x509.load_pem_x509_certificates(chain.read_bytes())) > 2

        # Absent: the default chain, with a warning naming what was offered.
        result = prefer("No Such Root")
        assert top_issuer(chain) == roots[0]
        warnings = [line for line in result.stderr.splitlines() if "Warning" in line]
        assert len(warnings) == 1, result.stderr
        assert "no chain issued by 'No Such Root'" in warnings[0]
        assert all(str(root) in warnings[0] for root in roots)


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
        account = register(setup)
        # For a human: short and readable.
        expected = f"Status:   valid\nContact:  {CONTACT}\nOrders:   {account['orders']}\n"
        assert run_on_terminal(setup, "account") == expected
        # --json: the object, at a terminal too.
        assert json.loads(run_on_terminal(setup, "account", "--json")) == account
        # For a script (not a terminal), as lacme 0.8.2: the object.
        assert json.loads(setup.run("account").stdout) == account
        assert json.loads(setup.run("account", "--json").stdout) == account
