"""`lacme newOrder --dry-run` against Pebble: every name of every section
validated through the real webserver, nothing finalized, issued,
installed or recorded, the authorizations deactivated; a name the CA
can't validate fails the run, named; a real run afterwards still issues."""

from __future__ import annotations

import hashlib
import json
import os
import re
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from lacme.accountd_protocol import b64url_encode, canonical_json
from lacme.acme import AcmeSession
from lacme.acme_http import Patience
from support.faults import Answer, FaultProxy, Request, problem, running_fault_proxy
from support.masters import MasterSetup, leaf_of, master_setup, names_of
from support.pebble import PebbleFactory
from support.pki import public_jwk

pytestmark = [pytest.mark.e2e, pytest.mark.root]

# Pebble's resource paths (through the fault proxy, which rewrites nothing).
AUTHZ = "/authZ/"
FINALIZE = "/finalize-order/"
CERTIFICATE = "/certZ/"


def two_sections(setup: MasterSetup, second: str = "b.example.test") -> None:
    sections = {}
    for name, names in (("one", ["a.example.test", "www.a.example.test"]), ("two", [second])):
        key, _ = setup.service_key(name, "p256")
        sections[name] = {
            "certificate-key": str(key),
            "certificate-chain": str(setup.directory / f"{name}.chain"),
            "subject": f"/CN={names[0]}",
            "subjectAltName": ",".join(f"DNS:{n}" for n in names),
        }
    setup.write_sections(sections)


def snapshot(directory: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under DIRECTORY, with its mtime and a digest of its content."""
    files = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = Path(root, name)
            files[str(path)] = (path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).digest())
    return files


def account_session(setup: MasterSetup, proxy: FaultProxy) -> AcmeSession:
    """An ACME session of the test's own with the account key (P-256), to
    fetch what the run left at the CA."""
    key: ec.EllipticCurvePrivateKey = setup.account_key

    def sign(signing_input: bytes) -> str:
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return b64url_encode(r.to_bytes(32, "big") + s.to_bytes(32, "big")).decode()

    jwk = public_jwk(key)
    thumbprint = b64url_encode(hashlib.sha256(canonical_json(jwk)).digest()).decode()
    return AcmeSession(
        proxy.directory_url,
        context=ssl.create_default_context(cafile=proxy.ca_bundle),
        sign=sign,
        alg="ES256",
        jwk=jwk,
        thumbprint=thumbprint,
        kid=None,
        patience=Patience(10),
        warn=lambda message: None,
    )


def authorizations(proxy: FaultProxy) -> set[str]:
    """The authorization URLs the client asked about."""
    return {
        proxy.base + e.request.path
        for e in proxy.exchanges
        if e.request.method == "POST" and e.request.path.startswith(AUTHZ)
    }


def test_a_dry_run_validates_every_name_and_issues_nothing(pebble_factory: PebbleFactory) -> None:
    """With Pebble reusing every valid authorization it can: the dry run's
    are deactivated, so the real run after it validates each name again;
    a dry run after that is told the CA checked nothing."""
    with (
        running_fault_proxy(pebble_factory(authz_reuse=100)) as fault_proxy,
        master_setup(fault_proxy, defaults=["parallel-orders = 2"]) as setup,
    ):
        setup.register()
        two_sections(setup)
        before = snapshot(setup.directory)
        fault_proxy.exchanges.clear()
        result = setup.run("newOrder", "--dry-run")
        assert snapshot(setup.directory) == before, result.stderr
        paths = [e.request.path for e in fault_proxy.exchanges]
        assert not [p for p in paths if p.startswith((FINALIZE, CERTIFICATE))], paths
        assert result.stdout.splitlines() == [
            "[one] dns:a.example.test: validated by the CA, authorization deactivated",
            "[one] dns:www.a.example.test: validated by the CA, authorization deactivated",
            "[one] Dry run: 2 name(s) valid at the CA; nothing issued, nothing installed",
            "[two] dns:b.example.test: validated by the CA, authorization deactivated",
            "[two] Dry run: 1 name(s) valid at the CA; nothing issued, nothing installed",
        ], result.stderr
        urls = authorizations(fault_proxy)
        assert len(urls) == 3, fault_proxy.log()
        with account_session(setup, fault_proxy) as session:
            session.account_kid()
            assert {session.authorization(url).status for url in urls} == {"deactivated"}
        # Deactivated, they are not reused: the real run validates again.
        fault_proxy.exchanges.clear()
        setup.run("newOrder")
        challenges = [p for p in (e.request.path for e in fault_proxy.exchanges) if "/chalZ/" in p]
        assert len(challenges) == 3, fault_proxy.log()
        assert names_of(leaf_of(setup.directory / "one.chain")) == [
            "a.example.test",
            "www.a.example.test",
        ]
        assert names_of(leaf_of(setup.directory / "two.chain")) == ["b.example.test"]
        reused = setup.run("newOrder", "--dry-run", "two")
        assert reused.stdout.splitlines() == [
            "[two] dns:b.example.test: valid already: the CA reused an earlier validation "
            "and checked nothing now",
            "[two] Dry run: 1 name(s) valid at the CA; nothing issued, nothing installed",
        ]


def test_a_name_the_ca_cannot_validate_fails_the_dry_run(fault_proxy: FaultProxy) -> None:
    """The CA finds no webserver for one name (its DNS points elsewhere):
    that section's dry run fails naming it, the other's passes, the run
    exits 1, and the authorizations that were validated are deactivated."""
    mock = {"host": "unreachable.example.test.", "addresses": ["127.0.0.2"]}
    httpx.post(f"{fault_proxy.pebble.dns_management_url}/add-a", json=mock).raise_for_status()
    with master_setup(fault_proxy) as setup:
        setup.register()
        two_sections(setup, second="unreachable.example.test")
        result = setup.run("newOrder", "--dry-run", check=False)
        assert result.returncode == 1, result.stderr
        assert not (setup.directory / "two.chain").exists()
        lines = result.stdout.splitlines()
        assert lines[:3] == [
            "[one] dns:a.example.test: validated by the CA, authorization deactivated",
            "[one] dns:www.a.example.test: validated by the CA, authorization deactivated",
            "[one] Dry run: 2 name(s) valid at the CA; nothing issued, nothing installed",
        ], result.stdout
        assert lines[3].startswith(
            "[two] dns:unreachable.example.test: validation failed: connection: "
        ), lines
        assert "127.0.0.2" in lines[3], lines
        assert lines[4] == (
            "[two] Dry run failed: not valid: dns:unreachable.example.test; "
            "nothing issued, nothing installed"
        )
        assert (
            "[two] Error: the dry run found what would fail renewal: dns:unreachable.example.test"
            in result.stderr
        )
        with account_session(setup, fault_proxy) as session:
            session.account_kid()
            statuses = sorted(
                session.authorization(u).status or "" for u in authorizations(fault_proxy)
            )
        assert statuses == ["deactivated", "deactivated", "invalid"]
        as_json = setup.run("newOrder", "--dry-run", "--json", "two", check=False)
        assert as_json.returncode == 1, as_json.stderr
        report = json.loads(as_json.stdout)
        assert (report["section"], report["ok"], report["outcome"]) == ("two", False, "failed")
        [validation] = report["validations"]
        assert validation["identifier"] == "dns:unreachable.example.test"
        assert validation["outcome"] == "failed"
        assert "127.0.0.2" in validation["detail"]
        assert validation["deactivated"] is False


def dry_run_of_one_name(
    proxy: FaultProxy, hook: Callable[[Request], Answer | None]
) -> subprocess.CompletedProcess[str]:
    """`newOrder --dry-run` of a section for a.example.test, HOOK shaping
    what the CA answers."""
    proxy.hooks.append(hook)
    with master_setup(proxy) as setup:
        setup.register()
        setup.one_section("site", subject="/CN=a.example.test")
        return setup.run("newOrder", "--dry-run", check=False)


def test_an_authorization_the_ca_will_not_deactivate_is_said_so(fault_proxy: FaultProxy) -> None:
    """The CA refuses the deactivation: the name still counts as validated
    (the dry run's question), without `authorization deactivated`, and a
    warning names the authorization."""

    def refuse(request: Request) -> Answer | None:
        if request.path.startswith(AUTHZ) and request.payload == {"status": "deactivated"}:
            return problem(403, "unauthorized", "not today")
        return None

    result = dry_run_of_one_name(fault_proxy, refuse)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "[site] dns:a.example.test: validated by the CA",
        "[site] Dry run: 1 name(s) valid at the CA; nothing issued, nothing installed",
    ]
    assert re.search(
        r"^Warning: can't deactivate the authorization https://\S+/authZ/\S+: .*not today",
        result.stderr,
        re.MULTILINE,
    ), result.stderr


def test_an_order_the_ca_refuses_fails_before_any_validation(fault_proxy: FaultProxy) -> None:
    def refuse(request: Request) -> Answer | None:
        if request.path == fault_proxy.path("newOrder"):
            return problem(400, "rejectedIdentifier", "not that name")
        return None

    result = dry_run_of_one_name(fault_proxy, refuse)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "[site] Dry run failed before any validation; nothing issued, nothing installed"
    ]
    assert "rejectedIdentifier: not that name" in result.stderr
