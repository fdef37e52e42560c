"""The `lacme` command line, as lacme 0.8.2's:

    lacme [--config=FILE] [--socket=PATH] [-q|--quiet] [-v|--verbose] [--debug] [-h|--help]
          [--version]
          COMMAND [ARGUMENT ...]

    account [--register] [--tos-agreed] [--deactivate] [--json] [CONTACT ...]
    account --rollover=FILE|--rollover-socket=PATH [--json]
    newOrder (new-order, new-cert) [--config-certs=FILE]... [--min-days=INT|PCT%|--force]
             [--dry-run] [--json] [SECTION ...]
    revokeCert (revoke-cert) [--reason=NAME|CODE] FILE [FILE ...]
    status [--config-certs=FILE]... [--json] [SECTION ...]

Options go before or after the command, as with lacme 0.8.2's Getopt::Long
(every option is accepted with every command, and ignored where it means
nothing, but --dry-run and --json, refused where a script would count on
them).  This module is the thin entry point: `--help`, `--version` and
usage errors import nothing beyond the standard library's core; the master
itself (lacme.master: configuration, cryptography, processes) is imported
once the command line is good, or for `status` lacme.status, which starts
no process.

Exit status: 0 when everything asked for succeeded; for `account`, the
client's; for `status`, 1 when a section is overdue or broken (lacme.status);
otherwise 1 (a section or file that failed does not stop the others).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple, NoReturn

from lacme import __version__, log
from lacme.cli import UsageError, scan
from lacme.client_contract import ACCOUNT, NEW_ORDER, REVOKE_CERT

if TYPE_CHECKING:
    from lacme.config import Percent

NAME = "lacme"
# Not a client command (lacme.client_contract): the master alone answers it.
STATUS = "status"


USAGE = f"Usage: {NAME} [--config=FILE] [--socket=PATH] [OPTIONS] COMMAND [ARGUMENT ..]"


HELP = f"""{USAGE}

Commands:
  account [--register] [--tos-agreed] [--deactivate] [--json] [CONTACT ...]
  account --rollover=FILE|--rollover-socket=PATH [--json]
                         move the account to the key of a second lacme-accountd,
                         spawned with configuration FILE or listening on PATH
  newOrder [--config-certs=FILE]... [--min-days=INT|PCT%|--force] [--dry-run]
           [--json] [SECTION ...] (aliases: new-order, new-cert)
                         --dry-run: validate every name with the CA, due or not,
                         and stop before issuing: nothing installed or changed
                         --json: a JSON object per section on stdout
  revokeCert [--reason=NAME|CODE] FILE [FILE ...]  (alias: revoke-cert)
  status [--config-certs=FILE]... [--json] [SECTION ...]
                         each certificate, its expiry and its next renewal,
                         read-only: no network, no accountd

Options:
  --config=FILE          configuration file (default %E/lacme/lacme.conf)
  --socket=PATH          connect to this lacme-accountd socket (ignores [accountd])
  -q, --quiet            be quiet
  -v, --verbose          show each step of newOrder with its time (at a terminal,
                         the main ones are shown anyway)
  --debug                turn on debug mode
  -h, --help             show this help and exit
  --version              show the version and exit

Consult the manpage lacme(8) for more information.
"""


COMMANDS = {
    "account": ACCOUNT,
    "newOrder": NEW_ORDER,
    "new-order": NEW_ORDER,
    "new-cert": NEW_ORDER,
    "revokeCert": REVOKE_CERT,
    "revoke-cert": REVOKE_CERT,
    "status": STATUS,
}


# Getopt::Long spellings: options taking a value, and flags.
VALUE_OPTIONS = frozenset(
    {"config", "config-certs", "socket", "min-days", "rollover", "rollover-socket", "reason"}
)


FLAG_OPTIONS = frozenset(
    {
        "register",
        "tos-agreed",
        "deactivate",
        "force",
        "quiet",
        "debug",
        "help",
        "version",
        "json",
        "dry-run",
        "verbose",
    }
)


SHORT_OPTIONS = {"q": "quiet", "h": "help", "v": "verbose"}


class Arguments(NamedTuple):
    command: str
    arguments: tuple[str, ...]
    config: str | None = None
    config_certs: tuple[str, ...] = ()
    socket: str | None = None
    register: bool = False
    tos_agreed: bool = False
    deactivate: bool = False
    min_days: int | Percent | None = None
    quiet: bool = False
    debug: bool = False
    rollover: str | None = None  # the new key's lacme-accountd configuration
    rollover_socket: str | None = None  # or its socket
    reason: str | None = None  # RFC 5280 reason name or code
    json: bool = False
    dry_run: bool = False  # newOrder: validate, issue nothing
    verbose: bool = False  # every step with its time (lacme.progress)


def _usage_error(message: str) -> NoReturn:
    log.say(
        f"{NAME}: {message}\n{USAGE}\n"
        f"Try '{NAME} --help' or consult the manpage for more information."
    )
    sys.exit(1)


def parse_args(argv: Sequence[str]) -> Arguments | str:
    """ARGV as Getopt::Long (gnu_getopt, no abbreviations) reads lacme 0.8.2's
    options; the text to print for --help or --version instead; UsageError."""
    scanned = scan(argv, VALUE_OPTIONS, FLAG_OPTIONS, SHORT_OPTIONS)
    flags, positional = scanned.flags, scanned.positional
    if "help" in flags:
        return HELP
    if "version" in flags:
        return f"{NAME} {__version__}\n"
    if not positional:
        raise UsageError("missing command")
    command = COMMANDS.get(positional[0])
    if command is None:
        raise UsageError(f"invalid command: {positional[0]}")
    min_days: int | Percent | None = None
    if (text := scanned.last("min-days")) is not None:
        from lacme.config import parse_min_days

        try:
            min_days = parse_min_days(text)
        except ValueError as e:
            raise UsageError(f"--min-days: {e}: {text!r}") from None
    if "force" in flags:
        min_days = -1
    debug = "debug" in flags
    rollover = scanned.last("rollover")
    rollover_socket = scanned.last("rollover-socket")
    if rollover is not None and rollover_socket is not None:
        raise UsageError("--rollover and --rollover-socket exclude each other")
    if rollover == "" or rollover_socket == "":
        raise UsageError("--rollover and --rollover-socket need the new key's accountd")
    # Not ignored elsewhere: a revocation thought a dry run would be done,
    # a script would read what is not JSON.
    if "dry-run" in flags and command != NEW_ORDER:
        raise UsageError(f"--dry-run is for newOrder only, not {positional[0]}")
    if "json" in flags and command == REVOKE_CERT:
        raise UsageError(f"--json is for account and newOrder only, not {positional[0]}")
    if (rollover is not None or rollover_socket is not None) and (
        flags & {"register", "tos-agreed", "deactivate"} or len(positional) > 1
    ):
        raise UsageError("a key rollover takes no other account change")
    return Arguments(
        command=command,
        arguments=tuple(positional[1:]),
        config=scanned.last("config"),
        config_certs=tuple(scanned.values.get("config-certs", ())),
        socket=scanned.last("socket"),
        register="register" in flags,
        tos_agreed="tos-agreed" in flags,
        deactivate="deactivate" in flags,
        min_days=min_days,
        quiet="quiet" in flags and not debug,
        debug=debug,
        rollover=rollover,
        rollover_socket=rollover_socket,
        reason=scanned.last("reason"),
        json="json" in flags,
        dry_run="dry-run" in flags,
        verbose="verbose" in flags,
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parsed = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as e:
        _usage_error(str(e))
    if isinstance(parsed, str):
        sys.stdout.write(parsed)
        return 0
    # The imports not at the top: what --help must not load.
    if parsed.command == STATUS:
        from lacme import status

        return status.run(parsed)
    from lacme import master

    return master.run(parsed)


if __name__ == "__main__":
    sys.exit(main())
