"""Our `lacme` master behind a real nginx (Debian's nginx) or Apache httpd
(Debian's apache2-bin), with the snippets we ship: the HTTP daemon serving
the challenge directory itself, or forwarding to our webserver on a UNIX
socket."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import NamedTuple

import pytest

from support.masters import MasterSetup, leaf_of, master_setup
from support.pebble import PebbleServer
from support.system import port_open, stop_process, wait_for

SNIPPETS = Path(__file__).parent.parent / "snippets"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
APACHE = shutil.which("apache2") or "/usr/sbin/apache2"
MODULES = Path("/usr/lib/apache2/modules")

pytestmark = [pytest.mark.e2e, pytest.mark.root]


@contextmanager
def running_nginx(
    directory: Path, port: int, snippet: str, default: str, path: Path
) -> Iterator[None]:
    """nginx on 127.0.0.1:PORT including SNIPPET, with PATH for its DEFAULT path."""
    text = (SNIPPETS / snippet).read_text()
    assert default in text
    text = text.replace(default, str(path))
    (directory / "snippet.conf").write_text(text)
    temp = "".join(
        f"    {kind}_temp_path {directory / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (directory / "nginx.conf").write_text(
        "user www-data;\n"
        "worker_processes 1;\n"
        f"pid {directory / 'nginx.pid'};\n"
        f"error_log {directory / 'error.log'};\n"
        "daemon off;\n"
        "events { worker_connections 64; }\n"
        "http {\n"
        f"    access_log {directory / 'access.log'};\n"
        f"{temp}"
        "    server {\n"
        f"        listen 127.0.0.1:{port};\n"
        f"        include {directory / 'snippet.conf'};\n"
        "    }\n"
        "}\n"
    )
    proc = subprocess.Popen(
        [NGINX, "-c", str(directory / "nginx.conf"), "-p", str(directory)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: port_open(port), "nginx")
        yield
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)  # graceful
        stop_process(proc)


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


def order(setup: MasterSetup) -> None:
    setup.run("account", "--register", "--tos-agreed", "mailto:admin@example.test")
    key_path, key = setup.service_key("service", "p256")
    setup.write_sections(
        {
            "behind-httpd": {
                "certificate-key": str(key_path),
                "certificate": str(setup.directory / "cert.pem"),
                "subject": "/CN=x.example.test",
                "subjectAltName": "DNS:y.example.test",
            }
        }
    )
    setup.run("newOrder")
    assert leaf_of(setup.directory / "cert.pem").public_key() == key.public_key()


class Httpd(NamedTuple):
    """An HTTP daemon and its two shipped snippets."""

    run: Callable[[Path, int, str, str, Path], AbstractContextManager[None]]
    static_snippet: str
    proxy_snippet: str


HTTPDS = [
    pytest.param(
        Httpd(running_nginx, "nginx-static.conf", "nginx.conf"),
        id="nginx",
        marks=pytest.mark.debian("nginx"),
    ),
    pytest.param(
        Httpd(running_apache, "apache2-static.conf", "apache2.conf"),
        id="apache2",
        marks=pytest.mark.debian("apache2-bin"),
    ),
]


@pytest.mark.parametrize("httpd", HTTPDS)
def test_challenge_directory_served_by_the_httpd(pebble: PebbleServer, httpd: Httpd) -> None:
    with master_setup(pebble, listen="") as setup:
        challenges = setup.directory / "acme-challenge"
        challenges.mkdir(mode=0o755)
        os.chown(challenges, int(subprocess.check_output(["id", "-u", "_lacme-client"])), -1)
        with setup.config.open("a") as f:
            f.write(f"[webserver]\nchallenge-directory = {challenges}\n")
        with httpd.run(
            setup.directory,
            pebble.http_port,
            httpd.static_snippet,
            "/var/www/acme-challenge",
            challenges,
        ):
            order(setup)
        # Every challenge file and the lock are gone; the daemon did serve them.
        assert list(challenges.iterdir()) == []
        assert "/.well-known/acme-challenge/" in (setup.directory / "access.log").read_text()


@pytest.mark.parametrize("httpd", HTTPDS)
def test_unix_socket_behind_the_httpd(pebble: PebbleServer, httpd: Httpd) -> None:
    with master_setup(pebble) as setup:
        socket_path = setup.directory / "www.sock"
        with setup.config.open("a") as f:
            f.write(f"[webserver]\nlisten = {socket_path}\n")
        with httpd.run(
            setup.directory,
            pebble.http_port,
            httpd.proxy_snippet,
            "/run/lacme-www.socket",
            socket_path,
        ):
            order(setup)
        assert not socket_path.exists()
        assert " 200" in (setup.directory / "access.log").read_text()
