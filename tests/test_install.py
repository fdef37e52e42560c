"""scripts/install and scripts/uninstall, and what they install: the
configuration files (read by our own parsers), the systemd units, and a
certificate issued by the installed commands with the shipped configuration.

The real installation runs with a private copy of /etc bind-mounted over
/etc (a mount namespace per command), without lacme's users and
configuration: the install creates both there, and the host's /etc is never
touched.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import NamedTuple

import pytest
from cryptography import x509

import lacme as lacme_package
from lacme import accountd, client, client_contract, config, inifile
from support.pebble import PebbleServer
from support.pki import new_key_file
from support.requires import require_packages, require_root
from support.system import temporary_directory

TOP = Path(__file__).parent.parent
INSTALL = TOP / "scripts" / "install"
UNINSTALL = TOP / "scripts" / "uninstall"
VENV = "/usr/local/lib/lacme/venv"  # the default, for PREFIX=/usr/local
CONFIG_FILES = ("lacme.conf", "lacme-certs.conf", "lacme-accountd.conf")
SNIPPETS = ("nginx.conf", "nginx-static.conf", "apache2.conf", "apache2-static.conf")
MANUALS = ("man8/lacme.8", "man1/lacme-accountd.1")
USERS = ("_lacme-client", "_lacme-www")
COMPLETIONS = ("lacme", "lacme-accountd")
MANIFEST = "usr/local/lib/lacme/installed"  # for PREFIX=/usr/local, under DESTDIR
TIMEOUT = 300


# ---------------------------------------------------------------------------
# The shipped configuration files, read by our parsers


class Documented(NamedTuple):
    """A commented-out `#key = value` line of a shipped configuration file."""

    section: str
    key: str
    example: bool  # an example, not the default


_SETTING = re.compile(r"#([A-Za-z][A-Za-z0-9_-]*) =(?: .*)?")
_HEADER = re.compile(r"(#?)\[(.+)\]")


def documented(text: str) -> list[Documented]:
    """The settings TEXT shows commented out; an example is one in a
    paragraph saying "Example", or in a commented-out section."""
    settings: list[Documented] = []
    section, example_section, paragraph = inifile.DEFAULT_SECTION, False, ""
    for line in text.splitlines():
        if header := _HEADER.fullmatch(line):
            section, example_section = header[2], bool(header[1])
        elif setting := _SETTING.fullmatch(line):
            example = example_section or "Example" in paragraph
            settings.append(Documented(section, setting[1], example))
        elif line.startswith("#"):
            paragraph += line
        else:
            paragraph = ""
    return settings


def uncommented(text: str, examples: bool) -> str:
    """TEXT with its documented defaults uncommented, and, if EXAMPLES, its
    examples and commented-out sections too."""
    lines = text.splitlines()
    settings = iter(documented(text))
    for i, line in enumerate(lines):
        if _SETTING.fullmatch(line):
            setting = next(settings)
            if examples or not setting.example:
                lines[i] = line[1:]
        elif examples and _HEADER.fullmatch(line):
            lines[i] = line.removeprefix("#")
    return "\n".join(lines) + "\n"


def shipped(name: str) -> str:
    # As installed, for the interpreter running the tests, which is a
    # virtual environment's like the installed one.
    text = (TOP / "etc" / name).read_text()
    return text.replace("@PYTHON@", sys.executable).replace("@VENV@", sys.prefix)


def keys_by_section(text: str) -> dict[str, set[str]]:
    sections: dict[str, set[str]] = {}
    for setting in documented(text):
        sections.setdefault(setting.section, set()).add(setting.key)
    return sections


def client_settings(conf: config.Config) -> client_contract.ClientSettings:
    """What the client makes of the [client] section the master hands it."""
    return client_contract.decode_settings(client_contract.encode_settings(conf.client.settings()))


@pytest.mark.unit
def test_lacme_conf_documents_every_key() -> None:
    assert keys_by_section(shipped("lacme.conf")) == {
        inifile.DEFAULT_SECTION: set(config.LACME_KEYS),
        "client": set(config._CLIENT_KEYS),
        "webserver": set(config._WEBSERVER_KEYS),
        "accountd": set(config._ACCOUNTD_KEYS),
    }


@pytest.mark.unit
def test_lacme_conf_defaults_are_the_real_ones(tmp_path: Path) -> None:
    # As installed: set explicitly, `config-certs` items must exist.
    (tmp_path / "lacme-certs.conf").write_text(shipped("lacme-certs.conf"))
    (tmp_path / "lacme-certs.conf.d").mkdir()
    path = tmp_path / "lacme.conf"
    path.write_text(shipped("lacme.conf"))
    as_shipped = config.load(str(path))
    # [accountd] is there, empty: lacme starts lacme-accountd.
    assert as_shipped == config.Config(
        str(path), config.ClientConfig(), config.WebserverConfig(), config.AccountdConfig(), None
    )
    path.write_text(uncommented(shipped("lacme.conf"), examples=False))
    with_defaults = config.load(str(path))
    assert with_defaults.config_certs is not None
    assert config.certificate_files(with_defaults) == config.certificate_files(as_shipped)
    # The client applies its own defaults to what the master passes on.
    assert client_settings(with_defaults) == client_settings(as_shipped)
    assert (
        dataclasses.replace(with_defaults, config_certs=None, client=as_shipped.client)
        == as_shipped
    )
    assert (
        dataclasses.replace(
            with_defaults.client, server=None, timeout=None, ssl_verify=None, confinement=None
        )
        == as_shipped.client
    )


@pytest.mark.unit
def test_lacme_conf_examples_are_valid(tmp_path: Path) -> None:
    path = tmp_path / "lacme.conf"
    path.write_text(uncommented(shipped("lacme.conf"), examples=True))
    loaded = config.load(str(path))
    assert loaded.client.ssl_cafile is not None
    client.ssl_context(client_settings(loaded))


@pytest.mark.unit
def test_lacme_certs_conf_documents_every_key() -> None:
    text = shipped("lacme-certs.conf")
    keys = set().union(*keys_by_section(text).values())
    aliases = {"chown", "chmod"}
    assert keys == config.CERT_KEYS - aliases
    assert all(f"`{alias}`" in text for alias in aliases)


def effective(section: config.CertSection) -> config.CertSection:
    """SECTION with an unset min-days as the one lacme then uses."""
    if section.min_days is not None:
        return section
    return dataclasses.replace(section, min_days=config.DEFAULT_MIN_DAYS)


@pytest.mark.unit
def test_lacme_certs_conf_defaults_are_the_real_ones(tmp_path: Path) -> None:
    path = tmp_path / "lacme-certs.conf"
    path.write_text(shipped("lacme-certs.conf"))
    assert config.load_certs([str(path)]) == {}
    probe = "[probe]\ncertificate-key = /k\ncertificate = /c\nsubject = /CN=probe.example.org\n"
    sections = []
    for text in (shipped("lacme-certs.conf"), uncommented(shipped("lacme-certs.conf"), False)):
        path.write_text(text + probe)
        sections.append(effective(config.parse_section(config.load_certs([str(path)])["probe"])))
    assert sections[0] == sections[1]


@pytest.mark.unit
def test_lacme_certs_conf_examples_are_valid(tmp_path: Path) -> None:
    path = tmp_path / "lacme-certs.conf"
    path.write_text(uncommented(shipped("lacme-certs.conf"), examples=True))
    (source,) = config.load_certs([str(path)]).values()
    section = config.parse_section(source)
    assert section.identifiers == ("www.example.org", "example.org")


def accountd_settings(path: Path, *options: str) -> accountd.AccountdSettings:
    args = accountd.parse_args([f"--config={path}", *options])
    settings = accountd.load_settings(args, accountd.Log(accountd.Log.INFO))
    # An unset socket is the default one.
    return settings._replace(socket=settings.socket or accountd.DEFAULT_SOCKET)


@pytest.mark.unit
def test_lacme_accountd_conf_documents_every_key() -> None:
    assert keys_by_section(shipped("lacme-accountd.conf")) == {
        inifile.DEFAULT_SECTION: set(accountd.CONFIG_KEYS)
    }


@pytest.mark.unit
def test_lacme_accountd_conf_defaults_are_the_real_ones(tmp_path: Path) -> None:
    path = tmp_path / "lacme-accountd.conf"
    path.write_text(shipped("lacme-accountd.conf"))
    with pytest.raises(accountd.AccountdError, match="no account key"):
        accountd_settings(path)
    as_shipped = accountd_settings(path, "--privkey=file:/k")
    path.write_text(uncommented(shipped("lacme-accountd.conf"), examples=False))
    assert accountd_settings(path, "--privkey=file:/k") == as_shipped


@pytest.mark.unit
def test_lacme_accountd_conf_examples_are_valid(tmp_path: Path) -> None:
    path = tmp_path / "lacme-accountd.conf"
    text = uncommented(shipped("lacme-accountd.conf"), examples=True)
    # lacme-accountd opens its log file first thing.
    text = re.sub(r"(?m)^logfile = .*", f"logfile = {tmp_path / 'log'}", text)
    path.write_text(text)
    settings = accountd_settings(path)
    assert settings.privkey == "file:%E/lacme/account.key"
    assert settings.keyid is not None


# ---------------------------------------------------------------------------
# Staged installation (DESTDIR)


def script(
    *settings: str, uninstall: bool = False, wrap: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """Run scripts/install (or uninstall) with SETTINGS (NAME=VALUE) under
    the WRAP command."""
    return subprocess.run(
        [*wrap, str(UNINSTALL if uninstall else INSTALL), *settings],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def install(*settings: str, uninstall: bool = False, wrap: Sequence[str] = ()) -> str:
    """`script`'s stderr, or the test fails showing it."""
    result = script(*settings, uninstall=uninstall, wrap=wrap)
    assert result.returncode == 0, f"{result.args} exited {result.returncode}:\n{result.stderr}"
    return result.stderr


def tree(root: Path) -> dict[str, Path]:
    """Every path under ROOT (relative name -> path), the venv's insides left out."""
    found: dict[str, Path] = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(directory, name)
            relative = str(path.relative_to(root))
            found[relative] = path
        if Path(directory) == root / VENV.lstrip("/"):
            dirnames.clear()
    return found


@pytest.fixture(scope="module")
def staged() -> Iterator[Path]:
    with ExitStack() as stack:
        destdir = temporary_directory(stack, "lacme-destdir-")
        install(f"DESTDIR={destdir}")
        yield destdir


@pytest.mark.process
def test_staged_file_list(staged: Path) -> None:
    venv = VENV.lstrip("/")
    expected = {
        "etc",
        "etc/lacme",
        "etc/lacme/lacme-certs.conf.d",
        *(f"etc/lacme/{name}" for name in CONFIG_FILES + SNIPPETS),
        "usr",
        "usr/local",
        "usr/local/bin",
        "usr/local/bin/lacme-accountd",
        "usr/local/sbin",
        "usr/local/sbin/lacme",
        "usr/local/lib",
        "usr/local/lib/lacme",
        MANIFEST,
        venv,
        *(f"{venv}/{name}" for name in os.listdir(staged / venv)),
        "usr/local/lib/systemd",
        "usr/local/lib/systemd/system",
        "usr/local/lib/systemd/system/lacme.service",
        "usr/local/lib/systemd/system/lacme.timer",
        "usr/local/share",
        "usr/local/share/man",
        *(f"usr/local/share/man/{Path(manual).parent}" for manual in MANUALS),
        "usr/local/share/bash-completion",
        "usr/local/share/bash-completion/completions",
        *(f"usr/local/share/bash-completion/completions/{name}" for name in COMPLETIONS),
        *(f"usr/local/share/man/{manual}" for manual in MANUALS),
    }
    assert set(tree(staged)) == expected
    assert {"bin", "lib", "pyvenv.cfg"} <= set(os.listdir(staged / venv))


@pytest.mark.process
def test_staged_modes(staged: Path) -> None:
    venv = staged / VENV.lstrip("/")
    for name, path in tree(staged).items():
        if path.is_symlink() or path.is_relative_to(venv):
            continue
        # Configuration files and snippets, units, manuals.
        assert stat.S_IMODE(path.stat().st_mode) == (0o755 if path.is_dir() else 0o644), name
    for command in ("lacme", "lacme-accountd"):
        assert stat.S_IMODE((venv / "bin" / command).stat().st_mode) == 0o755
    # Every user can read and run the virtual environment; nobody else can write it.
    for directory, dirnames, filenames in os.walk(staged / VENV.lstrip("/")):
        for name in [*dirnames, *filenames]:
            path = Path(directory, name)
            if not path.is_symlink():
                mode = path.stat().st_mode
                assert mode & 0o044 == 0o044, path
                assert not mode & 0o022, path
                if path.is_dir():
                    assert mode & 0o011 == 0o011, path


@pytest.mark.process
def test_staged_commands(staged: Path) -> None:
    for name, directory in (("lacme", "sbin"), ("lacme-accountd", "bin")):
        link = staged / "usr/local" / directory / name
        assert os.readlink(link) == f"{VENV}/bin/{name}"
        script = staged / VENV.lstrip("/") / "bin" / name
        assert script.read_text().splitlines()[0] == f"#!{VENV}/bin/python3"
    service = (staged / "usr/local/lib/systemd/system/lacme.service").read_text()
    assert "ExecStart=/usr/local/sbin/lacme newOrder\n" in service
    conf = (staged / "etc/lacme/lacme.conf").read_text()
    assert f"#command = {VENV}/bin/python3 -I -m lacme.client\n" in conf
    # Section names are read by the installed lacme.
    for name in COMPLETIONS:
        completion = (staged / "usr/local/share/bash-completion/completions" / name).read_text()
        assert f'_LACME_PYTHON="{VENV}/bin/python3"\n' in completion


@pytest.mark.process
def test_staged_installation_holds_no_key_and_no_staging_path(staged: Path) -> None:
    venv = staged / VENV.lstrip("/")
    for name, path in tree(staged).items():
        if path.is_file() and not path.is_symlink() and not name.startswith(VENV.lstrip("/")):
            assert b"PRIVATE KEY" not in path.read_bytes(), name
    for path in [*(venv / "bin").iterdir(), venv / "pyvenv.cfg"]:
        if path.is_file() and not path.is_symlink():
            assert str(staged).encode() not in path.read_bytes(), path


@pytest.mark.process
def test_staged_reinstall_and_uninstall() -> None:
    with ExitStack() as stack:
        destdir = temporary_directory(stack, "lacme-destdir-")
        install(f"DESTDIR={destdir}")
        etc = destdir / "etc/lacme"
        edited = "[client]\nserver = https://acme.example.test/directory\n"
        (etc / "lacme.conf").write_text(edited)
        (etc / "nginx.conf").unlink()
        (etc / "account.key").touch(mode=0o600)
        (etc / "lacme-certs.conf.d/www.conf").write_text("[www]\n")

        stderr = install(f"DESTDIR={destdir}")
        assert (etc / "lacme.conf").read_text() == edited
        assert f"keeping the existing {etc}/lacme.conf" in stderr
        assert (etc / "nginx.conf").read_text() == (TOP / "snippets/nginx.conf").read_text()

        before = set(tree(destdir))
        install(f"DESTDIR={destdir}", uninstall=True)
        after = set(tree(destdir))
        assert {name for name in after if (destdir / name).is_file()} == {
            *(f"etc/lacme/{name}" for name in CONFIG_FILES + SNIPPETS),
            "etc/lacme/account.key",
            "etc/lacme/lacme-certs.conf.d/www.conf",
            MANIFEST,
        }
        assert after < before
        assert not any(name.startswith(VENV.lstrip("/")) for name in after)

        # What the first install wrote and the second kept is still recorded
        # as the first wrote it: removed, unchanged, but for the edited file.
        stderr = install(f"DESTDIR={destdir}", "PURGE=1", uninstall=True)
        assert set(tree(destdir)) == {
            "etc",
            "etc/lacme",
            "etc/lacme/account.key",
            "etc/lacme/lacme.conf",
            "etc/lacme/lacme-certs.conf.d",
            "etc/lacme/lacme-certs.conf.d/www.conf",
        }
        assert (etc / "lacme.conf").read_text() == edited
        assert f"keeping {etc}/lacme.conf: changed since it was installed" in stderr
        assert f"{etc}/account.key" in stderr


class Entry(NamedTuple):
    """A line of the manifest."""

    kind: str
    digest: str
    path: str


def manifest(destdir: Path) -> list[Entry]:
    header, *lines = (destdir / MANIFEST).read_text().splitlines()
    assert header.startswith("# lacme scripts/install manifest 1:")
    return [Entry(*line.split(" ", 2)) for line in lines]


def contents(root: Path) -> dict[str, bytes | str | None]:
    """Every path under ROOT, the venv's insides included: a file's content,
    a link's target, None for a directory."""
    found: dict[str, bytes | str | None] = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(directory, name)
            relative = str(path.relative_to(root))
            if path.is_symlink():
                found[relative] = os.readlink(path)
            else:
                found[relative] = path.read_bytes() if path.is_file() else None
    return found


def with_parents(names: Iterable[str]) -> set[str]:
    """NAMES (relative paths) and every directory above them."""
    return {str(parent) for name in names for parent in [Path(name), *Path(name).parents]} - {"."}


def debian_conffiles(package: str) -> dict[str, bytes]:
    """The files Debian's PACKAGE put in /etc/lacme, by name."""
    listed = subprocess.run(
        ["dpkg-query", "--listfiles", package], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    files = [Path(line) for line in listed if line.startswith("/etc/lacme/")]
    return {path.name: path.read_bytes() for path in files if path.is_file()}


@pytest.mark.process
@pytest.mark.debian("lacme")
def test_purge_keeps_edited_and_debian_files() -> None:
    with ExitStack() as stack:
        destdir = temporary_directory(stack, "lacme-destdir-")
        etc = destdir / "etc/lacme"
        (etc / "lacme-certs.conf.d").mkdir(parents=True)
        debian = debian_conffiles("lacme")
        # All of ours but lacme-accountd's, which is lacme-accountd's.
        assert set(debian) == set(CONFIG_FILES + SNIPPETS) - {"lacme-accountd.conf"}
        for name, content in debian.items():
            (etc / name).write_bytes(content)
        stderr = install(f"DESTDIR={destdir}")
        for name in debian:
            assert f"keeping the existing {etc / name}" in stderr
        assert {entry.path for entry in manifest(destdir) if entry.kind == "conf"} == {
            "/etc/lacme/lacme-accountd.conf"
        }
        ours = etc / "lacme-accountd.conf"
        ours.write_text(ours.read_text() + "privkey = file:/etc/lacme/account.key\n")
        unit = destdir / "usr/local/lib/systemd/system/lacme.service"
        unit.write_text(unit.read_text() + "# edited\n")
        edited = {
            f"etc/lacme/{ours.name}": ours.read_bytes(),
            str(unit.relative_to(destdir)): unit.read_bytes(),
        }

        stderr = install(f"DESTDIR={destdir}", "PURGE=1", uninstall=True)
        files = {f"etc/lacme/{name}": content for name, content in debian.items()} | edited
        left = contents(destdir)
        assert set(left) == with_parents({*files, "etc/lacme/lacme-certs.conf.d"})
        assert {name: content for name, content in left.items() if content is not None} == files
        for name in edited:
            assert f"keeping {destdir / name}: changed since it was installed" in stderr


@pytest.mark.process
def test_uninstall_records_what_purge_is_left_to_remove() -> None:
    with ExitStack() as stack:
        destdir = temporary_directory(stack, "lacme-destdir-")
        install(f"DESTDIR={destdir}")
        installed = manifest(destdir)
        assert {entry.kind for entry in installed} == {
            "file",
            "conf",
            "link",
            "venv",
            "dir",
            "confdir",
        }
        # Every file the install wrote, the manifest itself and the venv's
        # insides aside, is listed with its checksum.
        written = {
            name
            for name, path in tree(destdir).items()
            if not path.is_dir() and name != MANIFEST and not name.startswith(VENV[1:] + "/")
        }
        assert {entry.path.lstrip("/") for entry in installed if entry.kind != "dir"} >= written
        for entry in installed:
            if entry.kind in ("file", "conf"):
                digest = hashlib.sha256((destdir / entry.path.lstrip("/")).read_bytes())
                assert entry.digest == digest.hexdigest(), entry

        install(f"DESTDIR={destdir}", uninstall=True)
        # Only the configuration is left, and recorded; and the directories
        # holding it and the manifest.
        holding_manifest = {str(parent) for parent in Path(f"/{MANIFEST}").parents}
        assert manifest(destdir) == [
            entry
            for entry in installed
            if entry.kind in ("conf", "confdir") or entry.path in holding_manifest
        ]
        assert set(tree(destdir)) == with_parents(
            {MANIFEST, "etc/lacme/lacme-certs.conf.d"}
            | {f"etc/lacme/{name}" for name in CONFIG_FILES + SNIPPETS}
        )

        install(f"DESTDIR={destdir}", "PURGE=1", uninstall=True)
        assert tree(destdir) == {}


def assert_removes_nothing(
    destdir: Path, line: str, *settings: str, uninstall: bool = True
) -> None:
    """Uninstalling (or installing) with SETTINGS fails with LINE alone and
    leaves DESTDIR as it was."""
    before = contents(destdir)
    result = script(f"DESTDIR={destdir}", *settings, uninstall=uninstall)
    assert (result.returncode, result.stderr) == (1, f"{UNINSTALL.parent / 'install'}: {line}\n")
    assert contents(destdir) == before


@pytest.mark.process
def test_uninstall_without_manifest_removes_nothing(staged: Path) -> None:
    with ExitStack() as stack:
        destdir = temporary_directory(stack, "lacme-destdir-")
        shutil.copytree(staged, destdir, symlinks=True, dirs_exist_ok=True)
        (destdir / MANIFEST).unlink()
        assert_removes_nothing(
            destdir,
            f"no {destdir / MANIFEST} (an install by an older scripts/install?), so removing"
            " nothing; scripts/install with the same settings, then scripts/uninstall, removes"
            " what it rewrites",
            "PURGE=1",
        )


@pytest.mark.process
def test_uninstall_refuses_a_damaged_manifest(staged: Path) -> None:
    with ExitStack() as stack:
        destdir = temporary_directory(stack, "lacme-destdir-")
        shutil.copytree(staged, destdir, symlinks=True, dirs_exist_ok=True)
        lines = (destdir / MANIFEST).read_text().splitlines()
        for number, damaged, fault in (
            (2, "disk - /usr/local", "unknown kind 'disk'"),
            (3, "file 1234 /usr/local/sbin/lacme", "not 'KIND SHA-256 /PATH'"),
            (2, f"conf {'0' * 64} etc/lacme/lacme.conf", "not 'KIND SHA-256 /PATH'"),
        ):
            text = [*lines[: number - 1], damaged, *lines[number - 1 :]]
            (destdir / MANIFEST).write_text("\n".join(text) + "\n")
            assert_removes_nothing(destdir, f"{destdir / MANIFEST}, line {number}: {fault}")
        # Nor does an install over it go on: it would keep the damaged records.
        assert_removes_nothing(
            destdir, f"{destdir / MANIFEST}, line 2: not 'KIND SHA-256 /PATH'", uninstall=False
        )


@pytest.mark.process
def test_install_refuses_to_replace_another_lacme() -> None:
    with ExitStack() as stack:
        destdir = temporary_directory(stack, "lacme-destdir-")
        (destdir / "usr/sbin").mkdir(parents=True)
        (destdir / "usr/sbin/lacme").write_text("#!/usr/bin/perl\n")
        result = subprocess.run(
            [INSTALL, "PREFIX=/usr", f"DESTDIR={destdir}"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert result.returncode == 1
        assert "refusing to replace" in result.stderr
        assert (destdir / "usr/sbin/lacme").read_text() == "#!/usr/bin/perl\n"
        assert not (destdir / "usr/lib").exists()


# ---------------------------------------------------------------------------
# Real installation, and an issuance by the installed commands


def private_etc(directory: Path) -> Path:
    """A copy of /etc without lacme's users and configuration."""
    etc = directory / "etc"
    subprocess.run(["cp", "-a", "/etc", str(etc)], check=True)
    shutil.rmtree(etc / "lacme", ignore_errors=True)
    for name in ("passwd", "shadow"):
        path = etc / name
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(line for line in lines if line.split(":")[0] not in USERS))
    return etc


def namespace(etc: Path) -> list[str]:
    """A command prefix: run in a new mount namespace with ETC over /etc."""
    return [
        "unshare",
        "--mount",
        "--propagation=private",
        "sh",
        "-ec",
        'mount --bind "$0" /etc && exec "$@"',
        str(etc),
    ]


def sandbox(etc: Path, unit: str) -> list[str]:
    """A command prefix approximating UNIT's sandboxing as it matters to
    lacme: its capability bounding set, NoNewPrivileges and ProtectSystem=full
    (read-only /usr and /etc)."""
    values = dict(line.split("=", 1) for line in unit.splitlines() if re.match(r"[A-Za-z]+=", line))
    assert values["NoNewPrivileges"] == "yes"
    assert values["ProtectSystem"] == "full"
    capabilities = ",".join(
        "+" + name.removeprefix("CAP_").lower() for name in values["CapabilityBoundingSet"].split()
    )
    return [
        "unshare",
        "--mount",
        "--propagation=private",
        "sh",
        "-ec",
        'mount --bind "$0" /etc; mount --bind /usr /usr; '
        'for d in /usr /etc; do mount -o remount,bind,ro "$d"; done; exec "$@"',
        str(etc),
        "setpriv",
        "--no-new-privs",
        f"--bounding-set=-all,{capabilities}",
    ]


def set_setting(path: Path, section: str, key: str, value: str) -> None:
    """Uncomment KEY in SECTION of PATH, with VALUE."""
    lines = path.read_text().splitlines()
    current, done = inifile.DEFAULT_SECTION, False
    for i, line in enumerate(lines):
        if header := _HEADER.fullmatch(line):
            current = header[2]
        elif current == section and re.fullmatch(rf"#{re.escape(key)} =.*", line):
            lines[i], done = f"{key} = {value}", True
    assert done, f"no #{key} in [{section}] of {path}"
    path.write_text("\n".join(lines) + "\n")


def run(
    argv: Sequence[str | Path], env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=TIMEOUT, check=False, env=env
    )
    assert result.returncode == 0, (
        f"{result.args} exited {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )
    return result


class RealInstall(NamedTuple):
    prefix: Path
    etc: Path  # the private /etc
    inside: list[str]  # a command prefix running with it as /etc
    stderr: str  # what the install said


@pytest.fixture
def real_install() -> Iterator[RealInstall]:
    """scripts/install as root with PREFIX under a temporary directory, and a
    private /etc without lacme's users and configuration."""
    require_root("it installs for real, creating users")
    require_packages("util-linux")
    with ExitStack() as stack:
        top = temporary_directory(stack, "lacme-install-")
        etc = private_etc(top)
        prefix, inside = top / "usr", namespace(etc)
        yield RealInstall(prefix, etc, inside, install(f"PREFIX={prefix}", wrap=inside))


@pytest.mark.e2e
@pytest.mark.root
def test_install_issue_and_uninstall(real_install: RealInstall, pebble: PebbleServer) -> None:
    prefix, etc, inside, _ = real_install
    for user in USERS:
        entry = run([*inside, "getent", "passwd", user]).stdout.strip().split(":")
        assert entry[3] == "65534"  # nogroup
        assert entry[5:] == ["/nonexistent", "/usr/sbin/nologin"]
    lacme, lacme_accountd = prefix / "sbin/lacme", prefix / "bin/lacme-accountd"
    for command in (lacme, lacme_accountd):
        assert run([command, "--version"]).stdout.split()[-1] == lacme_package.__version__
    # The commands lacme.conf shows are the defaults of the installed lacme.
    python = (prefix / "lib/lacme/venv/bin/lacme").read_text().splitlines()[0][2:]
    defaults = run(
        [
            python,
            "-I",
            "-c",
            "from lacme import config\n"
            "for section in config.ClientConfig, config.WebserverConfig, config.AccountdConfig:\n"
            "    print(section().command)",
        ]
    ).stdout.splitlines()
    shown = re.findall(r"(?m)^#command = (.*)$", (etc / "lacme/lacme.conf").read_text())
    assert shown == defaults

    # The shipped configuration, with only the server, the listen address,
    # the CA trust and the account key set; a certificate in lacme-certs.conf.d/.
    conf = etc / "lacme"
    set_setting(conf / "lacme.conf", "client", "server", pebble.directory_url)
    set_setting(conf / "lacme.conf", "client", "SSL_CAfile", str(pebble.ca_bundle))
    set_setting(conf / "lacme.conf", "webserver", "listen", f"127.0.0.1:{pebble.http_port}")
    new_key_file(conf / "account.key", "p256")
    set_setting(
        conf / "lacme-accountd.conf",
        inifile.DEFAULT_SECTION,
        "privkey",
        "file:/etc/lacme/account.key",
    )
    with ExitStack() as stack:
        certificates = temporary_directory(stack, "lacme-certificates-")
        service_key = new_key_file(certificates / "www.key", "p256")
        (conf / "lacme-certs.conf.d/www.conf").write_text(
            "[www]\n"
            f"certificate-key = {certificates / 'www.key'}\n"
            f"certificate-chain = {certificates / 'www.pem'}\n"
            "subject = /CN=www.example.test\n"
            "subjectAltName = DNS:example.test\n"
            f"CAfile = {pebble.roots_file}\n"
        )
        run([*inside, lacme, "account", "--register", "--tos-agreed", "mailto:admin@example.test"])
        # Renewal as lacme.service runs it, sandboxed.
        unit = (prefix / "lib/systemd/system/lacme.service").read_text()
        (exec_start,) = re.findall(r"(?m)^ExecStart=(.*)$", unit)
        assert exec_start.split() == [str(lacme), "newOrder"]
        # Not even a warning: cleaning up needs the capabilities too.
        assert "Warning" not in run([*sandbox(etc, unit), *exec_start.split()]).stderr
        chain = x509.load_pem_x509_certificates((certificates / "www.pem").read_bytes())
    assert chain[0].public_key() == service_key.public_key()
    names = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(names.get_values_for_type(x509.DNSName)) == ["example.test", "www.example.test"]

    install(f"PREFIX={prefix}", uninstall=True, wrap=inside)
    assert [path for path in prefix.rglob("*") if not path.is_dir()] == [
        prefix / "lib/lacme/installed"
    ]
    assert {path.name for path in conf.iterdir()} >= {*CONFIG_FILES, *SNIPPETS}
    for user in USERS:  # they may still own files: left in place
        run([*inside, "getent", "passwd", user])
    install(f"PREFIX={prefix}", "PURGE=1", uninstall=True, wrap=inside)
    # Edited, or Debian's lacme's and lacme-accountd's as dpkg sees them
    # (see test_purge_keeps_what_a_debian_package_owns), the rest removed.
    debian = {name for name in CONFIG_FILES + SNIPPETS if dpkg_owned(f"/etc/lacme/{name}")}
    assert {path.name for path in conf.iterdir()} == {
        "account.key",
        "lacme-certs.conf.d",
        "lacme.conf",
        "lacme-accountd.conf",
        *debian,
    }
    assert not prefix.exists()


def dpkg_owned(path: str) -> bool:
    result = subprocess.run(["dpkg-query", "--search", path], capture_output=True, check=False)
    return result.returncode == 0


@pytest.mark.process
@pytest.mark.root
@pytest.mark.debian("lacme", "lacme-accountd")
def test_purge_keeps_what_a_debian_package_owns(real_install: RealInstall) -> None:
    # The private /etc had no /etc/lacme: the install wrote every file there,
    # each one a path Debian's lacme or lacme-accountd owns in dpkg's database.
    prefix, etc, inside, _ = real_install
    conf = etc / "lacme"
    written = {name: (conf / name).read_bytes() for name in CONFIG_FILES + SNIPPETS}
    stderr = install(f"PREFIX={prefix}", "PURGE=1", uninstall=True, wrap=inside)
    assert {name: (conf / name).read_bytes() for name in written} == written
    for name in written:
        package = "lacme-accountd" if name == "lacme-accountd.conf" else "lacme"
        assert f"keeping /etc/lacme/{name}: it belongs to Debian's {package}\n" in stderr
    # A directory Debian's lacme owns, though empty.
    assert (conf / "lacme-certs.conf.d").is_dir()
    assert not prefix.exists()


@pytest.mark.process
@pytest.mark.root
@pytest.mark.debian("lacme")
def test_install_says_debians_lacme_shares_the_configuration(real_install: RealInstall) -> None:
    version = subprocess.run(
        ["dpkg-query", "--show", "--showformat=${Version}", "lacme"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert (
        f"Debian's lacme {version} is installed too: its /usr/sbin/lacme reads /etc/lacme"
        " as well, and refuses some of this lacme's settings there (SSL_CAfile, profile, ...):"
        ' see "Beside Debian\'s lacme" in README.md\n'
    ) in real_install.stderr
    # A staged installation is for another machine.
    with ExitStack() as stack:
        destdir = temporary_directory(stack, "lacme-destdir-")
        assert "Debian's lacme" not in install(f"DESTDIR={destdir}")


@pytest.mark.process
@pytest.mark.root
@pytest.mark.debian("bash-completion")
def test_installed_completion(real_install: RealInstall) -> None:
    # Loaded on first use by bash-completion, as in an interactive shell,
    # from $PREFIX/share (in its XDG_DATA_DIRS, /usr/local/share by default),
    # under either name; its sections read by the installed lacme.
    prefix = real_install.prefix
    with ExitStack() as stack:
        directory = temporary_directory(stack, "lacme-completion-", mode=0o700)
        (directory / "lacme.conf").write_text("[client]\n")
        (directory / "lacme-certs.conf").write_text("[www]\n[mail]\n")
        for command in ("lacme-accountd", "lacme"):
            completed = run(
                [
                    "bash",
                    "-c",
                    "source /usr/share/bash-completion/bash_completion\n"
                    '__load_completion "$0" && complete -p lacme lacme-accountd\n'
                    'COMP_WORDS=(lacme --config="$1" newOrder ""); COMP_CWORD=3; _lacme\n'
                    'printf "%s\\n" "${COMPREPLY[@]}"',
                    command,
                    str(directory / "lacme.conf"),
                ],
                env={**os.environ, "XDG_DATA_DIRS": str(prefix / "share")},
            )
            assert completed.stdout == (
                "complete -F _lacme lacme\ncomplete -F _lacme_accountd lacme-accountd\nwww\nmail\n"
            )


@pytest.mark.process
@pytest.mark.root
@pytest.mark.debian("systemd", "man-db")
def test_systemd_units_verify(real_install: RealInstall) -> None:
    # Installed for real: verify checks that ExecStart= and the manual exist.
    units = real_install.prefix / "lib/systemd/system"
    done = run(
        ["systemd-analyze", "verify", units / "lacme.service", units / "lacme.timer"],
        env={**os.environ, "MANPATH": str(real_install.prefix / "share/man")},
    )
    # An unknown or misspelt setting is only a warning: ignored, exit 0.
    assert done.stderr == ""
