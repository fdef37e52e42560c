"""The lacme master's configuration: `lacme.conf` and the certificate files.

Both are in the INI dialect of lacme 0.8.2 (lacme.inifile) and follow
lacme(8) 0.8.2.  `lacme.conf` holds `config-certs` (and, beyond 0.8.2,
`renewal-lookahead`) before any section and the sections [client],
[webserver] and [accountd] with exactly their documented keys (plus
`SSL_CAfile` in [client], the CA bundle our client trusts); any other
section or key is an error naming file, section and key.

The certificate files are read in `config-certs` order (directories: their
`*.conf` files in lexicographic order, a warning naming each other file);
default-section keys merge, the later winning, and supply defaults to every
section.  Values are checked per section (`parse_section`), so that one
broken section does not stop the renewal of the others; a file that cannot
be read, is not INI or has an unknown key stops everything, as in lacme
0.8.2.  Beyond 0.8.2, which lets the later definition win in silence, a
section defined twice (in one file or two), and sections that would install
to the same file (the later overwriting the earlier after its `notify` ran),
are errors of those sections, naming both places; no section at all is a
warning.  Beyond 0.8.2 too, a file or `config-certs` directory that anyone
but root (or the user lacme runs as) could change is refused
(lacme.strict), as its `notify` and the [client] command run as root.

Nothing here imports `cryptography`: `lacme account` and `--help` do without.
"""

from __future__ import annotations

import datetime
import grp
import ipaddress
import os
import pwd
import re
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple, TypeVar

from lacme import inifile, log, strict
from lacme.client_contract import CLIENT_CHECKS, CLIENT_KEYS, MASTER_KEYS
from lacme.errors import ConfigError
from lacme.parsing import is_ip_address, yes_no
from lacme.specifiers import SpecifierError, expand

DEFAULT_CONFIG = "%E/lacme/lacme.conf"
DEFAULT_CONFIG_CERTS = ("lacme-certs.conf", "lacme-certs.conf.d/")
# lacme 0.8.2's default, shipped by Debian's Perl lacme package; without that
# package, the system's trust store (Debian's ca-certificates) rather than a
# path that does not exist, which would refuse every certificate issued.
PERL_LACME_CAFILE = "/usr/share/lacme/ca-certificates.crt"
SYSTEM_CAFILE = "/etc/ssl/certs/ca-certificates.crt"


def default_cafile() -> str:
    return PERL_LACME_CAFILE if os.path.exists(PERL_LACME_CAFILE) else SYSTEM_CAFILE


# lacme.conf's default section.
LACME_KEYS = ("config-certs", "renewal-lookahead", "parallel-orders")
# Orders under way at once with lacme's own client (lacme.client_link): a
# CA limits requests per account and per address (Let's Encrypt: 20 a
# second on some resources); 4 orders, each a request at a time, stay far
# below that over real round trips, and already overlap the waits.
DEFAULT_PARALLEL_ORDERS = 4
MAX_PARALLEL_ORDERS = 100
# The time to the next run of `lacme newOrder`: lacme.timer's 12 hours.
DEFAULT_RENEWAL_LOOKAHEAD = datetime.timedelta(hours=12)
# Beyond a weekly run, short renewal windows cannot be met anyway; a longer
# lookahead is a typo that would renew certificates long before their window.
MAX_RENEWAL_LOOKAHEAD = datetime.timedelta(days=7)
DEFAULT_MIN_DAYS = 21
# Seconds a `notify` command may take (lacme.notify): a reload takes a few;
# one that hangs must not hold up every later run.
DEFAULT_NOTIFY_TIMEOUT = 300
MAX_NOTIFY_TIMEOUT = 86400
HASHES = ("sha256", "sha384", "sha512")
# x509v3_config(5ssl) names.
KEY_USAGES = (
    "digitalSignature",
    "nonRepudiation",
    "keyEncipherment",
    "dataEncipherment",
    "keyAgreement",
    "keyCertSign",
    "cRLSign",
    "encipherOnly",
    "decipherOnly",
)
# The TLS features lacme 0.8.2 let a CSR ask for (RFC 7633): both mean OCSP
# Must-Staple.
TLS_FEATURES = ("status_request", "status_request_v2")
CERT_KEYS = frozenset(
    {
        "certificate",
        "certificate-chain",
        "certificate-key",
        "min-days",
        "CAfile",
        "hash",
        "keyUsage",
        "subject",
        "subjectAltName",
        "tlsfeature",
        "owner",
        "chown",
        "mode",
        "chmod",
        "notify",
        "notify-timeout",
        "preferred-chain",
        "profile",
    }
)
_COMMON_NAMES = frozenset({"cn", "commonname", "2.5.4.3"})
_LABEL = r"[0-9a-z](?:[0-9a-z-]{0,61}[0-9a-z])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})+", re.ASCII | re.IGNORECASE)
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
_OCTAL = re.compile(r"[0-7]+", re.ASCII)
T = TypeVar("T")
_PERCENT = re.compile(r"([0-9]+(?:\.[0-9]*)?)%", re.ASCII)


class Percent(NamedTuple):
    """`min-days` as a percentage of the certificate's lifetime (`33%`), so
    that short-lived certificates are not renewed on every run."""

    value: float


def parse_min_days(text: str) -> int | Percent:
    """`min-days`, in lacme.conf or on the command line: a number of days,
    or `N%` (0 to 100) of the certificate's lifetime; ValueError saying why
    TEXT is neither."""
    if text.endswith("%"):
        match = _PERCENT.fullmatch(text)
        if match is None:
            raise ValueError("not a percentage")
        value = float(match.group(1))
        if value > 100:
            raise ValueError("a percentage of the lifetime can't be over 100%")
        return Percent(value)
    if not _INTEGER.fullmatch(text):
        raise ValueError("not an integer")
    return int(text)


_DURATION = re.compile(r"([0-9]+)([smhd])", re.ASCII)
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_lookahead(text: str) -> datetime.timedelta:
    """`renewal-lookahead`: a number and a unit (s, m, h or d), up to
    MAX_RENEWAL_LOOKAHEAD; ValueError saying why TEXT is not."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError("not a duration such as 12h, 90m, 1d or 0h")
    seconds = int(match[1]) * _DURATION_UNITS[match[2]]
    if seconds > MAX_RENEWAL_LOOKAHEAD.total_seconds():
        raise ValueError("more than 7d: run lacme newOrder at least once a week")
    return datetime.timedelta(seconds=seconds)


# -I: both run in the challenge directory, which the client may write to;
# `python -m` would otherwise import modules from there first.
def _default_client_command() -> str:
    return f"{sys.executable} -I -m lacme.client"


def _default_webserver_command() -> str:
    return f"{sys.executable} -I -m lacme.webserver"


def _default_accountd_command() -> str:
    # The console script installed alongside this interpreter (a virtual
    # environment's bin/), so that the default works right after installation.
    return os.path.join(os.path.dirname(sys.executable), "lacme-accountd")


def _yes_no(filename: str, section: str, key: str, value: str | None, default: bool) -> bool:
    """A Yes/No setting (lacme.parsing), unset meaning DEFAULT."""
    try:
        return yes_no(value or "", default)
    except ValueError as e:
        raise ConfigError(f"{filename}: [{section}] {key} = {value}: {e}") from e


@dataclass(frozen=True)
class ClientConfig:
    socket: str = "%t/S.lacme"
    user: str = "_lacme-client"
    group: str = "nogroup"
    command: str = field(default_factory=_default_client_command)
    server: str | None = None
    timeout: str | None = None
    ssl_verify: str | None = None
    ssl_version: str | None = None
    ssl_cipher_list: str | None = None
    ssl_cafile: str | None = None
    confinement: str | None = None

    def settings(self) -> dict[str, str | None]:
        """The section by the keys of lacme.conf (lacme.client_contract
        MASTER_KEYS and CLIENT_KEYS), None where unset."""
        return {key: getattr(self, attribute) for key, attribute in _CLIENT_KEYS.items()}


@dataclass(frozen=True)
class WebserverConfig:
    listen: str = "/run/lacme-www.socket"
    challenge_directory: str | None = None
    user: str = "_lacme-www"
    group: str = "nogroup"
    command: str = field(default_factory=_default_webserver_command)
    iptables: bool = False
    confinement: bool = True


@dataclass(frozen=True)
class AccountdConfig:
    user: str = ""
    group: str = ""
    command: str = field(default_factory=_default_accountd_command)
    config: str = ""
    quiet: bool = True


# lacme.conf's [client] keys are the client contract's; ClientConfig's
# attributes are their lower-case spellings.
_CLIENT_KEYS = {key: key.lower() for key in (*MASTER_KEYS, *CLIENT_KEYS)}
_WEBSERVER_KEYS = {
    "listen": "listen",
    "challenge-directory": "challenge_directory",
    "user": "user",
    "group": "group",
    "command": "command",
    "iptables": "iptables",
    "confinement": "confinement",
}
_ACCOUNTD_KEYS = {
    "user": "user",
    "group": "group",
    "command": "command",
    "config": "config",
    "quiet": "quiet",
}


@dataclass(frozen=True)
class Config:
    """`lacme.conf`, with the command line's `--socket` applied."""

    path: str
    client: ClientConfig
    webserver: WebserverConfig
    # None: connect to an existing accountd on client.socket instead.
    accountd: AccountdConfig | None
    # The `config-certs` items, unexpanded; None when unset.
    config_certs: tuple[str, ...] | None
    # How soon the next run comes: a renewal due before it is due now.
    renewal_lookahead: datetime.timedelta = DEFAULT_RENEWAL_LOOKAHEAD
    parallel_orders: int = DEFAULT_PARALLEL_ORDERS


def _known_keys(
    filename: str, section: str, values: Mapping[str, str], known: Collection[str]
) -> None:
    for key in values:
        if key not in known:
            raise ConfigError(f"{filename}: unknown key {key!r} in {_section_label(section)}")


def _moved_keys(filename: str, sections: Mapping[str, Mapping[str, str]]) -> None:
    """ConfigError for `[accountd] privkey`, which lacme 0.8 deprecated
    (0.8.2 still passes it on as `--privkey=`, with a warning), saying where
    it goes now: the account key is lacme-accountd's business alone."""
    accountd = sections.get("accountd", {})
    if "privkey" in accountd:
        where = accountd.get("config") or "%E/lacme/lacme-accountd.conf"
        raise ConfigError(
            f"{filename}: [accountd] privkey: lacme 0.8 moved it to lacme-accountd.conf; "
            f"write `privkey = {accountd['privkey']}` in {where} ([accountd] config), "
            "before any section, and remove it here"
        )


def _check_client(filename: str, values: Mapping[str, str]) -> None:
    """ConfigError naming the [client] key whose value the client would
    refuse, so that the master says so before it starts anything."""
    checks: dict[str, Callable[[str], object]] = {
        **CLIENT_CHECKS,
        "SSL_cipher_list": _cipher_list,
    }
    for key, check in checks.items():
        value = values.get(key)
        if value is None:
            continue
        try:
            check(value)
        except ValueError as e:
            raise ConfigError(f"{filename}: [client] {key} = {value}: {e}") from e


def _cipher_list(value: str) -> None:
    import ssl  # only for this setting: `lacme account` and --help do without

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).set_ciphers(value)
    except ssl.SSLError:
        raise ValueError("no cipher OpenSSL knows matches (see ciphers(1ssl))") from None


def _section_label(section: str) -> str:
    return "the default section" if section == inifile.DEFAULT_SECTION else f"[{section}]"


def _check_strict(path: str) -> None:
    """ConfigError if others than root (or the user lacme runs as) could
    change PATH (lacme.strict); OSError if it can't be examined."""
    problem = strict.problem(path)
    if problem is not None:
        raise ConfigError(f"{path}: refused: {problem}")


def load(path: str | None = None, socket: str | None = None) -> Config:
    """Read lacme.conf from PATH (%-expanded; default %E/lacme/lacme.conf).

    SOCKET, the `--socket=` option, replaces [client] socket and drops
    [accountd], as the man page says.
    """
    try:
        filename = expand(path if path is not None else DEFAULT_CONFIG)
    except SpecifierError as e:
        raise ConfigError(f"--config: {e}") from e
    try:
        _check_strict(filename)
        sections = inifile.read(filename)
    except OSError as e:
        raise ConfigError(f"can't read {filename}: {e.strerror}") from e
    except inifile.IniError as e:
        raise ConfigError(str(e)) from e
    _moved_keys(filename, sections)
    tables = {"client": _CLIENT_KEYS, "webserver": _WEBSERVER_KEYS, "accountd": _ACCOUNTD_KEYS}
    for name, values in sections.items():
        if name == inifile.DEFAULT_SECTION:
            _known_keys(filename, name, values, LACME_KEYS)
        elif name in tables:
            _known_keys(filename, name, values, tables[name])
        else:
            raise ConfigError(f"{filename}: unknown section [{name}]")

    def section_values(name: str) -> dict[str, str]:
        return {tables[name][k]: v for k, v in sections.get(name, {}).items()}

    _check_client(filename, sections.get("client", {}))
    client = ClientConfig(**section_values("client"))
    # Checked here, to name the file: the client takes it as it comes.
    _yes_no(filename, "client", "confinement", client.confinement, True)
    if socket is not None:
        client = replace(client, socket=socket)
    web = section_values("webserver")
    webserver = WebserverConfig(
        **{
            k: v
            for k, v in web.items()
            if k not in ("iptables", "challenge_directory", "confinement")
        },
        iptables=_yes_no(filename, "webserver", "iptables", web.get("iptables"), False),
        confinement=_yes_no(filename, "webserver", "confinement", web.get("confinement"), True),
        # An empty value is as good as none: the man page requires it when
        # `listen` is empty, where it must name a directory.
        challenge_directory=web.get("challenge_directory") or None,
    )
    accountd: AccountdConfig | None = None
    if "accountd" in sections and socket is None:
        acc = section_values("accountd")
        accountd = AccountdConfig(
            **{k: v for k, v in acc.items() if k != "quiet"},
            quiet=_yes_no(filename, "accountd", "quiet", acc.get("quiet"), True),
        )
    defaults = sections.get(inifile.DEFAULT_SECTION, {})
    config_certs = defaults.get("config-certs")
    lookahead = defaults.get("renewal-lookahead")
    try:
        renewal_lookahead = (
            DEFAULT_RENEWAL_LOOKAHEAD if lookahead is None else parse_lookahead(lookahead)
        )
    except ValueError as e:
        raise ConfigError(f"{filename}: renewal-lookahead = {lookahead}: {e}") from e
    parallel = defaults.get("parallel-orders")
    parallel_orders = DEFAULT_PARALLEL_ORDERS
    if parallel is not None:
        if not (parallel.isdigit() and 1 <= int(parallel) <= MAX_PARALLEL_ORDERS):
            raise ConfigError(
                f"{filename}: parallel-orders = {parallel}: not a number from 1 to "
                f"{MAX_PARALLEL_ORDERS}"
            )
        parallel_orders = int(parallel)
    return Config(
        path=filename,
        client=client,
        webserver=webserver,
        accountd=accountd,
        config_certs=None if config_certs is None else tuple(config_certs.split()),
        renewal_lookahead=renewal_lookahead,
        parallel_orders=parallel_orders,
    )


# ---------------------------------------------------------------------------
# Certificate configuration


class Setting(NamedTuple):
    key: str
    value: str
    filename: str  # where it was set, for error messages


class CertSource(NamedTuple):
    """A certificate section as read, defaults applied, not yet checked;
    PROBLEM, what is wrong with it beside the others (parse_section raises it)."""

    name: str
    filename: str
    settings: Mapping[str, Setting]
    problem: str | None = None


def certificate_files(config: Config, options: Sequence[str] = ()) -> list[str]:
    """The certificate configuration files to read, in order.

    OPTIONS are the `--config-certs=` values; they win over `config-certs`,
    which wins over the default.  Items are %-expanded and taken relative to
    lacme.conf's directory.  A default item may be missing; an item given on
    the command line or in lacme.conf may not.
    """
    if options:
        items, explicit = tuple(options), True
    elif config.config_certs is not None:
        items, explicit = config.config_certs, True
    else:
        items, explicit = DEFAULT_CONFIG_CERTS, False
    base = os.path.dirname(config.path)
    files: list[str] = []
    for item in filter(None, items):  # `--config-certs=` would name lacme.conf's directory
        try:
            path = os.path.join(base, expand(item))
        except SpecifierError as e:
            raise ConfigError(f"config-certs: {e}") from e
        if path.endswith("/") or os.path.isdir(path):
            directory = path.rstrip("/") or "/"
            try:
                names = os.listdir(directory)
                # Whoever may write it may add a file.
                _check_strict(directory)
            except FileNotFoundError:
                if explicit:
                    raise ConfigError(f"config-certs: no such directory {directory}") from None
                continue
            except OSError as e:
                raise ConfigError(f"config-certs: can't list {directory}: {e.strerror}") from e
            for name in sorted(names):
                if name.endswith(".conf"):
                    files.append(os.path.join(directory, name))
                else:
                    log.warn(f"{directory}/{name}: not read, as its name does not end in .conf")
        elif explicit or os.path.lexists(path):
            files.append(path)
    return files


def load_certs(files: Sequence[str]) -> dict[str, CertSource]:
    """Read FILES; ConfigError for an unreadable file, bad syntax or an
    unknown key.  A section defined twice, or installing to a file another
    one does, has a problem (CertSource); no section at all, a warning."""
    defaults: dict[str, Setting] = {}
    sections: dict[str, tuple[str, dict[str, Setting]]] = {}
    # FILE:LINE of each header of each section.
    headers: dict[str, list[str]] = {}
    for filename in files:
        try:
            _check_strict(filename)
            parsed = inifile.read_located(filename)
        except OSError as e:
            raise ConfigError(f"can't read {filename}: {e.strerror}") from e
        except inifile.IniError as e:
            raise ConfigError(str(e)) from e
        for name, values in parsed.sections.items():
            _known_keys(filename, name, values, CERT_KEYS)
            settings = {key: Setting(key, value, filename) for key, value in values.items()}
            if name == inifile.DEFAULT_SECTION:
                defaults.update(settings)
                continue
            sections[name] = (filename, settings)
            places = headers.setdefault(name, [])
            places.extend(f"{filename}:{line}" for line in parsed.headers[name])
    if not sections:
        where = (
            f"section in {', '.join(files)}" if files else "configuration file (see config-certs)"
        )
        log.warn(f"no certificate {where}: nothing to issue or renew")
    sources = {
        name: CertSource(name, filename, {**defaults, **settings})
        for name, (filename, settings) in sections.items()
    }
    problems = {
        name: f"{places[1]}: [{name}] is defined again (first at {places[0]}): "
        "merge the two or rename one"
        for name, places in headers.items()
        if len(places) > 1
    }
    for name, problem in _shared_files(sources).items():
        problems.setdefault(name, problem)
    return {name: source._replace(problem=problems.get(name)) for name, source in sources.items()}


def _installed_file(path: str) -> str:
    """The directory entry PATH names: a certificate is renamed into place,
    so a link to another directory counts, a link as the last component not."""
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(os.path.realpath(directory), name)


def _shared_files(sources: Mapping[str, CertSource]) -> dict[str, str]:
    """The sections that install to a file another section installs to
    too, each with its problem."""
    writers: dict[str, list[tuple[str, Setting]]] = {}
    for name in sorted(sources):
        for key in ("certificate-chain", "certificate"):
            setting = sources[name].settings.get(key)
            if setting is not None and setting.value != "":
                writers.setdefault(_installed_file(setting.value), []).append((name, setting))
    problems: dict[str, str] = {}
    for shared in writers.values():
        for name, setting in shared:
            others = [f"[{other}] {theirs.key}" for other, theirs in shared if other != name]
            if others and name not in problems:
                problems[name] = (
                    f"{setting.filename}: [{name}] {setting.key} = {setting.value}: "
                    f"the same file as {', '.join(others)}: give each section files of its own"
                )
    return problems


@dataclass(frozen=True)
class CertSection:
    """A checked certificate section; see lacme(8) for each setting."""

    name: str
    filename: str
    certificate_key: str
    certificate: str | None
    certificate_chain: str | None
    min_days: int | Percent | None
    cafile: str | None  # None: no verification (`CAfile` set empty)
    hash: str | None  # None: the key type's default
    key_usage: tuple[str, ...]
    # Relative distinguished names, each a tuple of (attribute type, value),
    # as `subject` spells them; the types are mapped to OIDs with the CSR.
    subject: tuple[tuple[tuple[str, str], ...], ...]
    owner: str | None
    mode: int | None
    notify: str | None
    # Lower-cased, deduplicated domain names and IP addresses (RFC 5952
    # text) to authorize, CN(s) first, then subjectAltName; the CSR's
    # subjectAltName lists them all.
    identifiers: tuple[str, ...]
    # The issuer common name of the chain to install, among those offered.
    preferred_chain: str | None = None
    # The certificate profile to order, one of the directory's meta.profiles.
    profile: str | None = None
    notify_timeout: int = DEFAULT_NOTIFY_TIMEOUT

    def certificate_paths(self) -> tuple[str, ...]:
        """Where the certificate goes, the chain first: the file whose expiry
        decides renewal, as in lacme 0.8.2."""
        return tuple(p for p in (self.certificate_chain, self.certificate) if p is not None)


def valid_dns_name(name: str) -> bool:
    """A domain name, or a wildcard: `*.` and a domain name (RFC 8555 section 7.1.3)."""
    return len(name) <= 253 and _DOMAIN.fullmatch(name.removeprefix("*.")) is not None


def parse_subject(text: str) -> tuple[tuple[tuple[str, str], ...], ...]:
    """`/type0=value0/type1=value1+type2=value2...` as `openssl req -subj`
    reads it: `\\` escapes the next character, `+` joins attributes into one
    multi-valued RDN, and an attribute with an empty value is left out."""
    if not text.startswith("/"):
        raise ValueError("does not start with /")
    rdns: list[tuple[tuple[str, str], ...]] = []
    avas: list[tuple[str, str]] = []
    chars: list[str] = []
    attr_type: str | None = None

    def end_ava() -> None:
        nonlocal attr_type
        if attr_type is None:
            if chars:
                raise ValueError(f"{''.join(chars)!r} has no '='")
        elif not attr_type:
            raise ValueError("attribute without a type")
        elif chars:
            avas.append((attr_type, "".join(chars)))
        attr_type = None
        chars.clear()

    i = 1
    while i < len(text):
        c = text[i]
        if c == "\\":
            if i + 1 == len(text):
                raise ValueError("ends with a lone \\")
            chars.append(text[i + 1])
            i += 2
            continue
        if c == "=" and attr_type is None:
            attr_type = "".join(chars).strip()
            chars.clear()
        elif c in "/+":
            end_ava()
            if c == "/" and avas:
                rdns.append(tuple(avas))
                avas.clear()
        else:
            chars.append(c)
        i += 1
    end_ava()
    if avas:
        rdns.append(tuple(avas))
    return tuple(rdns)


def _split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def resolve_owner(owner: str) -> tuple[int, int]:
    """`user[:group]` as (uid, gid), gid -1 when no group is given."""
    user, colon, group = owner.partition(":")
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        raise ValueError(f"unknown user {user!r}") from None
    if not colon:
        return uid, -1
    try:
        return uid, grp.getgrnam(group).gr_gid
    except KeyError:
        raise ValueError(f"unknown group {group!r}") from None


# --- the settings of a certificate section, each parsed on its own ---------------
# Each takes a setting's value and returns what it means, or raises a
# ValueError saying why it means nothing (parse_section names where).


def _hash(value: str) -> str:
    name = value.lower()
    if name not in HASHES:
        raise ValueError(f"unsupported hash (one of {', '.join(HASHES)})")
    return name


def _key_usage(value: str) -> tuple[str, ...]:
    names = {name.lower(): name for name in KEY_USAGES}
    usage: list[str] = []
    for item in _split_list(value):
        if item.lower() not in names:
            raise ValueError(f"unknown key usage {item!r}")
        usage.append(names[item.lower()])
    if {"encipherOnly", "decipherOnly"} & set(usage) and "keyAgreement" not in usage:
        raise ValueError("encipherOnly and decipherOnly need keyAgreement")
    return tuple(usage)


def _tls_features(value: str) -> None:
    """Refuse any TLS feature: each asks for Must-Staple, which the CA would
    only refuse at finalization, once every name has been validated."""
    for item in _split_list(value):
        if item.lower() not in TLS_FEATURES:
            raise ValueError(f"unknown TLS feature {item!r}")
        raise ValueError(
            "asks for OCSP Must-Staple, but OCSP has ended (Let's Encrypt stopped OCSP "
            "in 2025 and refuses Must-Staple CSRs); remove tlsfeature"
        )


def _ip_address(name: str) -> str:
    """NAME in the text form RFC 8738 identifiers use (RFC 5952 for IPv6)."""
    invalid = ValueError(f"{name!r} is not an IP address")
    if "%" in name:  # a scoped address names no host a CA could reach
        raise invalid
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        raise invalid from None


def _alt_names(value: str) -> tuple[str, ...]:
    """`DNS:name, IP:address, ...`: the identifiers, DNS names in lower case."""
    names: list[str] = []
    for item in _split_list(value):
        kind, colon, name = item.partition(":")
        kind, name = kind.strip().upper(), name.strip()
        if colon and kind == "IP":
            names.append(_ip_address(name))
            continue
        if not colon or kind != "DNS":
            raise ValueError(f"{item!r} is not DNS:name or IP:address")
        if not valid_dns_name(name):
            raise ValueError(f"{name!r} is not a valid domain name")
        if is_ip_address(name):
            raise ValueError(f"{name!r} is an IP address: write IP:{name}")
        names.append(name.lower())
    return tuple(names)


Subject = tuple[tuple[tuple[str, str], ...], ...]


def common_names(subject: Subject) -> tuple[str, ...]:
    """The values of SUBJECT's CNs, as written."""
    return tuple(
        value for rdn in subject for attr_type, value in rdn if attr_type.lower() in _COMMON_NAMES
    )


def _subject(value: str) -> tuple[Subject, tuple[str, ...]]:
    """The subject, and the domain names of its CNs in lower case."""
    subject = parse_subject(value)
    names = common_names(subject)
    for name in names:
        if not valid_dns_name(name):
            raise ValueError(f"CN {name!r} is not a domain name")
    return subject, tuple(name.lower() for name in names)


def _owner(value: str) -> str:
    resolve_owner(value)
    return value


def _notify_timeout(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_NOTIFY_TIMEOUT:
        raise ValueError(f"not a number of seconds from 1 to {MAX_NOTIFY_TIMEOUT}")
    return int(value)


def _mode(value: str) -> int:
    if not _OCTAL.fullmatch(value) or int(value, 8) > 0o7777:
        raise ValueError("not an octal mode")
    return int(value, 8)


def parse_section(source: CertSource) -> CertSection:
    """Check SOURCE; ConfigError names the file, section, key and value."""
    if source.problem is not None:
        raise ConfigError(source.problem)
    settings = source.settings

    def get(*keys: str) -> Setting | None:
        # Empty means unset, except for CAfile where it turns verification off.
        for key in keys:
            setting = settings.get(key)
            if setting is not None and setting.value != "":
                return setting
        return None

    def error(setting: Setting, reason: str) -> ConfigError:
        return ConfigError(
            f"{setting.filename}: [{source.name}] {setting.key} = {setting.value}: {reason}"
        )

    def required(key: str) -> Setting:
        setting = get(key)
        if setting is None:
            raise ConfigError(f"{source.filename}: [{source.name}] {key} is required")
        return setting

    def parsed(parse: Callable[[str], T], *keys: str) -> T | None:
        setting = get(*keys)
        if setting is None:
            return None
        try:
            return parse(setting.value)
        except ValueError as e:
            raise error(setting, str(e)) from e

    def text(key: str) -> str | None:
        setting = get(key)
        return None if setting is None else setting.value

    certificate_key = required("certificate-key").value
    if get("certificate") is None and get("certificate-chain") is None:
        raise ConfigError(
            f"{source.filename}: [{source.name}] certificate or certificate-chain is required"
        )
    # In lacme 0.8.2's order, which decides what an error names first.
    min_days = parsed(parse_min_days, "min-days")
    cafile_setting = settings.get("CAfile")
    hash_name = parsed(_hash, "hash")
    key_usage = parsed(_key_usage, "keyUsage") or ()
    parsed(_tls_features, "tlsfeature")
    alt_names = parsed(_alt_names, "subjectAltName") or ()
    subject_setting = required("subject")
    subject, common_names = parsed(_subject, "subject") or ((), ())
    identifiers = tuple(dict.fromkeys(common_names + alt_names))
    if not identifiers:
        raise error(subject_setting, "no domain name in CN nor in subjectAltName")
    return CertSection(
        name=source.name,
        filename=source.filename,
        certificate_key=certificate_key,
        certificate=text("certificate"),
        certificate_chain=text("certificate-chain"),
        min_days=min_days,
        cafile=default_cafile() if cafile_setting is None else (cafile_setting.value or None),
        hash=hash_name,
        key_usage=key_usage,
        subject=subject,
        owner=parsed(_owner, "owner", "chown"),
        mode=parsed(_mode, "mode", "chmod"),
        notify=text("notify"),
        identifiers=identifiers,
        preferred_chain=text("preferred-chain"),
        profile=text("profile"),
        notify_timeout=parsed(_notify_timeout, "notify-timeout") or DEFAULT_NOTIFY_TIMEOUT,
    )
