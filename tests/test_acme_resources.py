"""ACME resources as typed records (lacme.acme_resources): what a server
sends is parsed once, and each way it can be wrong is refused by name."""

from __future__ import annotations

from typing import Any

import pytest

from lacme.acme_http import AcmeError
from lacme.acme_resources import Authorization, Directory, Order

pytestmark = pytest.mark.unit

AUTHZ = {
    "identifier": {"type": "dns", "value": "a.example"},
    "status": "invalid",
    "challenges": [
        {"type": "dns-01", "url": "https://ca/c/1", "token": "t1"},
        {
            "type": "http-01",
            "url": "https://ca/c/2",
            "token": "t2",
            "error": {"type": "urn:ietf:params:acme:error:connection", "detail": "refused"},
        },
        "not a challenge",
    ],
}


def test_directory() -> None:
    obj: dict[str, Any] = {
        "newNonce": "https://ca/nonce",
        "meta": {"termsOfService": "https://ca/tos", "externalAccountRequired": True},
    }
    directory = Directory.parse("https://ca/dir", obj)
    assert directory.resource("newNonce") == "https://ca/nonce"
    assert directory.terms_of_service == "https://ca/tos"
    assert directory.external_account_required
    assert directory.object is obj


@pytest.mark.parametrize("obj", [{}, {"newOrder": 5}, {"meta": {"newOrder": "x"}}])
def test_directory_without_the_resource(obj: dict[str, Any]) -> None:
    with pytest.raises(
        AcmeError, match=r"^the directory https://ca/dir has no 'newOrder' resource$"
    ):
        Directory.parse("https://ca/dir", obj).resource("newOrder")


def test_authorization() -> None:
    authz = Authorization.parse(AUTHZ)
    assert authz.identifier == "dns:a.example"
    assert authz.status == "invalid"
    assert authz.http_01().token == "t2"
    (problem,) = authz.problems().subproblems
    assert str(problem) == "dns:a.example: connection: refused"


def test_wildcard_authorization() -> None:
    # RFC 8555 section 7.1.4: the domain name, with `wildcard` set.
    authz = Authorization.parse(
        {
            "identifier": {"type": "dns", "value": "a.example"},
            "status": "pending",
            "challenges": [{"type": "dns-01", "url": "https://ca/c/1", "token": "t1"}],
            "wildcard": True,
        }
    )
    assert authz.identifier == "dns:*.a.example"
    with pytest.raises(AcmeError, match=r"^no http-01 challenge offered for dns:\*\.a\.example$"):
        authz.http_01()


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"status": "pending"}, "the server sent an authorization without identifier"),
        ({**AUTHZ, "challenges": None}, "without a list of challenges"),
        ({**AUTHZ, "challenges": [{"type": "dns-01"}]}, "no http-01 challenge offered for dns:a"),
    ],
)
def test_authorization_refusals(obj: dict[str, Any], message: str) -> None:
    with pytest.raises(AcmeError, match=message):
        Authorization.parse(obj).http_01()


def test_order() -> None:
    order = Order.parse(
        {
            "status": "valid",
            "authorizations": ["https://ca/a/1"],
            "finalize": "https://ca/o/1/finalize",
            "certificate": "https://ca/cert/1",
            "error": {"type": "urn:ietf:params:acme:error:malformed", "detail": "x"},
        }
    )
    assert order.authorization_urls() == ("https://ca/a/1",)
    assert order.finalize_url() == "https://ca/o/1/finalize"
    assert order.certificate_url() == "https://ca/cert/1"
    assert order.error is not None
    assert order.error.detail == "x"


def test_order_fields_asked_for_but_missing() -> None:
    order = Order.parse({"status": "processing"})
    assert order.status == "processing"
    with pytest.raises(
        AcmeError, match=r"^the server sent an order without a list of authorizations$"
    ):
        order.authorization_urls()
    with pytest.raises(AcmeError, match=r"^the server sent no valid finalize URL of the order$"):
        order.finalize_url()
    with pytest.raises(AcmeError, match=r"^the server sent no valid certificate URL of the order$"):
        order.certificate_url()


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"authorizations": [5]}, "no valid authorization URL"),
        ({"authorizations": [""]}, "no valid authorization URL"),
        ({"finalize": ["x"]}, "no valid finalize URL of the order"),
        ({"certificate": ""}, "no valid certificate URL of the order"),
    ],
)
def test_order_refusals(obj: dict[str, Any], message: str) -> None:
    with pytest.raises(AcmeError, match=message):
        Order.parse(obj)
