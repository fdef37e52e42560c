"""Issuing certificates with ours, Perl lacme 0.8.2, acme-tiny, uacme and certbot.

Run by hand, as root, after bench/setup-peers (see bench/README.md):

    /opt/lacme-test-venv/bin/python bench/peer_issuance.py --rounds 3

All five clients get certificates from one local Pebble, one after the other
in an order that rotates each round: one certificate (first issuance), its
renewal, then COUNT certificates in each tool's best mode.  Every certificate
is checked: its names and key, and its chain up to Pebble's root.  Each run
is measured: wall time, CPU time of its whole process tree (wait4), the peak
of its processes' resident memory summed (sampled from /proc), and the
requests Pebble logged.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.metadata
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# The Pebble bench and the drivers of the test suite; the benches beside this file.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import verification
from master_issuance import ProcSampler, Section, numbered_sections, sections, side, vm_hwm

from support.commands import CONTACT, PERL_ACCOUNTD, PERL_LACME
from support.commands import LACME as OUR_LACME
from support.masters import check_issued
from support.pebble import PebbleServer, running_pebble
from support.pki import new_key_file
from support.system import temporary_directory

PEERS_VENV = Path(os.environ.get("LACME_BENCH_VENV", "/opt/lacme-bench-venv"))
TOOLS = ("ours", "Perl", "acme-tiny", "uacme", "certbot")
WORKS = ("first issuance", "renewal", "batch")
# Only against a hang: a run that takes this long has failed anyway.
TIMEOUT = 300.0
PR_SET_CHILD_SUBREAPER = 36
# The bench's environment, less what would change how Python tools run.
ENVIRONMENT = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}


class ToolFailed(Exception):
    """A tool's run failed or its certificate is wrong; the message says how."""


@dataclass
class Measure:
    """One measured piece of work: CERTS certificates, however many processes."""

    certs: int = 1
    wall: float = 0.0  # s
    cpu: float = 0.0  # s, user + sys of every process waited for
    rss: int = 0  # KiB, the peak over the runs of the sum over live processes
    requests: int = 0  # as logged by Pebble


def parent_of(entry: Path) -> int:
    """The parent pid of the process at /proc ENTRY (OSError once it exited)."""
    return int((entry / "stat").read_text().rpartition(")")[2].split()[1])


class TreeSampler(ProcSampler):
    """The peak of the summed VmHWM (KiB) of ROOT and its descendants alive at once.

    A process joins the tree when first seen with its parent in it; one that
    lives and dies between two samples is missed.  Each process counts by
    the VmHWM it was last seen with, so one caught between fork and exec,
    still showing its parent's pages, counts by the program it became."""

    def __init__(self, interval: float, root: int) -> None:
        super().__init__(interval)
        self.tree = {root}
        self.seen: set[int] = set()
        self.hwm: dict[int, int] = {}
        self.alive: set[frozenset[int]] = set()  # the tree's processes alive, per sample

    def sample(self, entries: list[Path]) -> None:
        alive = set()
        for entry in sorted(entries, key=lambda entry: int(entry.name)):
            pid = int(entry.name)
            try:
                if pid not in self.seen:
                    self.seen.add(pid)
                    if parent_of(entry) in self.tree:
                        self.tree.add(pid)
                hwm = vm_hwm(entry) if pid in self.tree else 0
                if hwm:  # not a zombie's
                    self.hwm[pid] = hwm
                    alive.add(pid)
            except (OSError, ValueError):
                pass  # it exited meanwhile
        self.alive.add(frozenset(alive))

    @property
    def peak(self) -> int:
        return max((sum(self.hwm[pid] for pid in pids) for pids in self.alive), default=0)


class Meter:
    """Runs and measures commands against PEBBLE, their output in LOGS."""

    def __init__(self, pebble: PebbleServer, interval: float, logs: Path) -> None:
        self.pebble = pebble
        self.interval = interval
        self.logs = logs
        self.runs = 0
        # What a measured process leaves orphaned becomes the bench's child, to
        # be waited for (and counted), instead of init's.
        if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")

    def requests(self) -> int:
        """Requests Pebble's ACME listener logged so far (one line each)."""
        log = (self.pebble.workdir / "pebble.log").read_text(errors="replace")
        return log.count(" -> calling handler()")

    def orphans(self) -> list[int]:
        """The bench's children but Pebble's: what measured processes left behind."""
        known = {proc.pid for proc in self.pebble.processes}
        found = []
        for entry in Path("/proc").iterdir():
            try:
                pid = int(entry.name) if entry.name.isdigit() else 0
                if pid and pid not in known and parent_of(entry) == os.getpid():
                    found.append(pid)
            except (OSError, ValueError):
                pass  # it exited meanwhile
        return found

    @contextmanager
    def measure(self, certs: int = 1) -> Iterator[Measure]:
        measure = Measure(certs)
        before = self.requests()
        start = time.monotonic()
        yield measure
        measure.wall = time.monotonic() - start
        measure.requests = self.requests() - before

    def run(
        self, measure: Measure, argv: Sequence[str | Path], env: dict[str, str] | None = None
    ) -> None:
        """Run ARGV to its end, adding its CPU time and memory to MEASURE."""
        self.runs += 1
        log = self.logs / f"{self.runs:04}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(arg) for arg in argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**ENVIRONMENT, **(env or {})},
                start_new_session=True,  # for the timeout's killpg
            )
        timer = threading.Timer(TIMEOUT, os.killpg, (proc.pid, signal.SIGKILL))
        timer.daemon = True
        timer.start()
        try:
            with TreeSampler(self.interval, proc.pid) as sampler:
                _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            measure.cpu += usage.ru_utime + usage.ru_stime
            for orphan in self.orphans():
                _, _, usage = os.wait4(orphan, 0)
                measure.cpu += usage.ru_utime + usage.ru_stime
        finally:
            timer.cancel()
            if proc.returncode is None:  # interrupted
                os.killpg(proc.pid, signal.SIGKILL)
                os.wait4(proc.pid, 0)
        measure.rss = max(measure.rss, sampler.peak)
        if proc.returncode != 0:
            tail = log.read_text(errors="replace").splitlines()[-15:]
            raise ToolFailed(
                f"{' '.join(map(str, argv))} exited {proc.returncode}:\n" + "\n".join(tail)
            )


def public_key_of(path: Path) -> Any:
    return serialization.load_pem_private_key(path.read_bytes(), None).public_key()


def quiet_handler(directory: Path) -> Callable[..., SimpleHTTPRequestHandler]:
    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    return partial(Handler, directory=str(directory))


@contextmanager
def static_responder(port: int, webroot: Path) -> Iterator[None]:
    """WEBROOT served on 127.0.0.1:PORT (a thread of the bench, not measured)."""
    server = ThreadingHTTPServer(("127.0.0.1", port), quiet_handler(webroot))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass
class Tool:
    """A client under test: set up once, then asked for certificates."""

    name: str
    pebble: PebbleServer
    directory: Path
    # Where Pebble's VA finds the challenges, if the tool has no webserver.
    webroot: Path | None = None
    failure: str | None = None
    results: dict[str, dict[str, list[Measure]]] = field(default_factory=dict)

    def absent(self) -> str | None:
        """Why the tool can't run here, if it can't."""
        return None

    def set_up(self, stack: ExitStack) -> None:
        """Register an account (not measured)."""

    def first(self, meter: Meter, measure: Measure, job: Section) -> None:
        raise NotImplementedError

    def renew(self, meter: Meter, measure: Measure, job: Section) -> None:
        raise NotImplementedError

    def batch(self, meter: Meter, jobs: list[Section]) -> list[tuple[str, Measure]]:
        """The certificates of JOBS, in each of the tool's ways: (way, measure)."""
        with meter.measure(len(jobs)) as measure:
            for job in jobs:
                self.first(meter, measure, job)
        return [(f"a loop of {len(jobs)}", measure)]

    def issued(self, job: Section) -> tuple[list[x509.Certificate], Any]:
        """The chain installed for JOB and the public key it must be for."""
        return x509.load_pem_x509_certificates(job.chain.read_bytes()), public_key_of(job.key)

    def check(self, jobs: list[Section]) -> None:
        for job in jobs:
            try:
                chain, public_key = self.issued(job)
                check_issued(self.pebble.roots_file, chain, job.names, public_key)
            except (OSError, ValueError, AssertionError, verification.VerificationError) as e:
                raise ToolFailed(f"{job.names[0]}: {e!r}") from e


@dataclass
class Lacme(Tool):
    """Ours or Perl's lacme, with its own accountd, client and webserver."""

    argv: list[str] = field(default_factory=list)

    def absent(self) -> str | None:
        commands = [OUR_LACME] if self.name == "ours" else [PERL_LACME, PERL_ACCOUNTD]
        missing = [str(path) for path in commands if not path.exists()]
        return f"no {', '.join(missing)}" if missing else None

    def set_up(self, stack: ExitStack) -> None:
        directory, _ = stack.enter_context(side(self.pebble, self.name))
        self.directory = directory
        command = OUR_LACME if self.name == "ours" else PERL_LACME
        self.argv = [str(command), f"--config={directory / 'lacme.conf'}", "newOrder"]

    def order(self, meter: Meter, measure: Measure, jobs: list[Section], *args: str) -> None:
        (self.directory / "lacme-certs.conf").write_text(sections(self.pebble, jobs))
        meter.run(measure, [*self.argv, *args])

    def first(self, meter: Meter, measure: Measure, job: Section) -> None:
        self.order(meter, measure, [job])

    def renew(self, meter: Meter, measure: Measure, job: Section) -> None:
        self.order(meter, measure, [job], "--force")

    def batch(self, meter: Meter, jobs: list[Section]) -> list[tuple[str, Measure]]:
        with meter.measure(len(jobs)) as measure:
            self.order(meter, measure, jobs)
        return [(f"{len(jobs)} sections, one newOrder", measure)]


@dataclass
class AcmeTiny(Tool):
    """acme-tiny: openssl(1) makes the CSR, acme-tiny writes the challenges
    into its --acme-dir and the chain on stdout."""

    def absent(self) -> str | None:
        if not (PEERS_VENV / "bin/acme-tiny").exists():
            return f"no {PEERS_VENV}/bin/acme-tiny (run bench/setup-peers)"
        return None

    def set_up(self, stack: ExitStack) -> None:
        self.webroot = self.directory / "webroot"
        (self.webroot / ".well-known/acme-challenge").mkdir(parents=True)
        new_key_file(self.directory / "account.key", "rsa2048")

    def acme_tiny(self, job: Section) -> str:
        return (
            f"{PEERS_VENV}/bin/acme-tiny --account-key {self.directory / 'account.key'}"
            f" --csr {job.chain}.csr --acme-dir {self.webroot}/.well-known/acme-challenge"
            f" --directory-url {self.pebble.directory_url} --disable-check --quiet"
            f" > {job.chain}"
        )

    def first(self, meter: Meter, measure: Measure, job: Section) -> None:
        san = ",".join(f"DNS:{name}" for name in job.names)
        script = (
            f"openssl req -new -sha256 -key {job.key} -subj /CN={job.names[0]}"
            f" -addext subjectAltName={san} -out {job.chain}.csr && exec {self.acme_tiny(job)}"
        )
        meter.run(measure, ["sh", "-c", script], {"SSL_CERT_FILE": str(self.pebble.ca_bundle)})

    def renew(self, meter: Meter, measure: Measure, job: Section) -> None:
        env = {"SSL_CERT_FILE": str(self.pebble.ca_bundle)}
        meter.run(measure, ["sh", "-c", f"exec {self.acme_tiny(job)}"], env)


HOOK = """#!/bin/sh
# uacme's hook: METHOD TYPE IDENT TOKEN KEY_AUTH; only http-01 is accepted.
file={challenges}/$4
case "$1:$2" in
    begin:http-01) printf %s "$5" >"$file" ;;
    done:http-01 | failed:http-01) rm -f "$file" ;;
    *) exit 1 ;;
esac
"""


@dataclass
class Uacme(Tool):
    """uacme, run in a mount namespace of its own where Pebble's listener CA
    is the system's bundle (libcurl has no other way in); its hook writes
    the challenges into a directory the bench serves."""

    def absent(self) -> str | None:
        missing = [name for name in ("uacme", "unshare") if shutil.which(name) is None]
        return f"no {', '.join(missing)} (run bench/setup-peers)" if missing else None

    def uacme(self, *args: str | Path) -> list[str | Path]:
        return [
            "unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" /etc/ssl/certs/ca-certificates.crt && exec "$@"',
            self.pebble.ca_bundle,
            "uacme", "--confdir", self.directory / "conf", "--acme-url",
            self.pebble.directory_url, "--type", "RSA", "--bits", "2048", "--no-ocsp",
            "--yes", "--hook", self.directory / "hook", *args,
        ]  # fmt: skip

    def set_up(self, stack: ExitStack) -> None:
        self.webroot = self.directory / "webroot"
        challenges = self.webroot / ".well-known/acme-challenge"
        challenges.mkdir(parents=True)
        hook = self.directory / "hook"
        hook.write_text(HOOK.format(challenges=challenges))
        hook.chmod(0o755)
        subprocess.run(
            self.uacme("new", CONTACT.removeprefix("mailto:")), check=True, capture_output=True
        )

    def first(self, meter: Meter, measure: Measure, job: Section) -> None:
        # Its own key, as the other tools have: uacme takes the one it finds.
        key_dir = self.directory / "conf/private" / job.names[0]
        key_dir.mkdir(mode=0o700, parents=True)
        shutil.copyfile(job.key, key_dir / "key.pem")
        meter.run(measure, self.uacme("issue", *job.names))

    def renew(self, meter: Meter, measure: Measure, job: Section) -> None:
        meter.run(measure, self.uacme("--force", "issue", *job.names))

    def issued(self, job: Section) -> tuple[list[x509.Certificate], Any]:
        chain = self.directory / "conf" / job.names[0] / "cert.pem"
        return x509.load_pem_x509_certificates(chain.read_bytes()), public_key_of(job.key)


@dataclass
class Certbot(Tool):
    """certbot with --webroot (the bench serves it); a lineage per job, in
    the configuration directory of the job's round and work."""

    config: dict[str, Path] = field(default_factory=dict)
    batches: int = 0

    def absent(self) -> str | None:
        return None if shutil.which("certbot") else "no certbot (run bench/setup-peers)"

    def certbot(self, config: Path, *args: str | Path) -> list[str | Path]:
        return [
            "certbot", "--non-interactive", "--config-dir", config,
            "--work-dir", config / "work", "--logs-dir", config / "logs",
            "--server", self.pebble.directory_url, *args,
        ]  # fmt: skip

    @property
    def env(self) -> dict[str, str]:
        return {"REQUESTS_CA_BUNDLE": str(self.pebble.ca_bundle)}

    def set_up(self, stack: ExitStack) -> None:
        self.webroot = self.directory / "webroot"
        self.webroot.mkdir()
        argv = self.certbot(
            self.directory / "base",
            "register",
            "--agree-tos",
            "--no-eff-email",
            "-m",
            CONTACT.removeprefix("mailto:"),
        )
        subprocess.run(argv, check=True, capture_output=True, env={**os.environ, **self.env})

    def fresh_config(self) -> Path:
        """A configuration directory with nothing but the account."""
        self.batches += 1
        config = self.directory / f"batch{self.batches}"
        shutil.copytree(self.directory / "base/accounts", config / "accounts")
        return config

    def certonly(self, meter: Meter, measure: Measure, job: Section, config: Path) -> None:
        self.config[job.name] = config
        domains = [arg for name in job.names for arg in ("-d", name)]
        argv = self.certbot(
            config, "certonly", "--webroot", "-w", self.directory / "webroot",
            "--cert-name", job.name,
            "--key-type", "rsa", "--rsa-key-size", "2048", *domains,
        )  # fmt: skip
        meter.run(measure, argv, self.env)

    def first(self, meter: Meter, measure: Measure, job: Section) -> None:
        self.certonly(meter, measure, job, self.directory / "base")

    def renew(self, meter: Meter, measure: Measure, job: Section) -> None:
        argv = self.certbot(
            self.config[job.name], "renew", "--force-renewal", "--no-random-sleep-on-renew",
            "--cert-name", job.name,
        )  # fmt: skip
        meter.run(measure, argv, self.env)

    def batch(self, meter: Meter, jobs: list[Section]) -> list[tuple[str, Measure]]:
        config = self.fresh_config()
        with meter.measure(len(jobs)) as loop:
            for job in jobs:
                self.certonly(meter, loop, job, config)
        self.check(jobs)
        with meter.measure(len(jobs)) as renew:
            argv = self.certbot(config, "renew", "--force-renewal", "--no-random-sleep-on-renew")
            meter.run(renew, argv, self.env)
        return [(f"a loop of {len(jobs)} certonly", loop), ("renew --force-renewal", renew)]

    def issued(self, job: Section) -> tuple[list[x509.Certificate], Any]:
        live = self.config[job.name] / "live" / job.name
        chain = x509.load_pem_x509_certificates((live / "fullchain.pem").read_bytes())
        return chain, public_key_of(live / "privkey.pem")


def make_tools(pebble: PebbleServer, stack: ExitStack) -> list[Tool]:
    def workdir(name: str) -> Path:
        return temporary_directory(stack, f"lacme-bench-{name}-", 0o700)

    return [
        Lacme("ours", pebble, Path()),
        Lacme("Perl", pebble, Path()),
        AcmeTiny("acme-tiny", pebble, workdir("acme-tiny")),
        Uacme("uacme", pebble, workdir("uacme")),
        Certbot("certbot", pebble, workdir("certbot")),
    ]


def one_round(
    tool: Tool, meter: Meter, label: str, keys: list[Path], jobs_dir: Path, count: int
) -> None:
    """First issuance and renewal of a certificate, then COUNT of them; each checked."""
    (job,) = numbered_sections(jobs_dir, keys[:1], f"{label}-one-")
    with ExitStack() as stack:
        if tool.webroot is not None:
            stack.enter_context(static_responder(tool.pebble.http_port, tool.webroot))
        for work, action in (("first issuance", tool.first), ("renewal", tool.renew)):
            with meter.measure() as measure:
                action(meter, measure, job)
            tool.check([job])
            tool.results.setdefault(work, {}).setdefault("", []).append(measure)
        jobs = numbered_sections(jobs_dir, keys[1 : count + 1], f"{label}-")
        for way, measure in tool.batch(meter, jobs):
            tool.check(jobs)
            tool.results.setdefault("batch", {}).setdefault(way, []).append(measure)
    print(
        f"{tool.name}: "
        + ", ".join(
            f"{work} {runs[-1].wall:.2f} s"
            for work, ways in tool.results.items()
            for runs in ways.values()
        ),
        file=sys.stderr,
    )


def median(runs: list[Measure], metric: Callable[[Measure], float]) -> float:
    return statistics.median(metric(run) for run in runs)


# What the tables show of each measure: per certificate, but for the memory.
METRICS: list[tuple[str, Callable[[Measure], float], str]] = [
    ("wall s/cert", lambda m: m.wall / m.certs, "{:.2f}"),
    ("CPU s/cert", lambda m: m.cpu / m.certs, "{:.2f}"),
    ("peak RSS MiB", lambda m: m.rss / 1024, "{:.1f}"),
    ("requests/cert", lambda m: m.requests / m.certs, "{:.1f}"),
]
WALL = METRICS[0][1]


def best_way(tool: Tool) -> tuple[str, list[Measure]] | None:
    """The tool's fastest way of getting the batch: (way, runs)."""
    ways = tool.results.get("batch", {})
    if not ways:
        return None
    return min(ways.items(), key=lambda item: median(item[1], WALL))


def versions() -> str:
    """The versions of the tools, as far as they are installed."""

    def dpkg(package: str) -> str:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True
        )
        return result.stdout if result.returncode == 0 else "absent"

    tiny = [
        path.name.removesuffix(".dist-info").split("-")[1]
        for path in PEERS_VENV.glob("lib/python3*/site-packages/acme_tiny-*.dist-info")
    ]
    return ", ".join(
        [
            f"ours {importlib.metadata.version('lacme-privsep')}",
            f"Perl lacme {dpkg('lacme')}",
            f"acme-tiny {tiny[0] if tiny else 'absent'}",
            f"uacme {dpkg('uacme')}",
            f"certbot {dpkg('certbot')}",
            f"Pebble {dpkg('pebble')}",
        ]
    )


def report(tools: list[Tool], count: int, rounds: int) -> None:
    names = [tool.name for tool in tools]
    labels = {
        "first issuance": "1 cert, first issuance",
        "renewal": "1 cert, renewal",
        "batch": f"{count} certs",
    }
    cells: dict[tuple[str, str], list[float | None]] = {}
    for metric, value, _ in METRICS:
        for work in WORKS:
            row: list[float | None] = []
            for tool in tools:
                runs = (
                    (best_way(tool) or ("", []))[1]
                    if work == "batch"
                    else tool.results.get(work, {}).get("", [])
                )
                row.append(median(runs, value) if runs and tool.failure is None else None)
            cells[metric, work] = row

    def missing(tool: Tool) -> str:
        return "absent" if tool.failure and tool.failure.startswith("absent") else "FAILED"

    print(f"{versions()}\nMedians of {rounds} round(s), against one Pebble:\n")
    print("| work | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for metric, _, form in METRICS:
        for work in WORKS:
            row_cells = cells[metric, work]
            shown = [
                form.format(v) if v is not None else missing(tool)
                for v, tool in zip(row_cells, tools, strict=True)
            ]
            print(f"| {metric}, {labels[work]} | " + " | ".join(shown) + " |")
    if names[0] == "ours" and len(names) > 1:
        print("\nRatios ours/peer (below 1: ours uses less):\n")
        print("| work | " + " | ".join(f"ours/{name}" for name in names[1:]) + " |")
        print("|---|" + "---:|" * (len(names) - 1))
        for metric, _, _ in METRICS:
            for work in WORKS:
                ours, *peers = cells[metric, work]
                ratios = [
                    f"{ours / peer:.2f}" if ours is not None and peer else "n/a" for peer in peers
                ]
                print(f"| {metric}, {labels[work]} | " + " | ".join(ratios) + " |")
    print(f"\nWays of getting {count} certificates (median wall time per certificate):")
    for tool in tools:
        ways = tool.results.get("batch", {})
        best = best_way(tool)
        for way, runs in ways.items():
            mark = " (the table's)" if best is not None and way == best[0] else ""
            print(f"  {tool.name}: {way}: {median(runs, WALL):.2f} s{mark}")
    for tool in tools:
        if tool.failure is not None:
            print(f"\n{tool.name}: {tool.failure}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="rounds (medians over them)")
    parser.add_argument("--count", type=int, default=20, help="certificates of the batch")
    parser.add_argument("--interval", type=float, default=0.005, help="/proc sampling (s)")
    parser.add_argument("--only", nargs="*", choices=TOOLS, help="only these tools")
    args = parser.parse_args()

    with running_pebble() as pebble, ExitStack() as stack:
        tools = [t for t in make_tools(pebble, stack) if not args.only or t.name in args.only]
        logs = temporary_directory(stack, "lacme-bench-logs-", 0o700)
        jobs_dir = temporary_directory(stack, "lacme-bench-certs-")
        keys = [jobs_dir / f"{i}.key" for i in range(args.count + 1)]
        for path in keys:
            new_key_file(path, "rsa2048")
        meter = Meter(pebble, args.interval, logs)
        for tool in tools:
            reason = tool.absent()
            if reason is not None:
                tool.failure = f"absent: {reason}"
                continue
            try:
                tool.set_up(stack)
            except (OSError, AssertionError, subprocess.CalledProcessError) as e:
                output = getattr(e, "stderr", b"") or b""
                tool.failure = f"set-up failed: {e}\n{output.decode(errors='replace')}"
        for round_number in range(args.rounds):
            shift = round_number % len(tools)
            for tool in tools[shift:] + tools[:shift]:
                if tool.failure is not None:
                    continue
                label = f"{tool.name.replace('-', '')}-r{round_number}".lower()
                try:
                    one_round(tool, meter, label, keys, jobs_dir, args.count)
                except (ToolFailed, OSError, subprocess.SubprocessError) as e:
                    tool.failure = f"failed in round {round_number + 1}: {e}"
                    print(f"{tool.name}: {tool.failure}", file=sys.stderr)
        report(tools, args.count, args.rounds)
    return 0 if all(tool.failure is None for tool in tools) else 1


if __name__ == "__main__":
    sys.exit(main())
