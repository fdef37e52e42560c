"""An order cut short is resumed, not placed again: our master against
Pebble behind the fault proxy (tests/support/faults.py), which holds the
order in `processing` while the test kills the client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from support import proc
from support.commands import LACME
from support.faults import Answer, FaultProxy, Request
from support.masters import MasterSetup, leaf_of, master_setup, names_of
from support.system import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.root]

SITE = {"subject": "/CN=a.example.test", "subjectAltName": "DNS:www.a.example.test"}


class HeldOrders:
    """Make PROXY answer every order poll and finalize with `processing`
    while `held`, as a CA issuing slowly; `polls` counts the polls held."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.held = True
        self.polls = 0
        self.orders: list[str] = []
        new_order = proxy.path("newOrder")

        def hold(request: Request, answer: Answer) -> None:
            if request.path == new_order and answer.status == 201:
                self.orders.append(urlsplit(answer.headers["Location"]).path)
                return
            if not self.held or request.method != "POST" or answer.status != 200:
                return
            body = json.loads(answer.body) if answer.body.startswith(b"{") else None
            if not isinstance(body, dict) or "finalize" not in body:
                return  # not an order
            if request.path in self.orders:
                self.polls += 1
            body["status"] = "processing"
            body.pop("certificate", None)
            answer.body = json.dumps(body).encode()

        proxy.answer_hooks.append(hold)


def client_of(master: subprocess.Popen[bytes]) -> int | None:
    """The pid of MASTER's ACME client, if it runs."""
    for pid in proc.children(master.pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        # Our own client serves the run in a session.
        if b"lacme.client" in cmdline and b"\0session\0" in cmdline:
            return pid
    return None


def start_master(setup: MasterSetup) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [LACME, f"--config={setup.config}", "newOrder"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_the_client_killed_while_processing_is_resumed(fault_proxy: FaultProxy) -> None:
    held = HeldOrders(fault_proxy)
    with master_setup(fault_proxy) as setup:
        setup.register()
        chain = setup.one_section(**SITE)
        state = Path(f"{chain}.order")
        master = start_master(setup)
        try:
            wait_for(lambda: held.polls > 0, "the order polled while processing")
            client = wait_for(lambda: client_of(master), "the ACME client")
            os.kill(client, signal.SIGKILL)
            _, stderr = master.communicate(timeout=60)
        finally:
            if master.poll() is None:
                master.kill()
                master.wait()
        assert master.returncode == 1
        assert b"[site] Error: Couldn't issue X.509 certificate!\n" in stderr
        url = json.loads(state.read_text())["url"]
        assert urlsplit(url).path == held.orders[0]

        held.held = False
        result = setup.run("newOrder")
        assert f"[site] Resuming the order an earlier run left: {url}\n" in result.stderr
        assert names_of(leaf_of(chain)) == ["a.example.test", "www.a.example.test"]
        assert not state.exists()
        # One order, finalized once: the second run downloaded what the first ordered.
        assert len(fault_proxy.sent("POST", "newOrder")) == 1, result.stderr
        finalized = [e for e in fault_proxy.exchanges if "finalize" in e.request.path]
        assert len(finalized) == 1


def left_order(setup: MasterSetup, url: str, identifiers: list[str]) -> Path:
    """Register, write the section `site`, and the record of an order at URL
    for IDENTIFIERS as a run cut short leaves it; the chain file."""
    setup.register()
    chain = setup.one_section(**SITE)
    Path(f"{chain}.order").write_text(json.dumps({"url": url, "identifiers": identifiers}))
    return chain


def test_an_order_that_cannot_be_resumed_is_placed_anew(fault_proxy: FaultProxy) -> None:
    gone = f"{fault_proxy.base}/my-order/no-such-order"
    with master_setup(fault_proxy) as setup:
        chain = left_order(setup, gone, ["a.example.test", "www.a.example.test"])
        result = setup.run("newOrder")
        assert f"Warning: can't resume the order {gone} of an earlier run (" in result.stderr
        assert "; ordering anew\n" in result.stderr
        assert names_of(leaf_of(chain)) == ["a.example.test", "www.a.example.test"]
        assert len(fault_proxy.sent("POST", "newOrder")) == 1
        assert not Path(f"{chain}.order").exists()


def test_an_order_for_other_names_is_not_resumed(fault_proxy: FaultProxy) -> None:
    other = f"{fault_proxy.base}/my-order/for-other-names"
    with master_setup(fault_proxy) as setup:
        left_order(setup, other, ["a.example.test"])
        result = setup.run("newOrder")
        assert other not in result.stderr
        assert len(fault_proxy.sent("POST", "newOrder")) == 1
