"""RFC 8555 resources as typed records, each parsed once from the JSON the
server sent: the directory (section 7.1.1), orders (7.1.3), authorizations
(7.1.4) and challenges (7.1.5, 8).  Parsing refuses a field of the wrong type; a field the server
may leave out until it matters (an order's certificate URL until it is
valid, say) is None until then, and asking for it refuses its absence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lacme.acme_http import AcmeError, Problem

# Let's Encrypt's most names per certificate, hence per order; an order
# with more authorizations (a file each) is a hostile server's.
MAX_IDENTIFIERS = 100


def text(value: Any, what: str) -> str:
    """VALUE if it is a non-empty string; AcmeError naming WHAT otherwise."""
    if not isinstance(value, str) or not value:
        raise AcmeError(f"the server sent no valid {what}")
    return value


def _optional_text(value: Any, what: str) -> str | None:
    return None if value is None else text(value, what)


def _problem(value: Any) -> Problem | None:
    return None if value is None else Problem.from_json(value)


@dataclass(frozen=True)
class Directory:
    """The directory at URL: its resources' URLs and the meta fields lacme reads;
    OBJECT is what the server sent, which `lacme.client directory` prints."""

    url: str
    object: dict[str, Any]
    resources: dict[str, str]
    terms_of_service: str | None
    external_account_required: bool

    @classmethod
    def parse(cls, url: str, obj: dict[str, Any]) -> Directory:
        meta = obj.get("meta")
        meta = meta if isinstance(meta, dict) else {}
        tos = meta.get("termsOfService")
        return cls(
            url=url,
            object=obj,
            resources={name: value for name, value in obj.items() if isinstance(value, str)},
            terms_of_service=tos if isinstance(tos, str) else None,
            external_account_required=meta.get("externalAccountRequired") is True,
        )

    def resource(self, name: str) -> str:
        url = self.resources.get(name)
        if url is None:
            raise AcmeError(f"the directory {self.url} has no {name!r} resource")
        return url


@dataclass(frozen=True)
class Challenge:
    type: str | None
    url: str | None
    token: str | None
    status: str | None
    error: Problem | None

    @classmethod
    def parse(cls, obj: Any) -> Challenge | None:
        """OBJ's challenge; None if OBJ is no JSON object."""
        if not isinstance(obj, dict):
            return None
        kind = obj.get("type")
        token = obj.get("token")
        url = obj.get("url")
        status = obj.get("status")
        return cls(
            type=kind if isinstance(kind, str) else None,
            url=url if isinstance(url, str) and url else None,
            token=token if isinstance(token, str) and token else None,
            status=status if isinstance(status, str) else None,
            error=_problem(obj.get("error")),
        )


@dataclass(frozen=True)
class Authorization:
    identifier: str  # "type:value"
    status: str | None
    challenges: tuple[Challenge, ...] | None  # None: the server sent no list

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Authorization:
        identifier = obj.get("identifier")
        if not isinstance(identifier, dict):
            raise AcmeError("the server sent an authorization without identifier")
        status = obj.get("status")
        challenges = obj.get("challenges")
        # RFC 8555 section 7.1.4: a wildcard's authorization is for the
        # domain name, with `wildcard` set; it is named as it was ordered.
        wildcard = "*." if obj.get("wildcard") is True else ""
        return cls(
            identifier=f"{identifier.get('type')}:{wildcard}{identifier.get('value')}",
            status=status if isinstance(status, str) else None,
            challenges=(
                None
                if not isinstance(challenges, list)
                else tuple(c for c in map(Challenge.parse, challenges) if c is not None)
            ),
        )

    def http_01(self) -> Challenge:
        """Its http-01 challenge (the only type lacme answers)."""
        if self.challenges is None:
            raise AcmeError(
                f"the server sent an authorization for {self.identifier} "
                "without a list of challenges"
            )
        challenge = next((c for c in self.challenges if c.type == "http-01"), None)
        if challenge is None:
            raise AcmeError(f"no http-01 challenge offered for {self.identifier}")
        return challenge

    def problems(self) -> Problem:
        """The errors of its challenges, as subproblems for its identifier."""
        problem = Problem(type="about:blank", detail="")
        for challenge in self.challenges or ():
            if challenge.error is not None:
                challenge.error.identifier = self.identifier
                problem.subproblems.append(challenge.error)
        return problem


@dataclass(frozen=True)
class Order:
    status: str | None
    authorizations: tuple[str, ...] | None  # None: the server sent no list
    finalize: str | None
    certificate: str | None
    error: Problem | None

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Order:
        status = obj.get("status")
        authorizations = obj.get("authorizations")
        if isinstance(authorizations, list) and len(authorizations) > MAX_IDENTIFIERS:
            raise AcmeError(
                f"the server sent an order with {len(authorizations)} authorizations, "
                f"more than the {MAX_IDENTIFIERS} names an order may have"
            )
        return cls(
            status=status if isinstance(status, str) else None,
            authorizations=(
                None
                if not isinstance(authorizations, list)
                else tuple(text(url, "authorization URL") for url in authorizations)
            ),
            finalize=_optional_text(obj.get("finalize"), "finalize URL of the order"),
            certificate=_optional_text(obj.get("certificate"), "certificate URL of the order"),
            error=_problem(obj.get("error")),
        )

    def authorization_urls(self) -> tuple[str, ...]:
        if self.authorizations is None:
            raise AcmeError("the server sent an order without a list of authorizations")
        return self.authorizations

    def finalize_url(self) -> str:
        return text(self.finalize, "finalize URL of the order")

    def certificate_url(self) -> str:
        return text(self.certificate, "certificate URL of the order")
