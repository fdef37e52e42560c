"""The ACME client process: `python -m lacme.client COMMAND CONFIG_FD SOCKET_FD [ARGUMENT ...]`.

The lacme master starts it unprivileged, in the challenge directory (for
newOrder) or in `/`.  It holds no private key and nothing else worth
stealing: the [client] settings (JSON, read from CONFIG_FD), a connection
to lacme-accountd (SOCKET_FD, protocol version 1) which signs every request
with the account key, and one HTTPS connection to the ACME server.  Its
input is a CSR or a certificate (DER) on stdin; its output the account
object (JSON) or the certificate chain (PEM) on stdout, messages on stderr.
The only files it writes are the http-01 key authorizations, each created
(never overwritten) in the working directory under its token's name.

Commands, as lacme 0.8.2's internal client:

    account FLAGS [CONTACT ...]   FLAGS: 1 register, 2 terms of service agreed, 4 deactivate
    newOrder DOMAIN ...           CSR (DER) on stdin, certificate chain (PEM) on stdout
    revokeCert                    certificate (DER) on stdin

and beyond it (lacme.client_contract):

    revokeCert REASON             REASON: an RFC 5280 reason code
    keyChange NEW_SOCKET_FD       the account moves to the key of the accountd
                                  on NEW_SOCKET_FD; the account object on stdout
    directory                     the directory object (JSON) on stdout
    renewalInfo CERTID            the certificate's ARI renewal information (RFC
                                  9773) on stdout: {"renewalInfo", "retryAfter"}

and, in the settings, `profile` and `replaces` (an ARI certID) for newOrder.
directory and renewalInfo sign nothing and leave SOCKET_FD alone.

Environment: DEBUG=1 traces requests and responses on stderr;
SSL_CERT_FILE names the CA bundle to trust, as for OpenSSL's tools.
"""

import json
import os
import socket
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from lacme import __version__
from lacme.accountd_protocol import (
    EOL,
    MAX_LINE,
    Greeting,
    ProtocolError,
    b64url_decode,
    parse_greeting,
)
from lacme.acme import USER_AGENT, AcmeError, AcmeSession, Deadline
from lacme.client_contract import (
    ACCOUNT,
    ACCOUNT_DEACTIVATE,
    ACCOUNT_REGISTER,
    ACCOUNT_TOS_AGREED,
    DIRECTORY,
    KEY_CHANGE,
    NEW_ORDER,
    RENEWAL_INFO,
    REVOKE_CERT,
    UNSIGNED,
)

NAME = "lacme-client"
DEFAULT_SERVER = "https://acme-v02.api.letsencrypt.org/directory"
DEFAULT_TIMEOUT = 30.0
# The [client] keys lacme's master keeps for itself and passes along anyway.
MASTER_KEYS = frozenset({"socket", "user", "group", "command"})
TLS_VERSIONS = {
    "tlsv1": ssl.TLSVersion.TLSv1,
    "tlsv1_1": ssl.TLSVersion.TLSv1_1,
    "tlsv1_2": ssl.TLSVersion.TLSv1_2,
    "tlsv1_3": ssl.TLSVersion.TLSv1_3,
}


class Fatal(Exception):
    """An error that stops the client; the message is what is shown."""


@dataclass(frozen=True)
class Settings:
    server: str = DEFAULT_SERVER
    timeout: float = DEFAULT_TIMEOUT
    verify: bool = True
    cafile: str | None = None
    tls_version: str | None = None
    cipher_list: str | None = None
    preferred_chain: str | None = None
    profile: str | None = None
    replaces: str | None = None


def read_settings(fd: int) -> Settings:
    """The [client] settings: a JSON object on FD, `null` meaning unset."""
    try:
        with os.fdopen(fd, "rb") as config:
            data = json.loads(config.read(MAX_LINE))
    except (OSError, ValueError) as e:
        raise Fatal(f"can't read the settings on fd {fd}: {e}") from None
    if not isinstance(data, dict):
        raise Fatal(f"the settings on fd {fd} are not a JSON object")
    values = {k: v for k, v in data.items() if v is not None and k not in MASTER_KEYS}
    for key, value in values.items():
        if not isinstance(value, str | int | float):
            raise Fatal(f"setting {key} is not a string")
    unknown = values.keys() - {
        "server",
        "timeout",
        "SSL_verify",
        "SSL_CAfile",
        "SSL_version",
        "SSL_cipher_list",
        "preferred-chain",
        "profile",
        "replaces",
    }
    if unknown:
        raise Fatal(f"unknown setting(s) in [client]: {', '.join(sorted(unknown))}")
    try:
        timeout = float(values.get("timeout", DEFAULT_TIMEOUT))
    except ValueError:
        raise Fatal(f"timeout is not a number of seconds: {values['timeout']!r}") from None
    if not timeout >= 0:
        raise Fatal(f"timeout is not a number of seconds: {values['timeout']!r}")
    return Settings(
        server=str(values.get("server", DEFAULT_SERVER)),
        timeout=timeout,
        # As lacme 0.8.2: anything but "No" verifies.
        verify=str(values.get("SSL_verify", "Yes")).lower() != "no",
        cafile=None if "SSL_CAfile" not in values else str(values["SSL_CAfile"]),
        tls_version=None if "SSL_version" not in values else str(values["SSL_version"]),
        cipher_list=None if "SSL_cipher_list" not in values else str(values["SSL_cipher_list"]),
        preferred_chain=None if "preferred-chain" not in values else str(values["preferred-chain"]),
        profile=None if "profile" not in values else str(values["profile"]),
        replaces=None if "replaces" not in values else str(values["replaces"]),
    )


def tls_version_range(spec: str) -> tuple[ssl.TLSVersion, ssl.TLSVersion]:
    """The (minimum, maximum) TLS versions an IO::Socket::SSL `SSL_version`
    allows, e.g. "TLSv1_2", "SSLv23:!TLSv1:!TLSv1_1"; SSLv2/3 are long gone."""
    allowed: set[ssl.TLSVersion] = set()
    tokens = [token.strip().lower() for token in spec.split(":") if token.strip()]
    if all(token.startswith("!") for token in tokens):
        allowed = set(TLS_VERSIONS.values())
    for token in tokens:
        name = token.removeprefix("!")
        if name in ("sslv23", "tls", "all"):
            versions = set(TLS_VERSIONS.values())
        elif name in ("sslv2", "sslv3"):
            versions = set()
        elif name in TLS_VERSIONS:
            versions = {TLS_VERSIONS[name]}
        else:
            raise Fatal(f"unknown SSL_version {token!r} in {spec!r}")
        allowed = allowed - versions if token.startswith("!") else allowed | versions
    if not allowed:
        raise Fatal(f"SSL_version {spec!r} allows no TLS version")
    return min(allowed), max(allowed)


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """SSL_CAfile if set, else what OpenSSL trusts (SSL_CERT_FILE, SSL_CERT_DIR,
    then the system store); SSL_verify = No turns verification off entirely."""
    try:
        context = ssl.create_default_context(cafile=settings.cafile)
        if settings.tls_version is not None:
            context.minimum_version, context.maximum_version = tls_version_range(
                settings.tls_version
            )
        if settings.cipher_list is not None:
            context.set_ciphers(settings.cipher_list)
    except (OSError, ssl.SSLError) as e:
        raise Fatal(f"TLS settings: {e}") from None
    if not settings.verify:
        print(
            "Warning: SSL_verify = No: the ACME server's certificate is not verified",
            file=sys.stderr,
        )
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class Accountd:
    """The connection to lacme-accountd: its greeting, then one signature per line."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file = sock.makefile("rb")
        # Not bound by the timeout: accountd may first wait for a human to
        # type the account key's passphrase.
        try:
            first = self.file.readline(MAX_LINE)
            if not first:
                raise Fatal("lacme-accountd closed the connection without a greeting")
            self.greeting: Greeting = parse_greeting(first, self.file.readline(MAX_LINE))
        except (OSError, ProtocolError) as e:
            raise Fatal(f"lacme-accountd: {e}") from None

    def sign(self, signing_input: bytes, deadline: Deadline) -> str:
        try:
            self.sock.settimeout(deadline.remaining("waiting for lacme-accountd to sign"))
            self.sock.sendall(signing_input + EOL)
            line = self.file.readline(MAX_LINE)
        except OSError as e:
            raise AcmeError(f"lacme-accountd: {e or type(e).__name__}") from None
        if not line:
            raise AcmeError("lacme-accountd closed the connection: it refused to sign")
        signature = line.removesuffix(EOL)
        try:
            b64url_decode(signature)
        except ValueError:
            raise AcmeError(f"lacme-accountd sent a malformed signature {line[:80]!r}") from None
        return signature.decode()


def open_accountd(fd: int) -> Accountd:
    try:
        sock = socket.socket(fileno=fd)
    except OSError as e:
        raise Fatal(f"lacme-accountd unreachable: fd {fd}: {e}") from None
    return Accountd(sock)


def account(session: AcmeSession, args: list[str], settings: Settings) -> None:
    """`account FLAGS [CONTACT ...]`: print the account object on stdout."""
    if not args or not args[0].isdigit():
        raise Fatal("usage: account FLAGS [CONTACT ...]")
    flags, contacts = int(args[0]), args[1:]
    obj: dict[str, Any] | None = None
    created = False
    if flags & ACCOUNT_REGISTER:
        registration: dict[str, Any] = {"contact": contacts} if contacts else {}
        if flags & ACCOUNT_TOS_AGREED:
            registration["termsOfServiceAgreed"] = True
        print(
            f"Requesting new registration for {', '.join(contacts) or 'no contact'}",
            file=sys.stderr,
        )
        obj, created = session.new_account(registration)
    elif session.kid is None:
        obj, _ = session.new_account({"onlyReturnExisting": True})
    if tos := session.terms_of_service():
        print(f"Terms of Service: {tos}", file=sys.stderr)
    print(f"Key ID: {session.account_kid()}", file=sys.stderr)
    update: dict[str, Any] = {"contact": contacts} if contacts and not created else {}
    if flags & ACCOUNT_DEACTIVATE:
        update["status"] = "deactivated"
    if update or obj is None:
        # No update and no account object yet (accountd gave the Key ID, so
        # there is no JWK to look it up with): POST-as-GET fetches it.
        obj = session.update_account(update or None)
    json.dump(obj, sys.stdout, indent=2, sort_keys=True)
    print()


def read_stdin(what: str) -> bytes:
    """A DER object on stdin; a CSR or certificate is a few KiB."""
    data = sys.stdin.buffer.read(MAX_LINE + 1)
    if not data:
        raise Fatal(f"no {what} on stdin")
    if len(data) > MAX_LINE:
        raise Fatal(f"the {what} on stdin is over {MAX_LINE} bytes")
    return data


def write_key_authorization(token: str, key_authorization: str) -> None:
    """Create ./TOKEN holding the key authorization, for the webserver to serve."""
    try:
        # O_EXCL: never through a symlink, never over an existing file.
        fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        # As lacme 0.8.2: left by an earlier run in a shared challenge
        # directory.  Nothing is written; if it is stale, validation says so.
        print(f"Warning: File exists: {token}", file=sys.stderr)
        return
    except OSError as e:
        raise Fatal(f"can't create the challenge file {token}: {e.strerror}") from None
    with os.fdopen(fd, "w") as file:
        file.write(key_authorization)


def new_order(session: AcmeSession, domains: list[str], settings: Settings) -> None:
    """`newOrder DOMAIN ...`: CSR (DER) on stdin, certificate chain (PEM) on stdout."""
    if not domains:
        raise Fatal("usage: newOrder DOMAIN ...")
    csr = read_stdin("CSR")
    chain = session.issue(
        domains,
        csr,
        write_key_authorization,
        preferred_chain=settings.preferred_chain,
        profile=settings.profile,
        replaces=settings.replaces,
    )
    sys.stdout.write(chain)


def revoke_cert(session: AcmeSession, args: list[str], settings: Settings) -> None:
    """`revokeCert [REASON]`: the certificate (DER) on stdin, REASON a reason code."""
    if len(args) > 1 or not all(arg.isdigit() for arg in args):
        raise Fatal("usage: revokeCert [REASON] (the certificate on stdin)")
    certificate = read_stdin("certificate")
    session.revoke(certificate, int(args[0]) if args else None)


def key_change(session: AcmeSession, args: list[str], settings: Settings) -> None:
    """`keyChange NEW_SOCKET_FD`: move the account to the key of the
    lacme-accountd on NEW_SOCKET_FD, which signs the inner JWS (RFC 8555
    section 7.3.5); print the account object, fetched with the new key."""
    if len(args) != 1 or not args[0].isdigit():
        raise Fatal("usage: keyChange NEW_SOCKET_FD")
    new = open_accountd(int(args[0]))
    greeting = new.greeting
    if greeting.kid is not None or not greeting.jwk:
        raise Fatal("the new key's lacme-accountd has a Key ID configured: it must send its key")
    if greeting.jwk == session.jwk:
        raise Fatal("the new key is the account's current key")
    print(f"Key ID: {session.account_kid()}", file=sys.stderr)

    def sign(signing_input: bytes) -> str:
        try:
            return new.sign(signing_input, session.deadline)
        except AcmeError as e:
            # Perl's refuses every nonce-less line, the inner JWS included.
            raise AcmeError(
                f"the new key's {e} (0.8.2's lacme-accountd signs no key change)"
            ) from None

    session.key_change(greeting.alg, greeting.jwk, greeting.jwk_thumbprint, sign)
    print(f"Account key changed to {greeting.jwk_thumbprint}", file=sys.stderr)
    json.dump(session.update_account(None), sys.stdout, indent=2, sort_keys=True)
    print()


def directory(session: AcmeSession, args: list[str], settings: Settings) -> None:
    """`directory`: print the server's directory object."""
    if args:
        raise Fatal("usage: directory")
    json.dump(session.directory, sys.stdout, indent=2, sort_keys=True)
    print()


def renewal_info(session: AcmeSession, args: list[str], settings: Settings) -> None:
    """`renewalInfo CERTID`: print the certificate's renewal information
    (RFC 9773) and the Retry-After it came with, for the master to decide."""
    if len(args) != 1:
        raise Fatal("usage: renewalInfo CERTID")
    info, retry_after = session.renewal_info(args[0])
    json.dump({"renewalInfo": info, "retryAfter": retry_after}, sys.stdout, indent=2)
    print()


def refuse_to_sign(signing_input: bytes) -> str:
    """The signer of the lookups (UNSIGNED), which have no accountd."""
    raise AcmeError("this command has no lacme-accountd to sign with")


COMMANDS = {
    ACCOUNT: account,
    NEW_ORDER: new_order,
    REVOKE_CERT: revoke_cert,
    KEY_CHANGE: key_change,
    DIRECTORY: directory,
    RENEWAL_INFO: renewal_info,
}


def run(argv: list[str]) -> None:
    if len(argv) < 3 or argv[0] not in COMMANDS or not (argv[1].isdigit() and argv[2].isdigit()):
        raise Fatal(
            f"usage: {sys.executable} -m lacme.client {{{','.join(COMMANDS)}}} "
            "CONFIG_FD SOCKET_FD [ARGUMENT ...]"
        )
    command, config_fd, socket_fd, args = argv[0], int(argv[1]), int(argv[2]), argv[3:]
    settings = read_settings(config_fd)
    # Lookups sign nothing, and the master puts no accountd behind their
    # SOCKET_FD (one could ask for a passphrase): it is left alone.
    accountd = None if command in UNSIGNED else open_accountd(socket_fd)
    deadline = Deadline(settings.timeout)
    trace: Callable[[str], None] | None = None
    if os.environ.get("DEBUG", "0") not in ("", "0"):

        def trace(message: str) -> None:
            print(f"[{os.getpid()}] {message}", file=sys.stderr)

        if accountd is not None:
            trace(f"accountd greeting: {accountd.greeting}")

    http = httpx.Client(
        verify=ssl_context(settings),
        headers={"User-Agent": USER_AGENT, "Accept-Language": "en"},
        # One connection for the whole conversation, kept alive.
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        # No proxies or .netrc from the environment, as lacme 0.8.2.
        trust_env=False,
        follow_redirects=False,
    )
    if accountd is None:
        with AcmeSession(
            settings.server,
            http=http,
            sign=refuse_to_sign,
            alg="",
            jwk={},
            thumbprint="",
            kid=None,
            deadline=deadline,
            trace=trace,
        ) as session:
            COMMANDS[command](session, args, settings)
        return
    greeting = accountd.greeting
    with AcmeSession(
        settings.server,
        http=http,
        sign=lambda signing_input: accountd.sign(signing_input, deadline),
        alg=greeting.alg,
        jwk=greeting.jwk,
        thumbprint=greeting.jwk_thumbprint,
        kid=greeting.kid,
        deadline=deadline,
        trace=trace,
        eab=greeting.eab,
    ) as session:
        COMMANDS[command](session, args, settings)


def main(argv: list[str] | None = None) -> int:
    try:
        run(sys.argv[1:] if argv is None else argv)
    except (Fatal, AcmeError) as e:
        print(f"{NAME} {__version__}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
