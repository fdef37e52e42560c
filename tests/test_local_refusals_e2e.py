"""What Let's Encrypt would refuse of an order, told before the order is
made, end to end through our master against Pebble behind the fault proxy
(tests/support/faults.py).  Must-Staple is refused before any request.  Too
many names under a profile, an IP address outside shortlived, a key type,
and a wildcard (which lacme cannot validate) are warned of, and the order
goes on: Pebble takes them all but the wildcard, for which it offers dns-01
only.  A revocation reason the server refuses, as Boulder does, is named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from lacme import __version__
from support.faults import Answer, FaultProxy, Request, offer_profiles, problem
from support.masters import leaf_of, master_setup, names_of

pytestmark = [pytest.mark.e2e, pytest.mark.root]

SITE = {"subject": "/CN=a.example.test", "subjectAltName": "DNS:www.a.example.test"}


def test_must_staple_is_refused_before_any_request(fault_proxy: FaultProxy) -> None:
    with master_setup(fault_proxy) as setup:
        chain = setup.one_section(**SITE, tlsfeature="status_request")
        result = setup.run("newOrder", check=False)
        assert result.returncode == 1
        assert result.stderr == (
            f"Error: {setup.certs_config}: [site] tlsfeature = status_request: asks for OCSP "
            "Must-Staple, but OCSP has ended (Let's Encrypt stopped OCSP in 2025 and refuses "
            "Must-Staple CSRs); remove tlsfeature\n"
        )
        assert fault_proxy.exchanges == []
        assert not chain.exists()


# --- warnings before an order ---------------------------------------------------------


def ordered(proxy: FaultProxy) -> list[dict[str, Any]]:
    """The payloads of the newOrders sent."""
    return [e.request.payload for e in proxy.sent("POST", "newOrder")]


def installed(chain: Path) -> str:
    return f"Installing X.509 certificate chain {chain}\n"


def test_more_than_25_names_under_tlsserver(fault_proxy: FaultProxy) -> None:
    offer_profiles(fault_proxy, "classic", "tlsserver", "shortlived")
    names = [f"n{i}.example.test" for i in range(26)]
    # The CN again, and a name in another case: 26 names in the order.
    alt_names = ", ".join(f"DNS:{name}" for name in [*names, "N1.Example.Test"])
    with master_setup(fault_proxy) as setup:
        setup.register()
        chain = setup.one_section(
            subject=f"/CN={names[0]}", subjectAltName=alt_names, profile="tlsserver"
        )
        result = setup.run("newOrder")
        assert result.stderr == (
            "[site] Warning: 26 names in subject and subjectAltName: Let's Encrypt allows "
            "at most 25 under profile = tlsserver\n" + installed(chain)
        )
        (order,) = ordered(fault_proxy)
        assert order["profile"] == "tlsserver"
        assert [i["value"] for i in order["identifiers"]] == names
        assert names_of(leaf_of(chain)) == sorted(names)


def test_an_ip_address_without_a_profile(fault_proxy: FaultProxy) -> None:
    # Pebble validates 127.0.0.1 over http-01 on its httpPort, where the
    # webserver listens.
    with master_setup(fault_proxy) as setup:
        setup.register()
        chain = setup.one_section(subject="/", subjectAltName="IP:127.0.0.1")
        result = setup.run("newOrder")
        assert result.stderr == (
            "[site] Warning: subjectAltName IP:127.0.0.1 without profile = shortlived: "
            "Let's Encrypt takes IP addresses only under the shortlived profile\n"
            + installed(chain)
        )
        (order,) = ordered(fault_proxy)
        assert order == {"identifiers": [{"type": "ip", "value": "127.0.0.1"}]}
        san = leaf_of(chain).extensions.get_extension_for_class(x509.SubjectAlternativeName)
        assert [str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


@pytest.mark.parametrize(("kind", "key_type"), [("p521", "ECDSA P-521"), ("ed25519", "Ed25519")])
def test_a_key_type_lets_encrypt_refuses(fault_proxy: FaultProxy, kind: str, key_type: str) -> None:
    with master_setup(fault_proxy) as setup:
        setup.register()
        key_path, key = setup.service_key("site", kind)
        chain = setup.directory / "site.chain"
        setup.write_sections(
            {"site": {"certificate-key": str(key_path), "certificate-chain": str(chain), **SITE}}
        )
        result = setup.run("newOrder")
        assert result.stderr == (
            f"[site] Warning: certificate-key {key_path} is {key_type}: Let's Encrypt takes "
            "only RSA 2048, RSA 3072, RSA 4096, ECDSA P-256, ECDSA P-384\n" + installed(chain)
        )
        assert leaf_of(chain).public_key() == key.public_key()


def test_a_wildcard_is_ordered_after_a_warning(fault_proxy: FaultProxy) -> None:
    with master_setup(fault_proxy) as setup:
        setup.register()
        chain = setup.one_section(
            subject="/CN=a.example.test", subjectAltName="DNS:*.a.example.test"
        )
        result = setup.run("newOrder", check=False)
        assert result.returncode == 1
        # The order stays pending: the next run carries it on (lacme.installed).
        resumed = json.loads(Path(f"{chain}.order").read_text())["url"]
        assert result.stderr == (
            "[site] Warning: subjectAltName DNS:*.a.example.test is a wildcard, which needs "
            "dns-01: lacme answers http-01 only\n"
            f"lacme-client {__version__}: error: no http-01 challenge offered for "
            "dns:*.a.example.test\n"
            "[site] Error: Couldn't issue X.509 certificate!\n"
            f"[site] The next run resumes the order {resumed}\n"
        )
        (order,) = ordered(fault_proxy)
        assert order == {
            "identifiers": [
                {"type": "dns", "value": "a.example.test"},
                {"type": "dns", "value": "*.a.example.test"},
            ]
        }
        assert not chain.exists()


# --- a revocation reason the server refuses ------------------------------------------


def refuse_reason(proxy: FaultProxy, reason: int) -> None:
    """Make PROXY answer a revokeCert carrying REASON with Boulder's 400
    badRevocationReason (its wfe2 and errors packages); the others go to
    Pebble."""
    revoke_cert = proxy.path("revokeCert")

    def hook(request: Request) -> Answer | None:
        payload = request.payload
        refused = isinstance(payload, dict) and payload.get("reason") == reason
        if request.path != revoke_cert or not refused:
            return None
        detail = f"Unable to revoke :: disallowed revocation reason: {reason}"
        return problem(400, "badRevocationReason", detail)

    proxy.hooks.append(hook)


def test_a_revocation_reason_the_server_refuses(fault_proxy: FaultProxy) -> None:
    """Let's Encrypt takes reasons 0, 1, 4 and 5 only.  Pebble 2.4 takes
    every RFC 5280 reason lacme sends (it refuses only 7 and codes over 10,
    which lacme refuses itself): the proxy refuses cACompromise (2)."""
    refuse_reason(fault_proxy, 2)
    with master_setup(fault_proxy) as setup:
        setup.register()
        chain = setup.one_section(**SITE)
        setup.run("newOrder")
        serial = leaf_of(chain).serial_number
        result = setup.run("revokeCert", "--reason=cACompromise", str(chain), check=False)
        assert result.returncode == 1
        assert result.stderr == (
            f"Revoking {chain}\n"
            f"lacme-client {__version__}: error: the ACME server refused revocation reason "
            "cACompromise (2): badRevocationReason: Unable to revoke :: disallowed revocation "
            "reason: 2; Let's Encrypt accepts only unspecified (0), keyCompromise (1), "
            "superseded (4), cessationOfOperation (5)\n"
            f"Warning: Couldn't revoke {chain}\n"
        )
        (refused,) = fault_proxy.sent("POST", "revokeCert")
        assert refused.canned
        assert refused.request.payload["reason"] == 2
        assert fault_proxy.pebble.cert_status(serial)["Status"] == "Valid"
        # A reason it takes reaches Pebble, which revokes.
        setup.run("revokeCert", "--reason=superseded", str(chain))
        status = fault_proxy.pebble.cert_status(serial)
        assert (status["Status"], status["Reason"]) == ("Revoked", 4)
