"""lacme.webserver_contract: what the master encodes, the webserver decodes
back, and every refusal.  The processes on either side are tested in
tests/test_challenges.py (the master's) and tests/test_webserver.py."""

import os
import re
import socket

import pytest

from lacme import webserver_contract
from lacme.webserver_contract import TOKEN_ALPHABET, USAGE, valid_token

pytestmark = pytest.mark.unit

NOT_LISTENING = "is not a listening stream socket"
COMMANDS = [
    ["/usr/libexec/lacme/webserver"],
    ["/usr/bin/python3", "-I", "-m", "lacme.webserver"],
]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("fd", [0, 3, 7, 10, 1023, 65536])
def test_argv_round_trip(command: list[str], fd: int) -> None:
    argv = webserver_contract.argv(command, fd)
    # What Perl lacme 0.8.2's master and webserver expect: FD last, in decimal.
    assert argv == [*command, str(fd)]
    assert webserver_contract.parse_argv(argv[len(command) :]) == (fd, True)


@pytest.mark.parametrize("command", COMMANDS)
def test_argv_round_trip_unconfined(command: list[str]) -> None:
    argv = webserver_contract.argv(command, 5, confined=False)
    assert argv == [*command, "--unconfined", "5"]
    assert webserver_contract.parse_argv(argv[len(command) :]) == (5, False)


@pytest.mark.parametrize(
    "args",
    [
        *([], [""], ["x"], ["3", "4"], ["-1"], ["+3"], [" 3"], ["3\n"], ["0x3"], ["3.0"]),
        *(["\u0663"], ["--unconfined"], ["3", "--unconfined"], ["--unconfined", "--unconfined"]),
    ],
)
def test_parse_argv_refusals(args: list[str]) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(USAGE)}$"):
        webserver_contract.parse_argv(args)


@pytest.mark.parametrize(
    ("family", "address"),
    [(socket.AF_INET, ("127.0.0.1", 0)), (socket.AF_INET6, ("::1", 0)), (socket.AF_UNIX, "")],
)
def test_listener_round_trip(family: socket.AddressFamily, address: str | tuple[str, int]) -> None:
    """The master's listening socket, by its number, is the webserver's."""
    with socket.socket(family, socket.SOCK_STREAM) as listening:
        listening.bind(address)  # "": an abstract UNIX address of the kernel's choosing
        listening.listen()
        fd = os.dup(listening.fileno())  # what the webserver inherits
        [fd_arg] = webserver_contract.argv([], fd)
        with webserver_contract.listener(webserver_contract.parse_argv([fd_arg])[0]) as decoded:
            assert decoded.fileno() == fd
            assert decoded.family == family
            assert decoded.getsockname() == listening.getsockname()


def test_listener_refusals() -> None:
    read_end, write_end = os.pipe()
    with socket.socket() as unbound, socket.socket(type=socket.SOCK_DGRAM) as datagram:
        datagram.bind(("127.0.0.1", 0))
        for fd, message in [
            (read_end, f"file descriptor {read_end}: Socket operation on non-socket"),
            (unbound.fileno(), f"file descriptor {unbound.fileno()} {NOT_LISTENING}"),
            (datagram.fileno(), f"file descriptor {datagram.fileno()} {NOT_LISTENING}"),
        ]:
            with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
                webserver_contract.listener(fd)
            os.fstat(fd)  # a refusal leaves it open: it is the caller's
    os.close(read_end)
    os.close(write_end)
    message = f"file descriptor {read_end}: Bad file descriptor"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        webserver_contract.listener(read_end)


@pytest.mark.parametrize("debug", [True, False])
def test_environment_round_trip(debug: bool) -> None:
    environment = webserver_contract.environment(debug)
    # As lacme 0.8.2's master: DEBUG is always there, 1 or 0.
    assert environment == {"DEBUG": "1" if debug else "0"}
    assert webserver_contract.debug({"PATH": "/usr/bin:/bin", **environment}) is debug


@pytest.mark.parametrize(
    ("environ", "debug"),
    [({}, False), ({"DEBUG": ""}, False), ({"DEBUG": "0"}, False), ({"DEBUG": "yes"}, True)],
)
def test_debug_beyond_what_the_master_sends(environ: dict[str, str], debug: bool) -> None:
    assert webserver_contract.debug(environ) is debug


@pytest.mark.parametrize(
    "token",
    ["a", "Zm9v-YmFy_42", "-", "_", TOKEN_ALPHABET, "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"],
)
def test_valid_tokens(token: str) -> None:
    assert valid_token(token)
    assert valid_token(token.encode("ascii"))


@pytest.mark.parametrize(
    "token",
    [
        "",
        ".",
        "..",
        "a/b",
        "/etc/passwd",
        "a\0",
        "a\n",
        "a b",
        "a.b",
        "YQ==",  # padded
        "a+b",  # base64, not base64url
        "%2e%2e",
        "\u00e9t\u00e9",
        "\uff41",  # a fullwidth letter
        "\u0663",  # a non-ASCII digit
    ],
)
def test_invalid_tokens(token: str) -> None:
    assert not valid_token(token)
    assert not valid_token(token.encode())


def test_token_alphabet_is_base64url() -> None:
    assert len(TOKEN_ALPHABET) == len(set(TOKEN_ALPHABET)) == 64
    assert all(valid_token(bytes([byte])) for byte in TOKEN_ALPHABET.encode())
    assert [byte for byte in range(256) if valid_token(bytes([byte]))] == sorted(
        TOKEN_ALPHABET.encode()
    )
