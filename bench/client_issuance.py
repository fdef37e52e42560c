"""Issuing certificates through Perl lacme 0.8.2's master with its own ACME
client and webserver, versus with ours, from a local Pebble.

Run by hand, as root, not from the test suite (see bench/README.md):

    /opt/lacme-test-venv/bin/python bench/client_issuance.py
"""

import argparse
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from support.commands import ACCOUNTD, CONTACT
from support.masters import PerlMasterSetup, perl_master_setup
from support.pebble import PebbleServer, running_pebble

# The Pebble bench and the Perl lacme driver of the test suite.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


PYTHON = sys.executable
# Each side's client and webserver commands; None: Perl lacme's own.
SIDES: dict[str, tuple[Sequence[str] | None, Sequence[str] | None]] = {
    "Perl": (None, None),
    "ours": ([PYTHON, "-m", "lacme.client"], [PYTHON, "-m", "lacme.webserver"]),
}


@contextmanager
def setup_for(pebble: PebbleServer, side: str) -> Iterator[PerlMasterSetup]:
    """Perl's master with SIDE's client and webserver, and our lacme-accountd for both."""
    client, webserver = SIDES[side]
    with perl_master_setup(
        pebble, accountd_command=[str(ACCOUNTD)], client_command=client, webserver_command=webserver
    ) as setup:
        yield setup


def issue(setup: PerlMasterSetup, count: int) -> tuple[int, float]:
    """`lacme newOrder --force` COUNT times: (successes, wall time)."""
    successes = 0
    start = time.monotonic()
    for _ in range(count):
        result = setup.run("newOrder", "--force", check=False)
        if result.returncode == 0:
            setup.check_certificate()
            successes += 1
        else:
            # The client's error, then the master's.
            for line in result.stderr.strip().splitlines()[-2:]:
                print(f"  failed: {line}", file=sys.stderr)
    return successes, time.monotonic() - start


def wall_time(count: int) -> dict[str, float]:
    """Seconds per certificate of each side, without nonce rejection."""
    per_certificate: dict[str, float] = {}
    with running_pebble() as pebble:
        for side in SIDES:
            with setup_for(pebble, side) as setup:
                setup.register_and_issue()
                successes, seconds = issue(setup, count)
                if successes != count:
                    raise SystemExit(f"{side}: only {successes} of {count} certificates")
                per_certificate[side] = seconds / count
                print(f"{side}: {seconds / count:.2f} s per certificate", file=sys.stderr)
    return per_certificate


def successes(rate: int, count: int) -> dict[str, int]:
    """Certificates each side installs out of COUNT at RATE% nonce rejection.

    The account is registered once, by our client, and shared: only
    issuance is counted (Perl's client often can't register at 50%).
    """
    result: dict[str, int] = {}
    with running_pebble(nonce_reject=rate) as pebble, ExitStack() as stack:
        ours = stack.enter_context(setup_for(pebble, "ours"))
        ours.run("account", "--register", "--tos-agreed", CONTACT)
        for side in SIDES:
            setup = ours
            if side != "ours":
                setup = stack.enter_context(setup_for(pebble, side))
                shutil.copyfile(ours.account_key_path, setup.account_key_path)
            result[side], _ = issue(setup, count)
            print(f"{side} at {rate}%: {result[side]}/{count}", file=sys.stderr)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20, help="certificates per run")
    parser.add_argument(
        "--rates", type=int, nargs="*", default=[5, 50], help="nonce rejection percentages"
    )
    args = parser.parse_args()

    per_certificate = wall_time(args.count)
    counts = {rate: successes(rate, args.count) for rate in args.rates}

    print(f"{'':32}{'Perl':>10}{'ours':>10}{'ours/Perl':>11}")
    print(
        f"{'s per certificate, no rejection':32}"
        f"{per_certificate['Perl']:>10.2f}{per_certificate['ours']:>10.2f}"
        f"{per_certificate['ours'] / per_certificate['Perl']:>11.2f}"
    )
    for rate, count in counts.items():
        label = f"installed at {rate}% rejection"
        print(f"{label:32}{count['Perl']:>7}/{args.count}{count['ours']:>7}/{args.count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
