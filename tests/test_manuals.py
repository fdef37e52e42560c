"""The manuals: man/*.in rendered by scripts/build-man are clean under
`mandoc -T lint`, and document every option the installed commands print in
--help and every configuration key the code accepts, as an entry of the
right section."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from lacme import accountd, config, master_command, specifiers

pytestmark = [pytest.mark.process, pytest.mark.debian("mandoc", "groff-base")]

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# mandoc looks each cross-reference up among the manuals installed on this
# machine: whether cron or openssh-server is installed says nothing about ours.
MACHINE_DEPENDENT = "STYLE: referenced manual not found"


@pytest.fixture(scope="module")
def manuals(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("man")
    subprocess.run([ROOT / "scripts" / "build-man", out], check=True)
    return out


def render(page: Path) -> str:
    """PAGE as plain text, as man(1) shows it (groff, without overstriking)."""
    done = subprocess.run(
        ["groff", "-T", "ascii", "-mandoc", "-P", "-cbou", page],
        check=True,
        capture_output=True,
        text=True,
    )
    assert done.stderr == ""
    return done.stdout


def section(text: str, title: str) -> str:
    """The body of the section (no indent) or subsection (3 spaces) TITLE."""
    lines = text.splitlines()
    start = lines.index(title)
    level = len(title) - len(title.lstrip())
    end = start + 1
    while end < len(lines) and not (
        lines[end].strip() and len(lines[end]) - len(lines[end].lstrip()) <= level
    ):
        end += 1
    return "\n".join(lines[start + 1 : end])


def entries(text: str, names: set[str]) -> set[str]:
    """The NAMES that start a line of TEXT, alone or in a list such as
    `-q, --quiet`: the tags of the manual's lists."""
    return {
        name
        for name in names
        if re.search(rf"^ +(?:\S+, )*{re.escape(name)}(?![\w-])", text, re.MULTILINE)
    }


def long_options(command: str) -> set[str]:
    done = subprocess.run([BIN / command, "--help"], check=True, capture_output=True, text=True)
    options = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", done.stdout))
    assert "--help" in options
    return options


@pytest.mark.parametrize("page", ["lacme.8", "lacme-accountd.1"])
def test_lint_clean(manuals: Path, page: str) -> None:
    # -T lint: every message level; they come on stdout.
    done = subprocess.run(["mandoc", "-T", "lint", manuals / page], capture_output=True, text=True)
    messages = [line for line in done.stdout.splitlines() if MACHINE_DEPENDENT not in line]
    assert messages == []


def test_lacme_options(manuals: Path) -> None:
    text = render(manuals / "lacme.8")
    documented = section(text, "COMMANDS") + section(text, "OPTIONS")
    options = long_options("lacme")
    assert entries(documented, options) == options


def test_lacme_commands(manuals: Path) -> None:
    text = section(render(manuals / "lacme.8"), "COMMANDS")
    for command in master_command.COMMANDS:
        assert re.search(rf"(?<![\w-]){re.escape(command)}(?![\w-])", text), command


def test_accountd_options(manuals: Path) -> None:
    documented = section(render(manuals / "lacme-accountd.1"), "OPTIONS")
    options = long_options("lacme-accountd")
    assert entries(documented, options) == options


def test_lacme_conf_keys(manuals: Path) -> None:
    text = section(render(manuals / "lacme.8"), "CONFIGURATION FILE")
    for title, keys in (
        ("   The default section", set(config.LACME_KEYS)),
        ("   [client]", set(config._CLIENT_KEYS)),
        ("   [webserver]", set(config._WEBSERVER_KEYS)),
        ("   [accountd]", set(config._ACCOUNTD_KEYS)),
    ):
        assert entries(section(text, title), keys) == keys, title


def test_certificate_keys(manuals: Path) -> None:
    text = section(render(manuals / "lacme.8"), "CERTIFICATE CONFIGURATION")
    assert entries(text, set(config.CERT_KEYS)) == config.CERT_KEYS


def test_accountd_keys(manuals: Path) -> None:
    text = section(render(manuals / "lacme-accountd.1"), "CONFIGURATION FILE")
    keys = set(accountd.CONFIG_KEYS)
    assert entries(text, keys) == keys


@pytest.mark.parametrize("page", ["lacme.8", "lacme-accountd.1"])
def test_specifiers(manuals: Path, page: str) -> None:
    text = section(render(manuals / page), "%-SPECIFIERS")
    specs = {f"%{letter}" for letter in specifiers._SPECIFIERS}
    assert entries(text, specs) == specs
