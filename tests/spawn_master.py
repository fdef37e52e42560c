"""The master-like programs tests/test_privdrop.py and tests/test_challenges.py
run, and what they share with them.

As a script, `python spawn_master.py MODE`:

- `firewall`: meant to run inside `unshare -n`; brings up lo, runs
  challenge_setup with `iptables = Yes` once on no tables at all, then after
  adding an administrator's rule (fetching a token through each address),
  then with an exception inside; prints a JSON report of the rules at each
  step;
- `stale-firewall`: meant to run inside `unshare -n`; adds rules tagged as
  a killed master's would be, and others that are not (untagged, a live
  master's, another boot's, other comments, another chain), then runs
  challenge_setup with `iptables = Yes`; prints a JSON report of the rules
  before, during and after, and the killed master's tag;
- `hold LISTEN`: like the master during an order: installs SIGTERM/SIGINT
  handlers raising an exception, enters challenge_setup, prints a JSON line
  (directory, webserver pids) and waits to be signalled;
- `orphan`: spawns `sleep` as _lacme-www, prints its pid, and waits to be
  killed.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from lacme.challenges import challenge_setup
from lacme.config import WebserverConfig
from lacme.leftovers import current, of
from lacme.privdrop import spawn
from lacme.webserver import PREFIX
from support.proc import children
from support.users import client_credentials, www_credentials

CHALLENGE = PREFIX.decode()
FIREWALL_PROGRAMS = ("iptables", "ip6tables")


def http_get(family: socket.AddressFamily, address: str | tuple[str, int], path: str) -> bytes:
    """The raw response to `GET PATH` on a webserver at ADDRESS."""
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(address)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks)


def firewall_rules() -> dict[str, list[str]]:
    return {
        program: subprocess.run(
            [f"/usr/sbin/{program}", "-S"], capture_output=True, text=True, check=True
        ).stdout.splitlines()
        for program in FIREWALL_PROGRAMS
    }


class Interrupted(Exception):
    """What the master's signal handlers raise."""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def _firewall() -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    client, www = client_credentials(), www_credentials()
    settings = WebserverConfig(
        listen="127.0.0.1 [::1]:8080, [::]:8081 [::ffff:127.0.0.1]:8082", iptables=True
    )
    # A fresh namespace has no filter table yet: iptables-save shows nothing.
    with challenge_setup(settings, client, www, debug=False):
        pass
    owner = current()
    assert owner is not None
    report: dict[str, object] = {"after_fresh": firewall_rules(), "tag": owner.tag}
    admin = ["-p", "tcp", "--dport", "9", "-j", "DROP"]
    for program in FIREWALL_PROGRAMS:
        subprocess.run([f"/usr/sbin/{program}", "-A", "INPUT", *admin], check=True)
    report["before"] = firewall_rules()
    with challenge_setup(settings, client, www, debug=False) as directory:
        (Path(directory) / "tok").write_text("tok.key-authorization")
        report["during"] = firewall_rules()
        report["answers"] = [
            http_get(family, address, CHALLENGE + "tok").decode(errors="replace")
            for family, address in (
                (socket.AF_INET, ("127.0.0.1", 80)),
                (socket.AF_INET6, ("::1", 8080)),
                (socket.AF_INET, ("127.0.0.1", 8081)),
                (socket.AF_INET, ("127.0.0.1", 8082)),
            )
        ]
    report["after"] = firewall_rules()
    try:
        with challenge_setup(settings, client, www, debug=False):
            raise Interrupted("inside")
    except Interrupted:
        report["after_exception"] = firewall_rules()
    print(json.dumps(report))


def _stale_firewall() -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    sleeper = subprocess.Popen(["sleep", "60"])
    live = of(sleeper.pid)
    gone = subprocess.Popen(["sleep", "60"])
    stale = of(gone.pid)
    gone.kill()
    gone.wait()
    assert live is not None
    assert stale is not None
    elsewhere = stale._replace(boot="0" * 32)
    accept = ["-p", "tcp", "-m", "tcp", "--dport", "80", "-j", "ACCEPT"]
    for program in FIREWALL_PROGRAMS:
        for chain, comment in (
            ("INPUT", stale.tag),
            ("OUTPUT", stale.tag),
            ("INPUT", live.tag),
            ("INPUT", elsewhere.tag),
            ("INPUT", "lacme"),
            ("INPUT", f"{stale.tag} "),
            ("FORWARD", stale.tag),
            ("INPUT", None),  # lacme 0.8.2's
        ):
            tag = ["-m", "comment", "--comment", comment] if comment is not None else []
            subprocess.run([f"/usr/sbin/{program}", "-I", chain, *tag, *accept], check=True)
    report: dict[str, object] = {"before": firewall_rules(), "stale": stale.tag}
    settings = WebserverConfig(listen="127.0.0.1:8080 [::1]:8081", iptables=True)
    with challenge_setup(settings, client_credentials(), www_credentials(), debug=False):
        report["during"] = firewall_rules()
    report["after"] = firewall_rules()
    sleeper.kill()
    sleeper.wait()
    print(json.dumps(report))


def _hold(listen: str) -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    client, www = client_credentials(), www_credentials()
    try:
        with challenge_setup(WebserverConfig(listen=listen), client, www, debug=True) as directory:
            (Path(directory) / "tok").write_text("held")
            print(json.dumps({"directory": directory, "webservers": children(os.getpid())}))
            sys.stdout.flush()
            time.sleep(60)
    except Interrupted as e:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_IGN)
        print(f"interrupted by {e}", file=sys.stderr)
        sys.exit(3)


def _orphan() -> None:
    www = www_credentials()
    proc = spawn(["sleep", "60"], www)
    print(proc.pid)
    sys.stdout.flush()
    time.sleep(60)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "firewall":
        _firewall()
    elif mode == "stale-firewall":
        _stale_firewall()
    elif mode == "hold":
        _hold(sys.argv[2])
    elif mode == "orphan":
        _orphan()
    else:
        sys.exit(f"unknown mode {mode}")
