"""What the master's unprivileged children need of the file system,
checked for them before the master starts anything: the client reads
`SSL_CAfile` and, for newOrder, writes the key authorizations into
`challenge-directory`; each runs its command's program.  Otherwise a
mistake shows only once a child meets it, as a bare errno, and for the
challenge directory after the order was placed.

Holds nothing and touches nothing: it asks access(2) as each child's user
(lacme.privdrop.access_errors), which is what the kernel will answer that
child.

    check(config, command, client)      ConfigError naming the file, section and key
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat

from lacme import privdrop, specifiers, strict
from lacme.client_contract import NEW_ORDER
from lacme.config import Config
from lacme.errors import ConfigError
from lacme.privdrop import Credentials

# Far beyond any trust store (Debian's whole one is 200 KiB).
MAX_CAFILE = 16 << 20
_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]*?)-----END CERTIFICATE-----"
)

# (section, key, value, path, mode, the refusal, WHO standing for the user)
Check = tuple[str, str, str, str, int, str]


def _program(section: str, command: str) -> list[Check]:
    """The program of COMMAND, if named by its path (a bare name is looked
    up in the child's PATH)."""
    words = command.split()
    if not words or "/" not in words[0]:
        return []
    return [(section, "command", command, words[0], os.X_OK, "not executable by {who}")]


def _who(user: str, group: str, credentials: Credentials | None) -> str:
    if credentials is None:
        return strict.user_name(os.geteuid())
    return user or f"group {group}"


def _first_problem(
    filename: str, credentials: Credentials | None, who: str, checks: list[Check]
) -> str | None:
    errors = privdrop.access_errors(credentials, [(path, mode) for *_, path, mode, _ in checks])
    for (section, key, value, path, _, refusal), error in zip(checks, errors, strict=True):
        if error is not None:
            named = "" if path == value else f"{path} "
            refused = refusal.format(who=who)
            return f"{filename}: [{section}] {key} = {value}: {named}{refused} ({error})"
    return None


def check(config: Config, command: str, client: Credentials | None) -> None:
    """ConfigError for the first file CONFIG's children could not use as
    they must for COMMAND (lacme.client_contract), CLIENT being the
    client's credentials."""
    settings = config.client
    checks: list[Check] = []
    if settings.ssl_cafile is not None:
        cafile = settings.ssl_cafile
        checks.append(("client", "SSL_CAfile", cafile, cafile, os.R_OK, "not readable by {who}"))
    checks += _program("client", settings.command)
    webserver = config.webserver
    www_checks: list[Check] = []
    if command == NEW_ORDER and webserver.challenge_directory:
        directory = specifiers.expand(webserver.challenge_directory)
        checks.append(
            (
                "webserver",
                "challenge-directory",
                webserver.challenge_directory,
                directory,
                os.W_OK | os.X_OK,
                "not writable by {who}, which writes the challenge files there",
            )
        )
    elif command == NEW_ORDER and webserver.listen.strip():
        www_checks = _program("webserver", webserver.command)
    who = _who(settings.user, settings.group, client)
    problem = _first_problem(config.path, client, who, checks)
    if problem is None and www_checks:
        www = privdrop.resolve_credentials(webserver.user, webserver.group, "webserver")
        who = _who(webserver.user, webserver.group, www)
        problem = _first_problem(config.path, www, who, www_checks)
    if problem is None and settings.ssl_cafile is not None:
        problem = _ca_problem(config.path, settings.ssl_cafile)
    if problem is not None:
        raise ConfigError(problem)


def _ca_problem(filename: str, cafile: str) -> str | None:
    """What is wrong with CAFILE for a PEM bundle of certificates, as the
    client would find once started.  Read as root, and only once the client
    was found able to read it.  Not through the ssl module: importing it,
    and OpenSSL's parsing, cost the master 5 MiB and 10 ms before it can
    start anything, for a file the client parses anyway."""
    where = f"{filename}: [client] SSL_CAfile = {cafile}"
    try:
        if not stat.S_ISREG(os.stat(cafile).st_mode):
            return f"{where}: not a regular file"
        with open(cafile, "rb") as f:
            text = f.read(MAX_CAFILE + 1)
    except OSError as e:
        return f"{where}: {e.strerror}"
    if len(text) > MAX_CAFILE:
        return f"{where}: over {MAX_CAFILE} bytes, not a bundle of CA certificates"
    for block in _PEM_CERTIFICATE.finditer(text):
        try:
            base64.b64decode(b"".join(block[1].split()), validate=True)
        except binascii.Error:
            return f"{where}: a PEM certificate in it is not base64"
        return None
    return f"{where}: no PEM certificate (BEGIN CERTIFICATE) in it"
