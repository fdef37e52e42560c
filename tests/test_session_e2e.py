"""A newOrder run with lacme's own client against Pebble: one client
session and one accountd conversation for every section, orders under way
in parallel up to `parallel-orders`, and each section's messages together,
in the order of the configuration."""

from __future__ import annotations

import errno
import os
import pty
import re
import subprocess

import pytest

from lacme.acme_http import ERROR_NS
from support.commands import LACME, TIMEOUT
from support.faults import Answer, FaultProxy, Request, problem
from support.masters import MasterSetup, leaf_of, master_setup, names_of
from support.pebble import PebbleServer

pytestmark = [pytest.mark.e2e, pytest.mark.root]

SECTIONS = [f"s{i}" for i in range(6)]


def six_sections(setup: MasterSetup) -> None:
    sections = {}
    for name in SECTIONS:
        key, _ = setup.service_key(name, "p256")
        sections[name] = {
            "certificate-key": str(key),
            "certificate-chain": str(setup.directory / f"{name}.chain"),
            "subject": f"/CN={name}.example.test",
        }
    setup.write_sections(sections)


def blocks(stderr: str) -> list[str]:
    """The sections the lines of STDERR are about ([NAME] or NAME.chain), in
    turn, a run of lines about one counted once."""
    order: list[str] = []
    for line in stderr.splitlines():
        match = re.search(r"\[(s\d)\] |/(s\d)\.chain", line)
        name = match and (match.group(1) or match.group(2))
        if name and (not order or order[-1] != name):
            order.append(name)
    return order


def test_one_session_serves_a_run_of_parallel_orders(pebble: PebbleServer) -> None:
    with master_setup(pebble, defaults=["parallel-orders = 3"]) as setup:
        setup.register()
        six_sections(setup)
        result = setup.run("newOrder", "--debug")
        for name in SECTIONS:
            leaf = leaf_of(setup.directory / f"{name}.chain")
            assert names_of(leaf) == [f"{name}.example.test"]
    forks = [line for line in result.stderr.splitlines() if "] Forking " in line]
    # One client, one accountd, one webserver for the six orders.
    assert len([f for f in forks if "for the run's session" in f]) == 1, forks
    assert len([f for f in forks if "lacme-accountd" in f]) == 1, forks
    assert len(forks) == 3, forks
    # Each section's messages together, in the configuration's order.
    assert blocks(result.stderr) == SECTIONS, result.stderr
    installs = re.findall(r"Installing X.509 certificate chain .*/(s\d)\.chain", result.stderr)
    assert installs == SECTIONS
    # The session confined before its first request, its writes to the
    # challenge directory once lent it; the webserver and accountd once
    # they listen (lacme.confinement; what ABI is the kernel's).
    layers = re.findall(
        r"^(?:\[\d+\] |lacme-webserver\[\d+\]: )?(confinement.*)$", result.stderr, re.MULTILINE
    )
    assert sorted(re.sub(r"ABI \d+", "ABI N", layer) for layer in layers) == [
        "confinement of writes to the challenge directory: Landlock ABI N: fs; seccomp: unchanged",
        *["confinement: Landlock ABI N: fs+net+scope; seccomp: on"] * 3,
    ], result.stderr


def test_a_failing_order_fails_its_section_alone(fault_proxy: FaultProxy) -> None:
    """The CA refuses one section's order: that section fails, the others
    are issued, and the run exits 1."""

    def refuse_s2(request: Request) -> Answer | None:
        identifiers = (request.payload or {}).get("identifiers", [])
        if request.path == fault_proxy.path("newOrder") and any(
            identifier.get("value") == "s2.example.test" for identifier in identifiers
        ):
            return problem(400, ERROR_NS + "rejectedIdentifier", "not s2")
        return None

    fault_proxy.hooks.append(refuse_s2)
    with master_setup(fault_proxy, defaults=["parallel-orders = 6"]) as setup:
        setup.register()
        six_sections(setup)
        result = setup.run("newOrder", check=False)
        for name in SECTIONS:
            assert (setup.directory / f"{name}.chain").exists() == (name != "s2"), result.stderr
    assert result.returncode == 1
    assert "[s2] Error: Couldn't issue X.509 certificate!" in result.stderr
    assert "not s2" in result.stderr
    assert blocks(result.stderr) == SECTIONS, result.stderr


def test_the_directory_is_asked_once_a_run(fault_proxy: FaultProxy) -> None:
    with master_setup(fault_proxy) as setup:
        setup.register()
        six_sections(setup)
        fault_proxy.exchanges.clear()
        setup.run("newOrder")
    directory: list[Request] = [
        e.request for e in fault_proxy.exchanges if e.request.path == "/dir"
    ]
    accounts = fault_proxy.sent("POST", "newAccount")
    assert len(directory) == 1, fault_proxy.log()
    assert len(accounts) == 1, fault_proxy.log()


def test_a_certain_order_starts_every_process_before_any_key_is_read(pebble: PebbleServer) -> None:
    """A section without a certificate yet will be ordered for: client,
    accountd and webserver start first, and get ready while the master
    reads keys and builds CSRs.  Once it has one, a run with nothing due
    starts the client alone, which it asks nothing, and nothing else."""

    def forks_before_the_section(stderr: str) -> tuple[list[str], list[str]]:
        lines = stderr.splitlines()
        first = next(i for i, line in enumerate(lines) if "Configuration option for site" in line)
        forks = [line for line in lines if "] Forking " in line]
        return forks, [line for line in lines[:first] if "] Forking " in line]

    with master_setup(pebble) as setup:
        setup.register()
        setup.one_section(subject="/CN=site.example.test")
        forks, early = forks_before_the_section(setup.run("newOrder", "--debug").stderr)
        assert len(forks) == 3, forks
        assert early == forks
        result = setup.run("newOrder", "--debug")
        assert "[site] Valid until " in result.stderr
        forks, early = forks_before_the_section(result.stderr)
        assert len(forks) == 1, forks
        assert "for the run's session" in forks[0]
        assert early == forks


def test_an_account_the_server_does_not_know_fails_the_first_order(
    fault_proxy: FaultProxy,
) -> None:
    """The session looks the account up as soon as accountd is lent, before
    the order is asked: its failure is what the order says, and the server
    is asked once, not again by the order."""
    with master_setup(fault_proxy) as setup:
        setup.one_section(subject="/CN=site.example.test")
        result = setup.run("newOrder", check=False)
    assert result.returncode == 1
    assert "no account for this key; register one with `lacme account --register`" in (
        result.stderr
    )
    assert len(fault_proxy.sent("POST", "newAccount")) == 1
    assert fault_proxy.sent("POST", "newOrder") == []


def test_one_certificate_takes_one_connection(fault_proxy: FaultProxy) -> None:
    """The order goes on with the connection its session looked the
    directory and the account up on."""
    with master_setup(fault_proxy) as setup:
        setup.register()
        setup.one_section(subject="/CN=site.example.test")
        before = fault_proxy.connections
        setup.run("newOrder")
    assert fault_proxy.connections - before == 1


def at_a_terminal(setup: MasterSetup, *args: str) -> tuple[int, str]:
    """`lacme ARGS` with stderr on a pty (stdout a pipe): its exit status
    and what it wrote on the terminal."""
    master, slave = pty.openpty()
    try:
        process = subprocess.Popen(
            [LACME, f"--config={setup.config}", *args], stdout=subprocess.PIPE, stderr=slave
        )
        os.close(slave)
        slave = -1
        written = b""
        while True:
            try:
                data = os.read(master, 1 << 16)
            except OSError as e:  # the last slave descriptor closed
                if e.errno != errno.EIO:
                    raise
                break
            if not data:
                break
            written += data
        assert process.stdout is not None
        process.stdout.read()
        process.stdout.close()
        return process.wait(TIMEOUT), written.decode().replace("\r\n", "\n")
    finally:
        os.close(master)
        if slave != -1:
            os.close(slave)


def steps(text: str) -> list[str]:
    """The progress lines of TEXT, without their seconds."""
    return [
        re.sub(r" \(\d+\.\d s\)$", "", line)
        for line in text.splitlines()
        if re.search(r" \(\d+\.\d s\)$", line)
    ]


def test_progress_at_a_terminal_nothing_more_elsewhere(pebble: PebbleServer) -> None:
    with master_setup(pebble) as setup:
        setup.register()
        setup.one_section("site", subject="/CN=a.example.test", subjectAltName="DNS:b.example.test")
        status, terminal = at_a_terminal(setup, "newOrder")
        assert status == 0, terminal
        assert steps(terminal) == [
            "[site] validating 2 names...",
            "[site] finalizing...",
            "[site] installed",
        ], terminal
        # Not at a terminal: what it always wrote, no progress.
        piped = setup.run("newOrder", "--force")
        assert steps(piped.stderr) == [], piped.stderr
        # -v: every step, terminal or not.
        verbose = setup.run("newOrder", "--force", "-v")
        assert steps(verbose.stderr) == [
            "[site] ordering 2 names",
            "[site] order placed",
            "[site] validating 2 names...",
            "[site] finalizing...",
            "[site] issued: verifying",
            "[site] installed",
        ], verbose.stderr
        status, dry = at_a_terminal(setup, "newOrder", "--dry-run")
        assert status == 0, dry
        assert steps(dry) == ["[site] validating 2 names...", "[site] validated"], dry
