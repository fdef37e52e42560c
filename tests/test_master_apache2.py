"""Our `lacme` master behind a real Apache httpd (Debian's apache2-bin), with
the snippets we ship: Apache serving the challenge directory itself, or
forwarding to our webserver on a UNIX socket."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from master_helpers import master_setup
from pebble import PebbleServer, port_open, stop_process, wait_for
from test_master_nginx import order

SNIPPETS = Path(__file__).parent.parent / "snippets"
APACHE = shutil.which("apache2") or "/usr/sbin/apache2"
MODULES = Path("/usr/lib/apache2/modules")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="lacme's master must run as root"),
    pytest.mark.skipif(
        not os.access(APACHE, os.X_OK), reason="apache2 missing (Debian package apache2-bin)"
    ),
]


@contextmanager
def running_apache(
    directory: Path, port: int, snippet: str, default: str, path: Path
) -> Iterator[None]:
    """Apache on 127.0.0.1:PORT including SNIPPET, with PATH for its DEFAULT path."""
    text = (SNIPPETS / snippet).read_text()
    assert default in text
    (directory / "snippet.conf").write_text(text.replace(default, str(path)))
    modules = "".join(
        f"LoadModule {name}_module {MODULES / f'mod_{name}.so'}\n"
        for name in ("mpm_event", "authz_core", "alias", "mime", "proxy", "proxy_http")
    )
    (directory / "httpd.conf").write_text(
        f"{modules}"
        f"ServerRoot {directory}\n"
        f"DefaultRuntimeDir {directory}\n"
        f"PidFile {directory / 'httpd.pid'}\n"
        "ServerName localhost\n"
        "TypesConfig /dev/null\n"
        "User www-data\n"
        "Group www-data\n"
        f"Listen 127.0.0.1:{port}\n"
        f"ErrorLog {directory / 'error.log'}\n"
        'LogFormat "%r %>s" short\n'
        f"CustomLog {directory / 'access.log'} short\n"
        "<Directory />\n    Require all denied\n</Directory>\n"
        f"Include {directory / 'snippet.conf'}\n"
    )
    proc = subprocess.Popen(
        [APACHE, "-f", str(directory / "httpd.conf"), "-DFOREGROUND"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def alive() -> None:
        if proc.poll() is not None:
            error_log = directory / "error.log"
            raise RuntimeError(f"apache2 exited {proc.returncode}:\n{error_log.read_text()}")

    try:
        wait_for(lambda: port_open(port), "apache2", alive=alive)
        yield
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGWINCH)  # graceful stop
        stop_process(proc)


def test_challenge_directory_served_by_apache(pebble: PebbleServer) -> None:
    with master_setup(pebble, listen="") as setup:
        challenges = setup.directory / "acme-challenge"
        challenges.mkdir(mode=0o755)
        os.chown(challenges, int(subprocess.check_output(["id", "-u", "_lacme-client"])), -1)
        with setup.config.open("a") as f:
            f.write(f"[webserver]\nchallenge-directory = {challenges}\n")
        with running_apache(
            setup.directory,
            pebble.http_port,
            "apache2-static.conf",
            "/var/www/acme-challenge",
            challenges,
        ):
            order(setup)
        assert list(challenges.iterdir()) == []
        assert "/.well-known/acme-challenge/" in (setup.directory / "access.log").read_text()


def test_unix_socket_behind_apache_proxy(pebble: PebbleServer) -> None:
    with master_setup(pebble) as setup:
        socket_path = setup.directory / "www.sock"
        with setup.config.open("a") as f:
            f.write(f"[webserver]\nlisten = {socket_path}\n")
        with running_apache(
            setup.directory,
            pebble.http_port,
            "apache2.conf",
            "/run/lacme-www.socket",
            socket_path,
        ):
            order(setup)
        assert not socket_path.exists()
        assert " 200" in (setup.directory / "access.log").read_text()
