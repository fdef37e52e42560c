"""Certificate configuration mistakes lacme 0.8.2 passes over in silence,
found (lacme.config): a section defined twice, in one file or two; two
sections installing to one file; a file of a `config-certs` directory that
is not read; no section at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from lacme import config, inifile
from lacme.errors import ConfigError

pytestmark = pytest.mark.unit


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def section(name: str, chain: str, **more: str) -> str:
    lines = [
        f"[{name}]",
        "certificate-key = /k",
        f"certificate-chain = {chain}",
        f"subject = /CN={name}.example.org",
        *(f"{key} = {value}" for key, value in more.items()),
    ]
    return "\n".join(lines) + "\n"


def problem(sources: dict[str, config.CertSource], name: str) -> str:
    """What checking section NAME says is wrong with it."""
    with pytest.raises(ConfigError) as refused:
        config.parse_section(sources[name])
    return str(refused.value)


def test_the_ini_reader_tells_where_each_header_stands() -> None:
    located = inifile.parse_located("a = 1\n[x]\nb = 2\n\n[ y ]\n[x]\nc = 3\n", "f.conf")
    assert located.sections == {"_": {"a": "1"}, "x": {"b": "2", "c": "3"}, "y": {}}
    assert located.headers == {"x": [2, 6], "y": [5]}


def test_a_section_defined_twice_in_one_file(tmp_path: Path) -> None:
    path = write(tmp_path / "c.conf", section("www", "/w") + section("mail", "/m") + "[www]\n")
    sources = config.load_certs([str(path)])
    assert problem(sources, "www") == (
        f"{path}:9: [www] is defined again (first at {path}:1): merge the two or rename one"
    )
    assert config.parse_section(sources["mail"]).certificate_chain == "/m"


def test_a_section_defined_again_in_another_file(tmp_path: Path) -> None:
    first = write(tmp_path / "lacme-certs.conf", "min-days = 10\n\n" + section("www", "/w"))
    again = write(tmp_path / "lacme-certs.conf.d/www.conf", section("www", "/w"))
    sources = config.load_certs([str(first), str(again)])
    assert problem(sources, "www") == (
        f"{again}:1: [www] is defined again (first at {first}:3): merge the two or rename one"
    )


def test_two_sections_installing_one_file(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.conf",
        section("a", "/etc/ssl/www.pem")
        + section("b", "/etc/ssl/www.pem")
        + section("c", "/etc/ssl/c.pem", certificate="/etc/ssl/www.pem"),
    )
    sources = config.load_certs([str(path)])
    same = "give each section files of its own"
    assert problem(sources, "a") == (
        f"{path}: [a] certificate-chain = /etc/ssl/www.pem: "
        f"the same file as [b] certificate-chain, [c] certificate: {same}"
    )
    assert problem(sources, "b") == (
        f"{path}: [b] certificate-chain = /etc/ssl/www.pem: "
        f"the same file as [a] certificate-chain, [c] certificate: {same}"
    )
    assert problem(sources, "c") == (
        f"{path}: [c] certificate = /etc/ssl/www.pem: "
        f"the same file as [a] certificate-chain, [b] certificate-chain: {same}"
    )


def test_one_file_through_a_linked_directory_or_a_default(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "linked").symlink_to("real")
    path = write(
        tmp_path / "c.conf",
        section("a", f"{tmp_path}/real/www.pem") + section("b", f"{tmp_path}/linked/www.pem"),
    )
    assert "the same file as [b] certificate-chain: " in problem(
        config.load_certs([str(path)]), "a"
    )
    # Set in the default section: one file for every section.
    defaults = write(tmp_path / "d.conf", "certificate = /etc/ssl/all.pem\n")
    path.write_text(section("a", "/a") + section("b", "/b"))
    sources = config.load_certs([str(defaults), str(path)])
    assert problem(sources, "a") == (
        f"{defaults}: [a] certificate = /etc/ssl/all.pem: the same file as [b] certificate: "
        "give each section files of its own"
    )


def test_separate_files_and_one_section_writing_one_file_twice(tmp_path: Path) -> None:
    # A link as the file itself is replaced by the rename, not followed.
    (tmp_path / "target.pem").write_text("")
    (tmp_path / "link.pem").symlink_to("target.pem")
    path = write(
        tmp_path / "c.conf",
        section("a", str(tmp_path / "link.pem"))
        + section("b", str(tmp_path / "target.pem"))
        + section("c", "/etc/ssl/c.pem", certificate="/etc/ssl/c.pem"),
    )
    sources = config.load_certs([str(path)])
    for name in "abc":
        config.parse_section(sources[name])


def test_a_directory_file_not_read_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "lacme.conf", "")
    write(tmp_path / "lacme-certs.conf.d/a.conf", "")
    write(tmp_path / "lacme-certs.conf.d/www.cfg", "")
    (tmp_path / "lacme-certs.conf.d/old").mkdir()
    files = config.certificate_files(config.load(str(tmp_path / "lacme.conf")))
    assert files == [str(tmp_path / "lacme-certs.conf.d/a.conf")]
    directory = tmp_path / "lacme-certs.conf.d"
    assert capsys.readouterr().err == (
        f"Warning: {directory}/old: not read, as its name does not end in .conf\n"
        f"Warning: {directory}/www.cfg: not read, as its name does not end in .conf\n"
    )


def test_no_section_at_all(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    defaults = write(tmp_path / "a.conf", "min-days = 10\n")
    empty = write(tmp_path / "b.conf", "# nothing yet\n")
    assert config.load_certs([str(defaults), str(empty)]) == {}
    assert capsys.readouterr().err == (
        f"Warning: no certificate section in {defaults}, {empty}: nothing to issue or renew\n"
    )
    assert config.load_certs([]) == {}
    assert capsys.readouterr().err == (
        "Warning: no certificate configuration file (see config-certs): nothing to issue or renew\n"
    )
    config.load_certs([str(write(tmp_path / "c.conf", section("www", "/w")))])
    assert capsys.readouterr().err == ""
