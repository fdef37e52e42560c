"""Our `lacme` master and client end to end against acme2certifier, the
second, independent ACME server (tests/support/a2c.py): the 0.8.2 feature
set (register, newOrder, revokeCert, deactivate), then profiles and ACME
Renewal Information (RFC 9773)."""

from __future__ import annotations

import base64
import datetime
import json
from contextlib import ExitStack
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from support.a2c import A2CServer, running_acme2certifier
from support.masters import leaf_of, master_setup, names_of
from support.pki import make_ca

pytestmark = [pytest.mark.e2e, pytest.mark.root]

SITE = {"subject": "/CN=a.example.test", "subjectAltName": "DNS:www.a.example.test"}


def test_register_issue_revoke_and_deactivate(a2c: A2CServer) -> None:
    with master_setup(a2c) as setup:
        setup.register()
        assert json.loads(setup.run("account").stdout)["status"] == "valid"
        setup.one_section(**SITE)
        result = setup.run("newOrder")
        chain = setup.directory / "site.chain"
        leaf = leaf_of(chain)
        assert names_of(leaf) == ["a.example.test", "www.a.example.test"]
        assert "Installing X.509 certificate chain" in result.stderr
        # Valid for 30 days, more than min-days 21: nothing to do.
        assert "skipping" in setup.run("newOrder").stderr
        setup.run("revokeCert", str(chain))
        again = setup.run("revokeCert", str(chain), check=False)
        assert again.returncode == 1
        assert "alreadyRevoked" in again.stderr
        deactivated = json.loads(setup.run("account", "--deactivate").stdout)
        assert deactivated["status"] == "deactivated"
        assert setup.run("account", check=False).returncode != 0


def cert_id(cert: x509.Certificate) -> str:
    """RFC 9773 section 4.1, computed here independently of lacme."""
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier is not None
    serial = cert.serial_number.to_bytes((cert.serial_number.bit_length() + 8) // 8, "big")
    return ".".join(
        base64.urlsafe_b64encode(part).rstrip(b"=").decode()
        for part in (aki.key_identifier, serial)
    )


def test_profile_is_sent(a2c: A2CServer) -> None:
    with master_setup(a2c) as setup:
        setup.register()
        setup.one_section(**SITE, profile="shortlived")
        setup.run("newOrder")
        assert a2c.query("SELECT profile FROM orders") == [("shortlived",)]


def test_unknown_profile_is_refused(a2c: A2CServer) -> None:
    with master_setup(a2c) as setup:
        setup.register()
        setup.one_section(**SITE, profile="longlived")
        result = setup.run("newOrder", check=False)
        assert result.returncode == 1
        assert result.stderr == (
            f"Error: {setup.certs_config}: [site] profile = longlived: the ACME server "
            "offers no such profile (it offers: classic, shortlived)\n"
        )
        assert a2c.query("SELECT count(*) FROM orders") == [(0,)]
        assert not (setup.directory / "site.chain").exists()


def test_profile_needs_a_server_with_profiles(a2c_namespace: ExitStack) -> None:
    a2c = a2c_namespace.enter_context(running_acme2certifier(profiles=None))
    with master_setup(a2c) as setup:
        setup.one_section(**SITE, profile="classic")
        result = setup.run("newOrder", check=False)
        assert result.returncode == 1
        assert result.stderr.endswith(
            "[site] profile = classic: the ACME server offers no such profile (it offers: none)\n"
        )


def test_ari_renews_inside_the_window_and_replaces(a2c_namespace: ExitStack) -> None:
    # Windows one second long, a lifetime before each certificate's
    # issuance: wholly in the past at once, whatever the random time chosen.
    a2c = a2c_namespace.enter_context(
        running_acme2certifier(
            renewalinfo={"renewalthreshold_pctg": "-100", "renewal_window_duration": "1"}
        )
    )
    with master_setup(a2c) as setup:
        setup.register()
        setup.one_section(**SITE, **{"min-days": "0"})
        setup.run("newOrder")
        chain = setup.directory / "site.chain"
        first = leaf_of(chain)
        # min-days 0 would keep this certificate: ARI decides.
        result = setup.run("newOrder", "--debug")
        assert a2c.renewal_info_requests() == 1
        assert f'"replaces": "{cert_id(first)}"' in result.stderr
        assert "[site] Renewing: renewal window" in result.stderr
        second = leaf_of(chain)
        assert second.serial_number != first.serial_number
        # The state is about the certificate replaced: gone with it.
        assert not Path(f"{chain}.ari").exists()


def test_ari_not_due_honours_retry_after(a2c_namespace: ExitStack) -> None:
    a2c = a2c_namespace.enter_context(
        running_acme2certifier(renewalinfo={"retry_after_timeout": "3600"})
    )
    with master_setup(a2c) as setup:
        setup.register()
        # min-days 365 would renew this 30-day certificate: ARI decides.
        setup.one_section(**SITE, **{"min-days": "365"})
        setup.run("newOrder")
        chain = setup.directory / "site.chain"
        leaf = leaf_of(chain)

        before = datetime.datetime.now(datetime.UTC)
        result = setup.run("newOrder")
        after = datetime.datetime.now(datetime.UTC)
        assert a2c.renewal_info_requests() == 1
        state_file = Path(f"{chain}.ari")
        state = json.loads(state_file.read_text())
        assert state["certID"] == cert_id(leaf)
        # acme2certifier's default window: from 85% of the lifetime to the end.
        lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
        start = datetime.datetime.fromisoformat(state["start"])
        assert abs(start - (leaf.not_valid_before_utc + lifetime * 0.85)).total_seconds() < 2
        assert datetime.datetime.fromisoformat(state["end"]) == leaf.not_valid_after_utc
        renew_at = datetime.datetime.fromisoformat(state["renewAt"])
        assert start <= renew_at < leaf.not_valid_after_utc
        # Asked at some instant of the run: Retry-After from then.
        next_check = datetime.datetime.fromisoformat(state["nextCheck"])
        retry_after = datetime.timedelta(seconds=3600)
        assert before + retry_after <= next_check <= after + retry_after
        # It leaves less than a sixth of the lifetime: renewal comes before it.
        latest = leaf.not_valid_after_utc - lifetime / 6
        when = f"{latest:%Y-%m-%d %H:%M:%S} UTC"
        assert result.stderr.startswith(f"[site] Renewal at {when}, 5 days before expiry (")
        assert result.stderr.endswith(" is later), skipping\n")
        assert state_file.stat().st_mode & 0o777 == 0o644

        # Within Retry-After: no request, the same decision.
        assert setup.run("newOrder").stderr == result.stderr
        assert a2c.renewal_info_requests() == 1

        # Past it: asked again; the same window keeps its time.
        state["nextCheck"] = before.isoformat()
        state_file.write_text(json.dumps(state))
        assert setup.run("newOrder").stderr == result.stderr
        assert a2c.renewal_info_requests() == 2
        assert json.loads(state_file.read_text())["renewAt"] == state["renewAt"]
        assert leaf_of(chain).serial_number == leaf.serial_number

        # --force renews, replacing the certificate.
        forced = setup.run("newOrder", "--force", "--debug")
        assert f'"replaces": "{cert_id(leaf)}"' in forced.stderr
        assert leaf_of(chain).serial_number != leaf.serial_number


def test_ari_failure_falls_back_to_min_days(a2c: A2CServer) -> None:
    with master_setup(a2c) as setup:
        setup.register()
        setup.one_section(**SITE)
        _, key = setup.service_key("site", "p256")
        chain = setup.directory / "site.chain"
        # A certificate acme2certifier never issued: it has no renewal
        # information for it (404), so min-days decides, and no `replaces`.
        other = make_ca("another CA")
        now = datetime.datetime.now(datetime.UTC)
        for days_left, renewed in ((90, False), (10, True)):
            not_before = now - datetime.timedelta(days=90 - days_left)
            names = ["a.example.test", "www.a.example.test"]
            leaf = other.issue(key.public_key(), names, not_before=not_before)
            chain.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
            result = setup.run("newOrder", "--debug")
            assert "[site] Warning: no renewal information (the client failed), " in result.stderr
            assert '"replaces"' not in result.stderr
            assert ("Valid until" not in result.stderr) == renewed
            assert (leaf_of(chain).serial_number != leaf.serial_number) == renewed


def test_revocation_reason_acme2certifier_refuses(a2c: A2CServer) -> None:
    # RFC 8555 lets the server refuse a reason: acme2certifier takes 0, 1
    # and 3 to 6 only, so cACompromise, which our client sends as any other,
    # comes back as badRevocationReason and the certificate stays valid.
    with master_setup(a2c) as setup:
        setup.register()
        setup.one_section(**SITE)
        setup.run("newOrder")
        chain = setup.directory / "site.chain"
        refused = setup.run("revokeCert", "--reason=cACompromise", str(chain), check=False)
        assert refused.returncode == 1
        assert "badRevocationReason" in refused.stderr, refused.stderr
        assert a2c.revocations() == {}
        setup.run("revokeCert", "--reason=superseded", str(chain))
        assert a2c.revocations() == {leaf_of(chain).serial_number: "superseded"}
