"""The notify command end to end against Pebble, as an administrator meets
it: what it is told, a failure that runs again on the next runs until it
succeeds, a command that hangs, and a run stopped while it runs."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

import pytest

from support.commands import LACME, TIMEOUT
from support.masters import MasterSetup, leaf_of, master_setup
from support.pebble import PebbleServer
from support.proc import alive, living_members
from support.system import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.root]

SITE = {"subject": "/CN=site.example.test", "subjectAltName": "DNS:WWW.site.example.test"}
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# A shell that records its pid and that of a child, then waits for the child.
HANG = "echo $$ > {pids}; sleep 600 & echo $! >> {pids}; wait"
PENDING = re.compile(
    r"\[site\] Notification pending since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, "
    r"the last attempt (.*): running it again"
)


def not_after(chain: Path) -> str:
    return leaf_of(chain).not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def record_of(chain: Path) -> Path:
    return chain.with_name(chain.name + ".notify")


def pids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()]


def all_gone(record: Path) -> None:
    """The shell and child whose pids are in RECORD are dead (zombies left
    to this machine's init count as dead), and so is the rest of the group."""
    shell, child = pids(record)
    wait_for(
        lambda: not alive(shell) and not alive(child) and not living_members(shell),
        f"process group {shell} to die",
        timeout=10,
    )


def test_a_failed_notify_runs_again_until_it_succeeds(pebble: PebbleServer) -> None:
    with master_setup(pebble) as setup:
        setup.register()
        d = setup.directory
        ran, fixed = d / "ran", d / "fixed"
        # Like `nginx -s reload` before the administrator fixed nginx.conf.
        command = f"echo ran >> {ran}; test -e {fixed}"
        chain = setup.one_section(**SITE, notify=command)

        first = setup.run("newOrder", check=False)
        assert first.returncode == 1, first.stderr
        assert first.stderr.splitlines()[-2:] == [
            f"Running notification command `{command}`",
            "[site] Error: notification command exited with value 1: it runs again on the next run",
        ]
        installed = chain.read_bytes()
        assert json.loads(record_of(chain).read_text())["last"] == "exited with value 1"

        fixed.touch()
        second = setup.run("newOrder")
        lines = second.stderr.splitlines()
        # Nothing was due: no certificate ordered, none installed.
        assert second.stdout == ""
        assert not any(line.startswith("Installing") for line in lines), lines
        assert chain.read_bytes() == installed
        pending = PENDING.fullmatch(lines[-3])
        assert pending is not None, lines
        assert pending.group(1) == "exited with value 1"
        assert lines[-2:] == [
            f"Running notification command `{command}`",
            "[site] Notification command succeeded, no longer pending",
        ]
        assert not record_of(chain).exists()

        third = setup.run("newOrder")
        assert "notification" not in third.stderr.lower(), third.stderr
        assert ran.read_text() == "ran\n" * 2


def test_a_certificate_renewed_meanwhile_is_notified_once(pebble: PebbleServer) -> None:
    with master_setup(pebble) as setup:
        setup.register()
        told = setup.directory / "told"
        chain = setup.one_section(**SITE, notify=f"echo $LACME_NOT_AFTER >> {told}; exit 3")
        assert setup.run("newOrder", check=False).returncode == 1
        first = leaf_of(chain)

        renewed = setup.run("newOrder", "--force", check=False)
        assert renewed.returncode == 1
        assert leaf_of(chain) != first
        assert renewed.stderr.count("Running notification command") == 1, renewed.stderr
        assert PENDING.search(renewed.stderr) is None
        assert told.read_text().splitlines()[-1] == not_after(chain)
        assert len(told.read_text().splitlines()) == 2
        assert json.loads(record_of(chain).read_text())["last"] == "exited with value 3"


def test_the_environment_says_what_was_installed(pebble: PebbleServer) -> None:
    with master_setup(pebble) as setup:
        setup.register()
        d = setup.directory
        # What a section's command sees, and where it finds a command of /sbin.
        notify = f"{{ env; echo WHERE=$(command -v ldconfig); }} > {d}/env.$LACME_SECTION"
        keys = {name: setup.service_key(name, "p256")[0] for name in ("both", "chain")}
        setup.write_sections(
            {
                "both": {
                    "certificate-key": str(keys["both"]),
                    "certificate": str(d / "both.crt"),
                    "certificate-chain": str(d / "both.chain"),
                    "subject": "/CN=Both.example.test",
                    "subjectAltName": "DNS:b.example.test, DNS:both.example.test",
                    "notify": notify,
                },
                "chain": {
                    "certificate-key": str(keys["chain"]),
                    "certificate-chain": str(d / "chain.chain"),
                    "subject": "/",
                    "subjectAltName": "DNS:c.example.test",
                    "notify": notify,
                },
            }
        )
        setup.run("newOrder")
        seen = {name: environment(d / f"env.{name}") for name in ("both", "chain")}
        assert {k: v for k, v in seen["both"].items() if k.startswith("LACME_")} == {
            "LACME_SECTION": "both",
            "LACME_CERTIFICATE": str(d / "both.crt"),
            "LACME_CERTIFICATE_CHAIN": str(d / "both.chain"),
            "LACME_NAMES": "both.example.test b.example.test",
            "LACME_NOT_AFTER": not_after(d / "both.chain"),
        }
        assert {k: v for k, v in seen["chain"].items() if k.startswith("LACME_")} == {
            "LACME_SECTION": "chain",
            "LACME_CERTIFICATE": "",
            "LACME_CERTIFICATE_CHAIN": str(d / "chain.chain"),
            "LACME_NAMES": "c.example.test",
            "LACME_NOT_AFTER": not_after(d / "chain.chain"),
        }
        assert seen["both"]["PATH"] == ROOT_PATH
        assert seen["both"]["WHERE"].endswith("sbin/ldconfig")


def environment(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def test_a_notify_that_hangs_is_killed_with_its_process_group(pebble: PebbleServer) -> None:
    with master_setup(pebble) as setup:
        setup.register()
        record = setup.directory / "pids"
        chain = setup.one_section(
            **SITE, notify=HANG.format(pids=record), **{"notify-timeout": "1"}
        )
        result = setup.run("newOrder", check=False)
        assert result.returncode == 1
        assert result.stderr.splitlines()[-1] == (
            "[site] Error: notification command timed out after 1 s (notify-timeout), "
            "its process group killed: it runs again on the next run"
        )
        all_gone(record)
        assert json.loads(record_of(chain).read_text())["last"] == (
            "timed out after 1 s (notify-timeout), its process group killed"
        )


def interrupted_during_notify(setup: MasterSetup, record: Path) -> str:
    """Run newOrder until the notify command runs, then SIGTERM; its stderr."""
    master = subprocess.Popen(
        [LACME, f"--config={setup.config}", "newOrder"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            lambda: record.exists() and len(record.read_text().split()) == 2,
            "the notify command",
            timeout=TIMEOUT,
            alive=lambda: None if master.poll() is None else pytest.fail(str(master.communicate())),
        )
        master.send_signal(signal.SIGTERM)
        _, stderr = master.communicate(timeout=TIMEOUT)
    finally:
        if master.poll() is None:
            master.kill()
            master.wait()
    assert master.returncode == 1, stderr
    return stderr


def test_a_run_stopped_during_notify_leaves_it_pending(pebble: PebbleServer) -> None:
    with master_setup(pebble) as setup:
        setup.register()
        record = setup.directory / "pids"
        chain = setup.one_section(**SITE, notify=HANG.format(pids=record))
        stderr = interrupted_during_notify(setup, record)
        assert stderr.splitlines()[-1] == "lacme: interrupted by SIGTERM"
        all_gone(record)
        assert json.loads(record_of(chain).read_text())["last"] is None

        hang = HANG.format(pids=record)
        setup.certs_config.write_text(setup.certs_config.read_text().replace(hang, "true"))
        again = setup.run("newOrder")
        pending = PENDING.fullmatch(again.stderr.splitlines()[-3])
        assert pending is not None, again.stderr
        assert pending.group(1) == "did not end"
        assert not record_of(chain).exists()
