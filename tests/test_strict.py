"""lacme.strict, sshd's StrictModes for the master's configuration and
notify programs, in the test's own process: modes, sticky directories,
owners (an lstat that says so, as a file of another user needs root:
tests/test_red_team.py has the real one) and symbolic links."""

from __future__ import annotations

import errno
import os
import pwd
import tempfile
from pathlib import Path

import pytest

from lacme import config, notify, strict
from lacme.errors import ConfigError

pytestmark = pytest.mark.unit

# Nobody's on this machine, as `lstat_owned_by` reports it.
STRANGER = 4_000_000_000


def trusted() -> str:
    """Who may own configuration, as the refusal says it."""
    euid = os.geteuid()
    return "root" if euid == 0 else f"root or {pwd.getpwuid(euid).pw_name}"


def safe(directory: Path) -> Path:
    directory.chmod(0o755)
    return directory


def file_in(directory: Path, mode: int = 0o644, name: str = "lacme.conf") -> Path:
    path = directory / name
    path.write_text("")
    path.chmod(mode)
    return path


def lstat_owned_by(monkeypatch: pytest.MonkeyPatch, path: Path, uid: int) -> None:
    """os.lstat as lacme.strict sees it says PATH is UID's."""
    real = os.lstat

    def lstat(name: str) -> os.stat_result:
        status = real(name)
        if name != str(path):
            return status
        fields = list(status)
        fields[4] = uid
        return os.stat_result(fields)

    monkeypatch.setattr(os, "lstat", lstat)


def test_a_file_only_its_owner_writes_is_fine(tmp_path: Path) -> None:
    assert strict.problem(str(file_in(safe(tmp_path)))) is None


def test_a_relative_path_is_taken_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file_in(safe(tmp_path), 0o646)
    monkeypatch.chdir(tmp_path)
    assert strict.problem("lacme.conf") == "writable by others (mode 0646)"


@pytest.mark.parametrize(
    ("mode", "writers"),
    [(0o664, "group"), (0o646, "others"), (0o666, "group and others")],
)
def test_a_file_others_may_write_is_refused(tmp_path: Path, mode: int, writers: str) -> None:
    path = file_in(safe(tmp_path), mode)
    assert strict.problem(str(path)) == f"writable by {writers} (mode {mode:04o})"


def test_dev_null_is_fine() -> None:
    # An empty configuration, as `[accountd] config = /dev/null`.
    assert strict.problem("/dev/null") is None


def test_a_fifo_others_may_write_is_refused(tmp_path: Path) -> None:
    fifo = safe(tmp_path) / "lacme.conf"
    os.mkfifo(fifo)
    fifo.chmod(0o622)
    assert strict.problem(str(fifo)) == "writable by group and others (mode 0622)"


def test_a_directory_above_others_may_write_is_refused(tmp_path: Path) -> None:
    above = tmp_path / "above"
    below = above / "below"
    below.mkdir(parents=True)
    above.chmod(0o777)
    path = file_in(safe(below))
    assert strict.problem(str(path)) == f"{above} is writable by group and others (mode 0777)"


def test_a_sticky_directory_holding_a_trusted_file_is_fine(tmp_path: Path) -> None:
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    assert strict.problem(str(file_in(sticky))) is None


def test_a_file_in_tmp_is_fine() -> None:
    assert os.stat("/tmp").st_mode & 0o1777 == 0o1777
    with tempfile.NamedTemporaryFile(dir="/tmp") as f:
        os.chmod(f.name, 0o644)
        assert strict.problem(f.name) is None


def test_a_file_of_another_user_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = file_in(safe(tmp_path))
    lstat_owned_by(monkeypatch, path, STRANGER)
    assert strict.problem(str(path)) == f"owned by uid {STRANGER}, not {trusted()}"


def test_a_file_of_another_user_in_a_sticky_directory_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    path = file_in(sticky, 0o666)
    lstat_owned_by(monkeypatch, path, STRANGER)
    assert strict.problem(str(path)) == (
        f"owned by uid {STRANGER}, not {trusted()}, and writable by group and others (mode 0666)"
    )


def test_a_directory_of_another_user_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = file_in(safe(tmp_path))
    lstat_owned_by(monkeypatch, tmp_path, STRANGER)
    assert strict.problem(str(path)) == f"{tmp_path} is owned by uid {STRANGER}, not {trusted()}"


def test_a_link_to_a_file_others_may_change_is_refused(tmp_path: Path) -> None:
    # The target is what is read.
    shared = tmp_path / "shared"
    shared.mkdir()
    target = file_in(safe(shared))
    shared.chmod(0o777)
    link = safe(tmp_path) / "link.conf"
    link.symlink_to(target)
    assert strict.problem(str(link)) == f"{shared} is writable by group and others (mode 0777)"


def test_a_link_others_may_replace_is_refused(tmp_path: Path) -> None:
    # Whoever writes its directory points it elsewhere.
    target = file_in(safe(tmp_path))
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (shared / "link.conf").symlink_to(target)
    assert strict.problem(str(shared / "link.conf")) == (
        f"{shared} is writable by group and others (mode 0777)"
    )


def test_a_link_of_another_user_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = file_in(safe(tmp_path))
    link = tmp_path / "link.conf"
    link.symlink_to(target)
    lstat_owned_by(monkeypatch, link, STRANGER)
    assert strict.problem(str(link)) == f"link {link} is owned by uid {STRANGER}, not {trusted()}"


def test_links_and_dot_dot_are_resolved_as_the_kernel_does(tmp_path: Path) -> None:
    # a/up/../c: a/up is b, so its .. is tmp_path, and c tmp_path/c, not a/c.
    (safe(tmp_path) / "a").mkdir(mode=0o755)
    (tmp_path / "b").mkdir(mode=0o755)
    (tmp_path / "a" / "up").symlink_to("../b")
    file_in(tmp_path / "a", name="c")
    unsafe = file_in(tmp_path, 0o666, "c")
    path = tmp_path / "a" / "up" / "." / ".." / "c"
    assert strict.problem(str(path)) == f"{unsafe} is writable by group and others (mode 0666)"


def test_a_link_loop_is_an_error(tmp_path: Path) -> None:
    (safe(tmp_path) / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(OSError, match=os.strerror(errno.ELOOP)) as raised:
        strict.problem(str(tmp_path / "a"))
    assert raised.value.errno == errno.ELOOP


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    (safe(tmp_path) / "dangling").symlink_to("missing")
    with pytest.raises(FileNotFoundError):
        strict.problem(str(tmp_path / "dangling"))


# --- what the master reads and runs ----------------------------------------------


def test_a_lacme_conf_others_may_write_is_refused(tmp_path: Path) -> None:
    path = file_in(safe(tmp_path), 0o664)
    with pytest.raises(ConfigError) as refused:
        config.load(str(path))
    assert str(refused.value) == f"{path}: refused: writable by group (mode 0664)"


def test_a_missing_lacme_conf_is_still_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        config.load(str(tmp_path / "missing.conf"))
    assert str(refused.value) == f"can't read {tmp_path}/missing.conf: No such file or directory"


def test_a_certificate_file_others_may_write_is_refused(tmp_path: Path) -> None:
    path = file_in(safe(tmp_path), 0o646, "lacme-certs.conf")
    with pytest.raises(ConfigError) as refused:
        config.load_certs([str(path)])
    assert str(refused.value) == f"{path}: refused: writable by others (mode 0646)"


def test_a_certificate_directory_others_may_write_is_refused(tmp_path: Path) -> None:
    # Whoever may write it may add a file.
    lacme_conf = file_in(safe(tmp_path))
    directory = tmp_path / "lacme-certs.conf.d"
    directory.mkdir(mode=0o775)
    directory.chmod(0o775)
    with pytest.raises(ConfigError) as refused:
        config.certificate_files(config.load(str(lacme_conf)))
    assert str(refused.value) == f"{directory}: refused: writable by group (mode 0775)"


def script(directory: Path, mode: int) -> Path:
    path = directory / "reload"
    path.write_text("#!/bin/sh\n")
    path.chmod(mode)
    return path


def test_a_notify_program_others_may_write_is_refused_before_ordering(tmp_path: Path) -> None:
    program = script(safe(tmp_path), 0o777)
    command = f"{program} nginx"
    assert notify.program_problem(command, notify.ROOT_PATH) == (
        f"notify = {command}: refused: {program}: writable by group and others (mode 0777)"
    )


def test_a_notify_program_in_a_directory_others_may_write_is_refused(tmp_path: Path) -> None:
    # Found in PATH, as the command runs with it.
    script(safe(tmp_path), 0o755)
    tmp_path.chmod(0o757)
    assert notify.program_refused("reload", str(tmp_path)) == (
        f"{tmp_path}/reload: {tmp_path} is writable by others (mode 0757)"
    )


@pytest.mark.parametrize(
    "command", ["true", "cd /; reload", "no-such-program", "echo 'a", "./missing/reload"]
)
def test_what_the_shell_runs_first_unknown_is_not_refused(tmp_path: Path, command: str) -> None:
    # Nothing to check (the shell says what it does not find); /bin/sh's own
    # directories are the system's.
    script(safe(tmp_path), 0o777)
    assert notify.program_refused(command, str(tmp_path)) is None
