"""What the ACME server sends is data (issue 13): its text is escaped
wherever it is shown, its URLs must be https://, its JSON nests a bounded
depth, and its orders have a bounded number of authorizations.

Unit tests of each piece, and the client run against the hand-made hostile
server for a Location and a `server` setting that are http://.  The red
team's attacks, through the master against Pebble behind the fault proxy,
are in tests/test_red_team.py."""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator
from http.client import HTTPMessage
from pathlib import Path

import pytest

import lacme
from lacme.acme import AcmeSession
from lacme.acme_http import (
    MAX_JSON_DEPTH,
    AcmeError,
    Patience,
    Problem,
    Response,
    Target,
    check_https,
    parse_json,
)
from lacme.acme_resources import MAX_IDENTIFIERS, Order
from lacme.log import printable
from lacme.master import format_account
from lacme.webserver import printable as printable_bytes
from support.accountd import fake_accountd
from support.commands import run_client
from support.hostile import HOSTILE_TEXT, SHOWN_TEXT, HostileServer

CSR = b"0\x82not really a CSR"
ERROR = f"lacme-client {lacme.__version__}: error: "


# -- Units ------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (HOSTILE_TEXT, SHOWN_TEXT),
        ("\x00\x1f\x7f", "\\x00\\x1f\\x7f"),  # C0, DEL
        ("\x85\x9b2J", "\\x85\\x9b2J"),  # C1: NEL, CSI
        ("a\ud800b", "a\\ud800b"),  # a lone surrogate: JSON's "\ud800"
        (b"\xff\xc3\xa9".decode("utf-8", "surrogateescape"), "\\xffé"),  # not UTF-8
        ("\u202egnp.exe", "\\u202egnp.exe"),  # a bidirectional override
        ("\u2028", "\\u2028"),
    ],
)
def test_printable_escapes(text: str, shown: str) -> None:
    assert printable(text) == shown
    assert printable(shown) == shown  # escaped once, escaped no further


@pytest.mark.unit
@pytest.mark.parametrize("text", ["", "mailto:admin@example.test", "détail ünicode", "C:\\x"])
def test_printable_keeps_what_is_printable(text: str) -> None:
    assert printable(text) == text


@pytest.mark.unit
def test_webserver_log_shares_the_escaping() -> None:
    assert printable_bytes(b"GET /\x1b[31m\xff \xc3\xa9") == "GET /\\x1b[31m\\xff é"


@pytest.mark.unit
def test_problem_escaped() -> None:
    problem = Problem.from_json(
        {
            "type": "urn:ietf:params:acme:error:malformed\x1b[2J",
            "detail": HOSTILE_TEXT,
            "instance": "https://ca.test/\n",
            "subproblems": [
                {"detail": HOSTILE_TEXT, "identifier": {"type": "dns", "value": "a\x07"}},
            ],
        }
    )
    assert str(problem) == (
        f"malformed\\x1b[2J: {SHOWN_TEXT}\n  instance: https://ca.test/\\n\n"
        f"  dns:a\\x07: {SHOWN_TEXT}"
    )


@pytest.mark.unit
def test_error_escaped_unless_shown() -> None:
    error = AcmeError(f"POST {HOSTILE_TEXT}", notes=[f"help: {HOSTILE_TEXT}"])
    assert str(error) == f"POST {SHOWN_TEXT}\n  help: {SHOWN_TEXT}"
    again = AcmeError(f"giving up: {error}", shown=True)
    assert str(again) == f"giving up: POST {SHOWN_TEXT}\n  help: {SHOWN_TEXT}"


@pytest.mark.unit
def test_format_account_escaped() -> None:
    account = {"status": "valid\x1b[2J", "contact": [HOSTILE_TEXT], "orders": "https://o\r"}
    assert format_account(account) == (
        f"Status:   valid\\x1b[2J\nContact:  {SHOWN_TEXT}\nOrders:   https://o\\r\n"
    )


@pytest.mark.unit
def test_json_depth_bounded() -> None:
    deepest = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert parse_json(deepest.encode()) == json.loads(deepest)
    # Brackets in strings are no nesting, escaped quotes no end of string.
    assert parse_json(b'{"a": "[[[[\\"[[[[' + b"[" * 100 + b'"}') == {"a": '[[[["[[[[' + "[" * 100}
    with pytest.raises(ValueError, match=f"nested deeper than {MAX_JSON_DEPTH} levels"):
        parse_json(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1))
    with pytest.raises(ValueError, match="nested deeper"):
        parse_json(b'{"a":' * 100000)


def response(body: bytes, status: int = 200, media: str = "application/json") -> Response:
    headers = HTTPMessage()
    headers["Content-Type"] = media
    return Response("GET", "https://ca.test/dir", status, headers, body)


@pytest.mark.unit
def test_deep_json_refused_with_one_line() -> None:
    with pytest.raises(AcmeError) as refused:
        response(b"[" * 100000).json()
    assert str(refused.value) == (
        f"GET https://ca.test/dir: body is not JSON (nested deeper than {MAX_JSON_DEPTH} levels)"
    )
    problem = response(b"[" * 100000, 400, "application/problem+json").problem()
    assert problem is not None
    assert (
        problem.detail
        == f"problem document is not JSON (nested deeper than {MAX_JSON_DEPTH} levels)"
    )


@pytest.mark.unit
@pytest.mark.parametrize(
    "url", ["http://ca.test/acct", "HTTP://ca.test/", "ftp://ca.test/", "/relative", "ca.test"]
)
def test_not_https_refused(url: str) -> None:
    with pytest.raises(AcmeError) as refused:
        check_https("POST", url)
    assert str(refused.value) == (
        f"POST {url}: refusing a URL that is not https:// (RFC 8555 section 6.1); nothing was sent"
    )


@pytest.mark.unit
def test_invalid_url_refused() -> None:
    with pytest.raises(AcmeError, match=r"^POST https://\[::1: "):
        check_https("POST", "https://[::1")


@pytest.mark.unit
@pytest.mark.parametrize(
    ("url", "message"),
    [
        # urlsplit would drop them: what is sent is what was shown.
        ("https://ca.test/a\nb", "a control character in the URL"),
        ("\x01https://ca.test/", "a control character in the URL"),
        ("https://ca.test:99999/", "Port out of range 0-65535"),
        ("https:///acct", "no host in the URL"),
    ],
)
def test_malformed_url_refused(url: str, message: str) -> None:
    with pytest.raises(AcmeError) as refused:
        check_https("POST", url)
    assert str(refused.value) == f"POST {printable(url)}: {message}"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("https://ca.test/acct", Target("ca.test", 443, "/acct")),
        ("HTTPS://CA.test:8443/a?b", Target("ca.test", 8443, "/a?b")),
        ("https://ca.test", Target("ca.test", 443, "/")),
        ("https://[::1]:14000/dir", Target("::1", 14000, "/dir")),
        # Escapes kept, what is not ASCII or reserved escaped, the host as IDNA.
        (
            "https://bücher.test/a b/%2F/é?x=1 2#f",
            Target("xn--bcher-kva.test", 443, "/a%20b/%2F/%C3%A9?x=1%202"),
        ),
    ],
)
def test_https_taken(url: str, target: Target) -> None:
    assert check_https("POST", url) == target


def order(authorizations: int) -> dict[str, object]:
    return {
        "status": "pending",
        "authorizations": [f"https://ca.test/a/{i}" for i in range(authorizations)],
    }


@pytest.mark.unit
def test_authorizations_bounded() -> None:
    assert len(Order.parse(order(MAX_IDENTIFIERS)).authorization_urls()) == MAX_IDENTIFIERS
    with pytest.raises(AcmeError) as refused:
        Order.parse(order(3000))
    assert str(refused.value) == (
        f"the server sent an order with 3000 authorizations, "
        f"more than the {MAX_IDENTIFIERS} names an order may have"
    )


def refuse_to_sign(signing_input: bytes) -> str:
    raise AssertionError("nothing is signed")


@pytest.mark.unit
def test_identifiers_bounded() -> None:
    names = [f"n{i}.example.test" for i in range(MAX_IDENTIFIERS + 1)]
    with (
        AcmeSession(
            "https://ca.test/dir",
            context=ssl.create_default_context(),
            sign=refuse_to_sign,
            alg="ES256",
            jwk={},
            thumbprint="",
            kid="https://ca.test/acct/1",
            patience=Patience(1),
            warn=print,
        ) as session,
        pytest.raises(AcmeError) as refused,
    ):
        session.new_order(names)
    assert str(refused.value) == (
        f"refusing to order {MAX_IDENTIFIERS + 1} names: an order may have "
        f"{MAX_IDENTIFIERS} at most"
    )


# -- Against the hand-made hostile server -------------------------------------


def new_order(settings: dict[str, object], workdir: Path) -> tuple[int, str, str]:
    with fake_accountd() as accountd:
        result = run_client(
            "newOrder",
            "a.example.test",
            settings=settings,
            accountd=accountd,
            stdin=CSR,
            cwd=workdir,
        )
    return result.returncode, result.stdout.decode(), result.stderr.decode(errors="surrogateescape")


def json_answer(
    obj: object, status: int = 200, **headers: str
) -> tuple[int, str, bytes, dict[str, str]]:
    return status, "application/json", json.dumps(obj).encode(), headers


@pytest.fixture
def plain_http() -> Iterator[socket.socket]:
    """A plain-HTTP listener: once the client has exited, a connection it
    made waits in the backlog."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        yield listener


def connected(listener: socket.socket) -> bool:
    try:
        listener.accept()[0].close()
    except BlockingIOError:
        return False
    return True


@pytest.mark.process
def test_http_location_refused(
    hostile: HostileServer, workdir: Path, plain_http: socket.socket
) -> None:
    url = f"http://127.0.0.1:{plain_http.getsockname()[1]}/order/1"
    order = {"status": "pending", "authorizations": [], "finalize": f"{hostile.base}/finalize"}
    hostile.overrides["/new-order"] = json_answer(order, 201, Location=url)
    status, _, err = new_order(hostile.settings(), workdir)
    assert status == 1
    assert err.endswith(
        f"{url}: refusing a URL that is not https:// (RFC 8555 section 6.1); nothing was sent\n"
    )
    assert len(err.splitlines()) == 1
    assert not connected(plain_http)


@pytest.mark.process
def test_http_server_setting_refused(workdir: Path, plain_http: socket.socket) -> None:
    url = f"http://127.0.0.1:{plain_http.getsockname()[1]}/dir"
    status, _, err = new_order({"server": url}, workdir)
    assert status == 1
    assert err == (
        f"{ERROR}GET {url}: refusing a URL that is not https:// (RFC 8555 section 6.1); "
        "nothing was sent\n"
    )
    assert not connected(plain_http)
