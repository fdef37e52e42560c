"""A stand-in ACME client for the master's tests: no ACME server, a chosen answer.

    python fake_client.py MODE CA_DIR COMMAND CONFIG_FD SOCKET_FD [DOMAIN ...]

For newOrder it reads the CSR (DER) on stdin and, by MODE, writes on stdout:
good (a chain for the CSR's key from the CA in CA_DIR), wrong-key (the same
for another key), rogue (for the CSR's key, from a CA nobody trusts),
padded (good, then another CA's certificates and 3,000 copies of the
intermediate), older (good, but valid from 30 days ago), replay (CA_DIR's
replay.pem, as the test left it), garbage, empty; or hang: write a
challenge file in the working directory, announce it on stderr and wait to
be killed; or flood: FLOOD zero bytes; or orphan: as good, after leaving a
grandchild behind (support.orphans).  Attacks on the master's cleanup of
the working directory, the challenge directory (issue 13, finding 2):
fifo moves the directory away, puts a FIFO at its path, announces it on
stderr and waits to be killed; deep leaves a tree DEPTH directories deep
with a FIFO at the bottom, then is good; exchange leaves a directory `d`
holding a token and a FIFO `f` for tests/exchanging.py to swap, then is
good.  `directory` prints an empty directory
(no profiles, no renewal information).  Other commands succeed silently.
It reads accountd's greeting (but for `directory`, which has no accountd
behind SOCKET_FD), but never asks for a signature.
"""

import datetime
import os
import sys
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from support.orphans import leave_orphan
from support.pki import load_ca, make_ca, pem
from support.system import deep_tree

FLOOD = 256 << 20
DEPTH = 1500


def plant_fifo() -> None:
    """Move the working directory away, and put a FIFO at its path."""
    here = os.getcwd()
    os.rename(here, here + ".moved")
    os.mkfifo(here)
    sys.stderr.write(f"fake client: fifo at {here}\n")
    sys.stderr.flush()


def main() -> int:
    mode, ca_dir, command, _config_fd, socket_fd, *domains = sys.argv[1:]
    if command == "directory":
        print("{}")
        return 0
    # As a real client: take accountd's greeting (two lines), then hang up.
    with open(int(socket_fd), "rb", buffering=0) as accountd:
        greeting = b""
        while greeting.count(b"\n") < 2:
            byte = accountd.read(1)
            if not byte:
                raise SystemExit(f"fake client: no greeting from accountd: {greeting!r}")
            greeting += byte
    if not greeting.startswith(b"1 OK "):
        raise SystemExit(f"fake client: bad greeting from accountd: {greeting!r}")
    if command != "newOrder":
        return 0
    csr = x509.load_der_x509_csr(sys.stdin.buffer.read())
    if mode == "flood":
        chunk = bytes(1 << 20)
        for _ in range(FLOOD // len(chunk)):
            sys.stdout.buffer.write(chunk)
        return 0
    if mode == "orphan":
        leave_orphan()
        mode = "good"
    if mode == "deep":
        deep_tree(".", DEPTH)
        mode = "good"
    if mode == "exchange":
        os.mkdir("d")
        Path("d/token").write_text("key authorization\n")
        os.mkfifo("f")
        mode = "good"
    if mode in {"hang", "fifo"}:
        Path("token").write_text("key authorization\n")
        if mode == "fifo":
            plant_fifo()
        sys.stderr.write("fake client: waiting\n")
        sys.stderr.flush()
        while True:
            time.sleep(60)
    ca = load_ca(Path(ca_dir))
    if mode == "good":
        out = pem(ca.issue(csr.public_key(), domains), ca.intermediate)
    elif mode == "wrong-key":
        other = ec.generate_private_key(ec.SECP256R1()).public_key()
        out = pem(ca.issue(other, domains), ca.intermediate)
    elif mode == "padded":
        foreign = make_ca("foreign")
        leaf = ca.issue(csr.public_key(), domains)
        out = pem(leaf, ca.intermediate, foreign.root, foreign.intermediate)
        out += pem(ca.intermediate) * 3000
    elif mode == "older":
        start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
        out = pem(ca.issue(csr.public_key(), domains, not_before=start), ca.intermediate)
    elif mode == "replay":
        out = (Path(ca_dir) / "replay.pem").read_bytes()
    elif mode == "rogue":
        rogue = make_ca("rogue")
        out = pem(rogue.issue(csr.public_key(), domains), rogue.intermediate)
    elif mode == "garbage":
        out = b"<html>certificate</html>\n"
    elif mode == "empty":
        out = b""
    else:
        raise SystemExit(f"unknown mode {mode}")
    sys.stdout.buffer.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
