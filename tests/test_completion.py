"""The bash completion of `lacme` and `lacme-accountd` (completion/lacme.bash),
run by real bash: options, commands, option values, and newOrder's section
names read by lacme's own code from the configuration on the command line.

bash splits `--config=FILE` into `--config`, `=`, `FILE` (COMP_WORDBREAKS
holds `=` and `:`), and its reply then replaces the last piece only; both
spellings are completed here, as bash hands them over and unsplit.  The
installed file, loaded by bash-completion as an interactive shell does, is
tested in tests/test_install.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from lacme import accountd, client_contract, master_command

SOURCE = Path(__file__).parent.parent / "completion" / "lacme.bash"

pytestmark = pytest.mark.process


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The completion as scripts/install writes it, reading sections with
    the interpreter running the tests (whose lacme is the one under test)."""
    path = tmp_path_factory.mktemp("completion") / "lacme.bash"
    path.write_text(SOURCE.read_text().replace("@PYTHON@", sys.executable))
    return path


def complete(script: Path, *words: str, function: str = "_lacme") -> list[str]:
    """COMPREPLY after FUNCTION completes the last of WORDS."""
    result = subprocess.run(
        [
            "bash",
            "-c",
            'source "$0"; COMP_WORDS=("${@:2}"); COMP_CWORD=$(($# - 2)); "$1"; '
            'printf "%s\\n" "${COMPREPLY[@]}"',
            str(script),
            function,
            *words,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, ""), result
    return result.stdout.splitlines() if result.stdout != "\n" else []


def accountd_complete(script: Path, *words: str) -> list[str]:
    return complete(script, "lacme-accountd", *words, function="_lacme_accountd")


def spelled(value_options: Sequence[str], flags: Sequence[str], short: Sequence[str]) -> set[str]:
    """The options as completed: `--name=` for those taking a value."""
    return {
        *(f"--{name}=" for name in value_options),
        *(f"--{name}" for name in flags),
        *(f"-{letter}" for letter in short),
    }


def test_lacme_options_are_the_commands_options(script: Path) -> None:
    common = set(complete(script, "lacme", "-"))
    offered = set(common)
    for command in ("account", "newOrder", "revokeCert", "status"):
        with_command = set(complete(script, "lacme", command, "-"))
        assert common < with_command, command
        offered |= with_command
    assert offered == spelled(
        sorted(master_command.VALUE_OPTIONS),
        sorted(master_command.FLAG_OPTIONS),
        sorted(master_command.SHORT_OPTIONS),
    )
    # Those of one command only where that command is.
    assert "--reason=" in complete(script, "lacme", "revokeCert", "--")
    assert "--reason=" not in complete(script, "lacme", "newOrder", "--")
    assert complete(script, "lacme", "--deb") == ["--debug"]
    # An alias is its command.
    assert complete(script, "lacme", "new-cert", "--f") == ["--force"]


def test_lacme_commands(script: Path) -> None:
    assert set(complete(script, "lacme", "")) == set(master_command.COMMANDS)
    assert complete(script, "lacme", "--debug", "rev") == ["revokeCert", "revoke-cert"]
    # An empty word (a quoted "") is no command.
    assert complete(script, "lacme", "", "acc") == ["account"]
    # The word after a value option is its value, not the command.
    assert complete(script, "lacme", "--config", "/nonexistent", "new") == [
        "newOrder",
        "new-order",
        "new-cert",
    ]


def test_lacme_accountd_options(script: Path) -> None:
    offered = set(accountd_complete(script, "-"))
    names = set(re.findall(r"(?m)^  (?:-(\w), )?--([a-z-]+)(=?)", accountd.HELP))
    assert offered == {
        *(f"--{name}{equals}" for _, name, equals in names),
        *(f"-{letter}" for letter, _, _ in names if letter),
    }
    assert accountd_complete(script, "--st") == ["--stdio"]


@pytest.fixture
def configuration(tmp_path: Path) -> Path:
    """A lacme.conf whose certificate files hold sections www, mail and db
    (the last in a lacme-certs.conf.d/ file); other.conf holds [other]."""
    (tmp_path / "lacme.conf").write_text("[client]\n")
    (tmp_path / "lacme-certs.conf").write_text("[www]\nsubject = /CN=www\n[mail]\n")
    (tmp_path / "lacme-certs.conf.d").mkdir()
    (tmp_path / "lacme-certs.conf.d/db.conf").write_text("[db]\n")
    (tmp_path / "other.conf").write_text("subject = /CN=x\n[other]\n")
    return tmp_path / "lacme.conf"


def test_lacme_sections_from_config(script: Path, configuration: Path) -> None:
    conf = str(configuration)
    sections = ["www", "mail", "db"]
    assert complete(script, "lacme", f"--config={conf}", "newOrder", "") == sections
    assert complete(script, "lacme", f"--config={conf}", "status", "") == sections
    # As bash splits it.
    assert complete(script, "lacme", "--config", "=", conf, "newOrder", "") == sections
    assert complete(script, "lacme", "newOrder", "--config", conf, "") == sections
    assert complete(script, "lacme", f"--config={conf}", "new-order", "m") == ["mail"]
    # Each section once.
    assert complete(script, "lacme", f"--config={conf}", "newOrder", "db", "") == ["www", "mail"]
    # --config-certs replaces config-certs, relative to lacme.conf's directory.
    assert complete(
        script, "lacme", f"--config={conf}", "newOrder", "--config-certs=other.conf", ""
    ) == ["other"]
    configuration.write_text("config-certs = lacme-certs.conf.d/ other.conf\n")
    assert complete(script, "lacme", f"--config={conf}", "newOrder", "") == ["db", "other"]


def test_lacme_sections_of_a_broken_config_are_none(script: Path, configuration: Path) -> None:
    # What lacme would refuse completes nothing, and says nothing.
    configuration.write_text("[client]\nnonsense = 1\n")
    assert complete(script, "lacme", f"--config={configuration}", "newOrder", "") == []
    missing = configuration.parent / "missing.conf"
    assert complete(script, "lacme", f"--config={missing}", "newOrder", "") == []
    # Only newOrder takes sections.
    configuration.write_text("[client]\n")
    assert complete(script, "lacme", f"--config={configuration}", "account", "") == []


def test_option_values(script: Path, configuration: Path) -> None:
    directory = configuration.parent
    conf = str(configuration)
    assert complete(script, "lacme", f"--config={directory}/lacme.") == [f"--config={conf}"]
    # As bash splits it, the reply replaces the piece after "=".
    assert complete(script, "lacme", "--config", "=", f"{directory}/lacme.") == [conf]
    assert complete(script, "lacme", "--config", f"{directory}/lacme.") == [conf]
    assert complete(script, "lacme", "revokeCert", f"{directory}/oth") == [
        f"{directory}/other.conf"
    ]
    assert complete(script, "lacme", "revokeCert", "--reason", "=", "") == list(
        client_contract.REVOCATION_REASONS
    )
    assert complete(script, "lacme", "revokeCert", "--reason=key") == ["--reason=keyCompromise"]
    assert complete(script, "lacme", "newOrder", "--min-days=") == []
    assert accountd_complete(script, "--privkey=") == ["--privkey=file:", "--privkey=gpg:"]
    assert accountd_complete(script, "--privkey", "=", "g") == ["gpg:"]
    assert accountd_complete(script, "--privkey", "=", "gpg", ":", f"{directory}/oth") == [
        f"{directory}/other.conf"
    ]
    assert accountd_complete(script, f"--privkey=file:{directory}/oth") == [
        f"--privkey=file:{directory}/other.conf"
    ]
    assert accountd_complete(script, "--socket", f"{directory}/lacme-certs.conf.") == [
        f"{directory}/lacme-certs.conf.d"
    ]
