"""The README's main command, scripts/demo, prints what the README shows."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TOP = Path(__file__).parent.parent
BEGIN, END = "<!-- demo output: begin -->", "<!-- demo output: end -->"

pytestmark = [pytest.mark.e2e, pytest.mark.root, pytest.mark.debian("pebble")]


def readme_output() -> list[str]:
    """The README's sample, as one pattern per line (`…` matches anything)."""
    readme = (TOP / "README.md").read_text()
    block = readme[readme.index(BEGIN) + len(BEGIN) : readme.index(END)].strip("\n")
    return [
        ".+".join(re.escape(part) for part in line.removeprefix("    ").split("…"))
        for line in block.splitlines()
    ]


def run_demo(*args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, str(TOP / "scripts" / "demo.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()


def test_demo_prints_what_the_readme_shows() -> None:
    patterns = readme_output()
    printed = run_demo()
    assert len(printed) == len(patterns), printed
    for pattern, line in zip(patterns, printed, strict=True):
        assert re.fullmatch(pattern, line), (pattern, line)


def test_demo_keep_leaves_the_configuration() -> None:
    printed = run_demo("--keep")
    [kept_line] = [line for line in printed if line.startswith("Kept a copy")]
    kept = Path(kept_line.split(" in ")[-1])
    try:
        assert (kept / "lacme.conf").is_file()
        assert (kept / "demo.chain.pem").is_file()
    finally:
        shutil.rmtree(kept)
