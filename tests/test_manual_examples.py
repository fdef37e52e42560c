"""Every literal example of lacme(8) and lacme-accountd(1), taken from the
manuals' sources (man/*.in) and run as written, with only host names, a
key's text and, where the machine cannot be the manual's, paths put in.

The machine the examples assume is a view (support.openssh): private
/etc, /home, /root, /run and /usr/local bind-mounted in a mount namespace
per command, our commands in /usr/local/sbin and /usr/local/bin as an
installation there puts them, users of its own (`lacme` on the key host,
`alice` on the server), and a real sshd on a loopback port of the test's
own network namespace, whose sessions see the same view.  So
`/etc/lacme/id_ed25519`, `/etc/ssl/certs/www.pem` or `/home/alice/S.lacme`
are the manual's paths, and `lacme@keys.example.org` becomes
`ssh://lacme@127.0.0.1:PORT`.

`test_every_example_is_run` keeps the list of who runs what: an example
added to a manual, or changed so that its first line differs, fails it
until a test runs it.
"""

from __future__ import annotations

import base64
import datetime
import io
import json
import os
import re
import shutil
import signal
import stat
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from lacme import config, master, status
from lacme.client_contract import FAILED, VALIDATED, Validation
from lacme.master_command import Arguments, parse_args
from lacme.progress import Progress
from support.clock import FakeClock
from support.commands import ACCOUNTD
from support.masters import check_issued, leaf_of
from support.openssh import Sshd, View, make_view, running_sshd, ssh_keygen
from support.pebble import PebbleFactory, PebbleServer
from support.pki import make_ca, new_key_file, pem, public_jwk
from support.system import all_running, temporary_directory, wait_for

ROOT = Path(__file__).resolve().parent.parent
LACME_8 = "lacme.8"
ACCOUNTD_1 = "lacme-accountd.1"


# ---------------------------------------------------------------------------
# The examples, from the manuals' sources


@dataclass(frozen=True)
class Example:
    page: str
    line: int  # of its .Bd in the source
    text: str  # as the manual shows it, each line ending in a newline


def _decode(line: str) -> str:
    r"""What mdoc shows of LINE of a literal display: \e is a backslash, \&
    nothing, \- a minus."""
    return line.replace(r"\&", "").replace(r"\-", "-").replace(r"\e", "\\")


def examples(page: str) -> list[Example]:
    """The literal displays (.Bd -literal ... .Ed) of PAGE's source."""
    found = []
    lines = (ROOT / "man" / f"{page}.in").read_text().splitlines()
    start = None
    for number, line in enumerate(lines, 1):
        if line.startswith(".Bd -literal"):
            start = number
        elif line == ".Ed" and start is not None:
            body = lines[start : number - 1]
            found.append(Example(page, start, "".join(_decode(text) + "\n" for text in body)))
            start = None
    return found


def example(page: str, start: str) -> str:
    """The text of PAGE's one example that starts with START."""
    (text,) = [found.text for found in examples(page) if found.text.startswith(start)]
    return text


def substitute(text: str, replacements: dict[str, str]) -> str:
    """TEXT with each key of REPLACEMENTS replaced; each must be there, so
    that a changed example fails here rather than run as something else."""
    for old, new in replacements.items():
        assert old in text, f"{old!r} is no longer in the example:\n{text}"
        text = text.replace(old, new)
    return text


# Which test runs each example, by page and the start of its first line.
RUN_BY = {
    (LACME_8, "Error: /etc/lacme/lacme-certs.conf: refused"): "test_refused_configuration_messages",
    (LACME_8, "install -m 0600 /dev/null /etc/ssl"): "test_lacme_8_with_a_remote_accountd",
    (LACME_8, "[www] Error before ordering: notify"): "test_refused_configuration_messages",
    (LACME_8, "lacme account --register"): "test_lacme_8_with_a_remote_accountd",
    (LACME_8, "lacme account\n"): "test_lacme_8_with_a_remote_accountd",
    (LACME_8, "[www]\n"): "test_lacme_8_with_a_remote_accountd",
    (LACME_8, "lacme newOrder www"): "test_lacme_8_with_a_remote_accountd",
    (LACME_8, "lacme revokeCert"): "test_lacme_8_with_a_remote_accountd",
    (LACME_8, "lacme account --rollover"): "test_rollover",
    (LACME_8, "PATH="): "test_lacme_8_with_a_remote_accountd",
    (LACME_8, "systemctl enable"): "test_timer",
    (LACME_8, "[mail] ok\n"): "test_status_sample",
    (LACME_8, "[one] dns:a.example.test"): "test_dry_run_sample",
    (LACME_8, "[www] validating 2 names"): "test_progress_sample",
    (LACME_8, "[accountd]"): "test_lacme_8_with_a_remote_accountd",
    (LACME_8, "restrict,command="): "test_lacme_8_with_a_remote_accountd",
    (LACME_8, "lacme-accountd --privkey"): "test_lacme_accountd_1_sockets",
    (ACCOUNTD_1, "mkdir -p -m 0700 ~/.lacme"): "test_lacme_8_with_a_remote_accountd",
    (ACCOUNTD_1, "lacme-accountd: configuration file"): "test_refused_configuration_messages",
    (ACCOUNTD_1, "1 OK "): "test_protocol_greeting",
    (ACCOUNTD_1, "privkey = file:"): "test_lacme_8_with_a_remote_accountd",
    (ACCOUNTD_1, "privkey = gpg:"): "test_gpg_and_eab_configuration",
    (ACCOUNTD_1, "lacme-accountd\n"): "test_lacme_accountd_1_sockets",
    (ACCOUNTD_1, "ssh -t "): "test_lacme_accountd_1_sockets",
    (ACCOUNTD_1, "[accountd]"): "test_lacme_accountd_1_sockets",
    (ACCOUNTD_1, "restrict,command="): "test_lacme_accountd_1_sockets",
}
REGISTER = "lacme account --register"


@pytest.mark.unit
def test_dry_run_sample() -> None:
    """lacme(8)'s `newOrder --dry-run` lines are what the master prints of
    such a report from the client, the manual's folding of long lines aside."""
    detail = (
        'connection: Get "http://unreachable.example.test:37693/.well-known/acme-challenge/'
        'BQa5ZctFSTOBtfuvJzg8FwVUP7RG7IlR-nlq2fOW4pY": dial tcp 127.0.0.2:37693: '
        "connect: connection refused"
    )
    names = ["a.example.test", "www.a.example.test"]
    one = [Validation(f"dns:{name}", VALIDATED, "", True) for name in names]
    two = [Validation("dns:unreachable.example.test", FAILED, detail)]
    lines = [
        *master.dry_run_report("one", names, one, 0)[0],
        *master.dry_run_report("two", ["unreachable.example.test"], two, 0)[0],
    ]

    def words(text: str) -> list[str]:
        return "".join(text.split()).split("[")

    assert words("\n".join(lines)) == words(example(LACME_8, "[one] dns:a.example.test"))


@pytest.mark.unit
def test_progress_sample() -> None:
    """lacme(8)'s progress lines at a terminal, as lacme.progress writes
    them on a clock of the test's, with the line the installation says."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    clock = FakeClock()
    stream = Terminal()
    progress = Progress(stream, verbose=False, quiet=False, clock=clock)
    progress.begin("www", "ordering 2 names")
    clock.sleep(0.1)
    progress.step("www", "validating 2 names...")
    clock.sleep(3.1)
    progress.step("www", "finalizing...")
    stream.write("Installing X.509 certificate chain /etc/ssl/certs/www.pem\n")
    progress.step("www", "installed")
    assert stream.getvalue() == example(LACME_8, "[www] validating 2 names")


@pytest.mark.unit
def test_status_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """lacme(8)'s `lacme status` block is what status prints of a certificate
    such as Pebble issues, five minutes later; the chain's path and the test
    CA's name put in."""
    issued = datetime.datetime(2026, 12, 2, 1, 24, 43, tzinfo=datetime.UTC)
    ca = make_ca("Pebble")
    key = tmp_path / "mail.key"
    leaf = ca.issue(
        new_key_file(key, "rsa2048").public_key(), ["mail.example.test"], not_before=issued, days=90
    )
    chain = tmp_path / "mail.chain.pem"
    chain.write_bytes(pem(leaf, ca.intermediate))
    os.utime(chain, (issued.timestamp(), issued.timestamp()))
    roots = tmp_path / "roots.pem"
    roots.write_bytes(ca.root_pem())
    certs = tmp_path / "lacme-certs.conf"
    certs.write_text(
        f"[mail]\ncertificate-key = {key}\ncertificate-chain = {chain}\nCAfile = {roots}\n"
        "subject = /CN=mail.example.test\nmin-days = 30%\n"
    )
    conf = tmp_path / "lacme.conf"
    conf.write_text(f"config-certs = {certs}\n")
    parsed = parse_args(["status"])
    assert isinstance(parsed, Arguments)
    assert status.show(config.load(str(conf)), parsed, issued + datetime.timedelta(minutes=5)) == 0
    blocks, _, _ = capsys.readouterr().out.partition("\nconfinement\n")
    assert blocks == substitute(
        example(LACME_8, "[mail] ok\n"),
        {
            "/etc/ssl/lacme/mail.chain.pem": str(chain),
            "CN=Pebble Intermediate CA 0e07fa": ca.intermediate.subject.rfc4514_string(),
        },
    )


@pytest.mark.unit
def test_every_example_is_run() -> None:
    run = {
        (found.page, found.line): [
            name
            for (page, start), name in RUN_BY.items()
            if page == found.page and found.text.startswith(start)
        ]
        for page in (LACME_8, ACCOUNTD_1)
        for found in examples(page)
    }
    # Each run by exactly one test, and each test named here runs one.
    assert {where: names for where, names in run.items() if len(names) != 1} == {}
    assert sum(len(names) for names in run.values()) == len(RUN_BY)
    assert {name for name in RUN_BY.values() if not callable(globals().get(name))} == set()


@pytest.mark.unit
def test_examples_are_read_as_shown() -> None:
    text = example(ACCOUNTD_1, "mkdir -p -m 0700 ~/.lacme")
    assert "P-256 \\\n    -out" in text
    assert example(LACME_8, "[www]\n").endswith("notify = systemctl reload nginx\n")


# ---------------------------------------------------------------------------
# The scene: a key host and a server in one view, reached through sshd

# The key host's user, and the server's, as the manuals name them.
KEYS_USER = "lacme"
ALICE = "alice"
# What the scene runs: sshd and ssh, unshare and setpriv, ip, and openssl
# for the keys, as the manuals make them.
SCENE_PACKAGES = ("openssh-server", "openssh-client", "util-linux", "iproute2", "openssl")
# Records what the stand-in systemctl was asked, in the view's /run.
SYSTEMCTL_LOG = "/run/systemctl.log"


@dataclass
class Scene:
    """The view, its sshd and the test's Pebble; a command runs as a user of
    the view types it, in a login's environment."""

    view: View
    sshd: Sshd
    pebble: PebbleServer

    def root(self, script: str, *, check: bool = True) -> tuple[int, str, str]:
        """SCRIPT run by root's shell in the view; its status and output."""
        done = self.view.run(self.view.as_user("root", script), check=False)
        if check and done.returncode != 0:
            raise AssertionError(
                f"{script} exited {done.returncode}\n--- stdout ---\n{done.stdout}\n"
                f"--- stderr ---\n{done.stderr}\n{self.sshd.log()}\n{self.pebble.log()}"
            )
        return done.returncode, done.stdout, done.stderr

    def user(self, user: str, script: str, **env: str) -> str:
        """SCRIPT run by USER's shell in the view; its output."""
        done = self.view.run(self.view.as_user(user, script, env=env), check=False)
        assert done.returncode == 0, (
            f"{script} as {user} exited {done.returncode}\n{done.stdout}{done.stderr}"
            f"{self.sshd.log()}"
        )
        return done.stdout

    def file(self, path: str) -> Path:
        return self.view.path(path)

    def key_host(self, accountd_conf: str) -> None:
        """The key host's user `lacme`, with ACCOUNTD_CONF as its
        lacme-accountd.conf and an account key made as lacme-accountd(1) shows."""
        self.view.install(
            accountd_conf, f"/home/{KEYS_USER}/.config/lacme/lacme-accountd.conf", KEYS_USER, 0o600
        )
        self.user(KEYS_USER, example(ACCOUNTD_1, "mkdir -p -m 0700 ~/.lacme"))
        key = self.file(f"/home/{KEYS_USER}/.lacme/account.key")
        assert key.stat().st_mode & 0o777 == 0o600
        private = serialization.load_pem_private_key(key.read_bytes(), None)
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        assert private.curve.name == "secp256r1"

    def through_ssh(self, page: str, identity: str) -> None:
        """PAGE's [accountd] section in lacme.conf, and the key at IDENTITY
        for it, tied to the one command on the key host as PAGE shows."""
        public = ssh_keygen(self.view, "root", identity, "root@www")
        self.view.install(
            authorized_keys(page, public),
            f"/home/{KEYS_USER}/.ssh/authorized_keys",
            KEYS_USER,
            0o600,
        )
        self.knows_the_host("root")
        accountd = substitute(
            example(page, "[accountd]"),
            {"lacme@keys.example.org": self.sshd.destination(KEYS_USER)},
        )
        self.lacme_conf(accountd)

    def knows_the_host(self, user: str) -> None:
        home = "/root" if user == "root" else f"/home/{user}"
        self.view.install(
            self.sshd.known_hosts_line() + "\n", f"{home}/.ssh/known_hosts", user, 0o644
        )

    def lacme_conf(self, accountd: str = "") -> None:
        """/etc/lacme/lacme.conf for the test's Pebble, with the lines ACCOUNTD,
        and lacme-certs.conf trusting Pebble's roots."""
        conf = "\n".join(
            [
                "[client]",
                f"server = {self.pebble.directory_url}",
                f"SSL_CAfile = {self.pebble.ca_bundle}",
                "[webserver]",
                f"listen = 127.0.0.1:{self.pebble.http_port}",
                accountd,
            ]
        )
        self.view.install(conf, "/etc/lacme/lacme.conf", "root", 0o644)
        self.view.install(
            f"CAfile = {self.pebble.roots_file}\n", "/etc/lacme/lacme-certs.conf", "root", 0o644
        )

    def www_section(self) -> None:
        """The service key as lacme(8) makes it, and its www section."""
        self.root(example(LACME_8, "install -m 0600 /dev/null /etc/ssl/private/www.key"))
        self.view.install(
            example(LACME_8, "[www]\n"), "/etc/lacme/lacme-certs.conf.d/www.conf", "root", 0o644
        )

    def installed(self) -> x509.Certificate:
        """The certificate of the www section, checked: for its names and
        key, chaining to Pebble's roots."""
        chain = x509.load_pem_x509_certificates(self.file("/etc/ssl/certs/www.pem").read_bytes())
        key = serialization.load_pem_private_key(
            self.file("/etc/ssl/private/www.key").read_bytes(), None
        )
        return check_issued(
            self.pebble.roots_file, chain, ["www.example.org", "example.org"], key.public_key()
        )

    def reloads(self) -> list[str]:
        path = self.file(SYSTEMCTL_LOG)
        return path.read_text().splitlines() if path.exists() else []


@contextmanager
def setting_the_scene(pebble: PebbleServer) -> Iterator[Scene]:
    with ExitStack() as stack:
        top = temporary_directory(stack, "lacme-examples-")
        # `notify = systemctl reload nginx` as written, with no systemd to reload.
        systemctl = top / "systemctl"
        systemctl.write_text(f'#!/bin/sh\necho "$*" >> {SYSTEMCTL_LOG}\n')
        systemctl.chmod(0o755)
        view = make_view(top, systemctl=systemctl)
        for user in (KEYS_USER, ALICE):
            view.add_user(user)
        sshd = stack.enter_context(running_sshd(view))
        yield Scene(view, sshd, pebble)


@pytest.fixture
def scene(netns: None, pebble: PebbleServer) -> Iterator[Scene]:
    """The scene, against a Pebble of the bench's defaults."""
    with setting_the_scene(pebble) as scene:
        yield scene


# lacme-accountd(1)'s binding, and its HMAC key.
EAB_KID = "kid-1234"
EAB_MAC = base64.urlsafe_b64encode(bytes(range(32))).rstrip(b"=").decode()


@pytest.fixture
def eab_scene(netns: None, pebble_factory: PebbleFactory) -> Iterator[Scene]:
    """The scene, against a Pebble that requires lacme-accountd(1)'s binding."""
    pebble = pebble_factory(
        config={
            "externalAccountBindingRequired": True,
            "externalAccountMACKeys": {EAB_KID: EAB_MAC},
        }
    )
    with setting_the_scene(pebble) as scene:
        yield scene


def authorized_keys(page: str, public_key: str) -> str:
    """PAGE's authorized_keys line, for PUBLIC_KEY."""
    line = example(page, "restrict,command=")
    return substitute(line, {"ssh-ed25519 AAAA... root@www": public_key})


def cron_entry(text: str) -> tuple[dict[str, str], str, str]:
    """The environment, user and command of a /etc/cron.d file TEXT holding
    one entry, as cron(8) reads it; fails unless its time fields are valid."""
    environment: dict[str, str] = {}
    entries = []
    for line in text.splitlines():
        if assignment := re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)", line):
            environment[assignment[1]] = assignment[2]
        elif line.strip() and not line.startswith("#"):
            entries.append(line.split(None, 6))
    ((*times, user, command),) = entries
    for value, (low, high) in zip(times, [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)], strict=True):
        for item in value.split(","):
            assert item == "*" or low <= int(item) <= high, f"bad time field {value}"
    return environment, user, command


def cron_run(scene: Scene, environment: dict[str, str], user: str, command: str) -> tuple[int, str]:
    """COMMAND as cron(8) runs it for USER: by /bin/sh, in an environment of
    SHELL, HOME, LOGNAME and PATH (/usr/bin:/bin unless ENVIRONMENT says
    otherwise) only; its status and what cron would mail."""
    assert user == "root"
    cron = {"SHELL": "/bin/sh", "HOME": "/root", "LOGNAME": user, "PATH": "/usr/bin:/bin"}
    cron.update(environment)
    argv = scene.view.argv(
        [
            "env",
            "-i",
            *(f"{name}={value}" for name, value in cron.items()),
            "/bin/sh",
            "-c",
            command,
        ]
    )
    done = scene.view.run(argv, check=False)
    return done.returncode, done.stdout + done.stderr


# ---------------------------------------------------------------------------
# lacme(8): a remote lacme-accountd through ssh -T, and what it runs


@pytest.mark.e2e
@pytest.mark.root
@pytest.mark.debian(*SCENE_PACKAGES)
def test_lacme_8_with_a_remote_accountd(scene: Scene) -> None:
    # The key host: lacme-accountd(1)'s configuration, as written.
    scene.key_host(example(ACCOUNTD_1, "privkey = file:%h/.lacme/account.key"))
    # Each server: the key, tied to the one command on the key host.
    scene.through_ssh(LACME_8, "/etc/lacme/id_ed25519")
    # Tied indeed: whatever the server asks for, the key host runs
    # lacme-accountd, and lends no socket.
    ssh = f"ssh -T -i /etc/lacme/id_ed25519 {scene.sshd.destination(KEYS_USER)}"
    _, greeting, _ = scene.root(f"{ssh} id </dev/null")
    assert greeting.startswith('1 OK {"alg":"ES256"'), greeting
    status, _, stderr = scene.root(
        f"{ssh} -o ExitOnForwardFailure=yes -R /home/{KEYS_USER}/S:/run/S true </dev/null",
        check=False,
    )
    assert status != 0
    assert "forwarding failed" in stderr.lower(), stderr

    register = example(LACME_8, REGISTER)
    # Unattended, root's known_hosts must know the key host: ssh asks no one.
    scene.file("/root/.ssh/known_hosts").unlink()
    status, _, stderr = scene.root(register, check=False)
    assert status == 1
    assert "Host key verification failed." in stderr
    scene.knows_the_host("root")
    account = json.loads(scene.root(register)[1])
    assert account["status"] == "valid"
    assert account["contact"] == ["mailto:hostmaster@example.org"]
    show, change = example(LACME_8, "lacme account\n").splitlines()
    assert json.loads(scene.root(show)[1])["contact"] == ["mailto:hostmaster@example.org"]
    assert json.loads(scene.root(change)[1])["contact"] == ["mailto:security@example.org"]
    # Signed on the key host, by the lacme-accountd its forced command started
    # with its default configuration: its log is the one that names.
    log = scene.file(f"/home/{KEYS_USER}/.lacme/accountd.log").read_text()
    assert '"termsOfServiceAgreed":true' in log, log
    assert '{"contact":["mailto:security@example.org"]}' in log, log
    assert "Accepted publickey for lacme" in scene.sshd.log_file.read_text()

    scene.www_section()
    key = scene.file("/etc/ssl/private/www.key")
    assert key.stat().st_mode & 0o777 == 0o600
    issue, force = example(LACME_8, "lacme newOrder www").splitlines()
    scene.root(issue)
    first = scene.installed()
    assert scene.reloads() == ["reload nginx"]
    scene.root(force)
    second = scene.installed()
    assert second.serial_number != first.serial_number
    assert scene.reloads() == ["reload nginx"] * 2

    # The cron line, as cron runs it: nothing due, so nothing to mail.
    environment, user, command = cron_entry(
        example(LACME_8, "PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin")
    )
    assert (user, command) == ("root", "lacme --quiet newOrder")
    assert cron_run(scene, environment, user, command) == (0, "")
    # Without its PATH line, cron would not find lacme, as the manual says.
    status, mail = cron_run(scene, {}, user, command)
    assert status == 127
    assert "lacme: not found" in mail

    scene.root(example(LACME_8, "lacme revokeCert --reason=keyCompromise /etc/ssl/certs/www.pem"))
    assert scene.pebble.cert_status(second.serial_number)["Status"] == "Revoked"
    # A revoked certificate is renewed at the next run, and that is mailed;
    # for a new key, made as before.
    scene.www_section()
    status, mail = cron_run(scene, environment, user, command)
    assert status == 0
    assert mail != ""
    third = scene.installed()
    assert third.serial_number != second.serial_number
    assert third.public_key() != second.public_key()
    assert scene.reloads() == ["reload nginx"] * 3
    assert leaf_of(scene.file("/etc/ssl/certs/www.pem")) == third


# ---------------------------------------------------------------------------
# lacme-accountd(1): ssh -T with root's own key, the socket on the same host,
# and lent to a server with ssh -R (both manuals' recipes)


def runtime_directory(scene: Scene, user: str) -> str:
    """USER's XDG_RUNTIME_DIR, as a login makes it: /run/user/UID, USER's, 0700."""
    uid = scene.user(user, "id -u").strip()
    path = f"/run/user/{uid}"
    scene.root(f"install -d -m 0755 /run/user; install -d -o {user} -g {user} -m 0700 {path}")
    return path


@contextmanager
def serving(scene: Scene, user: str, line: str, socket: str, **env: str) -> Iterator[None]:
    """LINE, a lacme-accountd started by USER (in the background, or in
    another terminal), until its SOCKET is there; stopped on exit, as by
    ^C, and its socket then gone."""
    log = scene.view.top / f"accountd-{user}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            scene.view.as_user(user, line, env=env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(
            lambda: scene.file(socket).exists(),
            f"{socket}",
            alive=all_running([proc], lambda: log.read_text(errors="replace")),
        )
        yield
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
    assert not scene.file(socket).exists()


@pytest.mark.e2e
@pytest.mark.root
@pytest.mark.debian(*SCENE_PACKAGES, "sudo")
def test_lacme_accountd_1_sockets(scene: Scene) -> None:
    scene.key_host(example(ACCOUNTD_1, "privkey = file:%h/.lacme/account.key"))
    # ssh -T with root's default key.
    scene.through_ssh(ACCOUNTD_1, "/root/.ssh/id_ed25519")
    scene.root(example(LACME_8, REGISTER))
    scene.www_section()
    scene.root("lacme newOrder")
    serials: list[int] = []

    def renewed() -> None:
        """Another certificate than the last, installed and notified."""
        serials.append(scene.installed().serial_number)
        assert len(set(serials)) == len(serials)
        assert scene.reloads() == ["reload nginx"] * len(serials)
        # Due again, as on a server that has none yet.
        scene.file("/etc/ssl/certs/www.pem").unlink()

    renewed()
    # Who may sudo, and the account key owner's runtime directory.
    scene.view.install(
        f"{KEYS_USER} ALL=(root) NOPASSWD: ALL\n{ALICE} ALL=(root) NOPASSWD: ALL\n",
        "/etc/sudoers.d/examples",
        "root",
        0o440,
    )
    runtime = runtime_directory(scene, KEYS_USER)
    socket = f"{runtime}/S.lacme"
    serve, use = example(ACCOUNTD_1, "lacme-accountd\n").splitlines()
    with serving(scene, KEYS_USER, serve, socket, XDG_RUNTIME_DIR=runtime):
        scene.user(KEYS_USER, use, XDG_RUNTIME_DIR=runtime)
        renewed()

        # From the server, alice's: the socket lent for one run.
        lent = ssh_keygen(scene.view, KEYS_USER, f"/home/{KEYS_USER}/.ssh/id_ed25519", "me@desk")
        scene.view.install(lent + "\n", f"/home/{ALICE}/.ssh/authorized_keys", ALICE, 0o600)
        scene.knows_the_host(KEYS_USER)
        forward = substitute(
            example(ACCOUNTD_1, "ssh -t -o ExitOnForwardFailure=yes \\"),
            {" www.example.org ": f" {scene.sshd.destination(ALICE)} "},
        )
        scene.user(KEYS_USER, forward, XDG_RUNTIME_DIR=runtime)
        renewed()

    # sshd leaves the forwarded socket behind: the next forward fails on it,
    # as lacme(8) says, until it is removed by hand.
    # It is alice's, 0600, as StreamLocalBindMask makes it, and root used it.
    left = scene.file(f"/home/{ALICE}/S.lacme").stat()
    assert stat.S_ISSOCK(left.st_mode)
    assert stat.S_IMODE(left.st_mode) == 0o600
    assert str(left.st_uid) == scene.user(ALICE, "id -u").strip()
    # Its first line's `&` is serving's: in the background until the end.
    background, *rest = example(LACME_8, "lacme-accountd --privkey").splitlines()
    recipe = substitute(
        "\n".join(rest), {" www.example.org ": f" {scene.sshd.destination(ALICE)} "}
    )
    with serving(scene, KEYS_USER, background.removesuffix(" &"), socket, XDG_RUNTIME_DIR=runtime):
        refused = scene.view.run(
            scene.view.as_user(KEYS_USER, recipe, env={"XDG_RUNTIME_DIR": runtime}), check=False
        )
        assert refused.returncode != 0
        assert "remote port forwarding failed" in refused.stderr.lower(), refused.stderr
        scene.user(ALICE, "rm /home/alice/S.lacme")
        scene.user(KEYS_USER, recipe, XDG_RUNTIME_DIR=runtime)
        renewed()


# ---------------------------------------------------------------------------
# What the manuals show of refusals, of the protocol and of the account key


def stderr_lines(scene: Scene, script: str) -> list[str]:
    """The lines SCRIPT, run by root, writes on standard error; it must fail."""
    status, _, stderr = scene.root(script, check=False)
    assert status == 1, stderr
    return stderr.splitlines()


@pytest.mark.e2e
@pytest.mark.root
@pytest.mark.debian(*SCENE_PACKAGES)
def test_refused_configuration_messages(scene: Scene) -> None:
    certs_refused, srv_refused = example(
        LACME_8,
        "Error: /etc/lacme/lacme-certs.conf: refused: owned by _lacme-www, not root, "
        "and writable by group and others (mode 0666)",
    ).splitlines()
    scene.lacme_conf("[accountd]\n")
    scene.view.install(
        "privkey = file:/etc/lacme/account.key\n", "/etc/lacme/lacme-accountd.conf", "root", 0o600
    )
    scene.root(
        "install -m 0600 /dev/null /etc/lacme/account.key; openssl genpkey -algorithm EC "
        "-pkeyopt ec_paramgen_curve:P-256 -out /etc/lacme/account.key"
    )
    scene.root(example(LACME_8, REGISTER))
    scene.root(
        "chown _lacme-www /etc/lacme/lacme-certs.conf; chmod 0666 /etc/lacme/lacme-certs.conf"
    )
    assert certs_refused in stderr_lines(scene, "lacme newOrder")
    scene.root("chown root /etc/lacme/lacme-certs.conf; chmod 0644 /etc/lacme/lacme-certs.conf")

    scene.root("install -d -m 0775 /srv/lacme; cp /etc/lacme/lacme.conf /srv/lacme/")
    assert srv_refused in stderr_lines(scene, "lacme --config=/srv/lacme/lacme.conf newOrder")

    # A notify program that others could change: an error of its section.
    scene.www_section()
    reload = "/srv/bin/reload"
    scene.root(
        f"install -d -m 0755 /srv/bin; printf '#!/bin/sh\\n' > {reload}; chmod 0757 {reload}"
    )
    www = substitute(example(LACME_8, "[www]\n"), {"systemctl reload nginx": reload})
    scene.view.install(www, "/etc/lacme/lacme-certs.conf.d/www.conf", "root", 0o644)
    (notify_refused,) = example(
        LACME_8,
        "[www] Error before ordering: notify = /srv/bin/reload: refused: /srv/bin/reload: "
        "writable by others (mode 0757)",
    ).splitlines()
    assert notify_refused in stderr_lines(scene, "lacme newOrder www")
    assert not scene.file("/etc/ssl/certs/www.pem").exists()

    (accountd_refused,) = example(
        ACCOUNTD_1,
        "lacme-accountd: configuration file /etc/lacme/lacme-accountd.conf: refused: "
        "writable by others (mode 0646)",
    ).splitlines()
    scene.root("chmod 0646 /etc/lacme/lacme-accountd.conf")
    assert stderr_lines(scene, "lacme-accountd --stdio </dev/null") == [accountd_refused]


def shown(example_line: str) -> re.Pattern[str]:
    """EXAMPLE_LINE as a pattern, each `...` standing for what varies."""
    return re.compile(".+".join(map(re.escape, example_line.split("..."))))


@pytest.mark.process
def test_protocol_greeting(tmp_path: Path) -> None:
    first, second = example(ACCOUNTD_1, '1 OK {"alg":"ES256","jwk-thumbprint":"..."}').splitlines()
    key = tmp_path / "account.key"
    key.touch(mode=0o600)
    private = ec.generate_private_key(ec.SECP256R1())
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    done = subprocess.run(
        [ACCOUNTD, "--stdio", f"--privkey=file:{key}", "--config=/dev/null"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=True,
        timeout=60,
    )
    greeting, jwk, rest = done.stdout.split(b"\r\n", 2)
    assert rest == b""
    assert shown(first).fullmatch(greeting.decode())
    assert shown(second).fullmatch(jwk.decode())


@pytest.mark.e2e
@pytest.mark.root
@pytest.mark.debian(*SCENE_PACKAGES, "gnupg")
def test_gpg_and_eab_configuration(eab_scene: Scene) -> None:
    scene = eab_scene
    scene.key_host(example(ACCOUNTD_1, "privkey = gpg:%h/.lacme/account.key.gpg"))
    key = serialization.load_pem_private_key(
        scene.file(f"/home/{KEYS_USER}/.lacme/account.key").read_bytes(), None
    )
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    try:
        # The same key encrypted with gpg, to a key of the user's own that
        # needs no passphrase, for unattended renewal.
        scene.user(
            KEYS_USER,
            "gpg --batch --quiet --pinentry-mode loopback --passphrase '' "
            "--quick-gen-key lacme@keys.example.org default default never; "
            "gpg --batch --quiet --encrypt --recipient lacme@keys.example.org "
            "-o ~/.lacme/account.key.gpg ~/.lacme/account.key; rm ~/.lacme/account.key",
        )
        scene.view.install(
            EAB_MAC + "\n", f"/home/{KEYS_USER}/.lacme/eab-hmac.key", KEYS_USER, 0o600
        )
        scene.through_ssh(LACME_8, "/etc/lacme/id_ed25519")
        register = example(LACME_8, REGISTER)
        # Pebble registers none without the binding: this one has it.
        account = json.loads(scene.root(register)[1])
        assert account["status"] == "valid"
        assert account["key"] == public_jwk(key)
    finally:
        scene.view.run(scene.view.as_user(KEYS_USER, "gpgconf --kill gpg-agent"), check=False)


@pytest.mark.e2e
@pytest.mark.root
@pytest.mark.debian(*SCENE_PACKAGES)
def test_rollover(scene: Scene) -> None:
    # Both keys on the server, each named by a configuration of /etc/lacme.
    for name in ("account", "account.new"):
        scene.root(
            f"install -m 0600 /dev/null /etc/lacme/{name}.key; openssl genpkey -algorithm EC "
            f"-pkeyopt ec_paramgen_curve:P-256 -out /etc/lacme/{name}.key"
        )
    scene.view.install(
        "privkey = file:/etc/lacme/account.key\n", "/etc/lacme/lacme-accountd.conf", "root", 0o600
    )
    scene.view.install(
        "privkey = file:/etc/lacme/account.new.key\n",
        "/etc/lacme/lacme-accountd.new.conf",
        "root",
        0o600,
    )
    scene.lacme_conf("[accountd]\n")
    register = example(LACME_8, REGISTER)
    url = json.loads(scene.root(register)[1])
    new_key = serialization.load_pem_private_key(
        scene.file("/etc/lacme/account.new.key").read_bytes(), None
    )
    assert isinstance(new_key, ec.EllipticCurvePrivateKey)
    rollover, move = example(
        LACME_8, "lacme account --rollover=/etc/lacme/lacme-accountd.new.conf"
    ).splitlines()
    assert json.loads(scene.root(rollover)[1])["key"] == public_jwk(new_key)
    scene.root(move)
    # The account, now the new key's, found with the configuration in use.
    account = json.loads(scene.root("lacme account")[1])
    assert account["key"] == public_jwk(new_key)
    assert account["contact"] == url["contact"]
    assert not scene.file("/etc/lacme/lacme-accountd.new.conf").exists()


@pytest.mark.process
@pytest.mark.debian("systemd")
def test_timer(tmp_path: Path) -> None:
    # tests/test_install.py runs systemd-analyze verify on the installed
    # units; here, what the manual says of them.  Without a running systemd,
    # only what `enable` does can be seen: the link that starts the timer.
    (command,) = example(LACME_8, "systemctl enable --now lacme.timer").splitlines()
    argv = command.split()
    assert argv == ["systemctl", "enable", "--now", "lacme.timer"]
    units = tmp_path / "lib/systemd/system"
    units.mkdir(parents=True)
    shutil.copy(ROOT / "systemd/lacme.timer", units)
    subprocess.run(
        [*argv[:2], f"--root={tmp_path}", argv[3]], check=True, capture_output=True, timeout=60
    )
    wanted = tmp_path / "etc/systemd/system/timers.target.wants/lacme.timer"
    # The link is absolute, for the root it is in.
    assert os.readlink(wanted) == "/lib/systemd/system/lacme.timer"

    timer = dict(
        line.split("=", 1)
        for line in (units / "lacme.timer").read_text().splitlines()
        if re.match(r"[A-Za-z]+=", line)
    )
    # Twice a day, 12 hours apart...
    done = subprocess.run(
        ["systemd-analyze", "calendar", "--iterations=3", timer["OnCalendar"]],
        check=True,
        capture_output=True,
        text=True,
    )
    times = re.findall(r"\d{4}-\d\d-\d\d (\d\d:\d\d:\d\d) UTC", done.stdout)
    assert sorted(set(times)) == ["00:00:00", "12:00:00"], done.stdout
    # ...shifted by up to 12 hours, fixed for the machine, and caught up at boot.
    assert (timer["RandomizedDelaySec"], timer["FixedRandomDelay"]) == ("12h", "yes")
    assert timer["Persistent"] == "true"
    service = (ROOT / "systemd/lacme.service.in").read_text()
    assert re.search(r"(?m)^ExecStart=\S*/lacme newOrder$", service)
