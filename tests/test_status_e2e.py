"""`lacme status` after a real issuance from Pebble, as an administrator runs
it: what it shows of the certificate installed, and that it needs neither
accountd, nor the network, nor any child process (unit tests of every
field: tests/test_status.py)."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path

import pytest

from support.commands import LACME, TIMEOUT
from support.faults import FaultProxy, offer_renewal_info
from support.masters import leaf_of, master_setup
from support.pebble import PebbleServer

pytestmark = [pytest.mark.e2e, pytest.mark.root]

DAY = datetime.timedelta(days=1)
WHEN = "%Y-%m-%d %H:%M:%S UTC"
# Runs `lacme` in this interpreter, stopped (exit 99, naming the event) by
# the first attempt to start a process or to open a socket: the audit
# events (PEP 578) every fork, exec, spawn and socket goes through.
GUARDED = """
import os, sys

FORBIDDEN = {
    "os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn", "os.system",
    "subprocess.Popen", "socket.__new__", "socket.socketpair", "socket.connect", "socket.bind",
}

def guard(event, args):
    if event in FORBIDDEN:
        sys.stderr.write(f"forbidden: {event}\\n")
        sys.stderr.flush()
        os._exit(99)

sys.addaudithook(guard)
from lacme.master_command import main
sys.exit(main(sys.argv[1:]))
"""


def run(argv: list[str | Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)


def test_status_of_a_certificate_issued(pebble: PebbleServer, tmp_path: Path) -> None:
    with master_setup(pebble) as setup:
        setup.register()
        chain = setup.one_section(subject="/CN=a.example.test", subjectAltName="DNS:b.example.test")
        setup.run("newOrder")
        leaf = leaf_of(chain)
        # No accountd: a socket that is not there instead of [accountd].
        absent = tmp_path / "no-accountd.socket"
        options = [f"--config={setup.config}", f"--socket={absent}"]

        shown = run([LACME, *options, "status"])
        assert (shown.returncode, shown.stderr) == (0, "")
        lines = shown.stdout.splitlines()
        assert lines[:5] == [
            "[site] ok",
            f"  certificate  {chain}",
            "  names        a.example.test, b.example.test",
            "  key          ECDSA P-256",
            f"  issuer       {leaf.issuer.rfc4514_string()}",
        ]
        assert lines[5].startswith(f"  not after    {leaf.not_valid_after_utc:{WHEN}} (")
        assert lines[6].startswith("  renewal      ")
        assert lines[6].endswith(", min-days = 21")
        assert lines[7].startswith("  last result  installed ")

        # The same, in a network namespace whose loopback is down, and
        # with no process started nor socket opened.
        guarded = run(
            ["unshare", "--net", sys.executable, "-c", GUARDED, *options, "status", "--json"]
        )
        assert (guarded.returncode, guarded.stderr) == (0, "")
        document = json.loads(guarded.stdout)
        now = datetime.datetime.fromisoformat(document["now"])
        assert document["ok"] is True
        (section,) = document["sections"]
        not_after = leaf.not_valid_after_utc
        assert section["section"] == "site"
        assert section["state"] == "ok"
        assert section["names"] == ["a.example.test", "b.example.test"]
        assert section["issuer"] == leaf.issuer.rfc4514_string()
        assert section["serial"] == f"{leaf.serial_number:x}"
        assert datetime.datetime.fromisoformat(section["not_after"]) == not_after
        assert section["days_left"] == (not_after - now) // DAY
        assert section["renewal"]["reason"] == "min-days"
        assert datetime.datetime.fromisoformat(section["renewal"]["at"]) == not_after - min(
            21 * DAY, (not_after - leaf.not_valid_before_utc) / 3
        )
        assert section["last_result"]["outcome"] == "installed"

        # A broken section is one line, exit 1, for monitoring.
        chain.write_text("garbage\n")
        broken = run([LACME, *options, "status", "site"])
        assert broken.returncode == 1
        assert broken.stdout.startswith("[site] broken\n")
        assert f"  problem      {chain} holds no PEM certificate\n" in broken.stdout
        unknown = run([LACME, *options, "status", "other"])
        assert (unknown.returncode, unknown.stdout) == (1, "")
        assert unknown.stderr == f"Error: no section [other] in {setup.certs_config}\n"


def test_status_shows_the_renewal_window_a_run_recorded(fault_proxy: FaultProxy) -> None:
    now = datetime.datetime.now(datetime.UTC)
    start, end = now + 30 * DAY, now + 31 * DAY
    offer_renewal_info(fault_proxy, (start.isoformat(), end.isoformat()))
    with master_setup(fault_proxy) as setup:
        setup.register()
        chain = setup.one_section(subject="/CN=a.example.test")
        setup.run("newOrder")
        # The second run asks for the window of the certificate the first installed.
        setup.run("newOrder")
        recorded = json.loads(Path(f"{chain}.ari").read_text())
        shown = run([LACME, f"--config={setup.config}", "status", "--json"])
        assert (shown.returncode, shown.stderr) == (0, "")
        (section,) = json.loads(shown.stdout)["sections"]
        assert section["state"] == "ok"
        assert section["renewal"]["reason"] == "ari"
        assert section["renewal"]["at"] == recorded["renewAt"]
        window = f"renewal window {start:{WHEN}} to {end:{WHEN}}"
        assert section["renewal"]["why"] == window
        assert section["ari"]["start"] == recorded["start"]
        text = run([LACME, f"--config={setup.config}", "status"]).stdout
        renew_at = datetime.datetime.fromisoformat(recorded["renewAt"])
        assert f"  renewal      {renew_at:{WHEN}} (in " in text
        assert f"), {window}\n" in text


def test_the_guard_stops_a_command_that_needs_a_process(pebble: PebbleServer) -> None:
    # What makes the test above able to fail: newOrder starts children.
    with master_setup(pebble) as setup:
        setup.one_section(subject="/CN=a.example.test")
        guarded = run([sys.executable, "-c", GUARDED, f"--config={setup.config}", "newOrder"])
        assert guarded.returncode == 99
        assert guarded.stderr.startswith("forbidden: ")
