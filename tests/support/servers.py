"""What every ACME test server offers the tests (`AcmeTestServer`), and the
benches that run one test against Pebble and acme2certifier in turn."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Protocol

from lacme.client_contract import REVOCATION_REASONS
from support.a2c import A2CServer, running_acme2certifier
from support.pebble import PebbleFactory, PebbleServer


class AcmeTestServer(Protocol):
    """A running ACME server on loopback, as the masters' set-ups use it."""

    @property
    def directory_url(self) -> str: ...

    @property
    def ca_bundle(self) -> Path:
        """The CA of its HTTPS listener."""

    @property
    def roots_file(self) -> Path:
        """The root(s) its certificates chain to, PEM."""

    @property
    def http_port(self) -> int:
        """Where its http-01 validation connects, on 127.0.0.1."""

    def log(self) -> str:
        """What it has logged so far, to explain a failure."""


class PebbleBench:
    """Pebble, for the tests run against both servers."""

    # Its detail for an EAB key identifier it has no MAC key for.
    unknown_kid = "not known to the ACME server"

    def __init__(self, factory: PebbleFactory) -> None:
        self.factory = factory
        self.server: PebbleServer | None = None

    def start(self, eab_keys: Mapping[str, str] | None = None) -> AcmeTestServer:
        config = (
            {}
            if eab_keys is None
            else {"externalAccountBindingRequired": True, "externalAccountMACKeys": dict(eab_keys)}
        )
        self.server = self.factory(config=config)
        return self.server

    def revocation(self, serial: int) -> int | None:
        """The reason code the certificate is revoked with; None if valid."""
        assert self.server is not None
        status = self.server.cert_status(serial)
        return int(status["Reason"]) if status["Status"] == "Revoked" else None


class A2CBench:
    """acme2certifier, for the tests run against both servers."""

    # It says the same of an unknown key identifier as of a wrong MAC.
    unknown_kid = "invalid eab credentials"

    def __init__(self, namespace: ExitStack) -> None:
        self.namespace = namespace
        self.server: A2CServer | None = None

    def start(self, eab_keys: Mapping[str, str] | None = None) -> AcmeTestServer:
        self.server = self.namespace.enter_context(running_acme2certifier(eab_keys=eab_keys))
        return self.server

    def revocation(self, serial: int) -> int | None:
        """The reason code the certificate is revoked with; None if valid."""
        assert self.server is not None
        reason = self.server.revocations().get(serial)
        return None if reason is None else REVOCATION_REASONS[reason]


Bench = PebbleBench | A2CBench
