"""What confinement (Landlock and seccomp, lacme.confinement) costs an issuance.

Run by hand, as root, not from the test suite (see bench/README.md):

    /opt/lacme-test-venv/bin/python bench/confinement_cost.py

Against one local Pebble, our lacme registers two accounts, one with every
process confined (the default), one with `confinement = No` for the client,
the webservers and lacme-accountd; then, for each of `--rounds` rounds, both
run `lacme newOrder` for `--count` new sections (an RSA-2048 key and two
names each), in turns, which comes first alternating.  Every chain is
checked.  The medians of the wall time and of the CPU time of the run
(lacme and every process it waited for) are compared, and the mean of the
rounds' differences in wall time given with its standard error.
"""

import argparse
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

# The Pebble bench and the drivers of the test suite.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from master_issuance import check, numbered_sections, sections

from support.commands import CONTACT
from support.masters import MasterSetup, master_setup
from support.pebble import PebbleServer, running_pebble
from support.pki import new_key_file
from support.system import temporary_directory

MODES = ("confined", "unconfined")


@contextmanager
def registered(pebble: PebbleServer, mode: str) -> Iterator[MasterSetup]:
    """Our lacme with every process in MODE, its account registered."""
    off = ["confinement = No"] if mode == "unconfined" else []
    with master_setup(
        pebble, account_key_kind="rsa2048", extra_client=off, extra_webserver=off
    ) as setup:
        if off:
            with (setup.directory / "lacme-accountd.conf").open("a") as accountd_config:
                accountd_config.write("confinement = No\n")
        setup.run("account", "--register", "--tos-agreed", CONTACT)
        yield setup


def children_cpu() -> float:
    usage = os.times()
    return usage.children_user + usage.children_system


def issue(
    pebble: PebbleServer, setup: MasterSetup, keys: list[Path], label: str
) -> tuple[float, float]:
    """`lacme newOrder` for new sections LABELsNN: (wall, CPU) seconds."""
    specs = numbered_sections(setup.directory, keys, label)
    (setup.directory / "lacme-certs.conf").write_text(sections(pebble, specs))
    cpu, start = children_cpu(), time.monotonic()
    setup.run("newOrder")
    wall = time.monotonic() - start
    cpu = children_cpu() - cpu
    check(pebble, specs)
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10, help="certificates per run")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each mode")
    args = parser.parse_args()

    walls: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpus: dict[str, list[float]] = {mode: [] for mode in MODES}
    with running_pebble() as pebble, ExitStack() as stack:
        keys_dir = temporary_directory(stack, "lacme-bench-keys-")
        keys = [keys_dir / f"{i}.key" for i in range(args.count)]
        for path in keys:
            new_key_file(path, "rsa2048")
        setups = {mode: stack.enter_context(registered(pebble, mode)) for mode in MODES}
        for round_number in range(args.rounds):
            order = MODES if round_number % 2 == 0 else MODES[::-1]
            for mode in order:
                wall, cpu = issue(pebble, setups[mode], keys, f"r{round_number}")
                walls[mode].append(wall)
                cpus[mode].append(cpu)
                print(
                    f"round {round_number} {mode}: {wall:.2f} s, CPU {cpu:.2f} s", file=sys.stderr
                )

    # Rounds pair the two modes a few seconds apart: the load of the
    # machine changes less within a round than across them.
    differences = [c - u for c, u in zip(walls["confined"], walls["unconfined"], strict=True)]
    mean = statistics.mean(differences)
    error = statistics.stdev(differences) / len(differences) ** 0.5 if len(differences) > 1 else 0.0
    print(f"{'':36}{'confined':>10}{'unconfined':>12}{'cost':>8}")
    for label, values in (("wall time", walls), ("CPU time", cpus)):
        confined = statistics.median(values["confined"])
        unconfined = statistics.median(values["unconfined"])
        cost = (confined / unconfined - 1) * 100
        print(
            f"{f'{label}, {args.count} certificates (median)':36}"
            f"{confined:>9.2f}s{unconfined:>11.2f}s{cost:>+7.1f}%"
        )
    base = statistics.mean(walls["unconfined"])
    print(
        f"wall time, confined minus unconfined, mean of the rounds: {mean:+.3f} s"
        f" ± {error:.3f} (standard error), {mean / base:+.1%} ± {error / base:.1%}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
