"""Command-line scanning shared by `lacme` and `lacme-accountd`: lacme 0.8.2's
Getopt::Long settings (gnu_getopt in POSIX mode), so that what worked with
the Perl commands works with ours: `--name=value` or `--name value`, bundled
short flags, options before or after the other arguments, `--` ending the
options, and no abbreviated names.  Standard library only, for a fast --help.
"""

from collections.abc import Collection, Mapping, Sequence
from typing import NamedTuple


class UsageError(Exception):
    """The command line is wrong; the message says how."""


class Scanned(NamedTuple):
    values: dict[str, list[str]]  # every value given, in order: the last one wins
    flags: set[str]
    positional: list[str]

    def last(self, name: str) -> str | None:
        given = self.values.get(name)
        return given[-1] if given else None


def scan(
    argv: Sequence[str],
    value_options: Collection[str],
    flag_options: Collection[str],
    short_flags: Mapping[str, str],
) -> Scanned:
    """Sort ARGV into option values, flags (by long name) and the rest."""
    scanned = Scanned({}, set(), [])
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            scanned.positional.extend(argv[i:])
            break
        if arg.startswith("--"):
            name, equals, value = arg[2:].partition("=")
            if name in flag_options:
                if equals:
                    raise UsageError(f"option --{name} does not take an argument")
                scanned.flags.add(name)
            elif name in value_options:
                if not equals:
                    if i == len(argv):
                        raise UsageError(f"option --{name} requires an argument")
                    value = argv[i]
                    i += 1
                scanned.values.setdefault(name, []).append(value)
            else:
                raise UsageError(f"unknown option: --{name}")
        elif arg.startswith("-") and arg != "-":
            for letter in arg[1:]:
                if letter not in short_flags:
                    raise UsageError(f"unknown option: -{letter}")
                scanned.flags.add(short_flags[letter])
        else:
            scanned.positional.append(arg)
    return scanned
