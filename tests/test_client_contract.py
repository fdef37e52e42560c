"""The master↔client codec (lacme.client_contract): what one side encodes the
other decodes as it was, and what the contract does not allow is refused."""

from __future__ import annotations

import json

import pytest

from lacme.client_contract import (
    ACCOUNT,
    CLIENT_KEYS,
    DEFAULT_SERVER,
    DEFAULT_TIMEOUT,
    MASTER_KEYS,
    NEW_ORDER,
    OUTCOMES,
    AccountChange,
    ClientSettings,
    ContractError,
    Invocation,
    OrderSettings,
    RenewalInfoAnswer,
    Validation,
    client_argv,
    decode_object,
    decode_order_url,
    decode_rate_limit,
    decode_renewal_info,
    decode_settings,
    decode_validations,
    encode_object,
    encode_order_url,
    encode_rate_limit,
    encode_renewal_info,
    encode_settings,
    encode_validations,
    parse_account_arguments,
    parse_argv,
    parse_directory_arguments,
    parse_key_change_arguments,
    parse_new_order_arguments,
    parse_renewal_info_arguments,
    parse_revoke_arguments,
    revoke_arguments,
    split_chain,
)

pytestmark = pytest.mark.unit

PEM = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"


def test_argv_round_trip() -> None:
    invocation = Invocation(NEW_ORDER, 7, 8, ("a.example", "192.0.2.1"))
    argv = client_argv(["/usr/bin/python3", "-I", "-m", "lacme.client"], invocation)
    program = ["/usr/bin/python3", "-I", "-m", "lacme.client"]
    assert argv == [*program, "newOrder", "7", "8", "a.example", "192.0.2.1"]
    assert parse_argv(argv[4:]) == invocation


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["newOrder", "7"],
        ["frobnicate", "7", "8"],
        ["account", "x", "8"],
        ["account", "7", "-8"],
        ["--unconfined"],
        ["--unconfined", "--unconfined", "account", "7", "8"],
        ["account", "--unconfined", "7", "8"],
    ],
)
def test_argv_refusals(argv: list[str]) -> None:
    with pytest.raises(
        ContractError,
        match=r"^\[--unconfined\] \{account,.*\} CONFIG_FD SOCKET_FD \[ARGUMENT \.\.\.\]$",
    ):
        parse_argv(argv)


def test_unconfined_comes_before_the_command() -> None:
    # What a [client] command ending with it gives, under any master.
    assert parse_argv(["--unconfined", "account", "7", "8", "1"]) == Invocation(
        ACCOUNT, 7, 8, ("1",), confined=False
    )
    assert parse_argv(["account", "7", "8", "--unconfined"]).confined is True


@pytest.mark.parametrize(
    "change",
    [
        AccountChange(),
        AccountChange(register=True, tos_agreed=True, contacts=("mailto:a@example",)),
        AccountChange(deactivate=True),
    ],
)
def test_account_arguments_round_trip(change: AccountChange) -> None:
    assert parse_account_arguments(change.arguments()) == change


def test_account_flags_are_lacme_0_8_2s() -> None:
    change = AccountChange(register=True, tos_agreed=True, deactivate=True, contacts=("c",))
    assert change.arguments() == ("7", "c")


@pytest.mark.parametrize("reason", [None, 0, 4, 10])
def test_revoke_arguments_round_trip(reason: int | None) -> None:
    assert parse_revoke_arguments(revoke_arguments(reason)) == reason


@pytest.mark.parametrize(
    ("parse", "arguments", "usage"),
    [
        (parse_account_arguments, [], "usage: account FLAGS [CONTACT ...]"),
        (parse_account_arguments, ["x"], "usage: account FLAGS [CONTACT ...]"),
        (parse_new_order_arguments, [], "usage: newOrder DOMAIN ..."),
        (
            parse_revoke_arguments,
            ["1", "2"],
            "usage: revokeCert [REASON] (the certificate on stdin)",
        ),
        (parse_revoke_arguments, ["-1"], "usage: revokeCert [REASON] (the certificate on stdin)"),
        (parse_key_change_arguments, [], "usage: keyChange NEW_SOCKET_FD"),
        (parse_key_change_arguments, ["fd"], "usage: keyChange NEW_SOCKET_FD"),
        (parse_directory_arguments, ["x"], "usage: directory"),
        (parse_renewal_info_arguments, [], "usage: renewalInfo CERTID"),
    ],
)
def test_argument_refusals(parse: object, arguments: list[str], usage: str) -> None:
    assert callable(parse)
    with pytest.raises(ContractError) as refused:
        parse(arguments)
    assert str(refused.value) == usage


def test_settings_round_trip() -> None:
    client = dict.fromkeys((*MASTER_KEYS, *CLIENT_KEYS), None) | {
        "server": "https://ca.example/dir",
        "timeout": "12.5",
        "SSL_verify": "No",
        "SSL_CAfile": "/ca.pem",
        "SSL_version": "TLSv1_2",
        "SSL_cipher_list": "HIGH",
        "command": "/usr/libexec/lacme/client",
    }
    order = OrderSettings("ISRG Root X1", "shortlived", "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE")
    assert decode_settings(encode_settings(client, order)) == ClientSettings(
        server="https://ca.example/dir",
        timeout=12.5,
        verify=False,
        cafile="/ca.pem",
        tls_version="TLSv1_2",
        cipher_list="HIGH",
        order=order,
    )


def test_confinement_setting_is_yes_or_no() -> None:
    assert decode_settings(b'{"confinement": "No"}').confinement is False
    assert decode_settings(b'{"confinement": "yes"}').confinement is True
    assert decode_settings(b"{}").confinement is True
    with pytest.raises(ContractError, match="confinement = off: expected Yes or No"):
        decode_settings(b'{"confinement": "off"}')


def test_settings_unset_are_null_but_no_unset_cafile_as_lacme_0_8_2() -> None:
    encoded = json.loads(encode_settings(dict.fromkeys((*MASTER_KEYS, *CLIENT_KEYS), None)))
    left_out = ("SSL_CAfile", "confinement")
    assert encoded == dict.fromkeys((*MASTER_KEYS, *set(CLIENT_KEYS) - set(left_out)), None)
    assert decode_settings(json.dumps(encoded).encode()) == ClientSettings(
        server=DEFAULT_SERVER, timeout=DEFAULT_TIMEOUT, verify=True
    )


def test_settings_encoder_refuses_what_is_no_client_key() -> None:
    with pytest.raises(ValueError, match="not \\[client\\] keys: profile"):
        encode_settings({"profile": "x"})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{", "^not JSON: "),
        (b"[]", "^not a JSON object$"),
        (b'{"server": ["a"]}', "^setting server is not a string$"),
        (b'{"SSL_ca_path": "/x"}', r"^unknown setting\(s\) in \[client\]: SSL_ca_path$"),
        (b'{"timeout": "soon"}', "^timeout is not a number of seconds: 'soon'$"),
        (b'{"timeout": "-1"}', "^timeout is not a number of seconds: '-1'$"),
        (b'{"timeout": "nan"}', "^timeout is not a number of seconds: 'nan'$"),
    ],
)
def test_settings_refusals(data: bytes, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        decode_settings(data)


def test_object_round_trip() -> None:
    account = {"status": "valid", "contact": ["mailto:a@example"], "orders": "https://ca/o"}
    assert decode_object(encode_object(account)) == account
    # As lacme 0.8.2 prints it: indented, keys sorted, a final newline.
    assert encode_object({"b": 1, "a": 2}) == b'{\n  "a": 2,\n  "b": 1\n}\n'


@pytest.mark.parametrize("output", [b"", b"  \n", b"<html>", b"[1]", b'"valid"'])
def test_no_object(output: bytes) -> None:
    assert decode_object(output) is None


@pytest.mark.parametrize("retry_after", [None, 21600.0, 0.5])
def test_renewal_info_round_trip(retry_after: float | None) -> None:
    answer = RenewalInfoAnswer({"suggestedWindow": {"start": "a", "end": "b"}}, retry_after)
    assert decode_renewal_info(encode_renewal_info(answer)) == answer


@pytest.mark.parametrize(
    ("output", "retry_after"),
    [
        (b'{"renewalInfo": {}, "retryAfter": "60"}', None),
        (b'{"renewalInfo": {}, "retryAfter": true}', None),
    ],
)
def test_renewal_info_retry_after_not_a_number_is_none(output: bytes, retry_after: None) -> None:
    assert decode_renewal_info(output).retry_after is retry_after


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (b"<html>", "^not JSON: "),
        (b"[]", "^no renewalInfo object$"),
        (b'{"renewalInfo": []}', "^no renewalInfo object$"),
    ],
)
def test_renewal_info_refusals(output: bytes, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        decode_renewal_info(output)


def test_chain_split() -> None:
    second = PEM.replace(b"AAAA", b"BBBB")
    assert split_chain(b"\n" + PEM + second.replace(b"\n", b"\r\n") + b"\n") == [
        PEM.strip(),
        second.strip().replace(b"\n", b"\r\n"),
    ]


@pytest.mark.parametrize(
    "output",
    [
        b"",
        b"<html>certificate</html>",
        PEM + b"trailing garbage",
        PEM.replace(b"AAAA", b"AA!A"),
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ],
)
def test_chain_refusals(output: bytes) -> None:
    with pytest.raises(ContractError, match=r"^not a PEM certificate chain$"):
        split_chain(output)


def test_account_command_name() -> None:
    assert parse_argv([ACCOUNT, "3", "4", "1"]).arguments == ("1",)


def test_an_empty_server_stays_empty() -> None:
    # Not the default server: the client then says it can't use it.
    assert decode_settings(b'{"server": ""}').server == ""


@pytest.mark.parametrize("retry_after", [0.0, 3600.0, 0.5])
def test_rate_limit_round_trip(retry_after: float) -> None:
    assert decode_rate_limit(encode_rate_limit(retry_after)) == retry_after


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (b"-----BEGIN CERTIFICATE-----", "^not JSON: "),
        (b"[]", "^no rateLimited.retryAfter number of seconds$"),
        (b'{"rateLimited": 60}', "^no rateLimited.retryAfter"),
        (b'{"rateLimited": {"retryAfter": "60"}}', "^no rateLimited.retryAfter"),
        (b'{"rateLimited": {"retryAfter": true}}', "^no rateLimited.retryAfter"),
        (b'{"rateLimited": {"retryAfter": -1}}', "^no rateLimited.retryAfter"),
        (b'{"rateLimited": {"retryAfter": NaN}}', "^no rateLimited.retryAfter"),
        (b'{"rateLimited": {"retryAfter": Infinity}}', "^no rateLimited.retryAfter"),
    ],
)
def test_rate_limit_refusals(output: bytes, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        decode_rate_limit(output)


def test_resume_and_order_fd_round_trip() -> None:
    order = OrderSettings(resume="https://ca.test/order/7", order_fd=5)
    assert decode_settings(encode_settings({}, order)).order == order


@pytest.mark.parametrize("value", ['"5"', "-1", "true", "1.5"])
def test_order_fd_refused(value: str) -> None:
    with pytest.raises(ContractError, match=r"^order-fd is not a file descriptor: "):
        decode_settings(f'{{"order-fd": {value}}}'.encode())


def test_order_url_round_trip() -> None:
    url = "https://ca.test/acme/order/1/2"
    assert decode_order_url(encode_order_url(url)) == url


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"https://ca.test/order/1",  # no end of line
        b"https://ca.test/order/1\nhttps://ca.test/order/2\n",
        b"file:///etc/shadow\n",
        b"https://ca.test/order 1\n",
        b"https://ca.test/\xc3\xa9\n",
        b"https://ca.test/" + b"a" * 2048 + b"\n",
    ],
)
def test_order_url_refused(data: bytes) -> None:
    with pytest.raises(ContractError, match=r"^not an order URL line: "):
        decode_order_url(data)


def test_validations_round_trip() -> None:
    validations = tuple(
        Validation(f"dns:{outcome}.example.test", outcome, "why" * (outcome != "validated"), True)
        for outcome in OUTCOMES
    )
    assert decode_validations(encode_validations(validations)) == validations
    assert decode_validations(encode_validations(())) == ()


def _validations(*items: object) -> bytes:
    return json.dumps({"validations": list(items)}).encode()


GOOD = {"identifier": "dns:a.test", "outcome": "validated", "detail": "", "deactivated": True}


@pytest.mark.parametrize(
    ("output", "refusal"),
    [
        (b"", "not JSON"),
        (b"[]", "no list of at most 100 validations"),
        (json.dumps({"validations": {}}).encode(), "no list"),
        (_validations(*[GOOD] * 101), "no list of at most 100"),
        (_validations([]), "not an object of identifier, outcome, detail, deactivated"),
        (_validations({**GOOD, "extra": 1}), "not an object of"),
        (_validations({k: v for k, v in GOOD.items() if k != "detail"}), "not an object of"),
        (_validations({**GOOD, "identifier": ""}), "an identifier is not a string"),
        (_validations({**GOOD, "identifier": "d" * 301}), "an identifier is not a string"),
        (_validations({**GOOD, "identifier": 1}), "an identifier is not a string"),
        (_validations({**GOOD, "outcome": "issued"}), "unknown validation outcome: 'issued'"),
        (_validations({**GOOD, "detail": None}), "a validation detail is not a string"),
        (_validations({**GOOD, "detail": "x" * 4097}), "a validation detail is not a string"),
        (_validations({**GOOD, "deactivated": 1}), "deactivated is not true or false"),
    ],
)
def test_validations_refused(output: bytes, refusal: str) -> None:
    with pytest.raises(ContractError, match=refusal):
        decode_validations(output)
