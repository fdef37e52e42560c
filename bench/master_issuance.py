"""Issuing many certificates with our lacme versus Perl lacme 0.8.2, end to end.

Run by hand, as root, not from the test suite (see bench/README.md):

    /opt/lacme-test-venv/bin/python bench/master_issuance.py

Each side runs `lacme newOrder` once for COUNT sections (one RSA-2048 key and
two names each) against the same local Pebble, with all four of its own
processes: Perl's master, lacme-accountd, client and webserver, or ours.
Meanwhile /proc is sampled for the peak resident memory (VmHWM) of every
process of each kind.  Then `--help` of both commands is timed.
"""

import argparse
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Self

# The Pebble bench and the drivers of the test suite.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from support.commands import ACCOUNTD, CONTACT, PERL_ACCOUNTD, PERL_LACME
from support.commands import LACME as OUR_LACME
from support.masters import check_issued, master_setup, perl_master_setup
from support.pebble import PebbleServer, running_pebble
from support.pki import new_key_file
from support.system import temporary_directory

KINDS = ("master", "accountd", "client", "webserver")


def kind_of(argv: list[str]) -> str | None:
    """Which lacme process ARGV (a /proc cmdline) is, Perl's or ours."""
    words = set(argv)
    if words & {str(PERL_LACME), str(OUR_LACME)}:
        return "master"
    if words & {str(PERL_ACCOUNTD), str(ACCOUNTD)}:
        return "accountd"
    if words & {"/usr/libexec/lacme/client", "lacme.client"}:
        return "client"
    if words & {"/usr/libexec/lacme/webserver", "lacme.webserver"}:
        return "webserver"
    return None


def vm_hwm(entry: Path) -> int:
    """The peak resident memory (VmHWM, KiB) of the process at /proc ENTRY so
    far; 0 for a kernel thread, OSError once it has exited."""
    for line in (entry / "status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


class ProcSampler:
    """Calls `sample()` every INTERVAL seconds in a thread, while in a `with`."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample([entry for entry in Path("/proc").iterdir() if entry.name.isdigit()])
            time.sleep(self.interval)

    def sample(self, entries: list[Path]) -> None:
        raise NotImplementedError


class PeakSampler(ProcSampler):
    """The largest VmHWM (KiB) seen per kind of lacme process."""

    def __init__(self, interval: float) -> None:
        super().__init__(interval)
        self.peaks: dict[str, int] = dict.fromkeys(KINDS, 0)
        self.pids: dict[str, set[int]] = {kind: set() for kind in KINDS}

    def sample(self, entries: list[Path]) -> None:
        for entry in entries:
            try:
                argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
                kind = kind_of(argv)
                if kind is not None:
                    self.peaks[kind] = max(self.peaks[kind], vm_hwm(entry))
                    self.pids[kind].add(int(entry.name))
            except (OSError, ValueError):
                pass  # it exited meanwhile


@dataclass(frozen=True)
class Section:
    """A section of lacme-certs.conf: its name, names, key and chain file."""

    name: str
    names: tuple[str, ...]
    key: Path
    chain: Path


def numbered_sections(directory: Path, keys: list[Path], label: str = "") -> list[Section]:
    """A section per key: sNN (LABELsNN.example.test, www.LABELsNN.example.test)."""
    return [
        Section(
            f"{label}s{i:02}",
            (f"{label}s{i:02}.example.test", f"www.{label}s{i:02}.example.test"),
            key,
            directory / f"{label}s{i:02}.pem",
        )
        for i, key in enumerate(keys)
    ]


def sections(pebble: PebbleServer, specs: list[Section]) -> str:
    """lacme-certs.conf for SPECS, each trusting Pebble's roots."""
    lines = [f"CAfile = {pebble.roots_file}"]
    for spec in specs:
        lines += [
            f"[{spec.name}]",
            f"certificate-key = {spec.key}",
            f"certificate-chain = {spec.chain}",
            f"subject = /CN={spec.names[0]}",
            f"subjectAltName = {', '.join(f'DNS:{name}' for name in spec.names)}",
        ]
    return "\n".join(lines) + "\n"


@contextmanager
def side(
    pebble: PebbleServer, name: str
) -> Iterator[tuple[Path, Callable[..., subprocess.CompletedProcess[str]]]]:
    """A registered RSA-2048 account for SIDE ("Perl" or "ours"): its
    directory, where lacme-certs.conf goes, and how to run its lacme."""
    with ExitStack() as stack:
        run: Callable[..., subprocess.CompletedProcess[str]]
        if name == "Perl":
            perl = stack.enter_context(
                perl_master_setup(pebble, accountd_command=[str(PERL_ACCOUNTD)])
            )
            directory, run = perl.directory, perl.run
        else:
            ours = stack.enter_context(master_setup(pebble, account_key_kind="rsa2048"))
            directory, run = ours.directory, ours.run
        run("account", "--register", "--tos-agreed", CONTACT)
        yield directory, run


def check(pebble: PebbleServer, specs: list[Section]) -> None:
    """Every chain of SPECS is for its names and key, up to Pebble's root."""
    for spec in specs:
        key = serialization.load_pem_private_key(spec.key.read_bytes(), None)
        chain = x509.load_pem_x509_certificates(spec.chain.read_bytes())
        check_issued(pebble.roots_file, chain, spec.names, key.public_key())


def help_time(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20, help="sections (certificates)")
    parser.add_argument("--interval", type=float, default=0.005, help="sampling period (s)")
    parser.add_argument("--help-runs", type=int, default=20, help="runs of each --help")
    args = parser.parse_args()

    seconds: dict[str, float] = {}
    peaks: dict[str, dict[str, int]] = {}
    with (
        running_pebble() as pebble,
        ExitStack() as stack,
    ):
        keys_dir = temporary_directory(stack, "lacme-bench-keys-")
        keys = [keys_dir / f"{i}.key" for i in range(args.count)]
        for path in keys:
            new_key_file(path, "rsa2048")
        for name in ("Perl", "ours"):
            with side(pebble, name) as (directory, run):
                specs = numbered_sections(directory, keys)
                (directory / "lacme-certs.conf").write_text(sections(pebble, specs))
                print(f"{name}: issuing {args.count} certificates", file=sys.stderr)
                with PeakSampler(args.interval) as sampler:
                    start = time.monotonic()
                    run("newOrder")
                    seconds[name] = time.monotonic() - start
                check(pebble, specs)
                peaks[name] = sampler.peaks
                print(f"{name}: {seconds[name]:.1f} s, peaks {sampler.peaks} KiB", file=sys.stderr)

    helps = {
        ("lacme", "Perl"): help_time([str(PERL_LACME), "--help"], args.help_runs),
        ("lacme", "ours"): help_time([str(OUR_LACME), "--help"], args.help_runs),
        ("lacme-accountd", "Perl"): help_time([str(PERL_ACCOUNTD), "--help"], args.help_runs),
        ("lacme-accountd", "ours"): help_time([str(ACCOUNTD), "--help"], args.help_runs),
    }

    def row(label: str, perl: float, ours: float, unit: str) -> None:
        print(f"{label:34}{perl:>10.1f}{ours:>10.1f}{ours / perl:>11.2f}  {unit}")

    print(f"{'':34}{'Perl':>10}{'ours':>10}{'ours/Perl':>11}")
    row(f"wall time, {args.count} certificates", seconds["Perl"], seconds["ours"], "s")
    for kind in KINDS:
        row(f"peak RSS, {kind}", peaks["Perl"][kind] / 1024, peaks["ours"][kind] / 1024, "MiB")
    row(
        "peak RSS, sum of the four",
        sum(peaks["Perl"].values()) / 1024,
        sum(peaks["ours"].values()) / 1024,
        "MiB",
    )
    for command in ("lacme", "lacme-accountd"):
        row(
            f"{command} --help",
            helps[command, "Perl"] * 1000,
            helps[command, "ours"] * 1000,
            "ms (median)",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
