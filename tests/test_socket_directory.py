"""lacme.socket_directory: the one check of the directory of lacme-accountd's
socket.  How each side words a refusal is tested with it:
tests/test_accountd_process.py (accountd) and tests/test_accountd_link.py
(the master)."""

from pathlib import Path

import pytest

from lacme.socket_directory import InsecureDirectory, check_socket_directory

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("mode", [0o700, 0o755, 0o750, 0o711, 0o1755])
def test_private_directories(tmp_path: Path, mode: int) -> None:
    directory = tmp_path / "run"
    directory.mkdir()
    directory.chmod(mode)
    assert check_socket_directory(str(directory / "S.lacme")) == str(directory)


@pytest.mark.parametrize("mode", [0o770, 0o720, 0o702, 0o757, 0o777, 0o1777, 0o2775])
def test_directories_others_may_write_to(tmp_path: Path, mode: int) -> None:
    directory = tmp_path / "run"
    directory.mkdir()
    directory.chmod(mode)
    with pytest.raises(InsecureDirectory) as refused:
        check_socket_directory(str(directory / "S.lacme"))
    assert (refused.value.directory, refused.value.mode) == (str(directory), mode)


def test_relative_path_is_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    tmp_path.chmod(0o700)
    assert check_socket_directory("S.lacme") == "."
    tmp_path.chmod(0o777)
    with pytest.raises(InsecureDirectory) as refused:
        check_socket_directory("S.lacme")
    assert refused.value.directory == "."


def test_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError) as refused:
        check_socket_directory(str(missing / "S.lacme"))
    assert refused.value.filename == str(missing)
