"""Whose orphans the master ends (lacme.privdrop.end_orphans): the client's
and the webservers' uids, unless another child of the master runs as that
uid, whose orphans are not theirs to end.  Users every system has stand in
for lacme's own."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from lacme import config, master, master_command

pytestmark = pytest.mark.unit


def uid(user: str) -> int:
    return pwd.getpwnam(user).pw_uid


def run_for(tmp_path: Path, conf: str) -> master.Master:
    path = tmp_path / "lacme.conf"
    path.write_text(conf)
    args = master_command.parse_args([f"--config={path}", "newOrder"])
    assert isinstance(args, master_command.Arguments)
    return master.Master(args, config.load(str(path)))


WEBSERVER = "[webserver]\nuser = daemon\n"


@pytest.mark.parametrize(
    ("conf", "client"),
    [
        ("[client]\nuser = nobody\n" + WEBSERVER, "nobody"),
        # Neither a webserver nor accountd of the master's own.
        ("[client]\nuser = nobody\n[webserver]\nuser = nobody\nlisten =\n", "nobody"),
        (
            "[client]\nuser = nobody\n[webserver]\nuser = nobody\n"
            "challenge-directory = /nonexistent\n",
            "nobody",
        ),
        ("[client]\nuser = nobody\n[webserver]\nuser = no-such-user\n", "nobody"),
        ("[client]\nuser = nobody\n[webserver]\nuser = nobody\n", None),
        ("[client]\nuser = nobody\n[accountd]\nuser = nobody\n" + WEBSERVER, None),
        ("[client]\nuser =\n" + WEBSERVER, None),
    ],
)
def test_the_client_s_orphans_are_ended_when_no_other_child_shares_its_uid(
    tmp_path: Path, conf: str, client: str | None
) -> None:
    if os.geteuid() in {uid("nobody"), uid("daemon")}:
        pytest.fail("run as another user than nobody or daemon", pytrace=False)
    orphans = run_for(tmp_path, conf).orphans_uid
    assert orphans == (None if client is None else uid(client))


def test_accountd_and_the_master_own_uids_are_no_webserver_s(tmp_path: Path) -> None:
    run = run_for(tmp_path, "[client]\nuser = nobody\n[accountd]\nuser = daemon\n" + WEBSERVER)
    assert run.other_uids() == {os.geteuid(), uid("daemon")}
    assert run_for(tmp_path, WEBSERVER).other_uids() == {os.geteuid()}
