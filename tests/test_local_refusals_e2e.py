"""What Let's Encrypt would refuse only after the authorizations, end to end
through our master against Pebble behind the fault proxy
(tests/support/faults.py): Must-Staple is refused before anything is sent."""

from __future__ import annotations

import pytest

from support.faults import FaultProxy
from support.masters import master_setup

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
