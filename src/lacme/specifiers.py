"""%-specifier expansion, as documented in lacme(8) and lacme-accountd(1).

Values depend on who runs the expansion (root or not, the current user and
group), which is why callers expand some settings before and some after
dropping privileges.  An Identity stands for "after": the uid, gid and
environment a child process will have, so the master can expand what the man
page says is expanded after privilege drop without running code in the child.
"""

import grp
import os
import pwd
from collections.abc import Callable, Mapping
from typing import NamedTuple

from lacme.errors import ConfigError


class SpecifierError(ConfigError):
    """A value holds an unknown or unexpandable %-specifier."""


class Identity(NamedTuple):
    """Whom an expansion is for: real uid and gid, and environment."""

    uid: int
    gid: int
    environ: Mapping[str, str]


def _env_or(who: Identity, name: str, fallback: str) -> str:
    value = who.environ.get(name, "")
    return value if value else fallback


def _home(who: Identity) -> str:
    return pwd.getpwuid(who.uid).pw_dir


def _env_home(who: Identity) -> str:
    # The XDG fallbacks follow $HOME, as the XDG specification says; only %h
    # is the password database's home.
    return who.environ.get("HOME") or _home(who)


def _runtime_dir(who: Identity) -> str | None:
    if who.uid == 0:
        return "/run"
    return who.environ.get("XDG_RUNTIME_DIR") or None


_SPECIFIERS: dict[str, Callable[[Identity], str | None]] = {
    "C": lambda who: (
        "/var/cache" if who.uid == 0 else _env_or(who, "XDG_CACHE_HOME", _env_home(who) + "/.cache")
    ),
    "E": lambda who: (
        "/etc" if who.uid == 0 else _env_or(who, "XDG_CONFIG_HOME", _env_home(who) + "/.config")
    ),
    "g": lambda who: grp.getgrgid(who.gid).gr_name,
    "G": lambda who: str(who.gid),
    "h": _home,
    "t": _runtime_dir,
    "T": lambda who: _env_or(who, "TMPDIR", "/tmp"),  # noqa: S108 - the documented default
    "u": lambda who: pwd.getpwuid(who.uid).pw_name,
    "U": lambda who: str(who.uid),
    "%": lambda who: "%",
}


def expand(value: str, identity: Identity | None = None) -> str:
    """Return VALUE with every %-specifier replaced, or raise SpecifierError.

    Specifiers expand for IDENTITY, by default the current process.
    """
    who = Identity(os.getuid(), os.getgid(), os.environ) if identity is None else identity
    out: list[str] = []
    i = 0
    while True:
        j = value.find("%", i)
        if j < 0:
            out.append(value[i:])
            return "".join(out)
        out.append(value[i:j])
        if j + 1 >= len(value):
            raise SpecifierError(f'"{value}" ends with a lone %')
        spec = value[j + 1]
        resolve = _SPECIFIERS.get(spec)
        if resolve is None:
            raise SpecifierError(f'"{value}" has unknown specifier %{spec}')
        expansion = resolve(who)
        if expansion is None:
            raise SpecifierError(
                f'undefined expansion %{spec} in "{value}" (XDG_RUNTIME_DIR is unset or empty)'
            )
        out.append(expansion)
        i = j + 2
