"""Revocation reasons, IP identifiers (RFC 8738) and the preferred chain, end
to end through our four processes.  Revocation reasons run against Pebble and
acme2certifier in turn (the `bench` fixture)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from support.masters import leaf_of, master_setup
from support.pebble import PebbleFactory, PebbleServer
from support.servers import Bench

pytestmark = [pytest.mark.e2e, pytest.mark.root]


# --- revocation reasons -----------------------------------------------------------


def test_revocation_reasons(bench: Bench) -> None:
    with master_setup(bench.start()) as setup:
        setup.register()
        chains = {}
        for name in ("by-name", "by-code", "bad"):
            chains[name] = setup.one_section(name, subject=f"/CN={name}.example.test")
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
        setup.register()
        chain = setup.one_section(
            "ip", subject="/", subjectAltName="IP:127.0.0.1, IP:0:0:0:0:0:0:0:1"
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
        setup.register()
        chain = setup.one_section("chain", subject="/CN=chain.example.test")

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
