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
from pathlib import Path

# The Pebble bench and the drivers of the test suite.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from cryptography import x509

from support.commands import ACCOUNTD, CONTACT, PERL_ACCOUNTD, PERL_LACME
from support.commands import LACME as OUR_LACME
from support.masters import master_setup, perl_master_setup
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


class PeakSampler:
    """Samples /proc every INTERVAL seconds: the largest VmHWM (KiB) seen per kind."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.peaks: dict[str, int] = dict.fromkeys(KINDS, 0)
        self.pids: dict[str, set[int]] = {kind: set() for kind in KINDS}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "PeakSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    self._sample(entry)
            time.sleep(self.interval)

    def _sample(self, entry: Path) -> None:
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            kind = kind_of(argv)
            if kind is None:
                return
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peaks[kind] = max(self.peaks[kind], int(line.split()[1]))
                    self.pids[kind].add(int(entry.name))
        except (OSError, ValueError):
            pass  # it exited meanwhile


def sections(directory: Path, pebble: PebbleServer, count: int, keys: list[Path]) -> str:
    lines = [f"CAfile = {pebble.roots_file}"]
    for i in range(count):
        lines += [
            f"[s{i:02}]",
            f"certificate-key = {keys[i]}",
            f"certificate-chain = {directory / f's{i:02}.pem'}",
            f"subject = /CN=s{i}.example.test",
            f"subjectAltName = DNS:s{i}.example.test, DNS:www.s{i}.example.test",
        ]
    return "\n".join(lines) + "\n"


@contextmanager
def side(
    pebble: PebbleServer, name: str, count: int, keys: list[Path]
) -> Iterator[tuple[Path, Callable[..., subprocess.CompletedProcess[str]]]]:
    """A registered account and COUNT sections for SIDE: (directory, run)."""
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
        (directory / "lacme-certs.conf").write_text(sections(directory, pebble, count, keys))
        yield directory, run


def check(directory: Path, count: int) -> None:
    for i in range(count):
        chain = x509.load_pem_x509_certificates((directory / f"s{i:02}.pem").read_bytes())
        if len(chain) < 2:
            raise SystemExit(f"{directory}/s{i:02}.pem: no chain")


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
            with side(pebble, name, args.count, keys) as (directory, run):
                print(f"{name}: issuing {args.count} certificates", file=sys.stderr)
                with PeakSampler(args.interval) as sampler:
                    start = time.monotonic()
                    run("newOrder")
                    seconds[name] = time.monotonic() - start
                check(directory, args.count)
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
