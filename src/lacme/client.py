"""The ACME client process: `python -m lacme.client COMMAND CONFIG_FD SOCKET_FD [ARGUMENT ...]`.

The lacme master starts it unprivileged, in the challenge directory (for
newOrder) or in `/`.  It holds no private key and nothing else worth
stealing: the [client] settings (JSON, read from CONFIG_FD), a connection
to lacme-accountd (SOCKET_FD, protocol version 1) which signs every request
with the account key, and one HTTPS connection to the ACME server.  Its
input is a CSR or a certificate (DER) on stdin; its output the account
object (JSON) or the certificate chain (PEM) on stdout, messages on stderr.
The only files it writes are the http-01 key authorizations, each created
(never overwritten) in the working directory under its token's name.  Once
its TLS context is made it confines itself (`confine`, lacme.confinement):
from then on it reads only its interpreter, trust store and resolver files,
writes only in the challenge directory, connects over TCP only to the ACME
server's port (and DNS's), and starts, traces and signals nothing.

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

and, in the settings, `profile` and `replaces` (an ARI certID) for newOrder;
a newOrder refused by a rate limit that says when it ends exits 75
(EXIT_RATE_LIMITED) with {"rateLimited": {"retryAfter": SECONDS}} on stdout;
any command that could not reach the server exits 69 (EXIT_UNREACHABLE).
directory and renewalInfo sign nothing and leave SOCKET_FD alone.

Environment: DEBUG=1 traces requests and responses on stderr;
SSL_CERT_FILE names the CA bundle to trust, as for OpenSSL's tools.
"""

import contextlib
import os
import socket
import ssl
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

from lacme import __version__, confinement, log, token_reads
from lacme.accountd_protocol import (
    MAX_LINE,
    Greeting,
    ProtocolError,
    encode_signing_request,
    parse_greeting,
    parse_signature,
)
from lacme.acme import (
    ACCOUNT_DOES_NOT_EXIST,
    NO_ACCOUNT,
    AcmeSession,
    Fetched,
    Progress,
    Provision,
    Trial,
)
from lacme.acme_http import ERROR_NS, AcmeError, AcmeUnreachable, Patience, Trace, Transport
from lacme.client_contract import (
    ACCOUNT,
    ACCOUNTD_FD,
    CHALLENGES_FD,
    DIRECTORY,
    EXIT_RATE_LIMITED,
    EXIT_UNREACHABLE,
    FAILED,
    KEY_CHANGE,
    MAX_IDENTIFIER,
    MAX_INPUT,
    MAX_MESSAGE,
    MAX_MESSAGES,
    MAX_REQUEST,
    NEW_ORDER,
    ORDERING,
    RENEWAL_INFO,
    REUSED,
    REVOCATION_REASONS,
    REVOKE_CERT,
    SESSION,
    UNCONFINED,
    UNFINISHED,
    UNSIGNED,
    VALIDATE,
    VALIDATED,
    Announce,
    Answer,
    ClientSettings,
    ContractError,
    OrderSettings,
    RenewalInfoAnswer,
    Request,
    Step,
    Validation,
    decode_request,
    decode_settings,
    encode_announce,
    encode_answer,
    encode_object,
    encode_order_url,
    encode_rate_limit,
    encode_renewal_info,
    encode_step,
    encode_validations,
    parse_account_arguments,
    parse_argv,
    parse_directory_arguments,
    parse_key_change_arguments,
    parse_new_order_arguments,
    parse_renewal_info_arguments,
    parse_revoke_arguments,
    tls_versions,
)

NAME = "lacme-client"
# Orders under way in a session, each a thread, a connection and a few
# MiB: the master asks for a few at a time (parallel-orders); a backstop.
MAX_ORDERS = 100
RATE_LIMITED = ERROR_NS + "rateLimited"
TLS_VERSIONS = {
    "tlsv1": ssl.TLSVersion.TLSv1,
    "tlsv1_1": ssl.TLSVersion.TLSv1_1,
    "tlsv1_2": ssl.TLSVersion.TLSv1_2,
    "tlsv1_3": ssl.TLSVersion.TLSv1_3,
}

BAD_REVOCATION_REASON = ERROR_NS + "badRevocationReason"
# What Let's Encrypt takes from subscribers (Boulder's UserAllowedReason).
LETS_ENCRYPT_REASONS = ("unspecified", "keyCompromise", "superseded", "cessationOfOperation")


class Fatal(Exception):
    """An error that stops the client; the message is what is shown."""


class RateLimited(Fatal):
    """newOrder was refused by a rate limit that ends in RETRY_AFTER seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def exit_status(error: Exception) -> int:
    """What the client exits with after ERROR (lacme.client_contract)."""
    if isinstance(error, RateLimited):
        return EXIT_RATE_LIMITED
    if isinstance(error, AcmeUnreachable):
        return EXIT_UNREACHABLE
    return 1


def error_line(error: object) -> str:
    return f"{NAME} {__version__}: error: {error}"


def read_settings(fd: int) -> ClientSettings:
    """The settings on FD (lacme.client_contract)."""
    try:
        with os.fdopen(fd, "rb") as config:
            return decode_settings(config.read(MAX_INPUT))
    except (OSError, ContractError) as e:
        raise Fatal(f"can't read the settings on fd {fd}: {e}") from None


def tls_version_range(spec: str) -> tuple[ssl.TLSVersion, ssl.TLSVersion]:
    """The (minimum, maximum) TLS versions an IO::Socket::SSL `SSL_version`
    allows (lacme.client_contract.tls_versions)."""
    try:
        low, high = tls_versions(spec)
    except ValueError as e:
        raise Fatal(f"SSL_version {spec!r}: {e}") from None
    return TLS_VERSIONS[low], TLS_VERSIONS[high]


def ssl_context(settings: ClientSettings) -> ssl.SSLContext:
    """SSL_CAfile if set, else what OpenSSL trusts (SSL_CERT_FILE, SSL_CERT_DIR,
    then the system store); SSL_verify = No turns verification off entirely."""
    try:
        context = ssl.create_default_context(cafile=settings.cafile)
    except OSError as e:  # ssl.SSLError included: no certificate in it
        reason = str(e) if isinstance(e, ssl.SSLError) else e.strerror
        raise Fatal(f"SSL_CAfile {settings.cafile}: {reason}") from None
    if settings.tls_version is not None:
        context.minimum_version, context.maximum_version = tls_version_range(settings.tls_version)
    if settings.cipher_list is not None:
        try:
            context.set_ciphers(settings.cipher_list)
        except ssl.SSLError as e:
            raise Fatal(f"SSL_cipher_list {settings.cipher_list!r}: {e}") from None
    if not settings.verify:
        log.say("Warning: SSL_verify = No: the ACME server's certificate is not verified")
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def trust_store(settings: ClientSettings) -> Iterator[str]:
    """The files and directories OpenSSL may read certificates from while
    verifying: a CA directory is looked up lazily, and its entries are
    symbolic links, whose targets' directories Landlock checks."""
    if settings.cafile is not None:
        yield settings.cafile
        return
    defaults = ssl.get_default_verify_paths()
    files = (defaults.cafile, defaults.openssl_cafile, os.environ.get("SSL_CERT_FILE"))
    # OpenSSL takes a list of directories in SSL_CERT_DIR.
    listed = os.environ.get("SSL_CERT_DIR", "").split(os.pathsep)
    directories = (defaults.capath, defaults.openssl_capath, *listed)
    yield from (path for path in files if path)
    seen: set[str] = set()
    targets: set[str] = set()
    for directory in directories:
        if not directory or not os.path.isdir(directory) or os.path.realpath(directory) in seen:
            continue
        seen.add(os.path.realpath(directory))
        yield directory
        # One link at a time, not realpath() (ten times slower here): a
        # link to a link in the directory is an entry of it too.
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_symlink():
                    target = os.path.dirname(os.readlink(entry.path))
                    targets.add(os.path.join(directory, target) if target else directory)
    yield from sorted(target for target in targets if os.path.realpath(target) not in seen)


def server_port(server: str) -> int | None:
    """The TCP port of the ACME server's URL; None if it has none."""
    try:
        url = urllib.parse.urlsplit(server)
        return url.port or {"https": 443, "http": 80}.get(url.scheme)
    except ValueError:  # the session reports the URL when it uses it
        return None


def confine(
    settings: ClientSettings,
    trace: Trace | None,
    write: tuple[str, ...] = (),
    keep_writing: bool = False,
    off_by: str = "[client] confinement = No",
) -> None:
    """Confine the client (lacme.confinement) to reading its interpreter,
    its trust store and the resolver's files, writing in WRITE, and
    connecting to the ACME server's port (and DNS's, for an answer too big
    for UDP); KEEP_WRITING leaves file creation for a later layer.  OFF_BY
    names what turned it off, when settings.confinement is false."""
    port = server_port(settings.server)
    policy = confinement.Policy(
        read=(
            *confinement.interpreter_paths(),
            *trust_store(settings),
            *confinement.RESOLVER_FILES,
        ),
        write=write,
        connect=(confinement.DNS_PORT,) if port is None else (port, confinement.DNS_PORT),
        keep_writing=keep_writing,
    )
    try:
        report = confinement.confine(NAME, policy, settings.confinement, off_by)
    except confinement.ConfinementError as e:
        raise Fatal(
            f"can't confine the client: {e} (see [client] confinement in lacme(8))"
        ) from None
    if trace:
        trace(f"confinement: {report}")


def confine_writing(settings: ClientSettings, trace: Trace | None) -> None:
    """The session's second layer (Session.__init__ says why): regular
    files are created and written in the working directory, the challenge
    directory, only."""
    if not settings.confinement:
        return
    policy = confinement.Policy(write=(".",), only_writing=True)
    try:
        report = confinement.confine(NAME, policy, filter_calls=False)
    except confinement.ConfinementError as e:
        raise Fatal(f"can't confine the client's writes: {e}") from None
    if trace:
        trace(f"confinement of writes to the challenge directory: {report}")


class Accountd:
    """The connection to lacme-accountd: its greeting, then one signature per line."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file = sock.makefile("rb")
        # Not bound by the timeout: accountd may first wait for a human to
        # type the account key's passphrase.
        try:
            # One byte over the limit, for parse_greeting to see a line is too long.
            first = self.file.readline(MAX_LINE + 1)
            if not first:
                raise Fatal("lacme-accountd closed the connection without a greeting")
            self.greeting: Greeting = parse_greeting(first, self.file.readline(MAX_LINE + 1))
        except (OSError, ProtocolError) as e:
            raise Fatal(f"lacme-accountd: {e}") from None

    def sign(self, signing_input: bytes, patience: Patience) -> str:
        try:
            # A signature is one exchange, as long as one with the server.
            self.sock.settimeout(patience.exchange)
            self.sock.sendall(encode_signing_request(signing_input))
            line = self.file.readline(MAX_LINE + 1)
        except OSError as e:
            raise AcmeError(f"lacme-accountd: {e or type(e).__name__}") from None
        try:
            return parse_signature(line)
        except ProtocolError as e:
            raise AcmeError(f"lacme-accountd {e}") from None


def open_accountd(fd: int) -> Accountd:
    try:
        sock = socket.socket(fileno=fd)
    except OSError as e:
        raise Fatal(f"lacme-accountd unreachable: fd {fd}: {e}") from None
    return Accountd(sock)


def account(session: AcmeSession, args: list[str], settings: ClientSettings) -> None:
    """`account FLAGS [CONTACT ...]`: print the account object on stdout."""
    change = parse_account_arguments(args)
    contacts = list(change.contacts)
    obj: dict[str, Any] | None = None
    created = False
    if change.register:
        registration: dict[str, Any] = {"contact": contacts} if contacts else {}
        if change.tos_agreed:
            registration["termsOfServiceAgreed"] = True
        log.say(f"Requesting new registration for {', '.join(contacts) or 'no contact'}")
        obj, created = session.new_account(registration)
    elif session.kid is None:
        try:
            obj, _ = session.new_account({"onlyReturnExisting": True})
        except AcmeError as e:
            if e.problem is None or e.problem.type != ACCOUNT_DOES_NOT_EXIST:
                raise
            raise AcmeError(NO_ACCOUNT) from None
    if tos := session.terms_of_service():
        log.say(f"Terms of Service: {log.printable(tos)}")
    log.say(f"Key ID: {log.printable(session.account_kid())}")
    update: dict[str, Any] = {}
    if not created:
        if contacts:
            update["contact"] = contacts
        # As 0.8.2: agreeing again to the terms of service, after they
        # changed and the server answers userActionRequired (RFC 8555
        # section 7.3.3), is an update of the existing account; a
        # registration carried it already.
        if change.tos_agreed and not change.register:
            update["termsOfServiceAgreed"] = True
    if change.deactivate:
        update["status"] = "deactivated"
    if update or obj is None:
        # No update and no account object yet (accountd gave the Key ID, so
        # there is no JWK to look it up with): POST-as-GET fetches it.
        obj = session.update_account(update or None)
    write_stdout(encode_object(obj))


def write_stdout(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


def read_stdin(what: str) -> bytes:
    """A DER object on stdin; a CSR or certificate is a few KiB."""
    data = sys.stdin.buffer.read(MAX_INPUT + 1)
    if not data:
        raise Fatal(f"no {what} on stdin")
    if len(data) > MAX_INPUT:
        raise Fatal(f"the {what} on stdin is over {MAX_INPUT} bytes")
    return data


def write_key_authorization(
    token: str, key_authorization: str, say: Callable[[str], None] = log.say
) -> None:
    """Create ./TOKEN holding the key authorization, for the webserver to
    serve; SAY tells of one there already."""
    try:
        # O_EXCL: never through a symlink, never over an existing file.
        fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        # As lacme 0.8.2: left by an earlier run in a shared challenge
        # directory.  Nothing is written; if it is stale, validation says so.
        say(f"Warning: File exists: {token}")
        return
    except OSError as e:
        raise Fatal(f"can't create the challenge file {token}: {e.strerror}") from None
    with os.fdopen(fd, "w") as file:
        file.write(key_authorization)


def provisioning(
    watch: token_reads.Watch | None, say: Callable[[str], None]
) -> tuple[Provision, Fetched | None]:
    """What publishes a key authorization in the working directory (which
    WATCH, if any, watches; SAY tells of one there already), and what says
    when the server has fetched them all."""
    tokens = None if watch is None else watch.tokens()

    def provision(token: str, key_authorization: str) -> None:
        write_key_authorization(token, key_authorization, say)
        if tokens is not None:
            tokens.publish(token)

    return provision, None if tokens is None else tokens.wait


def validations(
    session: AcmeSession,
    identifiers: list[str],
    order: OrderSettings,
    watch: token_reads.Watch | None,
    say: Callable[[str], None],
    announce: Callable[[str], None] | None,
    progress: Progress | None = None,
) -> tuple[int, bytes]:
    """`validate`: IDENTIFIERS ordered and validated but not finalized
    (AcmeSession.validate); the exit status (0 when each is valid) and the
    output, what came of each authorization."""
    provision, fetched = provisioning(watch, say)
    trials = session.validate(
        identifiers,
        provision,
        profile=order.profile,
        announce=announce,
        fetched=fetched,
        progress=progress,
    )
    results = [validation_of(trial) for trial in trials]
    ok = all(result.outcome in (VALIDATED, REUSED) for result in results)
    return 0 if ok else 1, encode_validations(results)


def validation_of(trial: Trial) -> Validation:
    """The TRIAL of a `validate` order for the master (lacme.client_contract),
    within the contract's bounds."""
    authz = trial.authorization
    status = str(authz.status)
    if status == "valid":
        outcome, detail = (VALIDATED if trial.created else REUSED), ""
    elif status == "invalid":
        errors = [str(c.error) for c in authz.challenges or () if c.error is not None]
        outcome, detail = FAILED, "; ".join(errors) or "the authorization is invalid"
    else:
        outcome, detail = UNFINISHED, trial.unfinished or f"the authorization is {status}"
    if len(detail) > MAX_MESSAGE:
        detail = detail[: MAX_MESSAGE - 3] + "..."
    return Validation(authz.identifier[:MAX_IDENTIFIER], outcome, detail, trial.deactivated)


def order_chain(
    session: AcmeSession,
    identifiers: list[str],
    csr: bytes,
    order: OrderSettings,
    watch: token_reads.Watch | None,
    say: Callable[[str], None],
    announce: Callable[[str], None] | None,
    progress: Progress | None = None,
) -> str:
    """The chain issued for IDENTIFIERS and CSR, the key authorizations
    written in the working directory (which WATCH, if any, watches);
    RateLimited if a rate limit says when to try again."""
    provision, fetched = provisioning(watch, say)
    try:
        return session.issue(
            identifiers,
            csr,
            provision,
            preferred_chain=order.preferred_chain,
            profile=order.profile,
            replaces=order.replaces,
            resume=order.resume,
            announce=announce,
            fetched=fetched,
            progress=progress,
        )
    except AcmeError as e:
        problem = e.problem
        if problem is not None and problem.type == RATE_LIMITED and e.retry_after is not None:
            raise RateLimited(str(e), e.retry_after) from None
        raise


def new_order(session: AcmeSession, args: list[str], settings: ClientSettings) -> None:
    """`newOrder DOMAIN ...`: CSR (DER) on stdin, certificate chain (PEM) on stdout."""
    identifiers = parse_new_order_arguments(args)
    csr = read_stdin("CSR")
    order = settings.order
    watch = token_reads.watch(".")
    try:
        chain = order_chain(
            session,
            identifiers,
            csr,
            order,
            watch,
            log.say,
            None if order.order_fd is None else announcer(order.order_fd),
        )
    except RateLimited as e:
        write_stdout(encode_rate_limit(e.retry_after))
        raise
    finally:
        if watch is not None:
            watch.close()
    sys.stdout.write(chain)


def announcer(fd: int) -> Callable[[str], None]:
    """Tell the master, on FD, the URL of the order under way: if this run
    is cut short, the next one resumes it."""

    def announce(url: str) -> None:
        try:
            with os.fdopen(fd, "wb") as channel:
                channel.write(encode_order_url(url))
        except (OSError, UnicodeEncodeError) as e:
            log.warn(f"can't tell the master the order URL on fd {fd}: {e}")

    return announce


def revoke_cert(session: AcmeSession, args: list[str], settings: ClientSettings) -> None:
    """`revokeCert [REASON]`: the certificate (DER) on stdin, REASON a reason code."""
    reason = parse_revoke_arguments(args)
    certificate = read_stdin("certificate")
    try:
        session.revoke(certificate, reason)
    except AcmeError as e:
        if reason is None or e.problem is None or e.problem.type != BAD_REVOCATION_REASON:
            raise
        # The server names the reason by its code at most: name it, and
        # the ones Let's Encrypt takes.
        names = {code: name for name, code in REVOCATION_REASONS.items()}
        given = f"{names[reason]} ({reason})" if reason in names else str(reason)
        accepted = ", ".join(
            f"{name} ({REVOCATION_REASONS[name]})" for name in LETS_ENCRYPT_REASONS
        )
        raise Fatal(
            f"the ACME server refused revocation reason {given}: {e.problem}; "
            f"Let's Encrypt accepts only {accepted}"
        ) from None


def key_change(session: AcmeSession, args: list[str], settings: ClientSettings) -> None:
    """`keyChange NEW_SOCKET_FD`: move the account to the key of the
    lacme-accountd on NEW_SOCKET_FD, which signs the inner JWS (RFC 8555
    section 7.3.5); print the account object, fetched with the new key."""
    new = open_accountd(parse_key_change_arguments(args))
    greeting = new.greeting
    if greeting.kid is not None or not greeting.jwk:
        raise Fatal("the new key's lacme-accountd has a Key ID configured: it must send its key")
    if greeting.jwk == session.jwk:
        raise Fatal("the new key is the account's current key")
    log.say(f"Key ID: {log.printable(session.account_kid())}")

    def sign(signing_input: bytes) -> str:
        try:
            return new.sign(signing_input, session.patience)
        except AcmeError as e:
            # Perl's refuses every nonce-less line, the inner JWS included.
            raise AcmeError(
                f"the new key's {e} (0.8.2's lacme-accountd signs no key change)", shown=True
            ) from None

    session.key_change(greeting.alg, greeting.jwk, greeting.jwk_thumbprint, sign)
    log.say(f"Account key changed to {greeting.jwk_thumbprint}")
    write_stdout(encode_object(session.update_account(None)))


def directory(session: AcmeSession, args: list[str], settings: ClientSettings) -> None:
    """`directory`: print the server's directory object."""
    parse_directory_arguments(args)
    write_stdout(encode_object(session.directory.object))


def renewal_info(session: AcmeSession, args: list[str], settings: ClientSettings) -> None:
    """`renewalInfo CERTID`: print the certificate's renewal information
    (RFC 9773) and the Retry-After it came with, for the master to decide."""
    info, retry_after = session.renewal_info(parse_renewal_info_arguments(args))
    write_stdout(encode_renewal_info(RenewalInfoAnswer(info, retry_after)))


def refuse_to_sign(signing_input: bytes) -> str:
    """The signer of the lookups (UNSIGNED), which have no accountd."""
    raise AcmeError("this command has no lacme-accountd to sign with")


class Session:
    """`session`: lacme's own client for a whole run.  It holds what the
    orders share: the directory, the account's Key ID, the one accountd
    conversation (a signature at a time), the idle connections, the
    challenge directory's watch; each newOrder runs in a thread of its own,
    with an AcmeSession of its own."""

    def __init__(
        self,
        control: socket.socket,
        settings: ClientSettings,
        trace: Trace | None,
        off_by: str = "[client] confinement = No",
    ):
        self.control = control
        self.settings = settings
        self.trace = trace
        self.context = ssl_context(settings)
        # Confined now, before the first byte from the server: the challenge
        # directory comes later, when an order is due (the master makes it
        # only then), and a Landlock layer only ever takes rights away.  So
        # this layer leaves the creation and writing of regular files alone
        # and restricts all else; the layer added in lend() restricts those
        # two to the challenge directory, before the first order starts.
        confine(settings, trace, keep_writing=True, off_by=off_by)
        self.patience = Patience(settings.timeout)
        self.accountd: Accountd | None = None
        # Why getting ready for the first order failed (see lend).
        self.unready: Fatal | AcmeError | ContractError | None = None
        self.watch: token_reads.Watch | None = None
        self.idle: list[Transport] = []
        self.orders: list[threading.Thread] = []
        self._signing = threading.Lock()
        self._sending = threading.Lock()
        self._idle = threading.Lock()
        # Lookups, and what the orders share, are asked in the reading thread.
        self.lookups = AcmeSession(
            settings.server,
            context=self.context,
            sign=self.sign,
            alg="",
            jwk={},
            thumbprint="",
            kid=None,
            patience=self.patience,
            warn=log.warn,
            trace=trace,
        )

    def sign(self, signing_input: bytes) -> str:
        with self._signing:
            if self.accountd is None:
                raise AcmeError("the master lent the session no lacme-accountd to sign with")
            return self.accountd.sign(signing_input, self.patience)

    def send(self, line: bytes) -> None:
        # The master gone reads no answer, and the reading thread sees EOF.
        with self._sending, contextlib.suppress(OSError):
            self.control.sendall(line)

    def serve(self) -> None:
        """Answer the master's requests until it closes its end, then let
        the orders under way finish."""
        buffered = b""
        descriptors: list[int] = []
        while True:
            data, fds, _, _ = socket.recv_fds(self.control, MAX_REQUEST, 1)
            descriptors += fds
            if not data:
                break
            buffered += data
            while b"\n" in buffered:
                line, buffered = buffered.split(b"\n", 1)
                self.handle(decode_request(line + b"\n"), descriptors)
            if len(buffered) > MAX_REQUEST:
                raise Fatal(f"a request over {MAX_REQUEST} bytes on the control socket")
        for order in self.orders:
            order.join()

    def handle(self, request: Request | str, descriptors: list[int]) -> None:
        if isinstance(request, str):
            if not descriptors:
                raise Fatal(f"no descriptor came with the {request} line")
            self.lend(request, descriptors.pop(0))
            return
        messages: list[str] = []
        self.lookups.warn = lambda message: say(messages, f"Warning: {message}")
        try:
            if request.command in ORDERING:
                self.start_order(request)
                return
            output = self.look_up(request)
        except (Fatal, AcmeError, ContractError) as e:
            say(messages, error_line(e))
            self.answer(request, exit_status(e), b"", messages)
            return
        self.answer(request, 0, output, messages)

    def lend(self, kind: str, fd: int) -> None:
        # Both come when an order is coming, before its request: the
        # challenge directory while accountd starts, accountd once it has
        # greeted the master.  The session then gets ready for the order:
        # the directory and the account, before the request arrives.  Not
        # sooner: an accountd that fails leaves the server unasked.
        if kind == CHALLENGES_FD and self.watch is None:
            os.fchdir(fd)
            os.close(fd)
            # Still in the one thread: no order has started without it.
            confine_writing(self.settings, self.trace)
            self.watch = token_reads.watch(".")
        elif kind == ACCOUNTD_FD and self.accountd is None:
            self.accountd = open_accountd(fd)
            greeting = self.accountd.greeting
            if self.trace:
                self.trace(f"accountd greeting: {greeting}")
            lookups = self.lookups
            lookups.alg, lookups.jwk = greeting.alg, greeting.jwk
            lookups.thumbprint, lookups.kid = greeting.jwk_thumbprint, greeting.kid
            self.get_ready(lambda: lookups.directory)
            self.get_ready(lookups.account_kid)
        else:
            raise Fatal(f"a second {kind} descriptor on the control socket")

    def get_ready(self, step: Callable[[], object]) -> None:
        """STEP of what the first order needs, unless an earlier one failed;
        what fails is that order's error, as if it had asked itself."""
        if self.unready is not None:
            return
        self.lookups.warn = log.warn
        try:
            step()
        except (Fatal, AcmeError, ContractError) as e:
            self.unready = e

    def look_up(self, request: Request) -> bytes:
        if request.command == DIRECTORY:
            parse_directory_arguments(request.arguments)
            return encode_object(self.lookups.directory.object)
        info, retry_after = self.lookups.renewal_info(
            parse_renewal_info_arguments(request.arguments)
        )
        return encode_renewal_info(RenewalInfoAnswer(info, retry_after))

    def start_order(self, request: Request) -> None:
        """The order of REQUEST, in a thread, once what it shares is known."""
        parse_new_order_arguments(request.arguments)
        if self.watch is None:
            raise Fatal("the master lent the session no challenge directory")
        if self.unready is not None:
            unready, self.unready = self.unready, None
            raise unready
        self.orders = [order for order in self.orders if order.is_alive()]
        if len(self.orders) >= MAX_ORDERS:
            raise Fatal(f"more than {MAX_ORDERS} orders at once")
        directory = self.lookups.directory
        kid = self.lookups.account_kid()
        with self._idle:
            transport = self.idle.pop() if self.idle else None
        if transport is None:
            # The lookups' connection, open since the account lookup, and
            # its nonce: the order goes on with them.  Lookups, seldom asked
            # once orders are under way, open another if they need one.
            transport = self.lookups.transport
            self.lookups.transport = Transport(self.context, self.patience, self.trace)
        session = AcmeSession(
            self.settings.server,
            context=self.context,
            sign=self.sign,
            alg=self.lookups.alg,
            jwk=self.lookups.jwk,
            thumbprint=self.lookups.thumbprint,
            kid=kid,
            patience=self.patience,
            warn=log.warn,
            trace=self.trace,
            directory=directory,
            transport=transport,
        )
        thread = threading.Thread(target=self.order, args=(session, request))
        self.orders.append(thread)
        thread.start()

    def order(self, session: AcmeSession, request: Request) -> None:
        messages: list[str] = []
        session.warn = lambda message: say(messages, f"Warning: {message}")
        status, output = 0, b""
        identifiers = list(request.arguments)

        def tell(message: str) -> None:
            say(messages, message)

        def announce(url: str) -> None:
            self.send(encode_announce(Announce(request.id, url)))

        def progress(step: str) -> None:
            self.send(encode_step(Step(request.id, step)))

        try:
            if request.command == VALIDATE:
                status, output = validations(
                    session, identifiers, request.order, self.watch, tell, announce, progress
                )
            else:
                chain = order_chain(
                    session,
                    identifiers,
                    request.stdin,
                    request.order,
                    self.watch,
                    tell,
                    announce,
                    progress,
                )
                output = chain.encode("ascii")
        except (Fatal, AcmeError, ContractError) as e:
            status = exit_status(e)
            if isinstance(e, RateLimited):
                output = encode_rate_limit(e.retry_after)
            say(messages, error_line(e))
        except Exception as e:
            status = 1
            say(messages, error_line(e.__class__.__name__ + ": " + str(e)))
        finally:
            with self._idle:
                self.idle.append(session.transport)
        self.answer(request, status, output, messages)

    def answer(self, request: Request, status: int, output: bytes, messages: list[str]) -> None:
        if len(messages) > MAX_MESSAGES:
            messages = [*messages[: MAX_MESSAGES - 1], messages[-1]]
        self.send(encode_answer(Answer(request.id, status, output, tuple(messages))))

    def close(self) -> None:
        self.lookups.transport.close()
        for transport in self.idle:
            transport.close()


def say(messages: list[str], message: str) -> None:
    """MESSAGE into MESSAGES, a line each, for the master to show (at most
    MAX_MESSAGE characters a line)."""
    for line in message.split("\n"):
        messages.append(line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 3] + "...")


def serve_session(control_fd: int, settings: ClientSettings, off_by: str) -> None:
    try:
        control = socket.socket(fileno=control_fd)
    except OSError as e:
        raise Fatal(f"can't use the control socket fd {control_fd}: {e}") from None
    trace = log.debug if os.environ.get("DEBUG", "0") not in ("", "0") else None
    session = Session(control, settings, trace, off_by)
    try:
        session.serve()
    finally:
        session.close()


COMMANDS = {
    ACCOUNT: account,
    NEW_ORDER: new_order,
    REVOKE_CERT: revoke_cert,
    KEY_CHANGE: key_change,
    DIRECTORY: directory,
    RENEWAL_INFO: renewal_info,
}


def run(argv: list[str]) -> None:
    try:
        invocation = parse_argv(argv)
    except ContractError as e:
        raise Fatal(f"usage: {sys.executable} -m lacme.client {e}") from None
    command, socket_fd, args = invocation.command, invocation.socket_fd, list(invocation.arguments)
    settings = read_settings(invocation.config_fd)
    off_by = "[client] confinement = No"
    if not invocation.confined:
        settings, off_by = settings._replace(confinement=False), f"{UNCONFINED} given"
    if command == SESSION:
        serve_session(socket_fd, settings, off_by)
        return
    # Lookups sign nothing, and the master puts no accountd behind their
    # SOCKET_FD (one could ask for a passphrase): it is left alone.
    accountd = None if command in UNSIGNED else open_accountd(socket_fd)
    patience = Patience(settings.timeout)
    trace: Callable[[str], None] | None = None
    if os.environ.get("DEBUG", "0") not in ("", "0"):
        trace = log.debug
        if accountd is not None:
            trace(f"accountd greeting: {accountd.greeting}")

    context = ssl_context(settings)
    # As lacme 0.8.2's master starts it: newOrder in the challenge
    # directory, the only one it writes to; everything is at hand.
    confine(settings, trace, write=(".",) if command == NEW_ORDER else (), off_by=off_by)
    if accountd is None:
        with AcmeSession(
            settings.server,
            context=context,
            sign=refuse_to_sign,
            alg="",
            jwk={},
            thumbprint="",
            kid=None,
            patience=patience,
            warn=log.warn,
            trace=trace,
        ) as session:
            COMMANDS[command](session, args, settings)
        return
    greeting = accountd.greeting
    with AcmeSession(
        settings.server,
        context=context,
        sign=lambda signing_input: accountd.sign(signing_input, patience),
        alg=greeting.alg,
        jwk=greeting.jwk,
        thumbprint=greeting.jwk_thumbprint,
        kid=greeting.kid,
        patience=patience,
        warn=log.warn,
        trace=trace,
        eab=greeting.eab,
    ) as session:
        COMMANDS[command](session, args, settings)


def main(argv: list[str] | None = None) -> int:
    try:
        run(sys.argv[1:] if argv is None else argv)
    except (Fatal, AcmeError, ContractError) as e:
        log.say(error_line(e))
        return exit_status(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
