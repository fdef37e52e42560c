"""The `lacme` command line: lacme 0.8.2's options, commands and usage errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lacme import __version__
from lacme.cli import UsageError
from lacme.client_contract import NEW_ORDER
from lacme.master_command import Arguments, parse_args

LACME = Path(sys.executable).parent / "lacme"


@pytest.mark.unit
def test_options_before_or_after_the_command() -> None:
    expected = Arguments(
        command="newOrder",
        arguments=("www", "smtp"),
        config="/c.conf",
        config_certs=("a.conf", "b.d/"),
        socket="/s",
        min_days=10,
        quiet=True,
    )
    assert (
        parse_args(
            [
                *("--config=/c.conf", "newOrder", "--config-certs", "a.conf", "www", "-q"),
                *("--config-certs=b.d/", "--socket", "/s", "smtp", "--min-days=10"),
            ]
        )
        == expected
    )
    assert (
        parse_args(
            [
                *("-q", "--socket=/s", "--min-days", "10", "--config", "/c.conf", "new-cert"),
                *("--config-certs=a.conf", "--config-certs=b.d/", "www", "smtp"),
            ]
        )
        == expected
    )


@pytest.mark.unit
@pytest.mark.parametrize(
    ("alias", "command"),
    [
        ("account", "account"),
        ("newOrder", "newOrder"),
        ("new-order", "newOrder"),
        ("new-cert", "newOrder"),
        ("revokeCert", "revokeCert"),
        ("revoke-cert", "revokeCert"),
    ],
)
def test_aliases(alias: str, command: str) -> None:
    parsed = parse_args([alias])
    assert isinstance(parsed, Arguments)
    assert parsed.command == command


@pytest.mark.unit
def test_account_flags_and_contacts() -> None:
    assert parse_args(
        ["account", "--register", "mailto:a@example.org", "--tos-agreed", "mailto:b@example.org"]
    ) == Arguments(
        "account", ("mailto:a@example.org", "mailto:b@example.org"), register=True, tos_agreed=True
    )
    parsed = parse_args(["--deactivate", "account"])
    assert isinstance(parsed, Arguments)
    assert parsed.deactivate


@pytest.mark.unit
def test_force_debug_and_double_dash() -> None:
    parsed = parse_args(["newOrder", "--min-days=30", "--force", "--debug", "-q", "--", "-x"])
    assert parsed == Arguments("newOrder", ("-x",), min_days=-1, debug=True, quiet=False)
    parsed = parse_args(["newOrder", "--min-days", "-5"])
    assert isinstance(parsed, Arguments)
    assert parsed.min_days == -5


@pytest.mark.process
def test_help_and_version_win() -> None:
    for argv in (["--help"], ["-h"], ["newOrder", "-qh"], ["bogus", "--help"]):
        text = parse_args(argv)
        assert isinstance(text, str)
        assert text.startswith("Usage: lacme [--config=FILE] [--socket=PATH] [OPTIONS] COMMAND")
    assert parse_args(["--version"]) == f"lacme {__version__}\n"


@pytest.mark.unit
def test_dry_run() -> None:
    assert parse_args(["new-cert", "--dry-run", "site"]) == Arguments(
        NEW_ORDER, ("site",), dry_run=True
    )
    assert parse_args(["newOrder"]) == Arguments(NEW_ORDER, ())


@pytest.mark.unit
def test_verbose_is_not_debug() -> None:
    assert parse_args(["-v", "newOrder"]) == Arguments(NEW_ORDER, (), verbose=True)
    assert parse_args(["newOrder", "--verbose", "-q"]) == Arguments(
        NEW_ORDER, (), quiet=True, verbose=True
    )
    assert parse_args(["--debug", "newOrder"]) == Arguments(NEW_ORDER, (), debug=True)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "missing command"),
        (["-q"], "missing command"),
        (["newCert"], "invalid command: newCert"),
        (["newOrder", "--min-day=3"], "unknown option: --min-day"),
        (["account", "--reg"], "unknown option: --reg"),
        (["account", "-x"], "unknown option: -x"),
        (["account", "-debug"], "unknown option: -d"),
        (["newOrder", "--min-days=soon"], "--min-days: not an integer: 'soon'"),
        # As in lacme.conf: int() would take these.
        (["newOrder", "--min-days= 5"], "--min-days: not an integer: ' 5'"),
        (["newOrder", "--min-days=1_0"], "--min-days: not an integer: '1_0'"),
        (["newOrder", "--min-days=x%"], "--min-days: not a percentage: 'x%'"),
        (["newOrder", "--min-days"], "option --min-days requires an argument"),
        (["account", "--quiet=yes"], "option --quiet does not take an argument"),
        (["revokeCert", "--dry-run", "x.pem"], "--dry-run is for newOrder only, not revokeCert"),
        (["--dry-run", "account"], "--dry-run is for newOrder only, not account"),
        (
            ["revoke-cert", "--json", "x.pem"],
            "--json is for account and newOrder only, not revoke-cert",
        ),
    ],
)
def test_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_args(argv)
    assert str(caught.value) == message


@pytest.mark.process
def test_usage_error_exit_status_and_stderr() -> None:
    result = subprocess.run([str(LACME), "frobnicate"], capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines()[:2] == [
        "lacme: invalid command: frobnicate",
        "Usage: lacme [--config=FILE] [--socket=PATH] [OPTIONS] COMMAND [ARGUMENT ..]",
    ]


def python_code(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)


@pytest.mark.process
def test_help_imports_neither_cryptography_nor_ssl() -> None:
    # What --help costs is measured in bench/master_issuance.py.
    code = (
        "import sys; from lacme.master_command import main; main(['--help']); "
        "heavy = {'cryptography', 'ssl', 'lacme.config', 'lacme.privdrop', 'lacme.accountd_link',"
        " 'lacme.challenges', 'lacme.master', 'socket'}; "
        "print(sorted(heavy & set(sys.modules)), file=sys.stderr)"
    )
    result = python_code(code)
    assert result.stderr == "[]\n"
    assert "newOrder" in result.stdout


@pytest.mark.process
def test_the_master_loads_cryptography_when_first_used() -> None:
    # So that the client session a newOrder run starts first gets ready
    # meanwhile (lacme.master._lazy).
    code = (
        "import sys; from lacme import master; "
        "print('cryptography' in sys.modules, file=sys.stderr); "
        "master.certificate.der; "
        "print('cryptography' in sys.modules, file=sys.stderr)"
    )
    assert python_code(code).stderr == "False\nTrue\n"


@pytest.mark.process
def test_missing_configuration_is_a_one_line_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(LACME), f"--config={tmp_path}/none.conf", "account"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr == f"Error: can't read {tmp_path}/none.conf: No such file or directory\n"


@pytest.mark.process
def test_unknown_section_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "lacme.conf").write_text("[clent]\nserver = x\n")
    result = subprocess.run(
        [str(LACME), f"--config={tmp_path}/lacme.conf", "newOrder"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr == f"Error: {tmp_path}/lacme.conf: unknown section [clent]\n"
