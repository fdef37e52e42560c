"""%-specifier expansion, as documented in lacme(8) and lacme-accountd(1).

Values depend on who runs the expansion (root or not, the current user and
group), which is why callers expand some settings before and some after
dropping privileges.
"""

import grp
import os
import pwd
from collections.abc import Callable


class SpecifierError(ValueError):
    """A value holds an unknown or unexpandable %-specifier."""


def _env_or(name: str, fallback: str) -> str:
    value = os.environ.get(name, "")
    return value if value else fallback


def _home() -> str:
    return pwd.getpwuid(os.getuid()).pw_dir


def _env_home() -> str:
    # The XDG fallbacks follow $HOME, as the XDG specification says; only %h
    # is the password database's home.
    return os.environ.get("HOME") or _home()


def _runtime_dir() -> str | None:
    if os.getuid() == 0:
        return "/run"
    return os.environ.get("XDG_RUNTIME_DIR") or None


_SPECIFIERS: dict[str, Callable[[], str | None]] = {
    "C": lambda: (
        "/var/cache" if os.getuid() == 0 else _env_or("XDG_CACHE_HOME", _env_home() + "/.cache")
    ),
    "E": lambda: (
        "/etc" if os.getuid() == 0 else _env_or("XDG_CONFIG_HOME", _env_home() + "/.config")
    ),
    "g": lambda: grp.getgrgid(os.getgid()).gr_name,
    "G": lambda: str(os.getgid()),
    "h": _home,
    "t": _runtime_dir,
    "T": lambda: _env_or("TMPDIR", "/tmp"),  # noqa: S108 - the documented default
    "u": lambda: pwd.getpwuid(os.getuid()).pw_name,
    "U": lambda: str(os.getuid()),
    "%": lambda: "%",
}


def expand(value: str) -> str:
    """Return VALUE with every %-specifier replaced, or raise SpecifierError."""
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
        expansion = resolve()
        if expansion is None:
            raise SpecifierError(
                f'undefined expansion %{spec} in "{value}" (XDG_RUNTIME_DIR is unset or empty)'
            )
        out.append(expansion)
        i = j + 2
