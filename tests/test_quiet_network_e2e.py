"""Our master touches the network only when something needs it, and asks
an unreachable ACME server once a run: against Pebble behind the fault
proxy (tests/support/faults.py), which counts what reaches it, and a closed
port for a server that is down."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.faults import FaultProxy
from support.masters import master_setup
from support.system import free_ports

pytestmark = [pytest.mark.e2e, pytest.mark.root]

SITE = {"subject": "/CN=a.example.test", "subjectAltName": "DNS:www.a.example.test"}


def test_nothing_due_asks_nobody(fault_proxy: FaultProxy) -> None:
    with master_setup(fault_proxy) as setup:
        setup.register()
        chain = setup.one_section(**SITE)
        setup.run("newOrder")
        # The first run with the certificate installed learns that the
        # server offers no renewal information (Pebble 2.4 has none)...
        before = len(fault_proxy.exchanges)
        assert "skipping" in setup.run("newOrder").stderr
        assert [e.request.method for e in fault_proxy.exchanges[before:]] == ["GET"]
        assert json.loads(Path(f"{chain}.ari").read_text())["offered"] is False
        # ...and, for a day, a run with nothing due contacts nobody.
        before = len(fault_proxy.exchanges)
        result = setup.run("newOrder")
        assert result.returncode == 0
        assert "[site] Valid until " in result.stderr
        assert fault_proxy.exchanges[before:] == []


def test_an_unreachable_server_is_asked_once_a_run(fault_proxy: FaultProxy) -> None:
    with master_setup(fault_proxy, extra_client=["timeout = 1"]) as setup:
        (port,) = free_ports(1)
        down = f"https://127.0.0.1:{port}/dir"
        setup.config.write_text(setup.config.read_text().replace(fault_proxy.directory_url, down))
        key, _ = setup.service_key("a", "p256")
        setup.write_sections(
            {
                name: {
                    "certificate-key": str(key),
                    "certificate-chain": str(setup.directory / f"{name}.chain"),
                    "subject": f"/CN={name}.example.test",
                }
                for name in ("a", "b", "c")
            }
        )
        result = setup.run("newOrder", check=False)
        assert result.returncode == 1
        lines = result.stderr.splitlines()
        assert "[a] Error: Couldn't issue X.509 certificate!" in lines
        assert lines[-2:] == [
            f"[{name}] Error before ordering: the ACME server was unreachable earlier in this run"
            for name in ("b", "c")
        ]
