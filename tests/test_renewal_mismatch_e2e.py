"""Our master against Pebble, as an administrator changes a section or
breaks what installation needs: a certificate that no longer matches its
section is renewed on the next plain newOrder, saying why; one that would
be thrown away after issuance is not ordered.  Pebble sits behind the fault
proxy (tests/support/faults.py) to count the orders and offer profiles."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from lacme import notify
from support.faults import FaultProxy, offer_profiles
from support.masters import MasterSetup, leaf_of, master_setup, names_of
from support.pki import make_ca, new_key_file

pytestmark = [pytest.mark.e2e, pytest.mark.root]

NAMES = ["a.example.test", "www.a.example.test"]


def write_site(setup: MasterSetup, key: Path, chain: Path, **settings: str) -> None:
    setup.write_sections(
        {
            "site": {
                "certificate-key": str(key),
                "certificate-chain": str(chain),
                "subject": "/CN=a.example.test",
                "subjectAltName": "DNS:www.a.example.test",
                **settings,
            }
        }
    )


def issued(setup: MasterSetup, **settings: str) -> tuple[Path, Path]:
    """Register, and have the section `site` issued; its key and chain file."""
    setup.register()
    key, _ = setup.service_key("site", "p256")
    chain = setup.directory / "site.chain"
    write_site(setup, key, chain, **settings)
    setup.run("newOrder")
    return key, chain


def orders(proxy: FaultProxy) -> int:
    return len(proxy.sent("POST", "newOrder"))


def test_a_name_added_is_ordered(fault_proxy: FaultProxy) -> None:
    with master_setup(fault_proxy) as setup:
        key, chain = issued(setup)
        assert names_of(leaf_of(chain)) == NAMES
        write_site(setup, key, chain, subjectAltName="DNS:www.a.example.test, DNS:shop.test")
        result = setup.run("newOrder")
        assert "[site] Renewing: names changed: + shop.test\n" in result.stderr
        assert names_of(leaf_of(chain)) == ["a.example.test", "shop.test", "www.a.example.test"]
        # Matching again: the next run skips.
        assert "skipping" in setup.run("newOrder").stderr
        assert orders(fault_proxy) == 2


def test_a_name_removed_is_ordered(fault_proxy: FaultProxy) -> None:
    with master_setup(fault_proxy) as setup:
        key, chain = issued(setup)
        write_site(setup, key, chain, subjectAltName="")
        result = setup.run("newOrder")
        assert "[site] Renewing: names changed: - www.a.example.test\n" in result.stderr
        assert names_of(leaf_of(chain)) == ["a.example.test"]


def test_a_new_key_is_ordered(fault_proxy: FaultProxy) -> None:
    with master_setup(fault_proxy) as setup:
        _, chain = issued(setup)
        new_key_path = setup.directory / "new.key"
        new_key = new_key_file(new_key_path, "p256")
        write_site(setup, new_key_path, chain)
        result = setup.run("newOrder")
        assert (
            f"[site] Renewing: certificate-key {new_key_path} is not the certificate's key\n"
        ) in result.stderr
        assert leaf_of(chain).public_key() == new_key.public_key()


def test_a_revoked_certificate_is_replaced(fault_proxy: FaultProxy) -> None:
    with master_setup(fault_proxy) as setup:
        _, chain = issued(setup)
        revoked = leaf_of(chain)
        setup.run("revokeCert", str(chain))
        result = setup.run("newOrder")
        assert f"[site] Renewing: revoked with `lacme revokeCert {chain}` on " in result.stderr
        replacement = leaf_of(chain)
        assert replacement.serial_number != revoked.serial_number
        pebble = fault_proxy.pebble
        assert pebble.cert_status(revoked.serial_number)["Status"] == "Revoked"
        assert pebble.cert_status(replacement.serial_number)["Status"] == "Valid"
        assert "skipping" in setup.run("newOrder").stderr


def test_a_profile_changed_is_ordered(fault_proxy: FaultProxy) -> None:
    offer_profiles(fault_proxy, "classic", "shortlived")
    with master_setup(fault_proxy) as setup:
        key, chain = issued(setup, profile="classic")
        write_site(setup, key, chain, profile="shortlived")
        result = setup.run("newOrder")
        assert "[site] Renewing: profile changed: classic -> shortlived\n" in result.stderr
        payloads = [e.request.payload for e in fault_proxy.sent("POST", "newOrder")]
        assert [p["profile"] for p in payloads] == ["classic", "shortlived"]


# --- checked before ordering ---------------------------------------------------------


def test_a_missing_cafile_orders_nothing_even_forced(fault_proxy: FaultProxy) -> None:
    with master_setup(fault_proxy) as setup:
        key, chain = issued(setup)
        missing = setup.directory / "missing-roots.pem"
        write_site(setup, key, chain, CAfile=str(missing))
        result = setup.run("newOrder", "--force", check=False)
        assert result.returncode == 1
        assert result.stderr == (
            f"[site] Error before ordering: can't read CAfile {missing}: "
            "No such file or directory\n"
        )
        assert orders(fault_proxy) == 1


def test_a_missing_directory_and_notify_program_order_nothing(fault_proxy: FaultProxy) -> None:
    with master_setup(fault_proxy) as setup:
        setup.register()
        key, _ = setup.service_key("site", "p256")
        chain = setup.directory / "no-such-directory" / "site.chain"
        write_site(setup, key, chain, notify="nginx-typo -s reload")
        result = setup.run("newOrder", check=False)
        assert result.returncode == 1
        assert result.stderr == (
            f"[site] Error before ordering: certificate-chain {chain}: "
            f"no directory {chain.parent}\n"
            "[site] Error before ordering: notify = nginx-typo -s reload: "
            f"nginx-typo not found in PATH {notify.ROOT_PATH}\n"
        )
        assert orders(fault_proxy) == 0


# --- an issued certificate is never thrown away -------------------------------------


def refused_after_issuance(
    setup: MasterSetup,
) -> tuple[Path, Path, Path, subprocess.CompletedProcess[str]]:
    """Register, and order the section `site` with a CAfile that holds
    another CA's root: its key, chain file, kept file and the run."""
    setup.register()
    key, _ = setup.service_key("site", "p256")
    chain = setup.directory / "site.chain"
    wrong_roots = setup.directory / "other-roots.pem"
    wrong_roots.write_bytes(make_ca("another CA").root_pem())
    write_site(setup, key, chain, CAfile=str(wrong_roots))
    refused = setup.run("newOrder", check=False)
    assert refused.returncode == 1
    return key, chain, Path(f"{chain}.issued"), refused


def test_a_refused_chain_is_kept_and_installed_once_cafile_is_fixed(
    fault_proxy: FaultProxy,
) -> None:
    """As with Debian's CAfile, which holds only Let's Encrypt's roots,
    and another CA: the chain fails verification after issuance."""
    with master_setup(fault_proxy) as setup:
        key, chain, kept, refused = refused_after_issuance(setup)
        assert not chain.exists()
        assert re.search(
            r"\[site\] Error after issuance: .+; the certificate is kept in "
            rf"{re.escape(str(kept))}, for the next run to install\n",
            refused.stderr,
        ), refused.stderr
        issued_leaf = leaf_of(kept)

        again = setup.run("newOrder", check=False)
        assert again.returncode == 1
        assert re.search(
            rf"\[site\] Error: the certificate kept in {re.escape(str(kept))} can't be installed: "
            ".+; nothing is ordered until it is, or the file is removed\n",
            again.stderr,
        ), again.stderr
        assert orders(fault_proxy) == 1

        write_site(setup, key, chain)  # CAfile fixed: the server's roots
        fixed = setup.run("newOrder")
        assert f"Installing X.509 certificate chain {chain}\n" in fixed.stderr
        assert leaf_of(chain) == issued_leaf
        assert not kept.exists()
        assert orders(fault_proxy) == 1


def test_a_kept_chain_the_section_no_longer_wants_is_discarded(fault_proxy: FaultProxy) -> None:
    with master_setup(fault_proxy) as setup:
        key, chain, kept, _ = refused_after_issuance(setup)
        assert kept.exists()

        write_site(setup, key, chain, subjectAltName="DNS:shop.test")
        result = setup.run("newOrder")
        assert (
            f"[site] Discarding the certificate kept in {kept}: "
            "names changed: + shop.test, - www.a.example.test\n"
        ) in result.stderr
        assert names_of(leaf_of(chain)) == ["a.example.test", "shop.test"]
        assert not kept.exists()
        assert orders(fault_proxy) == 2
