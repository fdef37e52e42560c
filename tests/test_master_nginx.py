"""Our `lacme` master behind a real nginx (Debian's), with the snippets we ship:
nginx serving the challenge directory itself, or forwarding to our webserver
on a UNIX socket."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from master_helpers import MasterSetup, leaf_of, master_setup
from pebble import PebbleServer, port_open, stop_process, wait_for

SNIPPETS = Path(__file__).parent.parent / "snippets"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="lacme's master must run as root"),
    pytest.mark.skipif(
        not os.access(NGINX, os.X_OK), reason="nginx missing (Debian package nginx)"
    ),
]


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


def order(setup: MasterSetup) -> None:
    setup.run("account", "--register", "--tos-agreed", "mailto:admin@example.test")
    key_path, key = setup.service_key("service", "p256")
    setup.write_sections(
        {
            "nginx": {
                "certificate-key": str(key_path),
                "certificate": str(setup.directory / "cert.pem"),
                "subject": "/CN=x.example.test",
                "subjectAltName": "DNS:y.example.test",
            }
        }
    )
    setup.run("newOrder")
    assert leaf_of(setup.directory / "cert.pem").public_key() == key.public_key()


def test_challenge_directory_served_by_nginx(pebble: PebbleServer) -> None:
    with master_setup(pebble, listen="") as setup:
        challenges = setup.directory / "acme-challenge"
        challenges.mkdir(mode=0o755)
        os.chown(challenges, int(subprocess.check_output(["id", "-u", "_lacme-client"])), -1)
        with setup.config.open("a") as f:
            f.write(f"[webserver]\nchallenge-directory = {challenges}\n")
        with running_nginx(
            setup.directory,
            pebble.http_port,
            "nginx-static.conf",
            "/var/www/acme-challenge",
            challenges,
        ):
            order(setup)
        # Every challenge file and the lock are gone; nginx did serve them.
        assert list(challenges.iterdir()) == []
        assert "/.well-known/acme-challenge/" in (setup.directory / "access.log").read_text()


def test_unix_socket_behind_nginx_proxy_pass(pebble: PebbleServer) -> None:
    with master_setup(pebble) as setup:
        socket_path = setup.directory / "www.sock"
        with setup.config.open("a") as f:
            f.write(f"[webserver]\nlisten = {socket_path}\n")
        with running_nginx(
            setup.directory,
            pebble.http_port,
            "nginx.conf",
            "/run/lacme-www.socket",
            socket_path,
        ):
            order(setup)
        assert not socket_path.exists()
        assert " 200 " in (setup.directory / "access.log").read_text()
