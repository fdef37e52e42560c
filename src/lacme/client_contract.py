"""The contract between the master and the ACME client process, as lacme
0.8.2's, so that either side can be the Perl one; this module is the one
place that encodes and decodes what crosses it (argv, the settings on
CONFIG_FD, what comes back on stdout):

    CLIENT_COMMAND... COMMAND CONFIG_FD SOCKET_FD [ARGUMENT ...]

(beyond 0.8.2, CLIENT_COMMAND may end with `--unconfined`, which turns the
client's confinement off as `confinement = No` in the settings does;)

- the working directory is the challenge directory for newOrder (the client
  writes each key authorization there, named after its token), `/` otherwise;
- CONFIG_FD is a readable descriptor holding the [client] settings as one
  JSON object: every key of MASTER_KEYS and CLIENT_KEYS, null when unset
  (but SSL_CAfile and confinement, left out when unset); the client
  ignores MASTER_KEYS;
- SOCKET_FD is a stream connected to lacme-accountd (accountd_protocol);
- stdin: the CSR (DER) for newOrder, the certificate (DER) for revokeCert;
- stdout: the account object (JSON, indented, keys sorted) for account, the
  chain (PEM certificates, leaf first, nothing else) for newOrder;
- environment: DEBUG=1 turns on a trace on stderr.

`account` takes FLAGS, the sum of the ACCOUNT_* bits below, then contacts;
`newOrder` takes the identifiers (an IP address is an `ip` identifier,
anything else a `dns` one).

Beyond 0.8.2, all optional, so that a lacme 0.8.2 master works unchanged:

- `revokeCert [REASON]`: REASON, an RFC 5280 reason code (REVOCATION_REASONS);
- `keyChange NEW_SOCKET_FD`: move the account to the key of a second
  lacme-accountd connected on NEW_SOCKET_FD (stdout: the account object);
- CONFIG_FD may hold ORDER_KEYS for newOrder: `preferred-chain`, the issuer
  common name of the chain to return among those the server offers;
  `profile`, a name from the directory's meta.profiles; `replaces`, the ARI
  certID (RFC 9773) of the certificate the order renews; `resume`, the URL
  of an order an earlier run placed, to carry on instead of ordering anew
  (unless the server has it invalid); `order-fd`, a descriptor on which the
  client writes the URL of the order it works on, one line, as soon as it
  knows it (encode_order_url), so that a run cut short can be resumed;
- `directory`: the server's directory object (JSON) on stdout;
- `renewalInfo CERTID`: the certificate's renewal information (RFC 9773) on
  stdout, as {"renewalInfo": OBJECT, "retryAfter": SECONDS or null}.
  These two sign nothing: SOCKET_FD is then not read, and the master
  passes a stream with no accountd behind it (UNSIGNED).

And, for lacme's own client only (the master asks nothing of another one):

- `session CONFIG_FD CONTROL_FD`: one client for a whole run, started in
  `/`.  CONTROL_FD is a UNIX stream socket on which the master sends
  requests, one JSON object a line (encode_request): `directory`,
  `renewalInfo` and `newOrder` as above, each with an `id`, the CSR in it
  (base64url), several newOrders at once.  Two lines carry a descriptor
  (SCM_RIGHTS) instead: the accountd stream, before the first newOrder,
  and the challenge directory, which the client makes its working
  directory.  The client answers each request with a line
  (encode_answer): the exit status, what the command would have printed
  on stdout, and the lines it would have printed on stderr; before, for a
  newOrder, the order's URL (encode_announce) instead of on an order-fd.
  When the master closes its end, the client finishes and exits.
- `validate` (`newOrder --dry-run`), a session request as newOrder but
  with no CSR, and only `profile` of the order settings: the client orders,
  has every identifier validated through the challenge directory, stops
  before finalizing, and deactivates the authorizations it had validated
  (RFC 8555 section 7.5.2), so that no later order reuses them.  It
  announces the order's URL as for newOrder; its answer's output is what
  came of each authorization (encode_validations), its status 0 when every
  identifier is valid.
- While an order (newOrder or validate) waits on the server, the client
  says which step it is at (encode_step): `validating`, its challenges
  answered, then `finalizing`, the CSR sent; the master shows it.
"""

import base64
import json
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from lacme.parsing import yes_no

UNCONFINED = "--unconfined"
ACCOUNT = "account"
NEW_ORDER = "newOrder"
REVOKE_CERT = "revokeCert"
KEY_CHANGE = "keyChange"
DIRECTORY = "directory"
RENEWAL_INFO = "renewalInfo"
SESSION = "session"
VALIDATE = "validate"
COMMANDS = (ACCOUNT, NEW_ORDER, REVOKE_CERT, KEY_CHANGE, DIRECTORY, RENEWAL_INFO, SESSION)
# What a session is asked; the first two sign nothing.
SESSION_REQUESTS = (DIRECTORY, RENEWAL_INFO, NEW_ORDER, VALIDATE)
# The requests that place an order, and announce its URL.
ORDERING = frozenset({NEW_ORDER, VALIDATE})
UNSIGNED = frozenset({DIRECTORY, RENEWAL_INFO})

ACCOUNT_REGISTER = 1
ACCOUNT_TOS_AGREED = 2
ACCOUNT_DEACTIVATE = 4

# RFC 5280 section 5.3.1 CRLReason names and codes (7 is unused).
REVOCATION_REASONS = {
    "unspecified": 0,
    "keyCompromise": 1,
    "cACompromise": 2,
    "affiliationChanged": 3,
    "superseded": 4,
    "cessationOfOperation": 5,
    "certificateHold": 6,
    "removeFromCRL": 8,
    "privilegeWithdrawn": 9,
    "aACompromise": 10,
}

# The settings on CONFIG_FD, a JSON object, null meaning unset.  The
# [client] keys of lacme.conf, in lacme 0.8.2's spelling: the master keeps
# MASTER_KEYS for itself and, as 0.8.2's, passes them along anyway.
MASTER_KEYS = ("socket", "user", "group", "command")
CLIENT_KEYS = (
    "server",
    "timeout",
    "SSL_verify",
    "SSL_version",
    "SSL_cipher_list",
    "SSL_CAfile",
    "confinement",
)
# Beyond 0.8.2, per order, for newOrder only.
ORDER_KEYS = ("preferred-chain", "profile", "replaces", "resume", "order-fd")
DEFAULT_SERVER = "https://acme-v02.api.letsencrypt.org/directory"
DEFAULT_TIMEOUT = 30.0
# The settings, and a CSR or certificate on stdin, are a few KiB.
MAX_INPUT = 1 << 20
# What the client writes on stdout is what the ACME server answered, which
# lacme.acme_http reads no more of than this (MAX_BODY), or for a chain
# (newOrder) MAX_CERTIFICATE_BODY; the master reads no more either.
MAX_OUTPUT = 1 << 20
MAX_CHAIN_OUTPUT = 10 << 20

_PEM_CHAIN = re.compile(
    rb"\s*(?:-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----\s*)+"
)
_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


class ContractError(ValueError):
    """What crossed the boundary is not what the contract allows; the
    message says what."""


# --- argv ---------------------------------------------------------------------


class Invocation(NamedTuple):
    """The client's command line, after CLIENT_COMMAND."""

    command: str
    config_fd: int
    socket_fd: int
    arguments: tuple[str, ...]
    # UNCONFINED before COMMAND: what `confinement = No` does, for a
    # master that passes no such setting (Perl's refuses the key).
    confined: bool = True


def client_argv(program: Sequence[str], invocation: Invocation) -> list[str]:
    """The command line that starts PROGRAM (the [client] command) for INVOCATION."""
    return [
        *program,
        invocation.command,
        str(invocation.config_fd),
        str(invocation.socket_fd),
        *invocation.arguments,
    ]


def parse_argv(argv: Sequence[str]) -> Invocation:
    """The client's side of client_argv(), UNCONFINED first or not;
    ContractError, the usage, otherwise."""
    confined = not argv or argv[0] != UNCONFINED
    argv = argv[0 if confined else 1 :]
    if len(argv) < 3 or argv[0] not in COMMANDS or not (argv[1].isdigit() and argv[2].isdigit()):
        raise ContractError(
            f"[{UNCONFINED}] {{{','.join(COMMANDS)}}} CONFIG_FD SOCKET_FD [ARGUMENT ...]"
        )
    return Invocation(argv[0], int(argv[1]), int(argv[2]), tuple(argv[3:]), confined)


class AccountChange(NamedTuple):
    """`account FLAGS [CONTACT ...]`."""

    register: bool = False
    tos_agreed: bool = False
    deactivate: bool = False
    contacts: tuple[str, ...] = ()

    def arguments(self) -> tuple[str, ...]:
        flags = (
            (ACCOUNT_REGISTER if self.register else 0)
            | (ACCOUNT_TOS_AGREED if self.tos_agreed else 0)
            | (ACCOUNT_DEACTIVATE if self.deactivate else 0)
        )
        return (str(flags), *self.contacts)


def parse_account_arguments(arguments: Sequence[str]) -> AccountChange:
    if not arguments or not arguments[0].isdigit():
        raise ContractError("usage: account FLAGS [CONTACT ...]")
    flags = int(arguments[0])
    return AccountChange(
        register=bool(flags & ACCOUNT_REGISTER),
        tos_agreed=bool(flags & ACCOUNT_TOS_AGREED),
        deactivate=bool(flags & ACCOUNT_DEACTIVATE),
        contacts=tuple(arguments[1:]),
    )


def parse_new_order_arguments(arguments: Sequence[str]) -> list[str]:
    """The identifiers to order (an IP address is an `ip` one)."""
    if not arguments:
        raise ContractError("usage: newOrder DOMAIN ...")
    return list(arguments)


def revoke_arguments(reason: int | None) -> tuple[str, ...]:
    return () if reason is None else (str(reason),)


def parse_revoke_arguments(arguments: Sequence[str]) -> int | None:
    """The RFC 5280 reason code, if any."""
    if len(arguments) > 1 or not all(argument.isdigit() for argument in arguments):
        raise ContractError("usage: revokeCert [REASON] (the certificate on stdin)")
    return int(arguments[0]) if arguments else None


def parse_key_change_arguments(arguments: Sequence[str]) -> int:
    """The descriptor of the new key's lacme-accountd."""
    if len(arguments) != 1 or not arguments[0].isdigit():
        raise ContractError("usage: keyChange NEW_SOCKET_FD")
    return int(arguments[0])


def parse_directory_arguments(arguments: Sequence[str]) -> None:
    if arguments:
        raise ContractError("usage: directory")


def parse_renewal_info_arguments(arguments: Sequence[str]) -> str:
    """The ARI certID (RFC 9773 section 4.1) of the certificate."""
    if len(arguments) != 1:
        raise ContractError("usage: renewalInfo CERTID")
    return arguments[0]


# --- CONFIG_FD ----------------------------------------------------------------


class OrderSettings(NamedTuple):
    """The optional per-order settings (ORDER_KEYS)."""

    preferred_chain: str | None = None
    profile: str | None = None
    replaces: str | None = None
    resume: str | None = None
    order_fd: int | None = None


class ClientSettings(NamedTuple):
    """The settings as the client takes them."""

    server: str = DEFAULT_SERVER
    timeout: float = DEFAULT_TIMEOUT
    verify: bool = True
    cafile: str | None = None
    tls_version: str | None = None
    cipher_list: str | None = None
    order: OrderSettings = OrderSettings()
    # `confinement = No` turns Landlock and seccomp off (lacme.confinement).
    confinement: bool = True


def encode_settings(client: Mapping[str, str | None], order: OrderSettings | None = None) -> bytes:
    """CONFIG_FD's content: the [client] keys CLIENT (those of MASTER_KEYS and
    CLIENT_KEYS; None when unset, sent as null as lacme 0.8.2 does), then
    the per-order keys that are set."""
    unknown = client.keys() - {*MASTER_KEYS, *CLIENT_KEYS}
    if unknown:
        raise ValueError(f"not [client] keys: {', '.join(sorted(unknown))}")
    settings: dict[str, str | int | None] = dict(client)
    if settings.get("SSL_CAfile") is None:
        # Perl's client hands every SSL_* key to IO::Socket::SSL, where an
        # explicit undef CA file is not the same as none given.
        settings.pop("SSL_CAfile", None)
    if settings.get("confinement") is None:
        # Beyond 0.8.2: a client of 0.8.2 never sees it unless it is set.
        settings.pop("confinement", None)
    for key, value in zip(ORDER_KEYS, order or OrderSettings(), strict=True):
        if value is not None:
            settings[key] = value
    return json.dumps(settings).encode()


def decode_settings(data: bytes) -> ClientSettings:
    """The client's side of encode_settings(); ContractError if DATA is not
    a JSON object of known keys with string (or number) values."""
    obj = _json_object(data)
    values = {k: v for k, v in obj.items() if v is not None and k not in MASTER_KEYS}
    for key, value in values.items():
        if not isinstance(value, str | int | float):
            raise ContractError(f"setting {key} is not a string")
    unknown = values.keys() - {*CLIENT_KEYS, *ORDER_KEYS}
    if unknown:
        raise ContractError(f"unknown setting(s) in [client]: {', '.join(sorted(unknown))}")
    try:
        timeout = parse_timeout(values.get("timeout", DEFAULT_TIMEOUT))
    except ValueError:
        raise ContractError(f"timeout is not a number of seconds: {values['timeout']!r}") from None

    def text(key: str) -> str | None:
        return None if key not in values else str(values[key])

    server = text("server")
    return ClientSettings(
        # An empty server is a mistake to report, not the default.
        server=DEFAULT_SERVER if server is None else server,
        timeout=timeout,
        # As lacme 0.8.2: anything but "No" verifies.
        verify=(text("SSL_verify") or "Yes").lower() != "no",
        cafile=text("SSL_CAfile"),
        tls_version=text("SSL_version"),
        cipher_list=text("SSL_cipher_list"),
        order=OrderSettings(
            preferred_chain=text("preferred-chain"),
            profile=text("profile"),
            replaces=text("replaces"),
            resume=text("resume"),
            order_fd=_descriptor(values.get("order-fd")),
        ),
        confinement=_confinement(text("confinement")),
    )


def parse_timeout(value: str | float) -> float:
    """`timeout`: seconds, 0 or more; ValueError otherwise."""
    try:
        timeout = float(value)
    except ValueError:
        timeout = -1.0
    if not timeout >= 0:
        raise ValueError("not a number of seconds, such as 30 (without a unit)")
    return timeout


TLS_VERSIONS = ("tlsv1", "tlsv1_1", "tlsv1_2", "tlsv1_3")


def tls_versions(spec: str) -> tuple[str, str]:
    """The lowest and highest of TLS_VERSIONS an IO::Socket::SSL
    `SSL_version` allows, e.g. "TLSv1_2", "SSLv23:!TLSv1:!TLSv1_1" (SSLv2
    and SSLv3 are long gone); ValueError saying why SPEC allows none."""
    tokens = [token.strip().lower() for token in spec.split(":") if token.strip()]
    allowed = set(TLS_VERSIONS) if all(token.startswith("!") for token in tokens) else set()
    for token in tokens:
        name = token.removeprefix("!")
        if name in ("sslv23", "tls", "all"):
            versions = set(TLS_VERSIONS)
        elif name in ("sslv2", "sslv3"):
            versions = set()
        elif name in TLS_VERSIONS:
            versions = {name}
        else:
            raise ValueError(f"unknown TLS version {token!r} (one of {', '.join(TLS_VERSIONS)})")
        allowed = allowed - versions if token.startswith("!") else allowed | versions
    if not allowed:
        raise ValueError("allows no TLS version")
    ordered = [name for name in TLS_VERSIONS if name in allowed]
    return ordered[0], ordered[-1]


def check_server(url: str) -> None:
    """`server`: ValueError unless an https:// URL with a host, as the
    client takes it (RFC 8555 section 6.1)."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - ValueError when not a number in range
    except ValueError as e:
        raise ValueError(str(e)) from None
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError("not an https:// URL with a host (RFC 8555 section 6.1)")


def check_verify(value: str) -> None:
    """`SSL_verify` (or `confinement`): Yes or No.  0.8.2 took anything but
    No for Yes, so that `SSL_verify = false` verified after all."""
    yes_no(value, True)


def check_cafile(path: str) -> None:
    """`SSL_CAfile`: absolute, as the client runs in `/` or in the challenge directory."""
    if not path:
        raise ValueError("empty: leave SSL_CAfile out to trust what OpenSSL trusts")
    if not path.startswith("/"):
        raise ValueError("not an absolute path (the client runs in another directory)")


# The checks of the CLIENT_KEYS the client reads, for the master to make
# before it starts anything; each raises ValueError saying why.
CLIENT_CHECKS: dict[str, Callable[[str], object]] = {
    "server": check_server,
    "timeout": parse_timeout,
    "SSL_verify": check_verify,
    "SSL_version": tls_versions,
    "SSL_CAfile": check_cafile,
    "confinement": check_verify,
}


def _confinement(value: str | None) -> bool:
    try:
        return yes_no(value or "", True)
    except ValueError as e:
        raise ContractError(f"confinement = {value}: {e}") from None


def _descriptor(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ContractError(f"order-fd is not a file descriptor: {value!r}")
    return value


# An order URL is a few dozen bytes; more is not one.
MAX_ORDER_URL = 2048
_ORDER_URL = re.compile(rb"https?://[\x21-\x7e]+\n")


def encode_order_url(url: str) -> bytes:
    return url.encode("ascii") + b"\n"


def decode_order_url(data: bytes) -> str:
    """The master's side of encode_order_url(): the URL the client wrote on
    its order-fd; ContractError if DATA is no such line."""
    if len(data) > MAX_ORDER_URL or not _ORDER_URL.fullmatch(data):
        raise ContractError(f"not an order URL line: {data[:100]!r}")
    return data[:-1].decode("ascii")


# --- stdout ---------------------------------------------------------------------


def encode_object(obj: Mapping[str, Any]) -> bytes:
    """An account or directory object, as the client prints it."""
    return json.dumps(obj, indent=2, sort_keys=True).encode() + b"\n"


def decode_object(output: bytes) -> dict[str, Any] | None:
    """The object the client printed; None if it printed no JSON object."""
    try:
        obj = json.loads(output) if output.strip() else None
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


class RenewalInfoAnswer(NamedTuple):
    """`renewalInfo`'s output: the server's renewalInfo object and the
    Retry-After (seconds) it came with."""

    renewal_info: dict[str, Any]
    retry_after: float | None


def encode_renewal_info(answer: RenewalInfoAnswer) -> bytes:
    data = {"renewalInfo": answer.renewal_info, "retryAfter": answer.retry_after}
    return json.dumps(data, indent=2).encode() + b"\n"


def decode_renewal_info(output: bytes) -> RenewalInfoAnswer:
    """The master's side of encode_renewal_info(); ContractError if OUTPUT
    is not such an answer."""
    answer = _json(output)
    info = answer.get("renewalInfo") if isinstance(answer, dict) else None
    if not isinstance(info, dict):
        raise ContractError("no renewalInfo object")
    retry_after = answer.get("retryAfter")
    if isinstance(retry_after, bool) or not isinstance(retry_after, int | float):
        retry_after = None
    return RenewalInfoAnswer(info, None if retry_after is None else float(retry_after))


# Any command that could not reach the ACME server for as long as it tried
# exits with this status (sysexits' EX_UNAVAILABLE): the master then asks
# nothing more of the server in the run.
EXIT_UNREACHABLE = 69

# newOrder refused by a rate limit that says when it ends (HTTP 429
# rateLimited with Retry-After): the client exits with this status
# (sysexits' EX_TEMPFAIL) and prints the wait, for the master to record.
EXIT_RATE_LIMITED = 75


def encode_rate_limit(retry_after: float) -> bytes:
    return json.dumps({"rateLimited": {"retryAfter": retry_after}}).encode() + b"\n"


def decode_rate_limit(output: bytes) -> float:
    """The master's side of encode_rate_limit(): the seconds to wait;
    ContractError if OUTPUT is not such an answer."""
    answer = _json(output)
    limit = answer.get("rateLimited") if isinstance(answer, dict) else None
    retry_after = limit.get("retryAfter") if isinstance(limit, dict) else None
    if (
        isinstance(retry_after, bool)
        or not isinstance(retry_after, int | float)
        or not 0 <= retry_after < float("inf")
    ):
        raise ContractError("no rateLimited.retryAfter number of seconds")
    return float(retry_after)


def split_chain(output: bytes) -> list[bytes]:
    """The PEM certificates of the chain newOrder printed, leaf first;
    ContractError for anything but PEM certificates and whitespace."""
    if not _PEM_CHAIN.fullmatch(output):
        raise ContractError("not a PEM certificate chain")
    return _PEM_BLOCK.findall(output)


# --- session (CONTROL_FD) -------------------------------------------------------

# The descriptors a session is lent, each on a line of its own.
ACCOUNTD_FD = "accountd"
CHALLENGES_FD = "challenges"
DESCRIPTORS = (ACCOUNTD_FD, CHALLENGES_FD)
# An answer carries at most a chain, JSON-escaped (a PEM line grows by two
# bytes of "\n"), and the stderr lines; anything longer is no answer.
MAX_SESSION_LINE = 2 * MAX_CHAIN_OUTPUT
MAX_MESSAGES = 100
MAX_MESSAGE = 4096
# What crosses CONTROL_FD from the master: bounded by MAX_INPUT each.
MAX_REQUEST = MAX_INPUT


class Request(NamedTuple):
    """A request of the session: COMMAND with the one-shot command's
    ARGUMENTS, its stdin (the CSR of a newOrder) and ORDER settings."""

    id: int
    command: str
    arguments: tuple[str, ...] = ()
    stdin: bytes = b""
    order: OrderSettings = OrderSettings()


class Answer(NamedTuple):
    """What the client did of request ID: as the one-shot command would
    have exited (STATUS), printed on stdout (OUTPUT) and on stderr (MESSAGES)."""

    id: int
    status: int
    output: bytes
    messages: tuple[str, ...]


class Announce(NamedTuple):
    """The URL of the order that request ID works on."""

    id: int
    url: str


# The steps an order waits on the server at (Step).
VALIDATING = "validating"
FINALIZING = "finalizing"
STEPS = (VALIDATING, FINALIZING)


class Step(NamedTuple):
    """The step (STEPS) that the order of request ID waits at."""

    id: int
    step: str


def _line(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def _object(line: bytes, limit: int) -> dict[str, Any]:
    if len(line) > limit or not line.endswith(b"\n"):
        raise ContractError(f"not a line of at most {limit} bytes")
    return _json_object(line)


def _json(data: bytes) -> Any:
    """What DATA holds as JSON; ContractError if it is not JSON."""
    try:
        return json.loads(data)
    except ValueError as e:
        raise ContractError(f"not JSON: {e}") from None


def _json_object(data: bytes) -> dict[str, Any]:
    obj = _json(data)
    if not isinstance(obj, dict):
        raise ContractError("not a JSON object")
    return obj


def _id(obj: Mapping[str, Any]) -> int:
    value = obj.get("id")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 31:
        raise ContractError(f"no request id: {str(value)[:100]!r}")
    return value


def _strings(value: object, what: str, limit: int) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > limit:
        raise ContractError(f"{what} is not a list of at most {limit} strings")
    if not all(isinstance(item, str) for item in value):
        raise ContractError(f"{what} is not a list of strings")
    return tuple(value)


def encode_descriptor(kind: str) -> bytes:
    """The line a descriptor of KIND (DESCRIPTORS) is sent with."""
    return _line({"descriptor": kind})


def encode_request(request: Request) -> bytes:
    obj: dict[str, Any] = {
        "id": request.id,
        "command": request.command,
        "arguments": list(request.arguments),
    }
    if request.stdin:
        obj["stdin"] = base64.urlsafe_b64encode(request.stdin).decode()
    order = {
        key: value
        for key, value in zip(ORDER_KEYS, request.order, strict=True)
        if value is not None and key != "order-fd"
    }
    if order:
        obj["order"] = order
    return _line(obj)


def decode_request(line: bytes) -> Request | str:
    """The client's side of encode_request() and encode_descriptor(): a
    Request, or the kind of descriptor the line comes with; ContractError
    for anything else."""
    obj = _object(line, MAX_REQUEST)
    if "descriptor" in obj:
        kind = obj["descriptor"]
        if kind not in DESCRIPTORS or len(obj) != 1:
            raise ContractError(f"unknown descriptor: {str(kind)[:100]!r}")
        return str(kind)
    command = obj.get("command")
    if command not in SESSION_REQUESTS:
        raise ContractError(f"unknown session request: {str(command)[:100]!r}")
    order = obj.get("order", {})
    if not isinstance(order, dict) or not order.keys() <= set(ORDER_KEYS) - {"order-fd"}:
        raise ContractError("order settings are not an object of order keys")
    if not all(isinstance(value, str) for value in order.values()):
        raise ContractError("order settings are not strings")
    stdin = obj.get("stdin", "")
    try:
        data = (
            base64.b64decode(stdin.encode("ascii"), altchars=b"-_", validate=True)
            if isinstance(stdin, str)
            else None
        )
    except ValueError:  # binascii.Error and UnicodeEncodeError included
        data = None
    if data is None:
        raise ContractError("stdin is not base64url")
    return Request(
        _id(obj),
        str(command),
        _strings(obj.get("arguments", []), "arguments", MAX_INPUT),
        data,
        OrderSettings(*(order.get(key) for key in ORDER_KEYS[:-1])),
    )


def encode_answer(answer: Answer) -> bytes:
    """The client's answer; its output is text (JSON or PEM), as UTF-8."""
    return _line(
        {
            "id": answer.id,
            "status": answer.status,
            "output": answer.output.decode("utf-8", "replace"),
            "messages": list(answer.messages),
        }
    )


def encode_announce(announce: Announce) -> bytes:
    return _line({"id": announce.id, "orderUrl": announce.url})


def encode_step(step: Step) -> bytes:
    return _line({"id": step.id, "step": step.step})


def decode_answer(line: bytes) -> Answer | Announce | Step:
    """The master's side of encode_answer(), encode_announce() and encode_step();
    ContractError for anything else, or anything beyond the bounds: output
    over MAX_CHAIN_OUTPUT bytes, more than MAX_MESSAGES messages or one over
    MAX_MESSAGE characters, an order URL decode_order_url refuses."""
    obj = _object(line, MAX_SESSION_LINE)
    request = _id(obj)
    if "orderUrl" in obj:
        url = obj["orderUrl"]
        if not isinstance(url, str) or len(obj) != 2:
            raise ContractError("an order URL is not a string")
        try:
            encoded = encode_order_url(url)
        except UnicodeEncodeError:
            raise ContractError(f"not an order URL: {url[:100]!r}") from None
        return Announce(request, decode_order_url(encoded))
    if "step" in obj:
        step = obj["step"]
        if step not in STEPS or len(obj) != 2:
            raise ContractError(f"unknown step: {str(step)[:100]!r}")
        return Step(request, str(step))
    status, output = obj.get("status"), obj.get("output")
    if isinstance(status, bool) or not isinstance(status, int) or not 0 <= status < 256:
        raise ContractError(f"no exit status: {str(status)[:100]!r}")
    if not isinstance(output, str):
        raise ContractError("no output")
    data = output.encode("utf-8", "surrogateescape")
    if len(data) > MAX_CHAIN_OUTPUT:
        raise ContractError(f"output over {MAX_CHAIN_OUTPUT} bytes")
    messages = _strings(obj.get("messages"), "messages", MAX_MESSAGES)
    if any(len(message) > MAX_MESSAGE for message in messages):
        raise ContractError(f"a message over {MAX_MESSAGE} characters")
    return Answer(request, status, data, messages)


# --- validate's output ------------------------------------------------------------

# What came of an authorization of a `validate` order: validated by the
# CA in this run, valid before it (the CA reused an earlier validation and
# checked nothing), refused by the CA's validation, or neither when the
# order ended (another identifier failed first, or the client gave up).
VALIDATED = "validated"
REUSED = "reused"
FAILED = "failed"
UNFINISHED = "unfinished"
OUTCOMES = (VALIDATED, REUSED, FAILED, UNFINISHED)
# An order has at most 100 identifiers (lacme.acme_resources), each a DNS
# name or an IP address.
MAX_VALIDATIONS = 100
MAX_IDENTIFIER = 300


class Validation(NamedTuple):
    """An authorization of a `validate` order: its IDENTIFIER, as
    "TYPE:VALUE"; its OUTCOME (OUTCOMES); DETAIL, the CA's word on a
    failure, or why it is unfinished; whether it was DEACTIVATED."""

    identifier: str
    outcome: str
    detail: str = ""
    deactivated: bool = False


def encode_validations(validations: Sequence[Validation]) -> bytes:
    return json.dumps({"validations": [v._asdict() for v in validations]}).encode() + b"\n"


def decode_validations(output: bytes) -> tuple[Validation, ...]:
    """The master's side of encode_validations(); ContractError for
    anything else, or beyond the bounds (MAX_VALIDATIONS of them, an
    identifier over MAX_IDENTIFIER characters, a detail over MAX_MESSAGE)."""
    answer = _json(output)
    items = answer.get("validations") if isinstance(answer, dict) else None
    if not isinstance(items, list) or len(items) > MAX_VALIDATIONS:
        raise ContractError(f"no list of at most {MAX_VALIDATIONS} validations")
    validations = []
    for item in items:
        if not isinstance(item, dict) or item.keys() != set(Validation._fields):
            raise ContractError(f"a validation is not an object of {', '.join(Validation._fields)}")
        identifier, outcome = item["identifier"], item["outcome"]
        detail, deactivated = item["detail"], item["deactivated"]
        if not isinstance(identifier, str) or not 0 < len(identifier) <= MAX_IDENTIFIER:
            raise ContractError(f"an identifier is not a string of at most {MAX_IDENTIFIER}")
        if outcome not in OUTCOMES:
            raise ContractError(f"unknown validation outcome: {str(outcome)[:100]!r}")
        if not isinstance(detail, str) or len(detail) > MAX_MESSAGE:
            raise ContractError(f"a validation detail is not a string of at most {MAX_MESSAGE}")
        if not isinstance(deactivated, bool):
            raise ContractError("deactivated is not true or false")
        validations.append(Validation(identifier, str(outcome), detail, deactivated))
    return tuple(validations)
