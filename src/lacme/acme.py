"""The ACME (RFC 8555) conversation: resources and the issuance flow, over
lacme.acme_http's transport, signing through a callback (lacme.jws).

`AcmeSession` holds what an ACME conversation needs and nothing secret: the
transport (one keep-alive connection, the current nonce, the patience of
the `timeout` setting), the
directory, the account's public JWK or Key ID, a `sign` callback that turns
a JWS signing input into a signature (lacme's client asks accountd for it),
and a `warn` callback for what the user should know but does not stop it.

Resources and states are named as in RFC 8555 (and certbot's acme library):
directory, newNonce, newAccount, newOrder, authorization, challenge,
finalize, certificate, revokeCert, keyChange; orders go pending -> ready ->
processing -> valid, or invalid.  The inner JWS of keyChange and of an
external account binding are signed through callbacks too: accountd holds
the new key and the HMAC key, never this process.
"""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from lacme import jws
from lacme.accountd_protocol import b64url_encode
from lacme.acme_http import (
    ERROR_NS,
    JSON,
    MAX_BODY,
    MAX_CERTIFICATE_BODY,
    PEM_CHAIN,
    AcmeError,
    AcmeTimeout,
    Patience,
    Problem,
    Response,
    Trace,
    Transport,
)
from lacme.acme_resources import MAX_IDENTIFIERS, Authorization, Directory, Order, text
from lacme.client_contract import FINALIZING, VALIDATING
from lacme.jws import Signer
from lacme.log import printable
from lacme.parsing import is_ip_address
from lacme.webserver_contract import valid_token

# Polling orders that give no Retry-After: quick at first (Pebble and
# Boulder usually validate or issue within a second), then slower.
POLL_INITIAL = 0.1
POLL_MAX = 2.0
# The first look at an order being processed: Pebble issues a few
# milliseconds after finalize, and a CA that takes longer costs one request.
POLL_SOON = 0.01
# RFC 9773 section 4.1: base64url(AKI keyIdentifier) "." base64url(serial);
# it goes into a URL path, so nothing else.
CERT_ID = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
# Refusals of a newOrder's `replaces` that say nothing against `replaces`
# itself: ordering again without it would be refused the same way.
# The server knows no account of the key, and what to do then.
ACCOUNT_DOES_NOT_EXIST = ERROR_NS + "accountDoesNotExist"
NO_ACCOUNT = "no account for this key; register one with `lacme account --register`"
KEEPS_REPLACES = frozenset({ERROR_NS + "rateLimited", ERROR_NS + "badNonce"})

# provision(token, key authorization): publish an http-01 key authorization
Provision = Callable[[str, str], None]
# progress(step): the order waits at STEP (lacme.client_contract STEPS)
Progress = Callable[[str], None]
# fetched(seconds): wait up to SECONDS for the server to fetch every key
# authorization published; whether it has.
Fetched = Callable[[float], bool]


class AcmeSession:
    """One ACME conversation with the server whose directory is `directory_url`.

    `jwk` (may be empty when accountd only knows the Key ID), its RFC 7638
    `thumbprint` and `kid` are the account's; `sign` returns the base64url
    signature of a signing input made with `alg`.  Use as a context manager to close the connection.
    The orders of a client session each have one, sharing the `directory`
    one of them fetched and the connections (`transport`) others are done with.
    """

    def __init__(
        self,
        directory_url: str,
        *,
        context: ssl.SSLContext,
        sign: Signer,
        alg: str,
        jwk: dict[str, Any],
        thumbprint: str,
        kid: str | None,
        patience: Patience,
        warn: Callable[[str], None],
        trace: Trace | None = None,
        eab: tuple[str, str] | None = None,
        directory: Directory | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.directory_url = directory_url
        self.transport = Transport(context, patience, trace) if transport is None else transport
        self.sign = sign
        self.alg = alg
        self.jwk = jwk
        self.thumbprint = thumbprint
        self.kid = kid
        self.patience = patience
        self.trace = trace
        self.warn = warn
        # (alg, kid) of the external account binding `sign` makes, if any.
        self.eab = eab
        self._directory = directory

    def __enter__(self) -> AcmeSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.transport.close()

    # -- HTTP ---------------------------------------------------------------

    def _request(
        self,
        method: str,
        url: str,
        *,
        payload: dict[str, Any] | None = None,
        signed: bool = False,
        use_jwk: bool = False,
        limit: int = MAX_BODY,
        accept: str = JSON,
    ) -> Response:
        """A request, signed if `signed` (POST-as-GET when `payload` is None)."""
        body = (lambda: self._jws(url, payload, use_jwk)) if signed else None
        return self.transport.request(method, url, body=body, limit=limit, accept=accept)

    def _jws(self, url: str, payload: dict[str, Any] | None, use_jwk: bool) -> bytes:
        """A flattened JWS (RFC 7515 section 7.2.2) as RFC 8555 section 6.2 wants."""
        nonce = self.transport.take_nonce() or self.new_nonce()
        header: dict[str, Any] = {"alg": self.alg, "nonce": nonce, "url": url}
        if use_jwk:
            if not self.jwk:
                raise AcmeError(
                    "accountd sent an empty JWK (it has a Key ID configured) "
                    "but this request must carry the account key"
                )
            header["jwk"] = self.jwk
        elif self.kid is None:
            raise AcmeError("no account Key ID to sign with")
        else:
            header["kid"] = self.kid
        if self.trace:
            self.trace(f">>> {json.dumps(header)} {'' if payload is None else json.dumps(payload)}")
        return json.dumps(jws.sign(header, payload, self.sign)).encode()

    def post(
        self,
        url: str,
        payload: dict[str, Any] | None = None,
        *,
        use_jwk: bool = False,
        limit: int = MAX_BODY,
        accept: str = JSON,
    ) -> Response:
        """A signed POST; `payload` None makes it a POST-as-GET."""
        return self._request(
            "POST", url, payload=payload, signed=True, use_jwk=use_jwk, limit=limit, accept=accept
        )

    # -- Resources ----------------------------------------------------------

    @property
    def directory(self) -> Directory:
        if self._directory is None:
            obj = self._request("GET", self.directory_url).json()
            self._directory = Directory.parse(self.directory_url, obj)
        return self._directory

    def resource(self, name: str) -> str:
        return self.directory.resource(name)

    def terms_of_service(self) -> str | None:
        return self.directory.terms_of_service

    def new_nonce(self) -> str:
        """A fresh nonce from newNonce (RFC 8555 section 7.2)."""
        response = self._request("HEAD", self.resource("newNonce"))
        response.check()
        nonce = self.transport.take_nonce()
        if nonce is None:
            raise AcmeError(f"HEAD {response.url}: no Replay-Nonce")
        return nonce

    def new_account(self, payload: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """newAccount; sets `kid`.  Returns the account and whether it is new (201).
        A registration carries the external account binding, if there is one."""
        url = self.resource("newAccount")
        if not payload.get("onlyReturnExisting"):
            if self.eab is not None:
                alg, eab_kid = self.eab
                payload = {
                    **payload,
                    "externalAccountBinding": self._inner_jws(
                        {"alg": alg, "kid": eab_kid, "url": url}, self.jwk, self.sign
                    ),
                }
            elif self.directory.external_account_required:
                raise AcmeError(
                    f"{self.directory_url} requires an external account binding: "
                    "set eab-kid and eab-hmac-key in lacme-accountd.conf"
                )
        response = self.post(url, payload, use_jwk=True)
        account = response.json()
        self.kid = response.location
        return account, response.status == 201

    def find_account(self) -> str | None:
        """The account Key ID (looked up with onlyReturnExisting unless known),
        or None if the key has no account."""
        if self.kid is None:
            response = self.post(
                self.resource("newAccount"), {"onlyReturnExisting": True}, use_jwk=True
            )
            problem = response.problem()
            if problem is not None and problem.type == ACCOUNT_DOES_NOT_EXIST:
                return None
            response.check()
            self.kid = response.location
        return self.kid

    def key_change(self, alg: str, jwk: dict[str, Any], thumbprint: str, sign: Signer) -> None:
        """Move the account to the key JWK (with its THUMBPRINT), which SIGN
        signs for with ALG (RFC 8555 section 7.3.5); from then on the session
        uses that key."""
        url = self.resource("keyChange")
        kid = self.account_kid()
        if not self.jwk:
            raise AcmeError(
                "accountd sent an empty JWK (it has a Key ID configured), "
                "but a key change must name the old key"
            )
        inner = self._inner_jws(
            {"alg": alg, "jwk": jwk, "url": url}, {"account": kid, "oldKey": self.jwk}, sign
        )
        response = self.post(url, inner)
        # A resent keyChange whose first attempt went through is refused: the
        # old key signs for the account no more.  So is one whose new key
        # has an account (409, RFC 8555 section 7.3.5): maybe ours, moved by
        # an earlier run that never heard the answer.  The new key knows.
        moved = (
            response.status >= 400
            and (response.resent or response.status == 409)
            and self._kid_of(alg, jwk, sign) == kid
        )
        if not moved:
            response.check()
        elif self.trace:
            self.trace(f"!!! {response.error()}; but the account has the new key")
        self.alg, self.jwk, self.thumbprint, self.sign = alg, jwk, thumbprint, sign

    def _kid_of(self, alg: str, jwk: dict[str, Any], sign: Signer) -> str | None:
        """The Key ID of the account whose key is JWK (signed for by SIGN
        with ALG), if there is one."""
        key = self.alg, self.jwk, self.sign
        self.alg, self.jwk, self.sign = alg, jwk, sign
        try:
            response = self.post(
                self.resource("newAccount"), {"onlyReturnExisting": True}, use_jwk=True
            )
        finally:
            self.alg, self.jwk, self.sign = key
        return response.location if response.status < 400 else None

    def _inner_jws(
        self, header: dict[str, Any], payload: dict[str, Any], sign: Signer
    ) -> dict[str, str]:
        """A nonce-less JWS carried in a request's payload (RFC 8555 sections 7.3.4, 7.3.5)."""
        if self.trace:
            self.trace(f">>> inner {json.dumps(header)} {json.dumps(payload)}")
        return jws.sign(header, payload, sign)

    def account_kid(self) -> str:
        kid = self.find_account()
        if kid is None:
            raise AcmeError(NO_ACCOUNT)
        return kid

    def update_account(self, payload: dict[str, Any] | None) -> dict[str, Any]:
        """Update the account (RFC 8555 section 7.3.2), or fetch it if `payload` is None."""
        return self.post(self.account_kid(), payload).json()

    def new_order(
        self, names: Iterable[str], *, profile: str | None = None, replaces: str | None = None
    ) -> tuple[str, Order]:
        """newOrder for NAMES, DNS names and IP addresses (RFC 8738); (order URL, order).
        PROFILE names one of the directory's meta.profiles; REPLACES is the
        ARI certID (RFC 9773 section 5) of the certificate the order renews."""
        identifiers = [{"type": identifier_type(name), "value": name} for name in names]
        if len(identifiers) > MAX_IDENTIFIERS:
            raise AcmeError(
                f"refusing to order {len(identifiers)} names: an order may have "
                f"{MAX_IDENTIFIERS} at most"
            )
        payload: dict[str, Any] = {"identifiers": identifiers}
        if profile is not None:
            payload["profile"] = profile
        if replaces is not None:
            payload["replaces"] = replaces
        self.account_kid()
        response = self.post(self.resource("newOrder"), payload)
        problem = response.problem()
        if (
            replaces is not None
            and 400 <= response.status < 500
            and (problem is None or problem.type not in KEEPS_REPLACES)
        ):
            # The certificate was renewed already (alreadyReplaced: by a run
            # whose installation failed, say), or the CA will not have it
            # replaced by this account (unauthorized, malformed, conflict...):
            # a new certificate is still wanted, just not as its replacement,
            # or renewal would fail every run until the certificate expires.
            refusal = str(problem) if problem is not None else f"HTTP {response.status}"
            self.warn(f"refused to replace {replaces}: {refusal}; ordering without `replaces`")
            del payload["replaces"]
            response = self.post(self.resource("newOrder"), payload)
        order = Order.parse(response.json())
        return response.location, order

    def renewal_info(self, cert_id: str) -> tuple[dict[str, Any], float | None]:
        """The renewal information of the certificate with ARI certID CERT_ID
        (RFC 9773 section 4.1, an unsigned GET) and the Retry-After it came
        with, in seconds."""
        if not CERT_ID.fullmatch(cert_id):
            raise AcmeError(f"not an ARI certID: {cert_id[:100]!r}")
        url = self.resource("renewalInfo").rstrip("/") + "/" + cert_id
        response = self._request("GET", url)
        return response.json(), response.retry_after()

    def authorization(self, url: str) -> Authorization:
        return Authorization.parse(self.post(url).json())

    def answer_challenge(self, url: str) -> dict[str, Any]:
        """Tell the server the challenge is ready to be validated (section 7.5.1)."""
        return self.post(url, {}).json()

    def finalize(self, order: Order, csr_der: bytes) -> Response:
        return self.post(order.finalize_url(), {"csr": b64url_encode(csr_der).decode()})

    def certificate(self, url: str, preferred_chain: str | None = None) -> str:
        """Download the certificate chain (section 7.4.2), PEM: the first of
        the default chain and its alternates whose topmost certificate was
        issued by PREFERRED_CHAIN (a common name), else the default one."""
        chain, response = self._chain(url)
        if preferred_chain is None:
            return chain
        issuers = [_chain_issuer(chain)]
        if _same_name(issuers[0], preferred_chain):
            return chain
        for alternate in response.links("alternate"):
            alternate_chain, _ = self._chain(alternate)
            issuers.append(_chain_issuer(alternate_chain))
            if _same_name(issuers[-1], preferred_chain):
                return alternate_chain
        offered = ", ".join(repr(issuer) for issuer in issuers)
        self.warn(
            f"no chain issued by {preferred_chain!r} (offered: {offered}); using the default chain"
        )
        return chain

    def _chain(self, url: str) -> tuple[str, Response]:
        response = self.post(url, limit=MAX_CERTIFICATE_BODY, accept=PEM_CHAIN).check()
        if response.media_type != PEM_CHAIN:
            raise AcmeError(
                f"POST {url}: Content-Type {response.media_type or 'none'}, not {PEM_CHAIN}"
            )
        try:
            chain = response.body.decode("ascii")
        except UnicodeDecodeError:
            raise AcmeError(f"POST {url}: certificate chain is not PEM (not ASCII)") from None
        if not chain.lstrip().startswith("-----BEGIN CERTIFICATE-----"):
            raise AcmeError(f"POST {url}: certificate chain is not PEM")
        return chain, response

    def revoke(self, certificate_der: bytes, reason: int | None = None) -> None:
        """revokeCert, with the account's Key ID if the key has an account,
        else with the JWK (accountd then holds the certificate's own key);
        REASON is an RFC 5280 reason code."""
        payload: dict[str, Any] = {"certificate": b64url_encode(certificate_der).decode()}
        if reason is not None:
            payload["reason"] = reason
        use_jwk = self.find_account() is None
        response = self.post(self.resource("revokeCert"), payload, use_jwk=use_jwk)
        problem = response.problem()
        if response.resent and problem is not None and problem.type == ERROR_NS + "alreadyRevoked":
            # Revoked by the first attempt, whose answer was lost.
            if self.trace:
                self.trace(f"!!! {response.error()}; by the first attempt")
            return
        response.check()

    # -- Issuance -----------------------------------------------------------

    def issue(
        self,
        names: Iterable[str],
        csr_der: bytes,
        provision: Provision,
        *,
        preferred_chain: str | None = None,
        profile: str | None = None,
        replaces: str | None = None,
        resume: str | None = None,
        announce: Callable[[str], None] | None = None,
        fetched: Fetched | None = None,
        progress: Progress | None = None,
    ) -> str:
        """Order a certificate for NAMES (DNS names, IP addresses) with the CSR, having `provision`
        publish each pending http-01 key authorization; the PEM chain
        (see `certificate` for PREFERRED_CHAIN, `new_order` for PROFILE and
        REPLACES).  RESUME is the URL of an order an earlier run placed, to
        carry on unless the server has it invalid; ANNOUNCE is told the URL
        of the order as soon as it is known; FETCHED, if given, says when the
        server has fetched what `provision` published (see wait_for_order);
        PROGRESS is told each step it then waits at (see wait_for_order)."""
        self.account_kid()  # the resumed order is fetched with it
        resumed = None if resume is None else self._resumed(resume)
        if resumed is None:
            resumed = self.new_order(names, profile=profile, replaces=replaces)
        url, order = resumed
        if announce is not None:
            announce(url)
        validating = False
        for authz_url in order.authorization_urls():
            authz = self.authorization(authz_url)
            if authz.status == "valid":
                continue
            if authz.status != "pending":
                raise AcmeError(
                    f"authorization for {authz.identifier} is {authz.status}", authz.problems()
                )
            self._take_challenge(authz, provision)
            validating = True
        if validating and progress is not None:
            progress(VALIDATING)
        order = self.wait_for_order(url, order, csr_der, fetched, progress)
        return self.certificate(order.certificate_url(), preferred_chain)

    def _take_challenge(self, authz: Authorization, provision: Provision) -> None:
        """Publish the pending AUTHZ's http-01 key authorization, and tell
        the server to validate it."""
        challenge = authz.http_01()
        token = text(challenge.token, f"http-01 token for {authz.identifier}")
        if not valid_token(token):
            raise AcmeError(f"refusing the http-01 token {token[:100]!r} for {authz.identifier}")
        provision(token, f"{token}.{self.thumbprint}")
        self.answer_challenge(text(challenge.url, f"challenge URL for {authz.identifier}"))

    def validate(
        self,
        names: Iterable[str],
        provision: Provision,
        *,
        profile: str | None = None,
        announce: Callable[[str], None] | None = None,
        fetched: Fetched | None = None,
        progress: Progress | None = None,
    ) -> list[Trial]:
        """Order NAMES (see `issue` for PROVISION, PROFILE, ANNOUNCE,
        FETCHED and PROGRESS) and have every pending authorization validated, but stop
        before finalizing: no CSR is sent, nothing is issued.  Then
        deactivate the authorizations this order created (RFC 8555 section
        7.5.2), whatever happened, so that no later order reuses what this
        one proved; one that was valid already is not this order's to end.
        Each authorization as it ended."""
        self.account_kid()
        url, order = self.new_order(names, profile=profile)
        if announce is not None:
            announce(url)
        trials: list[Trial] = []
        try:
            for authz_url in order.authorization_urls():
                authz = self.authorization(authz_url)
                trials.append(Trial(authz_url, authz, created=authz.status == "pending"))
                if authz.status == "pending":
                    self._take_challenge(authz, provision)
            ended: AcmeError | None = None
            if any(trial.created for trial in trials):
                if progress is not None:
                    progress(VALIDATING)
                try:
                    self.wait_for_order(url, order, None, fetched)
                except AcmeError as e:  # invalid, or stalled: its authorizations say where
                    ended = e
            for trial in trials:
                if trial.created:
                    trial.authorization = self.authorization(trial.url)
                    if trial.authorization.status == "pending" and ended is not None:
                        trial.unfinished = str(ended).split("\n", 1)[0]
        finally:
            for trial in trials:
                if trial.created and trial.authorization.status in ("pending", "valid"):
                    trial.deactivated = self._deactivate(trial.url)
        return trials

    def _deactivate(self, url: str) -> bool:
        """Deactivate the authorization at URL; whether the server says it is."""
        try:
            status = Authorization.parse(self.post(url, {"status": "deactivated"}).json()).status
        except AcmeError as e:
            self.warn(f"can't deactivate the authorization {printable(url)}: {e}")
            return False
        if status != "deactivated":
            self.warn(
                f"the authorization {printable(url)} is {printable(str(status))}, "
                "not deactivated, after its deactivation"
            )
        return status == "deactivated"

    def _resumed(self, url: str) -> tuple[str, Order] | None:
        """The order at URL, placed by an earlier run cut short, if it can be
        carried on; None, after a warning, if it cannot."""
        try:
            order = Order.parse(self.post(url).json())
        except AcmeError as e:
            self.warn(
                f"can't resume the order {printable(url)} of an earlier run ({e}); ordering anew"
            )
            return None
        if order.status == "invalid":
            why = "" if order.error is None else f": {order.error}"
            self.warn(
                f"the order {printable(url)} of an earlier run is invalid{why}; ordering anew"
            )
            return None
        if self.trace:
            self.trace(printable(f"!!! resuming the order {url} ({order.status})"))
        return url, order

    def wait_for_order(
        self,
        url: str,
        order: Order,
        csr_der: bytes | None,
        fetched: Fetched | None = None,
        progress: Progress | None = None,
    ) -> Order:
        """Poll the order through pending, ready (finalizing it then with
        CSR_DER, or without one returning it), processing, until valid;
        raise if it becomes invalid, or if it stays in one state past
        `timeout` beyond the waits the server asked for.

        Without a Retry-After, the looks follow _poll_delays, plus one: as
        soon as FETCHED says the server has fetched every token, the answer
        of a pending order can be there, and it is looked at then.
        PROGRESS is told FINALIZING when the CSR is first sent."""
        wait = self.patience.wait(f"polling order {url}")
        delays = _poll_delays(order.status)
        delay = next(delays)
        server_asked = False
        early: Fetched | None = fetched
        finalized = False
        refusal: str | None = None  # why the last finalize was refused as not ready
        while True:
            status = order.status
            if status == "valid":
                return order
            if status == "invalid":
                raise self._order_failure(order)
            if status not in ("pending", "ready", "processing"):
                raise AcmeError(f"order {url} has unknown status {status!r}")
            if status == "ready" and not finalized:
                if csr_der is None:
                    return order
                if refusal is not None:  # and the order still says ready
                    wait.sleep(delay, server_asked=server_asked, why=refusal)
                if refusal is None and progress is not None:
                    progress(FINALIZING)
                response = self.finalize(order, csr_der)
                problem = response.problem()
                if problem is not None and problem.type == ERROR_NS + "orderNotReady":
                    # After a resent finalize whose first attempt got through,
                    # or from a server updating orders lazily (certbot#10239):
                    # the order's real state says what comes next.
                    refusal = f"finalize answered HTTP {response.status}: {problem}"
                    response = self.post(url)
                else:
                    finalized = True
            else:
                until = early if status == "pending" and not server_asked else None
                try:
                    if wait.sleep(
                        delay,
                        server_asked=server_asked,
                        why=f"the order is {printable(status)}",
                        until=until,
                    ):
                        early = None  # once: the schedule goes on from here
                except AcmeTimeout as e:
                    raise self._stalled(e, order) from None
                response = self.post(url)
            order = Order.parse(response.json())
            server_wait = response.retry_after()
            server_asked = server_wait is not None
            if order.status != status:
                # Progress: the next step (validation, issuance) is as quick to
                # come, and has the whole timeout to.
                wait = self.patience.wait(f"polling order {url}")
                delays = _poll_delays(order.status)
            delay = next(delays)
            if server_wait is not None:
                delay = server_wait

    def _stalled(self, timeout: AcmeTimeout, order: Order) -> AcmeTimeout:
        """TIMEOUT, with where each authorization of ORDER stands if it is
        still pending: which name the server has not validated yet."""
        if order.status != "pending":
            return timeout
        notes: list[str] = []
        for url in order.authorization_urls():
            try:
                authz = self.authorization(url)
            except AcmeError as e:
                notes.append(f"{printable(url)}: {e}")
                continue
            note = f"{authz.identifier}: authorization {authz.status or 'without a status'}"
            challenge = next((c for c in authz.challenges or () if c.type == "http-01"), None)
            if challenge is not None and challenge.status is not None:
                note += f", http-01 challenge {challenge.status}"
            notes.append(printable(note))
        return AcmeTimeout(str(timeout), notes=notes, shown=True)

    def _order_failure(self, order: Order) -> AcmeError:
        """The order's problem, with those of its failed challenges per identifier."""
        problem = order.error or Problem(type="about:blank", detail="")
        for url in order.authorization_urls():
            authz = self.authorization(url)
            if authz.status == "invalid":
                problem.subproblems += [
                    sub
                    for sub in authz.problems().subproblems
                    # Servers often copy the failed challenge's error into the order's.
                    if (sub.type, sub.detail) != (problem.type, problem.detail)
                ]
        return AcmeError("the order is invalid", problem)


@dataclass
class Trial:
    """An authorization of an order that `validate` placed: its URL, as
    last fetched; whether this order CREATED it (pending when the order
    came); why it is still pending, if it is (UNFINISHED); whether it was
    DEACTIVATED."""

    url: str
    authorization: Authorization
    created: bool
    unfinished: str = ""
    deactivated: bool = False


def identifier_type(value: str) -> str:
    """RFC 8738: an IP address is an `ip` identifier, anything else `dns`."""
    return "ip" if is_ip_address(value) else "dns"


def _poll_delays(status: str | None) -> Iterator[float]:
    """The waits between looks at an order in STATUS that gives no
    Retry-After: one soon when it is processing, then quick, then slower."""
    if status == "processing":
        yield POLL_SOON
    delay = POLL_INITIAL
    while True:
        yield delay
        delay = min(POLL_MAX, delay * 2)


def _chain_issuer(chain: str) -> str | None:
    """The issuer common name of the chain's topmost certificate: the root it leads to."""
    # Only newOrder with a preferred chain needs X.509 in the client.
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        top = x509.load_pem_x509_certificates(chain.encode())[-1]
    except ValueError:
        return None
    names = top.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def _same_name(issuer: str | None, preferred: str) -> bool:
    return issuer is not None and issuer.casefold() == preferred.casefold()
