"""A machine as the manuals' examples assume it, for running them as written:
a private copy of /etc; private /home, /root, /run and /srv; our commands
in /usr/local/sbin and /usr/local/bin; all bind-mounted over the real ones
in a mount namespace per command (`View`); users added there only; and a real
OpenSSH sshd on a loopback port (`running_sshd`), with its own host key
and configuration, started in that view so that its sessions see it too.

Run it in a network namespace of the test's own (the `netns` fixture): the
port is the test's, and nothing outside can reach it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from support.system import all_running, free_ports, port_open, spawn_logged, wait_for

BIN = Path(sys.executable).parent
# Debian's PATH for a login (login.defs ENV_PATH and ENV_SUPATH), and for
# sshd's sessions but root's.
USER_PATH = "/usr/local/bin:/usr/bin:/bin"
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class View:
    """The private directories (under TOP) and the mounts that put them in place."""

    top: Path
    binds: list[tuple[Path, str]] = field(default_factory=list)

    def path(self, absolute: str) -> Path:
        """Where the test sees ABSOLUTE of the view (as the commands run in it see it)."""
        for source, target in sorted(self.binds, key=lambda bind: -len(bind[1])):
            if absolute == target or absolute.startswith(target.rstrip("/") + "/"):
                return source / Path(absolute).relative_to(target)
        raise ValueError(f"{absolute} is the machine's own, not the view's")

    def argv(self, command: Sequence[str | Path]) -> list[str]:
        """COMMAND, as root, in a mount namespace of its own with the view's mounts."""
        mounts = "".join(
            f"mount --bind {shlex.quote(str(source))} {shlex.quote(target)}; "
            for source, target in self.binds
        )
        return [
            "unshare",
            "--mount",
            "--propagation=private",
            "sh",
            "-ec",
            mounts + 'exec "$@"',
            "sh",
            *map(str, command),
        ]

    def as_user(
        self,
        user: str,
        script: str,
        *args: str,
        env: Mapping[str, str] | None = None,
    ) -> list[str]:
        """SCRIPT run by `sh -ec` (with ARGS as $1...) as USER in the view,
        with a login's environment (and ENV), as the user would type it."""
        home = "/root" if user == "root" else f"/home/{user}"
        environment = {
            "HOME": home,
            "USER": user,
            "LOGNAME": user,
            "SHELL": "/bin/sh",
            "PATH": ROOT_PATH if user == "root" else USER_PATH,
            **(env or {}),
        }
        identity = (
            []
            if user == "root"
            else ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups"]
        )
        return self.argv(
            [
                *identity,
                "env",
                "-i",
                *(f"{name}={value}" for name, value in environment.items()),
                "sh",
                "-ec",
                script,
                "sh",
                *args,
            ]
        )

    def run(
        self, argv: Sequence[str], *, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """ARGV (from argv or as_user), its output captured; unless CHECK is
        false, fail with that output unless it succeeds.  It runs in a
        session of its own, all of which is killed if it outlasts TIMEOUT: the
        shell of as_user would leave its children behind."""
        with subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        ) as proc:
            try:
                stdout, stderr = proc.communicate(timeout=timeout)
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        done = subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)
        if check and done.returncode != 0:
            raise AssertionError(
                f"{argv[-1]} exited {done.returncode}\n"
                f"--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}"
            )
        return done

    def add_user(self, name: str) -> None:
        """A user of the view with a home in its /home, who may log in by key only."""
        # "*", not useradd's "!": sshd (without PAM) refuses a locked account.
        self.run(self.argv(["useradd", "--create-home", "--shell", "/bin/sh", "-p", "*", name]))

    def install(self, content: str, path: str, owner: str, mode: int) -> None:
        """Write CONTENT to the view's PATH, owned by OWNER (and its group)
        with MODE; a missing directory on the way is made, OWNER's, 0700."""
        script = (
            'd=$(dirname "$2"); [ -d "$d" ] || install -d -o "$1" -g "$1" -m 0700 "$d"; '
            'cat > "$2"; chown "$1:$1" "$2"; chmod "$3" "$2"'
        )
        argv = self.argv(["sh", "-ec", script, "sh", owner, path, f"{mode:04o}"])
        done = subprocess.run(argv, input=content, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr


def make_view(top: Path, systemctl: Path | None = None) -> View:
    """A view under TOP: /etc copied from the machine's (without lacme's
    configuration), the rest empty but /usr/local/sbin and /usr/local/bin,
    holding our commands; with SYSTEMCTL, that program stands in for
    /usr/bin/systemctl."""
    view = View(top)
    etc = top / "etc"
    subprocess.run(["cp", "-a", "/etc", str(etc)], check=True)
    shutil.rmtree(etc / "lacme", ignore_errors=True)
    (etc / "lacme").mkdir(mode=0o755)
    # Where scripts/install puts them with PREFIX=/usr/local.
    for directory, name in (("sbin", "lacme"), ("bin", "lacme-accountd")):
        (top / f"usr-local-{directory}").mkdir()
        (top / f"usr-local-{directory}" / name).symlink_to(BIN / name)
    for name, mode in (("home", 0o755), ("root", 0o700), ("run", 0o755), ("srv", 0o755)):
        (top / name).mkdir(mode=mode)
        (top / name).chmod(mode)
    (top / "run" / "sshd").mkdir(mode=0o755)
    view.binds += [
        (etc, "/etc"),
        (top / "home", "/home"),
        (top / "root", "/root"),
        (top / "run", "/run"),
        (top / "srv", "/srv"),
        (top / "usr-local-sbin", "/usr/local/sbin"),
        (top / "usr-local-bin", "/usr/local/bin"),
    ]
    if systemctl is not None:
        view.binds.append((systemctl, "/usr/bin/systemctl"))
    return view


def ssh_keygen(view: View, user: str, path: str, comment: str) -> str:
    """An Ed25519 key without passphrase at the view's PATH, USER's; its public key line."""
    script = 'mkdir -p -m 0700 "$(dirname "$1")"; ssh-keygen -q -t ed25519 -N "" -C "$2" -f "$1"'
    view.run(view.as_user(user, script, path, comment))
    return view.path(path + ".pub").read_text().strip()


@dataclass
class Sshd:
    """A running sshd of a view; see running_sshd."""

    port: int
    host_key: str  # its public host key line
    log_file: Path

    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_key}"

    def destination(self, user: str) -> str:
        """What stands for USER@HOST on ssh's command line: ssh's URI form,
        which carries the port."""
        return f"ssh://{user}@127.0.0.1:{self.port}"

    def log(self) -> str:
        return f"--- sshd log ---\n{self.log_file.read_text(errors='replace')}"


@contextmanager
def running_sshd(view: View) -> Iterator[Sshd]:
    """sshd on 127.0.0.1 (a free port), with its own host key and
    configuration in the view's top directory, keys only; stopped on exit."""
    directory = view.top / "sshd"
    directory.mkdir(mode=0o700)
    host_key = directory / "ssh_host_ed25519_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test host", "-f", str(host_key)],
        check=True,
    )
    (port,) = free_ports(1)
    config = directory / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"ListenAddress 127.0.0.1:{port}",
                f"HostKey {host_key}",
                "PidFile none",
                "UsePAM no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "AuthorizedKeysFile .ssh/authorized_keys",
                "StrictModes yes",
                "LogLevel VERBOSE",
            ]
        )
        + "\n"
    )
    log_file = directory / "sshd.log"
    with ExitStack() as stack:
        # -D: in the foreground, so that stopping it is stopping this process;
        # -e: its log in the file.
        proc = spawn_logged(
            stack, view.argv(["/usr/sbin/sshd", "-D", "-e", "-f", config]), log_file
        )
        sshd = Sshd(port, (host_key.with_suffix(".pub")).read_text().strip(), log_file)
        wait_for(lambda: port_open(port), "sshd", alive=all_running([proc], sshd.log))
        yield sshd
