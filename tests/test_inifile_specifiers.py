"""Unit tests of the configuration file dialect and %-specifier expansion,
shared by lacme-accountd and (later) lacme."""

import os
import pwd
import subprocess
import sys

import pytest

from lacme import inifile, specifiers


@pytest.mark.unit
def test_ini_dialect_of_lacme_0_8_2() -> None:
    text = (
        "# comment\n"
        "; comment too\n"
        "top = level ; inline comment\n"
        "  spaced key   =   spaced value  \n"
        "empty =\n"
        "[ section ]\r\n"
        "key = a=b\r"
        "url = http://x/;y\n"
        "[section]\n"
        "key = later wins\n"
        "[empty]\n"
    )
    assert inifile.parse(text, "f.conf") == {
        "_": {"top": "level", "spaced key": "spaced value", "empty": ""},
        "section": {"key": "later wins", "url": "http://x/;y"},
        "empty": {},
    }


@pytest.mark.unit
def test_ini_syntax_error_names_file_and_line() -> None:
    with pytest.raises(inifile.IniError, match=r"^f\.conf:3: syntax error: 'no equals sign'$"):
        inifile.parse("a = b\n\nno equals sign\n", "f.conf")


@pytest.mark.unit
def test_expand_as_root_or_user() -> None:
    user = pwd.getpwuid(os.getuid())
    assert specifiers.expand("%u:%U:%h:%%:%G") == (
        f"{user.pw_name}:{os.getuid()}:{user.pw_dir}:%:{os.getgid()}"
    )
    if os.getuid() == 0:
        assert specifiers.expand("%C %E %t") == "/var/cache /etc /run"


@pytest.mark.unit
def test_expand_tmpdir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", "/scratch")
    assert specifiers.expand("%T/x") == "/scratch/x"
    monkeypatch.setenv("TMPDIR", "")
    assert specifiers.expand("%T/x") == "/tmp/x"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("value", "message"),
    [("%Q", '"%Q" has unknown specifier %Q'), ("a%", '"a%" ends with a lone %')],
)
def test_expand_refusals(value: str, message: str) -> None:
    with pytest.raises(specifiers.SpecifierError) as refused:
        specifiers.expand(value)
    assert str(refused.value) == message


EXPAND = "import sys; from lacme import specifiers; print(specifiers.expand(sys.argv[1]))"


def expand_as_nobody(value: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", EXPAND, value],
        user="nobody",
        group="nogroup",
        extra_groups=[],
        env={"HOME": "/home/nobody", **env},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.process
@pytest.mark.root  # switching to user nobody
def test_expand_for_other_users_uses_xdg_variables() -> None:
    done = expand_as_nobody("%C|%E|%t|%u|%g", {"XDG_CACHE_HOME": "/c", "XDG_RUNTIME_DIR": "/r"})
    assert done.stdout == "/c|/home/nobody/.config|/r|nobody|nogroup\n"


@pytest.mark.process
@pytest.mark.root  # switching to user nobody
@pytest.mark.parametrize("runtime_dir", [None, ""])
def test_expand_t_needs_xdg_runtime_dir_for_other_users(runtime_dir: str | None) -> None:
    env = {} if runtime_dir is None else {"XDG_RUNTIME_DIR": runtime_dir}
    done = expand_as_nobody("%t/S.lacme", env)
    assert done.returncode != 0
    assert "undefined expansion %t" in done.stderr
