"""Shared fixtures: the Pebble and acme2certifier ACME test benches (see
tests/pebble.py, tests/acme2certifier.py), and test options."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from acme2certifier import A2CServer, network_namespace, running_acme2certifier
from lacme_perl import OUR_ACCOUNTD
from pebble import PebbleFactory, PebbleServer, missing_commands, running_pebble


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--accountd",
        default=str(OUR_ACCOUNTD),
        help="lacme-accountd the interop tests give Perl lacme (default: %(default)s); "
        "/usr/bin/lacme-accountd checks the tests themselves against Perl's",
    )


@pytest.fixture
def pebble_factory() -> Iterator[PebbleFactory]:
    """Start Pebble servers with custom settings; all are stopped after the test."""
    if missing := missing_commands():
        pytest.skip(f"{', '.join(missing)} not found (Debian package pebble)")
    with ExitStack() as stack:

        def factory(**kwargs: Any) -> PebbleServer:
            return stack.enter_context(running_pebble(**kwargs))

        yield factory


@pytest.fixture
def pebble(pebble_factory: PebbleFactory) -> PebbleServer:
    """A Pebble server with the bench's defaults (no nonce rejects, no authz reuse)."""
    return pebble_factory()


@pytest.fixture
def a2c_namespace() -> Iterator[ExitStack]:
    """A network namespace of the test's own (tests/acme2certifier.py);
    servers entered on the stack are stopped before it is left.  Skip
    unless acme2certifier.missing() is None."""
    with network_namespace(), ExitStack() as stack:
        yield stack


@pytest.fixture
def a2c(a2c_namespace: ExitStack) -> A2CServer:
    """acme2certifier with the bench's defaults (profiles, ARI), in its namespace."""
    return a2c_namespace.enter_context(running_acme2certifier())
