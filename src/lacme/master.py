"""The master process, run as root: what `lacme` (lacme.master_command)
does once its command line is good.

What the master holds: the configuration, the service keys (read only to
sign CSRs) and the certificates it installs.  What it touches: the
`certificate` and `certificate-chain` files (replaced atomically) and the
renewal information kept beside them (lacme.ari), the challenge directory
and webserver sockets (lacme.challenges sets them up and removes them),
iptables rules when asked to (restored on exit), and the `notify` commands
it runs as root.  Before it starts anything, it checks what the children
need of the file system as the users they run as (lacme.access).
Everything that talks to the network or holds the account key runs
elsewhere: the ACME client and the webservers unprivileged
(lacme.privdrop), lacme-accountd as configured (lacme.accountd_link).  What
the client brings back is checked (lacme.certificate) before any file is
written; what it looks up (the directory's profiles, renewal information)
the master weighs before ordering, and it warns of what Let's Encrypt would
refuse of an order.

SIGINT, SIGTERM and SIGHUP stop the run, undoing what it set up.  What a
client leaves running is killed once it exits, and the master reads no
more of what it writes than the ACME server may send (lacme.privdrop).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from types import FrameType, ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple

from lacme import (
    access,
    accountd_link,
    ari,
    challenges,
    config,
    log,
    privdrop,
    rate_limits,
    renewal,
    specifiers,
    strict,
)
from lacme.challenges import DIRECTORY_FLAGS
from lacme.client_contract import (
    ACCOUNT,
    ACCOUNTD_FD,
    CHALLENGES_FD,
    DIRECTORY,
    EXIT_RATE_LIMITED,
    EXIT_UNREACHABLE,
    FAILED,
    FINALIZING,
    KEY_CHANGE,
    MAX_CHAIN_OUTPUT,
    MAX_ORDER_URL,
    MAX_OUTPUT,
    NEW_ORDER,
    RENEWAL_INFO,
    REUSED,
    REVOCATION_REASONS,
    REVOKE_CERT,
    SESSION,
    UNFINISHED,
    VALIDATE,
    VALIDATED,
    VALIDATING,
    AccountChange,
    ContractError,
    Invocation,
    OrderSettings,
    Validation,
    client_argv,
    decode_object,
    decode_order_url,
    decode_rate_limit,
    decode_renewal_info,
    decode_validations,
    encode_settings,
    revoke_arguments,
)
from lacme.client_link import ORDERED, ClientSession, Result
from lacme.config import AccountdConfig, CertSection, CertSource, Config, Percent
from lacme.errors import CertificateError, ConfigError
from lacme.master_command import NAME, Arguments
from lacme.parsing import is_ip_address
from lacme.privdrop import Credentials, SpawnError
from lacme.progress import Progress


def _lazy(name: str) -> ModuleType:
    """The module NAME, executed only when one of its attributes is first
    used (importlib.util.LazyLoader); at once if it was imported already."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"no module named {name}")
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    setattr(sys.modules[parent], child, module)
    return module


# cryptography, which these modules bring, is a third of what the master
# imports.  Loaded when first used, it loads while the client session the
# run starts first is starting too (see Master.new_order).
if TYPE_CHECKING:
    from cryptography.x509 import Certificate, CertificateSigningRequest

    from lacme import certificate, installed, notify
else:
    certificate = _lazy("lacme.certificate")
    installed = _lazy("lacme.installed")
    notify = _lazy("lacme.notify")

# What Let's Encrypt refuses (2025-2026) of an order, or of its CSR at
# finalization: more names than its tlsserver and shortlived profiles allow,
# IP addresses outside shortlived, other keys than these.  Other CAs may
# take them, so they are warnings.
LIMITED_PROFILES = ("tlsserver", "shortlived")
PROFILE_MAX_NAMES = 25
IP_PROFILE = "shortlived"
ACCEPTED_KEY_TYPES = ("RSA 2048", "RSA 3072", "RSA 4096", "ECDSA P-256", "ECDSA P-384")
# What a session client, asked nothing more, has to send its last answers and exit.
SESSION_GRACE = 10.0


class Interrupted(BaseException):
    """A stop signal, raised where the master is so that everything unwinds."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def revocation_reason(text: str) -> int | None:
    """The RFC 5280 reason code TEXT names (case aside) or is; None if none."""
    codes = {name.lower(): code for name, code in REVOCATION_REASONS.items()}
    if text.isdigit() and int(text) in codes.values():
        return int(text)
    return codes.get(text.lower())


def refusal_warnings(section: CertSection, key_type: str) -> list[str]:
    """What would fail SECTION's order, its key being of KEY_TYPE
    (certificate.key_type): Let's Encrypt's limits, and wildcards, which
    lacme cannot validate; a line each."""
    warnings: list[str] = []
    count = len(section.identifiers)
    if section.profile in LIMITED_PROFILES and count > PROFILE_MAX_NAMES:
        warnings.append(
            f"{count} names in subject and subjectAltName: Let's Encrypt allows at most "
            f"{PROFILE_MAX_NAMES} under profile = {section.profile}"
        )
    addresses = [f"IP:{name}" for name in section.identifiers if is_ip_address(name)]
    if addresses and section.profile != IP_PROFILE:
        warnings.append(
            f"subjectAltName {', '.join(addresses)} without profile = {IP_PROFILE}: "
            f"Let's Encrypt takes IP addresses only under the {IP_PROFILE} profile"
        )
    if key_type not in ACCEPTED_KEY_TYPES:
        warnings.append(
            f"certificate-key {section.certificate_key} is {key_type}: "
            f"Let's Encrypt takes only {', '.join(ACCEPTED_KEY_TYPES)}"
        )
    common_names = {name.lower() for name in config.common_names(section.subject)}
    for name in section.identifiers:
        if name.startswith("*."):
            setting = "subject CN=" if name in common_names else "subjectAltName DNS:"
            warnings.append(
                f"{setting}{name} is a wildcard, which needs dns-01: lacme answers http-01 only"
            )
    return warnings


def before_ordering(section: CertSection) -> list[str]:
    """What would make SECTION's certificate fail after issuance, checked
    before ordering: installation (certificate.installation_problems), a
    key or CA file others could change (lacme.strict), and the notify
    command's program."""
    problems = certificate.installation_problems(section)
    # Read as root to make the CSR and to verify what the client brings:
    # whoever could change them would have lacme install a certificate of
    # their choosing, or one for their key.
    for key, path in (("certificate-key", section.certificate_key), ("CAfile", section.cafile)):
        try:
            problem = None if path is None else strict.problem(path)
        except OSError:
            continue  # missing or unreadable: said where it is read
        if problem is not None:
            problems.append(f"{key} = {path}: refused: {problem}")
    if section.notify is not None:
        problem = notify.program_problem(section.notify, notify.path(os.geteuid() == 0))
        if problem is not None:
            problems.append(problem)
    return problems


class ChallengeDirectory:
    """The challenge directory and its webservers, for a newOrder run: set
    up by SET_UP when the first section due needs them, torn down on leaving."""

    def __init__(self, set_up: Callable[[ExitStack], str]) -> None:
        self._set_up = set_up
        self._stack = ExitStack()
        self._path: str | None = None

    def __enter__(self) -> ChallengeDirectory:
        return self

    def __exit__(self, *exc_info: Any) -> bool | None:
        return self._stack.__exit__(*exc_info)

    def path(self) -> str:
        if self._path is None:
            self._path = self._set_up(self._stack)
        return self._path


class Ordering(NamedTuple):
    """A section due, and what its order is made of: REPLACES, the ARI
    certID of the certificate it renews; RESUME, the URL of the order an
    earlier run left, kept in the file STATE (lacme.installed)."""

    section: CertSection
    key: certificate.ServiceKey
    csr: CertificateSigningRequest
    replaces: str | None
    resume: str | None
    state: str


@dataclass
class Work:
    """A section of a newOrder run, from its start to its end: the
    messages held back meanwhile (log.held), then its outcome if it needs
    no order, or its order (the request in the client session, the order
    URL announced so far, what it came to)."""

    name: str
    source: CertSource | None
    lines: list[str] = field(default_factory=list)
    ok: bool | None = None
    ordering: Ordering | None = None
    request: int | None = None
    url: str | None = None
    result: Result | None = None

    @property
    def waiting(self) -> bool:
        """Whether its order is under way in the client session."""
        return self.request is not None and self.result is None


def format_account(account: dict[str, Any]) -> str:
    """The account object's status, contacts and orders URL for a human,
    escaped: the server wrote them."""
    contacts = account.get("contact")
    lines = [
        f"Status:   {account.get('status', 'unknown')}",
        *(f"Contact:  {contact}" for contact in (contacts if isinstance(contacts, list) else [])),
        *([f"Orders:   {account['orders']}"] if account.get("orders") else []),
    ]
    return "".join(f"{log.printable(line)}\n" for line in lines)


class Master:
    """One run: the configuration, the command line, and the children's identities."""

    def __init__(self, args: Arguments, config: Config) -> None:
        self.args = args
        self.config = config
        self.client_credentials = privdrop.resolve_credentials(
            config.client.user, config.client.group, "client"
        )
        self.accountd_credentials: Credentials | None = None
        if config.accountd is not None:
            self.accountd_credentials = privdrop.resolve_credentials(
                config.accountd.user, config.accountd.group, "accountd"
            )
        # Sections whose notify command this run ran for a new certificate.
        self._notified: set[str] = set()
        # Once the ACME server has proved unreachable in this run, nothing
        # more is asked of it: each section would wait out its retries.
        self.unreachable = False
        self.orphans_uid = self._orphans_uid()
        # lacme's own client serves a whole newOrder run in one session
        # (lacme.client_link); another (0.8.2's) is started for each request.
        self.own_client = config.client.command.split()[-2:] == ["-m", "lacme.client"]
        self.session: ClientSession | None = None
        # The accountd started for the session, lent once an order needs it.
        self._started: accountd_link.Started | None = None
        self._run: ExitStack | None = None  # what lives as long as the newOrder run
        self.progress = Progress(sys.stderr, verbose=args.verbose, quiet=args.quiet)
        # The section, and how many names, of each order asked of the session.
        self._asked: dict[int, tuple[str, int]] = {}
        # For newOrder --json: what each section ended with, by its name.
        self._outcomes: dict[str, dict[str, Any]] = {}

    def _orphans_uid(self) -> int | None:
        """The client's uid if no other child of the master runs as that uid,
        so that an orphan running as it was left by a client (lacme.privdrop)."""

        uid, _ = privdrop.child_ids(self.client_credentials)
        others = self.other_uids()
        webserver = self.config.webserver
        if webserver.listen.strip() and not webserver.challenge_directory:
            # The webserver's user is checked where it is started; one that
            # does not exist runs no webserver.
            with contextlib.suppress(ConfigError):
                www = privdrop.resolve_credentials(webserver.user, webserver.group, "webserver")
                others.add(privdrop.child_ids(www)[0])
        return None if uid in others else uid

    def other_uids(self) -> set[int]:
        """The uids the master's children run as but the client and webservers."""

        uids = {os.geteuid()}
        if self.config.accountd is not None:
            uids.add(privdrop.child_ids(self.accountd_credentials)[0])
        return uids

    def _end_orphans(self) -> None:
        if self.orphans_uid is not None:
            ended = privdrop.end_orphans(self.orphans_uid)
            if ended:
                self.debug(f"Killed {ended} process(es) the client left behind")

    def debug(self, message: str) -> None:
        if self.args.debug:
            log.debug(message)

    def info(self, message: str) -> None:
        if not self.args.quiet:
            log.say(message)

    def run_client(
        self,
        arguments: Sequence[str],
        *,
        stdin: bytes | None = None,
        capture: bool = False,
        cwd: str = "/",
        command: str | None = None,
        extra_fds: Sequence[int] = (),
        order: OrderSettings | None = None,
        lookup: bool = False,
    ) -> tuple[int, bytes]:
        """Run the client for the command (lacme.client_contract), with its
        own accountd conversation, as lacme 0.8.2's acme_client(); return its
        exit status and (if CAPTURE) its stdout.  COMMAND replaces the
        command line's, EXTRA_FDS are passed on too, ORDER goes into the
        settings on CONFIG_FD.  LOOKUP: the command signs nothing
        (client_contract.UNSIGNED), so there is no accountd conversation."""

        argv = self.config.client.command.split()
        if not argv:
            raise ConfigError("[client] command is empty")
        with ExitStack() as stack:
            if lookup:
                # A stream with nobody behind it: no accountd to start, nor
                # a passphrase to ask, for a request that needs no signature.
                sock, peer = socket.socketpair()
                peer.close()
                stack.callback(sock.close)
            else:
                sock = stack.enter_context(self._accountd())
            settings = stack.enter_context(tempfile.TemporaryFile())
            settings.write(encode_settings(self.config.client.settings(), order))
            settings.flush()
            settings.seek(0)
            fds = (settings.fileno(), sock.fileno(), *extra_fds)
            stdout = subprocess.PIPE if capture else subprocess.DEVNULL
            invocation = Invocation(
                command or self.args.command, settings.fileno(), sock.fileno(), tuple(arguments)
            )
            limit = MAX_CHAIN_OUTPUT if invocation.command == NEW_ORDER else MAX_OUTPUT
            # Before the client's stop, so after it on the way out.
            stack.callback(self._end_orphans)
            client = privdrop.spawn(
                client_argv(argv, invocation),
                self.client_credentials,
                cwd=cwd,
                pass_fds=fds,
                stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                stdout=stdout,
                env={"DEBUG": "1" if self.args.debug else "0"},
            )
            stack.callback(privdrop.stop, client)
            self.debug(f"Forking {argv[0]}, child PID {client.pid}")
            output = privdrop.exchange(client, stdin, limit, f"the client {argv[0]}")
            status = client.wait()
        if status == EXIT_UNREACHABLE:
            self.unreachable = True
        # As lacme 0.8.2: the client's exit code, 1 when it was killed.
        return (status if status > 0 else 1 if status < 0 else 0), output

    def _session(
        self, run: ExitStack, challenges: str | None = None, *, ordering: bool = True
    ) -> ClientSession:
        """The client session of the newOrder RUN, started at its first
        request (again if the last one broke), lent the challenge directory
        CHALLENGES and the accountd stream when an order first needs them.
        Not yet ORDERING, accountd is started, not waited for nor lent."""

        if self.session is None or self.session.broken is not None:
            self.session = self._start_session(run)
            self._started = None
        session = self.session
        if challenges is None:
            return session
        if CHALLENGES_FD not in session.lent:
            fd = os.open(challenges, DIRECTORY_FLAGS)
            try:
                session.lend(CHALLENGES_FD, fd)
            finally:
                os.close(fd)
        accountd = self.config.accountd
        if accountd is not None and self._started is None:
            self._started = session.holding.enter_context(
                accountd_link.started_accountd(
                    accountd.command,
                    self.accountd_credentials,
                    config=accountd.config,
                    quiet=accountd.quiet,
                    debug=self.args.debug,
                )
            )
        if ordering and ACCOUNTD_FD not in session.lent:
            if self._started is not None:
                sock = self._started.greeted()
            else:
                sock = session.holding.enter_context(self._accountd())
            session.lend(ACCOUNTD_FD, sock.fileno())
        return session

    def _start_session(self, stack: ExitStack) -> ClientSession:
        argv = self.config.client.command.split()
        control, theirs = socket.socketpair()
        stack.callback(control.close)
        with theirs, tempfile.TemporaryFile() as settings:
            settings.write(encode_settings(self.config.client.settings()))
            settings.flush()
            settings.seek(0)
            invocation = Invocation(SESSION, settings.fileno(), theirs.fileno(), ())
            client = privdrop.spawn(
                client_argv(argv, invocation),
                self.client_credentials,
                pass_fds=(settings.fileno(), theirs.fileno()),
                env={"DEBUG": "1" if self.args.debug else "0"},
            )
        self.debug(f"Forking {argv[0]} for the run's session, child PID {client.pid}")
        session = ClientSession(client, control, argv[0], self._on_step)
        # Unwound once the client has stopped: the accountd conversation it
        # was lent, or was to be lent, ends after it.
        stack.enter_context(session.holding)

        def end(exc_type: type[BaseException] | None, *_: object) -> None:
            # Asked nothing more, it exits once its answers are sent; when
            # the run stops short, at once.
            session.close()
            privdrop.stop(client, grace=0 if exc_type is not None else SESSION_GRACE)
            self._end_orphans()

        stack.push(end)
        return session

    def _on_step(self, request: int, step: str) -> None:
        """The order of REQUEST is at STEP (lacme.client_link)."""
        if request not in self._asked:
            return
        name, count = self._asked[request]
        if step == ORDERED:
            self.progress.step(name, "order placed", detail=True)
        elif step == VALIDATING:
            self.progress.step(name, f"validating {count} name{'s' * (count > 1)}...")
        elif step == FINALIZING:
            self.progress.step(name, "finalizing...")

    def _accountd(self) -> contextlib.AbstractContextManager[socket.socket]:
        """A conversation with lacme-accountd: one started for it, or the socket's."""
        accountd = self.config.accountd
        if accountd is None:
            return accountd_link.connect_accountd(specifiers.expand(self.config.client.socket))
        return accountd_link.running_accountd(
            accountd.command,
            self.accountd_credentials,
            config=accountd.config,
            quiet=accountd.quiet,
            debug=self.args.debug,
        )

    def _look_up(self, command: str, arguments: Sequence[str]) -> tuple[int, bytes]:
        """A lookup (client_contract.UNSIGNED): in the run's session, or by
        a client of its own; its exit status and output."""

        if not self.own_client or self._run is None:
            return self.run_client(arguments, command=command, capture=True, lookup=True)
        session = self._session(self._run)
        request = session.wait({session.ask(command, arguments)})
        result = session.result(request)
        for message in result.messages:
            log.say(message)
        if result.status == EXIT_UNREACHABLE:
            self.unreachable = True
        return result.status, result.output

    # --- commands ---------------------------------------------------------

    def account(self) -> int:
        if self.args.rollover is not None or self.args.rollover_socket is not None:
            return self._key_change()
        change = AccountChange(
            register=self.args.register,
            tos_agreed=self.args.tos_agreed,
            deactivate=self.args.deactivate,
            contacts=self.args.arguments,
        )
        status, output = self.run_client(change.arguments(), capture=True)
        self._show_account(output)
        return status

    def _key_change(self) -> int:
        """Move the account to the key of a second accountd, which signs
        the inner keyChange JWS: neither key is ever read by master or client."""

        with ExitStack() as stack:
            if self.args.rollover_socket is not None:
                path = specifiers.expand(self.args.rollover_socket)
                sock = stack.enter_context(accountd_link.connect_accountd(path))
            else:
                # The old key's [accountd] settings, but the new key's configuration.
                accountd = self.config.accountd or AccountdConfig()
                credentials = privdrop.resolve_credentials(
                    accountd.user, accountd.group, "accountd"
                )
                sock = stack.enter_context(
                    accountd_link.running_accountd(
                        accountd.command,
                        credentials,
                        config=self.args.rollover or "",
                        quiet=accountd.quiet,
                        debug=self.args.debug,
                    )
                )
            status, output = self.run_client(
                [str(sock.fileno())], capture=True, command=KEY_CHANGE, extra_fds=(sock.fileno(),)
            )
        self._show_account(output)
        if status == 0:
            self.info("Account key changed: from now on, configure lacme-accountd with the new key")
        return status

    def _show_account(self, output: bytes) -> None:
        """The account object as the client printed it (JSON) when asked
        for, or for a script as lacme 0.8.2 prints it; for a human at a
        terminal, its status, contacts and orders URL."""
        account = decode_object(output)
        if self.args.json or account is None or not sys.stdout.isatty():
            sys.stdout.buffer.write(output)
            sys.stdout.flush()
            return
        sys.stdout.write(format_account(account))
        sys.stdout.flush()

    def new_order(self) -> int:
        """Renew each section asked for (all by default) that is due: with
        lacme's own client, up to `parallel-orders` orders under way at
        once in one client session, each section's messages kept together
        and the sections ended in the order they were asked for."""

        if self.args.dry_run and not self.own_client:
            log.say(
                f"Error: --dry-run needs lacme's own client ([client] command = ... -m "
                f"lacme.client), not {self.config.client.command.split()[0]}: lacme 0.8.2's "
                "can't stop an order before finalizing it"
            )
            return 1
        files = config.certificate_files(self.config, self.args.config_certs)
        for filename in files:
            self.debug(f"Reading {filename}")
        sources = config.load_certs(files)
        failed = False
        queue: deque[Work] = deque()
        with ExitStack() as stack:
            challenges = stack.enter_context(ChallengeDirectory(self._set_up_challenges))
            self._run = stack
            names = self.args.arguments or sorted(sources)
            if self.own_client and sources:
                # Before anything else: the client starts while the master
                # imports cryptography and reads keys and certificates.  A
                # client that can't start is reported where one is needed,
                # as it was before: a run with nothing due does without.
                with contextlib.suppress(ConfigError, SpawnError):
                    self._session(stack)
                # accountd and the webserver too, when an order is certain.
                if self.session is not None and any(
                    self._surely_due(sources.get(name)) for name in names
                ):
                    self._session(stack, challenges.path(), ordering=False)
            try:
                for name in names:
                    while self._under_way(queue) >= self._parallel_orders():
                        self._await(queue)
                    work = Work(name, sources.get(name))
                    # Behind a section still under way, its messages wait for it.
                    hold = log.held(work.lines) if queue else contextlib.nullcontext()
                    queue.append(work)
                    with hold:
                        self._begin(work, challenges, stack)
                    failed |= self._end_finished(queue)
                while queue:
                    self._await(queue)
                    failed |= self._end_finished(queue)
            finally:
                self._abandon(queue)
                self._run = None
        return 1 if failed else 0

    def _surely_due(self, source: CertSource | None) -> bool:
        """Whether the section of SOURCE is due, as far as its settings tell
        before any certificate is read: renewal is forced (or a dry run
        validates it), or it has no certificate yet, nor a rate limit that
        holds.  (It may still end without an order: a kept certificate to
        install, a key that can't be read.)"""
        if source is None:
            return False
        try:
            section = config.parse_section(source)
        except ConfigError:
            return False
        if self.args.min_days == -1 or self.args.dry_run:
            return True
        path = section.certificate_paths()[0]
        now = datetime.datetime.now(datetime.UTC)
        limited = rate_limits.load(rate_limits.state_path(path), now) is not None
        return not limited and not os.path.lexists(path)

    def _begin(self, work: Work, challenges: ChallengeDirectory, run: ExitStack) -> None:
        """Whether WORK's section is due, then its order started (in the
        session of the newOrder RUN with lacme's own client); or its outcome
        if it needs none, or can't have one."""

        if work.source is None:
            log.say(f"Warning: No such section {work.name}, skipping")
            work.ok = False
            return
        prepared = self._prepare(work.source)
        if isinstance(prepared, bool):
            work.ok = prepared
            return
        work.ordering = prepared
        # Outside the section's errors: a challenge set-up that fails stops the run.
        directory = challenges.path()
        section = prepared.section
        csr = certificate.der(prepared.csr)
        settings = OrderSettings(
            section.preferred_chain, section.profile, prepared.replaces, prepared.resume
        )
        count = len(section.identifiers)
        what = "dry run: ordering" if self.args.dry_run else "ordering"
        self.progress.begin(work.name, f"{what} {count} name{'s' * (count > 1)}")
        if self.args.dry_run:
            work.request = self._session(run, directory).ask(
                VALIDATE, section.identifiers, order=OrderSettings(profile=section.profile)
            )
        elif self.own_client:
            work.request = self._session(run, directory).ask(
                NEW_ORDER, section.identifiers, csr, settings
            )
        else:
            self._order_once(work, section.identifiers, csr, settings, directory)
        if work.request is not None:
            self._asked[work.request] = (work.name, count)

    def _prepare(self, source: CertSource) -> Ordering | bool:
        """Is the section of SOURCE due: its order, or the section's outcome
        (False when a step failed)."""

        try:
            section = self._section(source)
            now = datetime.datetime.now(datetime.UTC)
            key = certificate.load_key(section.certificate_key)
            # A dry run validates every section, due or not, and changes
            # nothing: no kept certificate installed, no renewal
            # information saved.
            kept = None if self.args.dry_run else self._install_kept(section, key, now)
            if kept is not None:
                return kept
            reason = None if self.args.dry_run else self._mismatch(section, key)
            if reason is not None:
                self.info(f"[{source.name}] Renewing: {reason}")
                due, replaces = True, None
            elif self.args.dry_run:
                due, replaces = True, None
            else:
                due, replaces = self._renewal_due(section, now)
            if not due:
                return True
            if self.unreachable:
                log.say(
                    f"[{source.name}] Error before ordering: the ACME server was unreachable "
                    "earlier in this run"
                )
                return False
            if self._rate_limited(section, now):
                return False
            # Only now: a run with nothing due asks the server nothing.
            self._check_profile(section)
            problems = before_ordering(section)
            for problem in problems:
                log.say(f"[{source.name}] Error before ordering: {problem}")
            if problems:
                return False
            for warning in refusal_warnings(section, certificate.key_type(key)):
                log.say(f"[{source.name}] Warning: {warning}")
            csr = certificate.build_csr(section, key)
        except ConfigError as e:  # it names file and section itself
            log.say(f"Error: {e}")
            return False
        except CertificateError as e:
            log.say(f"[{source.name}] Error: {e}")
            return False
        name = section.name
        self.debug(f"[{name}] Will request authorization for: {', '.join(section.identifiers)}")
        state = installed.order_path(section.certificate_paths()[0])
        resume = None if self.args.dry_run else installed.load_order(state, section.identifiers)
        if resume is not None:
            self.info(f"[{name}] Resuming the order an earlier run left: {resume}")
        return Ordering(section, key, csr, replaces, resume, state)

    def _under_way(self, queue: deque[Work]) -> int:
        return sum(1 for work in queue if work.waiting)

    def _parallel_orders(self) -> int:
        """How many orders may be under way: one until an order was placed,
        so that a server down, or an account it does not know, is found
        out by one order, not one for each section."""
        if self.session is None or not self.session.reached:
            return 1
        return self.config.parallel_orders

    def _await(self, queue: deque[Work]) -> None:
        """Wait for one of the orders under way in QUEUE to come to its
        result, or while none was placed yet, for one to be."""

        waiting = {work.request: work for work in queue if work.waiting}
        if self.session is None or not waiting:
            return
        session = self.session
        ids = {key for key in waiting if key is not None}
        request = session.wait(ids) if session.reached else session.wait_or_placed(ids)
        if request is None:
            return
        result = session.result(request)
        if result.status == EXIT_UNREACHABLE:
            self.unreachable = True
        waiting[request].result = result

    def _end_finished(self, queue: deque[Work]) -> bool:
        """End the sections at the head of QUEUE that are no longer under
        way, in order, their messages first; whether one failed."""

        failed = False
        while queue and not queue[0].waiting:
            work = queue.popleft()
            log.release(work.lines)
            ok = work.ok
            if work.ordering is not None and work.result is not None:
                end = self._end_validation if self.args.dry_run else self._end_order
                ok = end(work.ordering, work.result)
                if not ok:
                    self.progress.step(work.name, "failed")
            if (
                work.source is not None
                and not self.args.dry_run
                and not self._notify_pending(work.source)
            ):
                ok = False
            if self.args.json:
                self._report(work, bool(ok))
            failed |= not ok
        return failed

    def _report(self, work: Work, ok: bool) -> None:
        """WORK's section as it ended, one JSON object on a line of stdout
        (newOrder --json): OK, whether it counts as a success; its outcome,
        with the certificate installed or the dry run's validations."""
        report: dict[str, Any] = {"section": work.name, "ok": ok}
        outcome = self._outcomes.pop(work.name, None)
        if outcome is not None:
            report.update(outcome)
        elif work.ordering is not None or not ok:
            report["outcome"] = "failed"
        else:
            report["outcome"] = "skipped"
        sys.stdout.write(json.dumps(report) + "\n")
        sys.stdout.flush()

    def _abandon(self, queue: deque[Work]) -> None:
        """What is left of QUEUE when the run stops short: the messages
        held are shown, and the orders under way kept for the next run."""

        for work in queue:
            log.release(work.lines)
            if work.ordering is None or work.result is not None or self.args.dry_run:
                continue
            url = work.url
            if work.request is not None and self.session is not None:
                url = self.session.url(work.request)
            if url is not None:
                self._keep_order(work.ordering.section, work.ordering.state, url)

    def _end_order(self, ordering: Ordering, result: Result) -> bool:
        """What the order came to: the chain verified and installed, then
        notify; or why not."""

        section, key, name = ordering.section, ordering.key, ordering.section.name
        for message in result.messages:
            log.say(message)
        if result.status != 0:
            log.say(f"[{name}] Error: Couldn't issue X.509 certificate!")
            if result.url is not None:
                self._keep_order(section, ordering.state, result.url)
            if result.status == EXIT_RATE_LIMITED:
                self._record_rate_limit(section, result.output, datetime.datetime.now(datetime.UTC))
            return False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(ordering.state)
        self.progress.step(name, "issued: verifying", detail=True)
        try:
            chain = certificate.parse_chain(result.output)
        except CertificateError as e:  # what came back is no chain
            log.say(f"[{name}] Error: {e}")
            return False
        stale = self._stale(section, chain[0])
        if stale is not None:
            log.say(f"[{name}] Error after issuance: {stale}")
            return False
        try:
            path = certificate.check_chain(chain, key, section, datetime.datetime.now(datetime.UTC))
            self._install(section, path)
        except CertificateError as e:
            self._keep(section, chain, key, e)
            return False
        self.progress.step(name, "installed")
        notified = self._notify(section)
        if notified and section.notify is not None:
            self.progress.step(name, "notified", detail=True)
        return notified

    def _end_validation(self, ordering: Ordering, result: Result) -> bool:
        """What the dry run of ORDERING's section came to: a line per
        identifier and one for the section on stdout, the client's messages
        on stderr; whether every identifier is valid at the CA."""

        section, name = ordering.section, ordering.section.name
        for message in result.messages:
            log.say(message)
        validations: tuple[Validation, ...] = ()
        if result.output:
            try:
                validations = decode_validations(result.output)
            except ContractError as e:
                log.say(f"[{name}] Warning: what the client says it validated is refused: {e}")
        asked = [identifier.lower() for identifier in section.identifiers]

        def position(validation: Validation) -> int:
            value = validation.identifier.partition(":")[2].lower()
            return asked.index(value) if value in asked else len(asked)

        validations = tuple(sorted(validations, key=position))
        lines, failed = dry_run_report(name, section.identifiers, validations, result.status)
        ok = failed is None
        if ok:
            self.progress.step(name, "validated")
        elif failed:
            log.say(f"[{name}] Error: the dry run found what would fail renewal: {failed}")
        if self.args.json:
            self._outcomes[name] = {
                "outcome": "validated" if ok else "failed",
                "validations": [v._asdict() for v in validations],
            }
        else:
            sys.stdout.write("".join(f"{line}\n" for line in lines))
            sys.stdout.flush()
        return ok

    def _stale(self, section: CertSection, leaf: Certificate) -> str | None:
        """Why LEAF, just issued for SECTION, must not replace what is
        installed: older than it (a replay), or revoked by this lacme;
        None if it may."""

        paths = section.certificate_paths()
        for path in paths:
            when = installed.revoked(path, leaf)
            if when is not None:
                revoke = f"`lacme revokeCert {path}`"
                return f"the issued certificate is one lacme revoked ({revoke} {when})"
        try:
            current = certificate.read_certificate(paths[0])
        except CertificateError:
            return None
        if leaf.not_valid_before_utc < current.not_valid_before_utc:
            when = "%Y-%m-%d %H:%M:%S UTC"
            return (
                f"the issued certificate (from {leaf.not_valid_before_utc:{when}}) is older "
                f"than the one installed (from {current.not_valid_before_utc:{when}})"
            )
        return None

    def _keep(
        self,
        section: CertSection,
        chain: list[Certificate],
        key: certificate.ServiceKey,
        error: Exception,
    ) -> None:
        """Keep CHAIN, issued but refused by verification or installation
        (ERROR), for the next run to install (lacme.installed), or else show it:
        the CA has done its work, and its rate limits count it.  A chain that
        is not for the section's key and names was never this order's."""

        name = section.name
        if installed.not_for(section, chain[0], key) is not None:
            log.say(f"[{name}] Error after issuance: {error}")
            return
        path = installed.kept_path(section.certificate_paths()[0])
        try:
            installed.save_kept(path, chain)
        except OSError as e:
            log.say(
                f"[{name}] Error after issuance: {error}; can't keep the certificate "
                f"in {path} ({e.strerror}), so here it is:"
            )
            sys.stderr.write(certificate.pem(chain).decode())
            sys.stderr.flush()
            return
        log.say(
            f"[{name}] Error after issuance: {error}; the certificate is kept in {path}, "
            "for the next run to install"
        )

    def _discard_kept(self, section: CertSection, path: str, reason: str) -> None:
        log.say(f"[{section.name}] Discarding the certificate kept in {path}: {reason}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def _install_kept(
        self, section: CertSection, key: certificate.ServiceKey, now: datetime.datetime
    ) -> bool | None:
        """Install the certificate an earlier run kept (see _keep), as the
        section now is, and notify: whether that worked, or None if there is
        none (any more, a changed configuration discarding it)."""

        name = section.name
        path = installed.kept_path(section.certificate_paths()[0])
        chain, reason = installed.kept_for(section, key, now)
        if reason is not None:
            self._discard_kept(section, path, reason)
        if chain is None:
            return None
        stale = self._stale(section, chain[0])
        if stale is not None:
            self._discard_kept(section, path, stale)
            return None
        self.info(f"[{name}] Installing the certificate an earlier run kept in {path}")
        try:
            self._install(section, certificate.check_chain(chain, key, section, now))
        except CertificateError as e:
            log.say(
                f"[{name}] Error: the certificate kept in {path} can't be installed: {e}; "
                "nothing is ordered until it is, or the file is removed"
            )
            return False
        return self._notify(section)

    def _set_up_challenges(self, stack: ExitStack) -> str:
        """The challenge directory, with webservers serving it (lacme.challenges),
        until STACK closes."""

        www = privdrop.resolve_credentials(
            self.config.webserver.user, self.config.webserver.group, "webserver"
        )
        uid, _ = privdrop.child_ids(www)
        return stack.enter_context(
            challenges.challenge_setup(
                self.config.webserver,
                self.client_credentials,
                www,
                self.args.debug,
                end_orphans=uid not in self.other_uids(),
            )
        )

    def _section(self, source: CertSource) -> CertSection:
        """SOURCE's settings checked (ConfigError)."""

        section = config.parse_section(source)
        if self.args.debug:
            log.say(f"Configuration option for {source.name}:")
            for setting in sorted(source.settings.values()):
                log.say(f"    {setting.key} = {setting.value}")
        return section

    @functools.cached_property
    def server_directory(self) -> dict[str, Any] | None:
        """The ACME server's directory, asked of the client once a run for
        profiles and renewal information; None, after a warning, if that fails."""
        if self.unreachable:
            return None
        status, output = self._look_up(DIRECTORY, [])
        directory = decode_object(output) if status == 0 else None
        if directory is None:
            log.say(
                "Warning: can't get the ACME server's directory: "
                "profiles go unchecked, renewal goes by min-days"
            )
            return None
        return directory

    def _check_profile(self, section: CertSection) -> None:
        """ConfigError unless the server offers the section's profile, if any.
        Without a directory the server is left to judge."""

        if section.profile is None or self.server_directory is None:
            return
        meta = self.server_directory.get("meta")
        profiles = meta.get("profiles") if isinstance(meta, dict) else None
        if not isinstance(profiles, dict):
            profiles = {}
        if section.profile not in profiles:
            raise ConfigError(
                f"{section.filename}: [{section.name}] profile = {section.profile}: "
                "the ACME server offers no such profile "
                f"(it offers: {log.printable(', '.join(sorted(profiles))) or 'none'})"
            )

    def _mismatch(self, section: CertSection, key: certificate.ServiceKey) -> str | None:
        """Why the installed certificate no longer matches SECTION, whose key
        is KEY (lacme.installed); None if it does, or if there is none."""

        try:
            installed_certificate = certificate.read_certificate(section.certificate_paths()[0])
        except CertificateError:
            return None  # none yet, or a broken one: _renewal_due orders
        return installed.mismatch(section, installed_certificate, key)

    def _renewal_due(self, section: CertSection, now: datetime.datetime) -> tuple[bool, str | None]:
        """Whether the section is due for renewal, and the ARI certID of the
        certificate its new order replaces.  The server's renewal
        information decides when it gives some for the installed
        certificate, within lacme.ari's bounds; otherwise min-days does, as
        in lacme 0.8.2."""

        name = section.name
        try:
            cert = certificate.read_certificate(section.certificate_paths()[0])
        except CertificateError:
            cert = None  # none yet, or a broken one: issue
        cert_id = None if cert is None else certificate.ari_cert_id(cert)
        state = None
        if cert is not None and cert_id is not None:
            state = self._renewal_info(section, cert_id, cert.not_valid_after_utc, now)
        if cert is None or cert_id is None or state is None:
            # `replaces` only names a certificate the server said it knows.
            return not self._still_valid(section, now), None
        if state.explanation_url is not None:
            self.info(
                f"[{name}] The CA explains its renewal window at "
                f"{log.printable(state.explanation_url)}"
            )
        when = renewal.WHEN
        window = renewal.window(state)
        expiry = cert.not_valid_after_utc
        schedule = renewal.by_ari(state, cert.not_valid_before_utc, expiry)
        # The window would put renewal off too close to the expiry.
        late = schedule.reason == renewal.ARI_LATEST
        if self.args.min_days != -1 and not schedule.due(now, self.config.renewal_lookahead):
            why = f", {schedule.why}" if late else f" ({window})"
            self.info(f"[{name}] Renewal at {schedule.at:{when}}{why}, skipping")
            return False, cert_id
        if late:
            margin = ari.span(expiry - ari.latest_renewal(cert.not_valid_before_utc, expiry))
            log.say(
                f"[{name}] Warning: renewing before the {window}, which is too late: the "
                f"certificate expires at {expiry:{when}}, and lacme renews {margin} before "
                "that at the latest"
            )
        else:
            self.debug(f"[{name}] Renewing: {window}, chosen time {state.renew_at:{when}}")
        return True, cert_id

    def _ari_offered(self, section: CertSection, cert_id: str, now: datetime.datetime) -> bool:
        """Whether the server offers renewal information, for the certificate
        CERT_ID, as its directory says.  A server without any is remembered
        for a while (lacme.ari), so that a run with nothing due asks it nothing."""

        path = ari.state_path(section.certificate_paths()[0])
        if ari.not_offered(path, cert_id, now):
            return False
        directory = self.server_directory
        if directory is None:
            return False
        if "renewalInfo" in directory:
            return True
        try:
            ari.save_not_offered(path, cert_id, now)
        except OSError as e:
            log.say(f"[{section.name}] Warning: can't save {path}: {e.strerror}")
        return False

    def _renewal_info(
        self, section: CertSection, cert_id: str, expiry: datetime.datetime, now: datetime.datetime
    ) -> ari.State | None:
        """The renewal information (lacme.ari) of the certificate CERT_ID,
        which expires at EXPIRY: as last saved until the server's
        Retry-After has passed, else asked of the client if the server offers
        any; None (after a warning if that fails or the window is refused)
        otherwise."""

        name = section.name
        path = ari.state_path(section.certificate_paths()[0])
        previous = ari.load_state(path, cert_id, expiry)
        if previous is not None and ari.believed(previous, now):
            self.debug(f"[{name}] Renewal information from {path}")
            return previous
        if self.unreachable or not self._ari_offered(section, cert_id, now):
            return None
        status, output = self._look_up(RENEWAL_INFO, [cert_id])
        try:
            if status != 0:
                raise ValueError("the client failed")
            info = ari.renewal_info(decode_renewal_info(output), expiry)
        except ValueError as e:  # ContractError included
            log.say(f"[{name}] Warning: no renewal information ({e}), renewal goes by min-days")
            return None
        state = ari.next_state(previous, cert_id, info, now)
        try:
            ari.save_state(path, state)
        except OSError as e:
            log.say(f"[{name}] Warning: can't save {path}: {e.strerror}")
        return state

    def _still_valid(self, section: CertSection, now: datetime.datetime) -> bool:
        min_days: int | Percent | None = self.args.min_days
        if min_days is None:
            min_days = section.min_days if section.min_days is not None else config.DEFAULT_MIN_DAYS
        expiry = certificate.valid_until(section.certificate_paths()[0], min_days, now)
        if expiry is None:
            return False
        self.info(f"[{section.name}] Valid until {expiry:%Y-%m-%d %H:%M:%S} UTC, skipping")
        return True

    def _order_once(
        self,
        work: Work,
        identifiers: Sequence[str],
        csr: bytes,
        settings: OrderSettings,
        challenges: str,
    ) -> None:
        """WORK's order, by a client of its own (the 0.8.2 contract) working
        in the challenge directory CHALLENGES."""

        announced, channel = os.pipe()
        try:
            status, output = self.run_client(
                identifiers,
                stdin=csr,
                capture=True,
                cwd=challenges,
                order=settings._replace(order_fd=channel),
                extra_fds=(channel,),
            )
        finally:
            os.close(channel)
            work.url = _read_order_url(announced)
            os.close(announced)
        work.result = Result(status, output, (), work.url)

    def _keep_order(self, section: CertSection, state: str, url: str) -> None:
        """Record the order at URL, cut short, for the next run to resume,
        and say so."""

        try:
            installed.save_order(state, url, section.identifiers)
        except OSError as e:
            log.say(f"[{section.name}] Warning: can't save {state}: {e.strerror}")
            return
        self.info(f"[{section.name}] The next run resumes the order {url}")

    def _rate_limited(self, section: CertSection, now: datetime.datetime) -> bool:
        """Whether a rate limit the CA reported for SECTION still holds at
        NOW (lacme.rate_limits), said in one line; --force asks anyway."""

        end = rate_limits.load(rate_limits.state_path(section.certificate_paths()[0]), now)
        if end is None or self.args.min_days == -1:
            return False
        log.say(
            f"[{section.name}] Error: rate limited by the CA until "
            f"{end:%Y-%m-%d %H:%M:%S} UTC, skipping (--force asks anyway)"
        )
        return True

    def _record_rate_limit(
        self, section: CertSection, output: bytes, now: datetime.datetime
    ) -> None:
        """Keep when the rate limit the client reported on OUTPUT ends."""

        name = section.name
        try:
            end = rate_limits.until(now, decode_rate_limit(output))
        except ValueError as e:  # ContractError included
            log.say(f"[{name}] Warning: the client's rate limit is refused: {e}")
            return
        path = rate_limits.state_path(section.certificate_paths()[0])
        try:
            rate_limits.save(path, end)
        except OSError as e:
            log.say(f"[{name}] Warning: can't save {path}: {e.strerror}")
            return
        log.say(
            f"[{name}] Rate limited: the next runs skip this section until "
            f"{end:%Y-%m-%d %H:%M:%S} UTC"
        )

    def _install(self, section: CertSection, chain: Sequence[Certificate]) -> None:
        """Write the verified CHAIN where SECTION says, atomically (CertificateError)."""

        files: list[tuple[str, bytes]] = []
        if section.certificate is not None:
            log.say(f"Installing X.509 certificate {section.certificate}")
            files.append((section.certificate, certificate.pem(chain[:1])))
        if section.certificate_chain is not None:
            log.say(f"Installing X.509 certificate chain {section.certificate_chain}")
            files.append((section.certificate_chain, certificate.pem(chain)))
        certificate.install(files, section.mode, section.owner)
        # What they say is about the certificate just replaced.
        paths = section.certificate_paths()
        for state in (ari.state_path(paths[0]), rate_limits.state_path(paths[0])):
            with contextlib.suppress(OSError):
                os.unlink(state)
        with contextlib.suppress(OSError):
            os.unlink(installed.kept_path(paths[0]))
        for path in paths:
            with contextlib.suppress(OSError):
                os.unlink(installed.revoked_path(path))
        try:
            installed.save_ordered(paths[0], section)
        except OSError as e:
            log.say(f"[{section.name}] Warning: can't save {installed.ordered_path(paths[0])}: {e}")
        if self.args.json:
            self._outcomes[section.name] = {
                "outcome": "installed",
                "certificate": installed_json(section, chain[0]),
            }
            return
        summary = certificate.summary(chain[0])
        sys.stdout.write(f"{certificate.fingerprint(chain[0])}\n[{section.name}] {summary}\n")
        sys.stdout.flush()

    def _notify(self, section: CertSection) -> bool:
        """SECTION's notify command (lacme.notify), its certificate just installed."""
        self._notified.add(section.name)
        return notify.after_install(section, datetime.datetime.now(datetime.UTC))

    def _notify_pending(self, source: CertSource) -> bool:
        """SOURCE's notify command again if still pending from an earlier run
        (lacme.notify), due or not, unless this run notified a new certificate."""
        if source.name in self._notified:
            return True
        try:
            section = config.parse_section(source)
        except ConfigError:
            return True  # _renew said so, and failed
        return notify.again(section, self.info)

    def revoke_cert(self) -> int:
        reason = None if self.args.reason is None else revocation_reason(self.args.reason)
        if reason is None and self.args.reason is not None:
            log.say(
                f"Error: --reason={self.args.reason}: unknown revocation reason (one of "
                + ", ".join(f"{name} ({code})" for name, code in REVOCATION_REASONS.items())
                + ")"
            )
            return 1
        if not self.args.arguments:
            log.say("Error: Nothing to revoke")
            return 1
        status = 0
        for filename in self.args.arguments:
            log.say(f"Revoking {filename}")
            try:
                cert = certificate.read_certificate(filename)
            except CertificateError as e:
                log.say(f"Error: {e}")
                status = 1
                continue
            sys.stdout.write(f"{certificate.fingerprint(cert)}\n{certificate.summary(cert)}\n")
            sys.stdout.flush()
            revoked, _ = self.run_client(
                revoke_arguments(reason),
                stdin=certificate.der(cert),
            )
            if revoked != 0:
                log.say(f"Warning: Couldn't revoke {filename}")
                status = 1
                continue
            # For the next newOrder to replace it, if it is a section's.
            try:
                installed.save_revoked(filename, cert, datetime.datetime.now(datetime.UTC))
            except OSError as e:
                log.say(f"Warning: can't save {installed.revoked_path(filename)}: {e.strerror}")
        return status


def installed_json(section: CertSection, leaf: Certificate) -> dict[str, Any]:
    """What newOrder --json says of LEAF, just installed for SECTION."""
    when = "%Y-%m-%dT%H:%M:%SZ"
    return {
        "certificate": section.certificate,
        "certificateChain": section.certificate_chain,
        "names": list(section.identifiers),
        "subject": leaf.subject.rfc4514_string(),
        "issuer": leaf.issuer.rfc4514_string(),
        "serial": f"{leaf.serial_number:x}",
        "sha256": certificate.sha256_hex(leaf),
        "notBefore": leaf.not_valid_before_utc.strftime(when),
        "notAfter": leaf.not_valid_after_utc.strftime(when),
    }


def dry_run_report(
    name: str, identifiers: Sequence[str], validations: Sequence[Validation], status: int
) -> tuple[list[str], str | None]:
    """The stdout lines of section NAME's dry run, which the client reported
    as VALIDATIONS of the section's IDENTIFIERS with exit STATUS; and the
    identifiers not valid, None if all are ('' if the client said why)."""
    lines = [f"[{name}] {dry_run_line(validation)}" for validation in validations]
    reported = {v.identifier.partition(":")[2].lower() for v in validations}
    failed = [
        *(v.identifier for v in validations if v.outcome not in (VALIDATED, REUSED)),
        *(n for n in identifiers if n.lower() not in reported),
    ]
    nothing = "nothing issued, nothing installed"
    if status == 0 and not failed:
        lines.append(f"[{name}] Dry run: {len(validations)} name(s) valid at the CA; {nothing}")
        return lines, None
    if not validations:  # the client said why
        lines.append(f"[{name}] Dry run failed before any validation; {nothing}")
        return lines, ""
    names = ", ".join(log.printable(identifier) for identifier in failed) or "unknown"
    lines.append(f"[{name}] Dry run failed: not valid: {names}; {nothing}")
    return lines, names


def dry_run_line(validation: Validation) -> str:
    """VALIDATION, which the client reported, for a human."""
    outcome = {
        VALIDATED: "validated by the CA",
        REUSED: "valid already: the CA reused an earlier validation and checked nothing now",
        FAILED: "validation failed",
        UNFINISHED: "not validated",
    }[validation.outcome]
    detail = f": {validation.detail}" if validation.detail else ""
    deactivated = ", authorization deactivated" if validation.deactivated else ""
    return log.printable(f"{validation.identifier}: {outcome}{detail}{deactivated}")


def _read_order_url(fd: int) -> str | None:
    """The order URL the client wrote on the pipe FD (lacme.client_contract),
    if it wrote one.  Without waiting: the client has exited, and whatever
    it left behind may hold the pipe open."""
    os.set_blocking(fd, False)
    try:
        data = os.read(fd, MAX_ORDER_URL + 1)
    except BlockingIOError:
        return None
    if not data:
        return None
    try:
        return decode_order_url(data)
    except ContractError as e:
        log.say(f"Warning: the client's order URL is refused: {e}")
        return None


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # Once: a second signal must not cut the unwinding short.
    for other in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(other, signal.SIG_IGN)
    raise Interrupted(signum)


def run(parsed: Arguments) -> int:
    """The command PARSED, with the stop signals turned into Interrupted."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    try:
        privdrop.adopt_orphans()
        conf = config.load(parsed.config, parsed.socket)
        if parsed.debug:
            log.say(f"Using configuration file: {conf.path}")
        master = Master(parsed, conf)
        access.check(conf, parsed.command, master.client_credentials)
        commands: dict[str, Callable[[], int]] = {
            ACCOUNT: master.account,
            NEW_ORDER: master.new_order,
            REVOKE_CERT: master.revoke_cert,
        }
        return commands[parsed.command]()
    except (ConfigError, SpawnError, CertificateError, OSError) as e:
        # accountd has said why already, in one line.
        if not isinstance(e, accountd_link.AccountdFailed) or not e.reported or parsed.debug:
            log.say(f"Error: {e}")
        if parsed.debug:
            traceback.print_exception(e)
        return 1
    except Interrupted as e:
        log.say(f"{NAME}: interrupted by {signal.Signals(e.signum).name}")
        return 1
