"""What every bench and test needs of the machine: temporary directories other
users can enter, free loopback ports, network namespaces of their own, child
processes stopped on exit, waiting for a condition instead of sleeping, and a
directory tree deeper than any path."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
NETNS = "/proc/thread-self/ns/net"
# Where this module is imported (pytest's collection): the machine's own.
HOST_NETNS = os.stat(NETNS).st_ino


def wait_for(
    condition: Callable[[], T | None],
    what: str,
    timeout: float = STARTUP_TIMEOUT,
    interval: float = 0.05,
    alive: Callable[[], None] | None = None,
) -> T:
    """Poll `condition` until it returns something truthy, and return that.

    `alive` is called at each round to fail fast (by raising) when a process
    we are waiting on has died, instead of waiting for the whole timeout.
    The timeout only keeps a broken run from hanging: nothing is asserted
    about how long the wait took.
    """
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None:
            alive()
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def free_ports(count: int) -> list[int]:
    """Return `count` distinct loopback ports currently free for both TCP and UDP.

    All sockets are held open until every port is chosen, so the ports are
    distinct; there is an unavoidable window before the servers bind them.
    """
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(tcp)
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            held.append(udp)
            try:
                # The mock DNS server listens on both TCP and UDP.
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def stop_process(proc: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within `timeout`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def temporary_directory(stack: ExitStack, prefix: str, mode: int = 0o755) -> Path:
    """A temporary directory (by default one other users can enter), removed when `stack` closes.

    pytest's tmp_path lives under a 0700 directory, which lacme's unprivileged
    children could not enter.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    stack.callback(shutil.rmtree, path, ignore_errors=True)
    path.chmod(mode)
    return path


def deep_tree(top: str | Path, depth: int) -> None:
    """DEPTH nested directories `d` in TOP, deeper than any path can name
    (made a directory descriptor at a time), and a FIFO at the bottom."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        deeper = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = deeper
    os.mkfifo("fifo", dir_fd=fd)
    os.close(fd)


def spawn_logged(
    stack: ExitStack, argv: list[str], log: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ARGV with its output in LOG; stopped when STACK closes."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env
        )
    stack.callback(stop_process, proc)
    return proc


def all_running(
    processes: list[subprocess.Popen[bytes]], log: Callable[[], str]
) -> Callable[[], None]:
    """A check for wait_for's ALIVE: raises, with LOG, once any of PROCESSES
    (as the list then stands) has exited."""

    def check() -> None:
        for proc in processes:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited {proc.returncode}:\n{log()}")

    return check


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


@contextmanager
def network_namespace() -> Iterator[None]:
    """Move this thread, and the processes it starts meanwhile, into a fresh
    network namespace (as root), with loopback up; come back on exit.
    Processes started inside stay there, so stop them before leaving
    (ExitStack order does).  Ports, firewall rules and DNS on port 53 there
    are the test's own."""
    libc = ctypes.CDLL(None, use_errno=True)
    original = os.open(NETNS, os.O_RDONLY)
    try:
        _check(libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        try:
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
            yield
        finally:
            _check(libc.setns(original, CLONE_NEWNET), "setns back")
    finally:
        os.close(original)


def in_own_network_namespace() -> bool:
    return os.stat(NETNS).st_ino != HOST_NETNS
