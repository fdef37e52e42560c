"""lacme-accountd: the account key manager.

Holds the account's private key, and the CA's external account binding
HMAC key if configured, and nothing else of value.  It reads its
configuration file and the key files (or what gpg(1) decrypts for it),
appends to its log file, and talks on one UNIX-domain socket it binds, or on
stdin/stdout when lacme spawns it (locally or through `ssh -T`).  Once the
key is loaded and the socket listening, it confines itself
(lacme.confinement): it reads nothing but its interpreter's files, opens no
other file (but removes its socket's on the way out), connects and binds no
TCP port and starts no program.  It never touches the network: it signs the
JWS signing inputs an ACME client sends it, after checking that each is an
RFC 8555 request for its key, and logs every request.  The key never leaves this process.
"""

import errno
import io
import itertools
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, NamedTuple, NoReturn, TextIO

from lacme import __version__, cli, inifile, specifiers, strict
from lacme.accountd_protocol import (
    MAX_LINE,
    Binding,
    Greeting,
    ProtocolError,
    SigningRequest,
    encode_signature,
    parse_signing_request,
)
from lacme.log import say
from lacme.parsing import yes_no
from lacme.socket_directory import InsecureDirectory, check_socket_directory

if TYPE_CHECKING:  # the real import waits until the options are parsed: --help stays fast
    from lacme.accountkey import AccountKey

NAME = "lacme-accountd"
DEFAULT_CONFIG = "%E/lacme/lacme-accountd.conf"
DEFAULT_SOCKET = "%t/S.lacme"
DEFAULT_GPG = "gpg --quiet"
CONFIG_KEYS = (
    "privkey",
    "gpg",
    "socket",
    "logfile",
    "keyid",
    "quiet",
    "eab-kid",
    "eab-hmac-key",
    "eab-alg",
    "confinement",
)
DEFAULT_EAB_ALG = "HS256"


class AccountdError(Exception):
    """An error that stops lacme-accountd; the message is the one line shown."""


class Stopped(BaseException):
    """Raised by the SIGINT/SIGTERM/SIGHUP handler to unwind and clean up."""


class Log:
    """Messages to stderr by level, and to the log file whatever --quiet says."""

    INFO, VERBOSE, DEBUG = 0, 1, 2

    def __init__(self, level: int) -> None:
        self.level = level
        self.file: TextIO | None = None

    def wants(self, level: int) -> bool:
        return level <= self.level or (self.file is not None and level <= self.VERBOSE)

    def emit(self, level: int, message: str) -> None:
        if self.file is not None and (level <= self.VERBOSE or level <= self.level):
            stamp = time.strftime("%a %b %e %H:%M:%S %Y")
            self.file.write(f"[{stamp}] {message}\n")
            self.file.flush()
        if level <= self.level:
            say(message)

    def info(self, message: str) -> None:
        self.emit(self.INFO, message)

    def verbose(self, message: str) -> None:
        self.emit(self.VERBOSE, message)

    def debug(self, message: str) -> None:
        self.emit(self.DEBUG, message)


USAGE = (
    f"Usage: {NAME} [--config=FILE] [--privkey=ARG] [--socket=PATH] [--stdio] "
    "[-q|--quiet] [--debug]"
)
HELP = f"""{USAGE}

lacme's account key manager: signs the ACME requests of lacme's client,
keeping the account key in this process.

Options:
  --config=FILE    configuration file (default {DEFAULT_CONFIG})
  --privkey=ARG    account key: file:PATH (PEM) or gpg:PATH (gpg-encrypted PEM)
  --socket=PATH    UNIX-domain socket to bind (default {DEFAULT_SOCKET})
  --stdio          serve one client on stdin/stdout (how lacme spawns it)
  -q, --quiet      be quiet
  --debug          turn on debug messages
  -h, --help       show this help and exit
  --version        show the version and exit

Consult the manpage lacme-accountd(1) for more information.
"""


class Options(NamedTuple):
    config: str | None
    privkey: str | None
    socket: str | None
    stdio: bool
    quiet: bool | None  # None: as the configuration file says
    debug: bool


def parse_args(argv: list[str]) -> Options:
    """The options, or exit after --help, --version or a usage error."""
    try:
        scanned = cli.scan(
            argv,
            value_options=("config", "privkey", "socket"),
            flag_options=("stdio", "quiet", "debug", "help", "version"),
            short_flags={"q": "quiet", "h": "help"},
        )
        if scanned.positional:
            raise cli.UsageError(f"unexpected argument: {scanned.positional[0]}")
    except cli.UsageError as e:
        say(f"{NAME}: {e} (try '{NAME} --help')")
        sys.exit(1)
    if "help" in scanned.flags:
        sys.stdout.write(HELP)
        sys.exit(0)
    if "version" in scanned.flags:
        sys.stdout.write(f"{NAME} (lacme) {__version__}\n")
        sys.exit(0)
    return Options(
        config=scanned.last("config"),
        privkey=scanned.last("privkey"),
        socket=scanned.last("socket"),
        stdio="stdio" in scanned.flags,
        quiet=True if "quiet" in scanned.flags else None,
        debug="debug" in scanned.flags,
    )


class AccountdSettings(NamedTuple):
    privkey: str
    gpg: str
    socket: str | None
    keyid: str | None
    quiet: bool
    # External account binding: (HS256/384/512, key identifier, HMAC key file).
    eab: tuple[str, str, str] | None = None
    confinement: bool = True


def _yes_no(value: str, where: str, default: bool = False) -> bool:
    try:
        return yes_no(value, default)
    except ValueError as e:
        raise AccountdError(f"{where}: {e}, not {value!r}") from None


def load_settings(args: Options, log: Log) -> AccountdSettings:
    """Merge the configuration file and the command line (which wins)."""
    path = specifiers.expand(args.config if args.config is not None else DEFAULT_CONFIG)
    sections: inifile.Sections = {}
    if args.config is not None or os.path.exists(path):
        log.debug(f"Using configuration file: {path}")
        try:
            # Its gpg runs as whoever runs accountd, root when the master spawns it.
            problem = strict.problem(path)
            if problem is not None:
                raise AccountdError(f"configuration file {path}: refused: {problem}")
            sections = inifile.read(path)
        except OSError as e:
            raise AccountdError(f"can't read configuration file {path}: {e.strerror}") from None
        except inifile.IniError as e:
            raise AccountdError(str(e)) from None
    else:
        log.debug(f"Ignoring missing configuration file at default location {path}")

    values = sections.pop(inifile.DEFAULT_SECTION, {})
    if logfile := values.get("logfile"):
        # Opened before anything else is checked, so that errors get logged too.
        logfile = specifiers.expand(logfile)
        try:
            log.file = open(logfile, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as we do
        except OSError as e:
            raise AccountdError(f"can't open log file {logfile}: {e.strerror}") from None
    for section, keys in sections.items():
        if section == "accountd":
            # lacme.conf's section, copied over with the privkey lacme 0.8 moved here.
            raise AccountdError(
                f"{path}: [accountd] is lacme.conf's section: remove that line here, "
                f"and these keys then come before any section ({', '.join(keys) or 'none'})"
            )
        raise AccountdError(f"{path}: unknown section [{section}] (all keys go before any section)")
    for key in values:
        if key not in CONFIG_KEYS:
            raise AccountdError(f"{path}: unknown key {key!r}")

    quiet = (
        args.quiet if args.quiet is not None else _yes_no(values.get("quiet", ""), f"{path}: quiet")
    )
    privkey = args.privkey if args.privkey is not None else values.get("privkey")
    if not privkey:
        raise AccountdError(f"no account key: set 'privkey' in {path} or use --privkey=")
    eab: tuple[str, str, str] | None = None
    eab_kid, eab_key = values.get("eab-kid"), values.get("eab-hmac-key")
    if eab_kid or eab_key:
        if not (eab_kid and eab_key):
            raise AccountdError(f"{path}: eab-kid and eab-hmac-key go together")
        eab = (values.get("eab-alg") or DEFAULT_EAB_ALG, eab_kid, specifiers.expand(eab_key))
    return AccountdSettings(
        privkey=privkey,
        gpg=values.get("gpg") or DEFAULT_GPG,
        socket=args.socket if args.socket is not None else values.get("socket") or None,
        keyid=values.get("keyid") or None,
        quiet=quiet,
        eab=eab,
        confinement=_yes_no(values.get("confinement", ""), f"{path}: confinement", True),
    )


def load_account_key(privkey: str, gpg: str, log: Log) -> "AccountKey":
    from lacme import accountkey

    method, _, path = privkey.partition(":")
    if method not in ("file", "gpg") or not path:
        raise AccountdError(f"unsupported privkey {privkey!r}: expected file:PATH or gpg:PATH")
    path = specifiers.expand(path)
    try:
        if method == "file":
            return accountkey.load_file(path, warn=log.info)
        return accountkey.load_gpg(path, gpg)
    except accountkey.AccountKeyError as e:
        raise AccountdError(str(e)) from None


def load_eab(alg: str, kid: str, path: str) -> tuple[Binding, Callable[[bytes], bytes]]:
    from lacme import accountkey

    try:
        return Binding(alg, kid), accountkey.load_eab_signer(path, alg)
    except accountkey.AccountKeyError as e:
        raise AccountdError(str(e)) from None


class RequestSigner:
    """What every conversation shares: the key, the greeting and the log."""

    def __init__(
        self,
        key: "AccountKey",
        keyid: str | None,
        log: Log,
        eab: tuple[Binding, Callable[[bytes], bytes]] | None = None,
    ) -> None:
        self.key = key
        self.log = log
        self.binding: Binding | None = None if eab is None else eab[0]
        self.mac: Callable[[bytes], bytes] | None = None if eab is None else eab[1]
        self.greeting = Greeting(
            alg=key.alg, jwk_thumbprint=key.thumbprint, kid=keyid, jwk=key.jwk, eab=self.binding
        ).encode()

    def answer(self, line: bytes, conn_id: str) -> bytes | None:
        """The answer to one request line (with its line feed), or None to
        refuse it, which ends the conversation."""
        try:
            request = parse_signing_request(line, self.key.alg, jwk=self.key.jwk, eab=self.binding)
        except ProtocolError as e:
            self.log.info(f"[{conn_id}] NOSIGN [{e}]")
            return None
        signature = self.sign(request)
        if self.log.wants(Log.VERBOSE):
            self.log.verbose(f"[{conn_id}] SIGNED {request.describe()}")
        return encode_signature(signature)

    def sign(self, request: SigningRequest) -> bytes:
        """The signature of a request parse_signing_request let through: an
        external account binding with the HMAC key, anything else with the
        account key."""
        if not request.binding:
            return self.key.sign(request.signing_input)
        if self.mac is None:
            # Unreachable: parse_signing_request lets a binding through only
            # with our EAB key.  Never the account key instead: it signs only
            # what was checked as a request for it.
            raise RuntimeError("external account binding to sign, but no EAB key")
        return self.mac(request.signing_input)


def _stop(signum: int, frame: FrameType | None) -> NoReturn:
    raise Stopped


def check_socket_path(path: str) -> None:
    """Refuse a socket where others could replace it, or where one exists."""
    try:
        check_socket_directory(path)
    except InsecureDirectory as e:
        raise AccountdError(
            f"insecure permissions on {e.directory} (mode {e.mode:04o}): "
            "it must not be writable by group or others"
        ) from None
    except OSError as e:
        raise AccountdError(f"can't stat socket directory {e.filename}: {e.strerror}") from None
    if os.path.lexists(path):
        raise AccountdError(f"{path} already exists (is another {NAME} running? if not, remove it)")


class _Conversation:
    """One client on the socket, served without blocking the others: a slow
    or idle client only ever holds its own buffers."""

    def __init__(self, conn: socket.socket, conn_id: str, signer: RequestSigner) -> None:
        self.conn = conn
        self.conn_id = conn_id
        self.signer = signer
        self.received = bytearray()
        self.unsent = bytearray(signer.greeting)
        # False after EOF or a refused line: answers already due still go out.
        self.reading = True
        self.interest = selectors.EVENT_READ

    def on_readable(self) -> None:
        data = self.conn.recv(1 << 16)
        if not data:
            self.reading = False
            return
        self.received += data
        while self.reading:
            end = self.received.find(b"\n")
            if end < 0:
                if len(self.received) > MAX_LINE:
                    self.signer.answer(bytes(self.received), self.conn_id)  # logs the refusal
                    self.reading = False
                return
            line = bytes(self.received[: end + 1])
            del self.received[: end + 1]
            answer = self.signer.answer(line, self.conn_id)
            if answer is None:
                self.reading = False
            else:
                self.unsent += answer

    def on_writable(self) -> None:
        sent = self.conn.send(self.unsent)
        del self.unsent[:sent]


def serve_socket(
    path: str, signer: RequestSigner, listening: Callable[[], None] = lambda: None
) -> None:
    """Serve clients on a UNIX-domain socket until a signal, once LISTENING
    is called; the socket file is removed on the way out.  One thread multiplexes every connection:
    signing holds the interpreter lock anyway, and no client can hold up
    another since no socket operation blocks."""
    log = signer.log
    check_socket_path(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bound: os.stat_result | None = None
    selector = selectors.DefaultSelector()
    try:
        saved_umask = os.umask(0o177)
        try:
            listener.bind(path)
            bound = os.stat(path)
        except OSError as e:
            raise AccountdError(f"can't bind {path}: {e.strerror}") from None
        finally:
            os.umask(saved_umask)
        listener.listen(128)
        listener.setblocking(False)
        selector.register(listener, selectors.EVENT_READ)
        log.verbose(f"Starting lacme Account Key Manager at {path}")
        listening()
        _Server(selector, listener, signer).run()
    except Stopped:
        pass
    finally:
        # Only remove the file if it is still the socket we bound.
        if bound is not None:
            try:
                now = os.lstat(path)
                if (now.st_dev, now.st_ino) == (bound.st_dev, bound.st_ino):
                    log.debug(f"Unlinking {path}")
                    os.unlink(path)
            except FileNotFoundError:
                pass
        for key in list(selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        listener.close()  # out of the selector while accepting is paused
        selector.close()
        log.verbose("Shutting down and closing lacme Account Key Manager")


# accept(2) short of a file descriptor or of memory fails again at once for
# as long as nothing is freed: rather than spin, the listener rests this many
# seconds, or until one of our conversations ends and frees its own.
ACCEPT_PAUSE = 1.0
SHORT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class _Server:
    """The event loop: the listener and every conversation, none of which
    can stop it or hold up the others; what goes wrong with one connection,
    whatever the peer sent, ends that connection only, with a line in the log."""

    def __init__(
        self, selector: selectors.BaseSelector, listener: socket.socket, signer: RequestSigner
    ) -> None:
        self.selector = selector
        self.listener = listener
        self.signer = signer
        self.log = signer.log
        self.count = itertools.count()
        self.resume_at: float | None = None  # while accepting is paused
        # Logged once, until a connection is accepted again: a failure that
        # lasts is one line, not one a second.
        self.accept_failure: int | None = None

    def run(self) -> NoReturn:
        while True:
            timeout = None
            if self.resume_at is not None:
                timeout = max(0.0, self.resume_at - time.monotonic())
            for key, events in self.selector.select(timeout):
                if key.fileobj is self.listener:
                    self.accept()
                else:
                    self.step(key.data, events)
            if self.resume_at is not None and time.monotonic() >= self.resume_at:
                self.resume_accepting()

    def accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return
        except OSError as e:
            self.accept_failed(e)
            return
        self.accept_failure = None
        self.accept_conversation(conn)

    def accept_conversation(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        conversation = _Conversation(conn, str(next(self.count)), self.signer)
        self.log.verbose(f"[{conversation.conn_id}] Accepted new connection")
        try:
            self.selector.register(conn, conversation.interest, conversation)
        except OSError as e:
            # epoll(7) short of memory, or of watches (ENOSPC): as accept(2)
            # short of resources, this connection is dropped.
            conn.close()
            self.accept_failed(e, "watching a new connection")
            return
        self.step(conversation, 0)  # the greeting goes out at once

    def accept_failed(self, e: OSError, what: str = "accept") -> None:
        pause = e.errno in SHORT_OF_RESOURCES
        if e.errno != self.accept_failure:
            self.accept_failure = e.errno
            then = (
                f"not accepting connections for {ACCEPT_PAUSE:g} s or until one closes"
                if pause
                else "connection dropped"
            )
            self.log.info(f"Error: {what}: {e.strerror or e}: {then}")
        if pause:
            self.selector.unregister(self.listener)
            self.resume_at = time.monotonic() + ACCEPT_PAUSE

    def resume_accepting(self) -> None:
        if self.resume_at is not None:
            self.resume_at = None
            self.selector.register(self.listener, selectors.EVENT_READ)

    def step(self, conversation: _Conversation, events: int) -> None:
        try:
            if events & selectors.EVENT_READ:
                conversation.on_readable()
            if conversation.unsent:
                conversation.on_writable()
        except BlockingIOError:
            pass
        except OSError as e:
            self.drop(conversation, f"connection lost: {e.strerror or e}")
        except Exception as e:
            # A bug of ours that some input reaches: a refusal like any other
            # for this peer, and nothing for the others.
            self.drop(conversation, f"NOSIGN [internal error: {type(e).__name__}: {e}]")
        if not conversation.reading and not conversation.unsent:
            self.selector.unregister(conversation.conn)
            conversation.conn.close()
            self.log.verbose(f"[{conversation.conn_id}] Connection terminated")
            self.resume_accepting()
            return
        # A client that sends without reading is not read from until it catches up.
        readable = conversation.reading and len(conversation.unsent) < MAX_LINE
        interest = (selectors.EVENT_READ if readable else 0) | (
            selectors.EVENT_WRITE if conversation.unsent else 0
        )
        if interest != conversation.interest:
            conversation.interest = interest
            self.selector.modify(conversation.conn, interest, conversation)

    def drop(self, conversation: _Conversation, why: str) -> None:
        self.log.info(f"[{conversation.conn_id}] {why}")
        conversation.reading = False
        conversation.unsent.clear()


def _write_all(wfile: io.FileIO, data: bytes) -> None:
    while data:
        data = data[wfile.write(data) :]


def serve_stdio(signer: RequestSigner) -> None:
    """One conversation on stdin/stdout, as lacme spawns accountd (possibly
    through `ssh -T`, which makes them two pipes)."""
    conn_id = str(os.getpid())
    # Unbuffered: what a vanished peer did not take is not written again,
    # with a traceback, when the file is closed.
    with open(0, "rb", closefd=False) as rfile, open(1, "wb", 0, closefd=False) as wfile:
        try:
            _write_all(wfile, signer.greeting)
            while line := rfile.readline(MAX_LINE + 1):
                answer = signer.answer(line, conn_id)
                if answer is None:
                    return
                _write_all(wfile, answer)
        except OSError as e:
            raise AccountdError(f"conversation on stdin/stdout lost: {e.strerror or e}") from None


def run(args: Options, log: Log) -> None:
    # From here on a signal unwinds through every cleanup (terminal echo,
    # socket file) instead of killing the process where it stands.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop)
    settings = load_settings(args, log)
    if not args.debug:
        log.level = Log.INFO if settings.quiet else Log.VERBOSE
    signer = RequestSigner(
        load_account_key(settings.privkey, settings.gpg, log),
        settings.keyid,
        log,
        None if settings.eab is None else load_eab(*settings.eab),
    )
    if args.stdio:
        confine(settings, log)
        serve_stdio(signer)
    else:
        path = specifiers.expand(settings.socket or DEFAULT_SOCKET)
        serve_socket(path, signer, lambda: confine(settings, log, os.path.dirname(path)))


def confine(settings: AccountdSettings, log: Log, socket_directory: str | None = None) -> None:
    """From here on (lacme.confinement): reading the interpreter's files
    only, for a late import; removing files in SOCKET_DIRECTORY only (its
    socket, on the way out); no TCP, no signal or abstract socket outside,
    no execve."""
    from lacme import confinement

    policy = confinement.Policy(
        read=confinement.interpreter_paths(),
        remove=() if socket_directory is None else (socket_directory,),
    )
    try:
        report = confinement.confine(NAME, policy, settings.confinement, "confinement = No")
    except confinement.ConfinementError as e:
        raise AccountdError(f"can't confine lacme-accountd: {e} (see confinement)") from None
    log.debug(f"confinement: {report}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    log = Log(Log.DEBUG if args.debug else Log.VERBOSE)
    try:
        run(args, log)
    except (AccountdError, specifiers.SpecifierError) as e:
        log.info(f"{NAME}: {e}")
        return 1
    except Stopped:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
