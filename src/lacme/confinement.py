"""Confining a process to what it needs: Landlock and seccomp, Linux's
answer to OpenBSD's unveil and pledge.

Holds nothing; touches only its own process.  A process calls `confine`
once it holds what it works with (sockets, TLS context, key), and from then
on the kernel refuses the rest:

- Landlock (landlock(7)): files are reachable only beneath the paths a
  Policy names, read-only unless named writable; with ABI 4 and later, TCP
  bind is refused and TCP connect allowed to the Policy's ports only; with
  ABI 6 and later, no signal to, and no abstract UNIX socket of, a process
  outside the domain.  Each ABI's rights are asked for only when the kernel
  has them, so that an older kernel gets every rule it can enforce (the
  "best effort" of the kernel's documentation); a kernel without Landlock
  (ENOSYS, or EOPNOTSUPP when it is off at boot) gets none, with a warning.
- seccomp: the system calls of DENIED, and the creation of UNIX sockets,
  fail with EPERM.  Through libseccomp
  (libseccomp.so.2, in every Debian since apt depends on it) rather than a
  BPF program of our own: it knows each architecture's system call numbers
  and the checks of the audit architecture and of the x32 ABI, which a
  filter of our own would have to repeat for every architecture we run on.

Landlock domains only ever shrink: a later `confine` adds a layer which
restricts further, never less.  Both apply to the calling thread and what
it starts later, so `confine` refuses to run with a second thread.

Python imports lazily, from sys.path, and loads libraries from the
directories of those it has mapped: a Policy built by `interpreter_paths`
keeps those readable, so that a late import (an error path's) still works.

Standard library only, and neither typing, re nor threading: the webserver
imports this.

Interface:

    Policy(read=(), write=(), remove=(), connect=(), keep_writing=False, only_writing=False)
    interpreter_paths() -> tuple[str, ...]
    abi_version() -> int
    describe(abi, policy=None) -> str   e.g. "Landlock ABI 4: fs+net"
    confine(name, policy, enabled=True, setting="confinement = No", abi=None,
            filter_calls=True) -> str   the report line
    ConfinementError
"""

from __future__ import annotations

import ctypes
import errno as errnos
import os
import socket
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

# <linux/landlock.h>
LANDLOCK_CREATE_RULESET_VERSION = 1 << 0
LANDLOCK_RULE_PATH_BENEATH = 1
LANDLOCK_RULE_NET_PORT = 2
# The same numbers on every architecture (the unified table since 5.13).
SYS_LANDLOCK_CREATE_RULESET = 444
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446

FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13  # ABI 2
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5
NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1  # ABI 6

# The filesystem rights each ABI knows, cumulative.
FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
# Rights that apply to a file (not only to a directory's entries): a rule
# on a file that names any other is EINVAL.
FS_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
READ = FS_READ_FILE | FS_READ_DIR
# What writing a challenge file takes: O_CREAT|O_EXCL, then write(2).
WRITE = FS_MAKE_REG | FS_WRITE_FILE

# Resolution files of getaddrinfo (glibc's NSS): the client looks the ACME
# server's name up after it is confined.
RESOLVER_FILES = (
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/ld.so.cache",
)
# glibc falls back to TCP for a truncated DNS answer.
DNS_PORT = 53

# What no confined process does, whatever it runs: starting programs,
# debugging others, mounting, the kernel keyrings, BPF, and the namespaces
# that would give it a mount of its own.
DENIED = (
    "execve",
    "execveat",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "mount",
    "umount2",
    "pivot_root",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "add_key",
    "request_key",
    "keyctl",
    "bpf",
    "unshare",
    "setns",
)
# Landlock (through ABI 7) leaves connect(2) to a UNIX socket by its path
# alone: a confined process makes no new UNIX socket, so reaches none of
# the system's daemons (D-Bus, a container runtime's socket).  Those it
# works with (accountd's, the master's) it was given already.
DENIED_SOCKET_CALLS = ("socket", "socketpair")
SCMP_CMP_MASKED_EQ = 7  # enum scmp_compare: (argument & datum_a) == datum_b
INT_MASK = 0xFFFFFFFF  # the family is an int: the register's upper half is not its
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_ACT_ERRNO = 0x00050000
LIBSECCOMP = "libseccomp.so.2"
PR_SET_NO_NEW_PRIVS = 38


class ConfinementError(Exception):
    """Confinement was asked for and could not be applied; the message says why."""


# struct landlock_ruleset_attr {
#     __u64 handled_access_fs;
#     __u64 handled_access_net;   /* ABI 4 */
#     __u64 scoped;               /* ABI 6 */
# };
# The size passed tells the kernel which fields we know: an older kernel
# refuses (E2BIG) a bigger one with nonzero fields it does not have.
class RulesetAttr(ctypes.Structure):
    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    )


# struct landlock_path_beneath_attr {
#     __u64 allowed_access;
#     __s32 parent_fd;
# } __attribute__((packed));
class PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


# struct landlock_net_port_attr {
#     __u64 allowed_access;
#     __u64 port;
# };
class NetPortAttr(ctypes.Structure):
    _fields_ = (("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64))


# struct scmp_arg_cmp {
#     unsigned int arg;            /* which argument, from 0 */
#     enum scmp_compare op;
#     scmp_datum_t datum_a;        /* uint64_t */
#     scmp_datum_t datum_b;
# };
class ArgCmp(ctypes.Structure):
    _fields_ = (
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


class Policy:
    """What a confined process keeps: READ, paths beneath which it reads;
    WRITE, directories in which it creates and writes regular files;
    REMOVE, directories in which it removes files; CONNECT, the TCP ports
    it connects to.  Everything else, the kernel permitting, is refused.
    KEEP_WRITING leaves file creation and writing alone, for a later layer
    to restrict (see lacme.client); ONLY_WRITING, a layer restricting
    nothing but that."""

    def __init__(
        self,
        read: Iterable[str] = (),
        write: Iterable[str] = (),
        remove: Iterable[str] = (),
        connect: Iterable[int] = (),
        keep_writing: bool = False,
        only_writing: bool = False,
    ) -> None:
        self.read = tuple(read)
        self.write = tuple(write)
        self.remove = tuple(remove)
        self.connect = tuple(connect)
        self.keep_writing = keep_writing
        self.only_writing = only_writing


def interpreter_paths() -> tuple[str, ...]:
    """What Python reads after confinement: sys.path (but the working
    directory and `/`, which `python -m` and `-c` put first) and the
    directories of the libraries mapped, where lazily loaded ones live too."""
    here = os.path.realpath(os.getcwd())
    paths: list[str] = []
    for entry in sys.path:
        if entry and os.path.isabs(entry) and os.path.realpath(entry) not in (here, "/"):
            paths.append(entry)
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            path = fields[5].rstrip("\n") if len(fields) == 6 else ""
            # A deleted file (libffi's trampolines in /tmp, a memfd) is no
            # library to load again: its directory stays closed.
            if path.startswith("/") and not path.endswith(" (deleted)"):
                directory = os.path.dirname(path)
                if directory not in paths and directory != "/":
                    paths.append(directory)
    return tuple(paths)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _syscall(number: int, *args: object) -> int:
    function = _libc().syscall
    function.restype = ctypes.c_long
    # syscall(2) is variadic and reads longs: a Python int would go as an
    # int, whose register's upper half the ABI leaves undefined.
    longs = [ctypes.c_long(arg) if isinstance(arg, int) else arg for arg in args]
    result = int(function(ctypes.c_long(number), *longs))
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def abi_version() -> int:
    """The Landlock ABI the kernel offers; 0 without Landlock."""
    try:
        return _syscall(
            SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), LANDLOCK_CREATE_RULESET_VERSION
        )
    except OSError as e:
        if e.errno in (errnos.ENOSYS, errnos.EOPNOTSUPP):
            return 0
        raise ConfinementError(f"Landlock: can't ask the ABI version: {e.strerror}") from None


def expected(enabled: bool) -> str:
    """What confinement a process will have on this kernel, ENABLED or not,
    as `lacme status` shows it."""
    if not enabled:
        return "off (confinement = No, or --unconfined in its command)"
    try:
        landlock = describe(abi_version())
    except ConfinementError as e:
        landlock = str(e)
    try:
        ctypes.CDLL(LIBSECCOMP)
    except OSError:
        return f"{landlock}; seccomp: unavailable ({LIBSECCOMP} missing)"
    return f"{landlock}; seccomp: on"


def handled(abi: int, policy: Policy) -> tuple[int, int, int]:
    """The (filesystem, network, scope) rights a layer of POLICY restricts
    on Landlock ABI: those the ABI knows."""
    fs = 0
    for version, rights in FS_BY_ABI.items():
        if abi >= version:
            fs = rights
    if policy.only_writing:
        return fs & WRITE, 0, 0
    if policy.keep_writing:
        fs &= ~WRITE
    net = NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0
    return fs, net, scoped


def _attr_size(abi: int) -> int:
    if abi >= 6:
        return ctypes.sizeof(RulesetAttr)
    return RulesetAttr.scoped.offset if abi >= 4 else RulesetAttr.handled_access_net.offset


def _add_path(ruleset: int, path: str, access: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # nothing there to reach, before or after
    except OSError as e:
        raise ConfinementError(f"Landlock: can't open {path}: {e.strerror}") from None
    try:
        if not os.path.isdir(f"/proc/self/fd/{fd}"):
            access &= FS_FILE_RIGHTS
        if not access:
            return
        attr = PathBeneathAttr(allowed_access=access, parent_fd=fd)
        _syscall(SYS_LANDLOCK_ADD_RULE, ruleset, LANDLOCK_RULE_PATH_BENEATH, ctypes.byref(attr), 0)
    except OSError as e:
        raise ConfinementError(f"Landlock: rule for {path}: {e.strerror}") from None
    finally:
        os.close(fd)


def describe(abi: int, policy: Policy | None = None) -> str:
    """What a layer of POLICY (by default a process's first) restricts on
    Landlock ABI, as `confine` reports it: "Landlock ABI 4: fs+net"."""
    if abi <= 0:
        return "Landlock: unavailable"
    fs, net, scoped = handled(abi, Policy() if policy is None else policy)
    kinds = (("fs", fs), ("net", net), ("scope", scoped))
    return f"Landlock ABI {abi}: " + "+".join(name for name, on in kinds if on)


def _landlock(abi: int, policy: Policy) -> None:
    """Apply POLICY as a Landlock layer on ABI."""
    fs, net, scoped = handled(abi, policy)
    attr = RulesetAttr(handled_access_fs=fs, handled_access_net=net, scoped=scoped)
    try:
        ruleset = _syscall(
            SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(_attr_size(abi)), 0
        )
    except OSError as e:
        raise ConfinementError(f"Landlock: can't create a ruleset: {e.strerror}") from None
    try:
        if not policy.only_writing:
            for path in policy.read:
                _add_path(ruleset, path, fs & READ)
            for path in policy.remove:
                _add_path(ruleset, path, fs & (READ | FS_REMOVE_FILE))
        for path in policy.write:
            _add_path(ruleset, path, fs & (READ | WRITE))
        if net & NET_CONNECT_TCP:
            for port in sorted(set(policy.connect)):
                rule = NetPortAttr(allowed_access=NET_CONNECT_TCP, port=port)
                try:
                    _syscall(
                        SYS_LANDLOCK_ADD_RULE,
                        ruleset,
                        LANDLOCK_RULE_NET_PORT,
                        ctypes.byref(rule),
                        0,
                    )
                except OSError as e:
                    raise ConfinementError(
                        f"Landlock: rule for port {port}: {e.strerror}"
                    ) from None
        try:
            _syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0)
        except OSError as e:
            raise ConfinementError(f"Landlock: can't restrict: {e.strerror}") from None
    finally:
        os.close(ruleset)


def _seccomp() -> None:
    """The system calls of DENIED, and those of DENIED_SOCKET_CALLS for a
    UNIX socket, fail with EPERM, in this thread and what
    it starts; ConfinementError if that can't be done."""
    try:
        library = ctypes.CDLL(LIBSECCOMP, use_errno=True)
    except OSError as e:
        raise ConfinementError(f"seccomp: can't load {LIBSECCOMP}: {e}") from None
    library.seccomp_init.restype = ctypes.c_void_p
    library.seccomp_init.argtypes = (ctypes.c_uint32,)
    library.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
    library.seccomp_rule_add.argtypes = (
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
    )
    library.seccomp_rule_add_array.argtypes = (
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(ArgCmp),
    )
    library.seccomp_load.argtypes = (ctypes.c_void_p,)
    library.seccomp_release.argtypes = (ctypes.c_void_p,)
    context = library.seccomp_init(SCMP_ACT_ALLOW)
    if not context:
        raise ConfinementError("seccomp: seccomp_init failed")
    try:
        for name in DENIED:
            number = library.seccomp_syscall_resolve_name(name.encode())
            if number < 0:  # not a system call of this architecture
                continue
            status = library.seccomp_rule_add(context, SCMP_ACT_ERRNO | errnos.EPERM, number, 0)
            if status < 0:
                raise ConfinementError(f"seccomp: rule for {name}: {os.strerror(-status)}")
        unix = ArgCmp(arg=0, op=SCMP_CMP_MASKED_EQ, datum_a=INT_MASK, datum_b=socket.AF_UNIX)
        for name in DENIED_SOCKET_CALLS:
            number = library.seccomp_syscall_resolve_name(name.encode())
            status = library.seccomp_rule_add_array(
                context, SCMP_ACT_ERRNO | errnos.EPERM, number, 1, ctypes.byref(unix)
            )
            if status < 0:
                raise ConfinementError(f"seccomp: rule for {name}: {os.strerror(-status)}")
        status = library.seccomp_load(context)
        if status < 0:
            raise ConfinementError(f"seccomp: can't load the filter: {os.strerror(-status)}")
    finally:
        library.seccomp_release(context)


def _no_new_privs() -> None:
    prctl = _libc().prctl
    prctl.argtypes = (ctypes.c_int,) + (ctypes.c_ulong,) * 4
    if prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        code = ctypes.get_errno()
        raise ConfinementError(f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(code)}")


def confine(
    name: str,
    policy: Policy,
    enabled: bool = True,
    setting: str = "confinement = No",
    abi: int | None = None,
    filter_calls: bool = True,
) -> str:
    """Confine this process (NAME, in messages) to POLICY: a Landlock
    layer on ABI (the kernel's when None), and the seccomp filter unless
    FILTER_CALLS is false (a later layer: the filter is there already).
    The report line, e.g. "Landlock ABI 7: fs+net+scope; seccomp: on".
    ENABLED false (SETTING says it) confines nothing, with a warning, as
    does a kernel without Landlock; anything else that fails raises
    ConfinementError."""
    if not enabled:
        _warn(f"{name}: {setting}: not confined (Landlock and seccomp off)")
        return "Landlock: off; seccomp: off"
    # Not /proc/self/task: a layer confined already can't read it.  What
    # runs here starts threads through threading only.
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        count = threading.active_count()
        raise ConfinementError(f"{count} threads running: only the calling one would be confined")
    # glibc reads /etc/localtime once; later log lines keep their timezone.
    time.localtime()
    _no_new_privs()
    version = abi_version() if abi is None else abi
    if version > 0:
        _landlock(version, policy)
    else:
        _warn(f"{name}: the kernel has no Landlock: files and network not confined")
    if filter_calls:
        _seccomp()
    return f"{describe(version, policy)}; seccomp: {'on' if filter_calls else 'unchanged'}"


def _warn(message: str) -> None:
    sys.stderr.write(f"Warning: {message}\n")
    sys.stderr.flush()
