"""Fixtures (the ACME test servers of tests/support, and lacme's users with
a directory they can enter) and the suite's rules on markers
(support.requires): every test is of one kind, `unit`, `process` or `e2e`
(pyproject.toml says what each means), with `interop` and `root` on top; a
test whose needs (`root`, `debian(PACKAGE, ...)`) are not met fails with
one line naming them: it never skips.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from lacme.privdrop import Credentials
from support import users
from support.a2c import A2CServer, running_acme2certifier
from support.commands import ACCOUNTD
from support.faults import FaultProxy, running_fault_proxy
from support.hostile import HostileServer, hostile_server
from support.offline import Offline, offline_setup
from support.pebble import PebbleFactory, PebbleServer, running_pebble
from support.pki import IssuingCA, make_ca
from support.requires import (
    check_kinds,
    check_needs,
    require_acme2certifier,
    require_packages,
    require_root,
)
from support.servers import A2CBench, Bench, PebbleBench
from support.system import network_namespace, temporary_directory


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--accountd",
        default=str(ACCOUNTD),
        help="lacme-accountd the interop tests give Perl lacme (default: %(default)s); "
        "/usr/bin/lacme-accountd checks the tests themselves against Perl's",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    check_kinds(items)


def pytest_runtest_setup(item: pytest.Item) -> None:
    check_needs(item)


@pytest.fixture(scope="module")
def ca() -> IssuingCA:
    """A test CA (root and intermediate), shared by a module's tests."""
    return make_ca()


@pytest.fixture
def pebble_factory() -> Iterator[PebbleFactory]:
    """Start Pebble servers with custom settings; all are stopped after the test."""
    require_packages("pebble")
    with ExitStack() as stack:

        def factory(**kwargs: Any) -> PebbleServer:
            return stack.enter_context(running_pebble(**kwargs))

        yield factory


@pytest.fixture
def pebble(pebble_factory: PebbleFactory) -> PebbleServer:
    """A Pebble server with the bench's defaults (no nonce rejects, no authz reuse)."""
    return pebble_factory()


@pytest.fixture
def fault_proxy(pebble: PebbleServer) -> Iterator[FaultProxy]:
    """Pebble with the bench's defaults behind the fault proxy (support.faults);
    the proxy is stopped, then Pebble."""
    with running_fault_proxy(pebble) as proxy:
        yield proxy


@pytest.fixture
def client() -> Credentials:
    """The client's credentials (support.users)."""
    return users.client_credentials()


@pytest.fixture
def www() -> Credentials:
    """The webserver's credentials (support.users)."""
    return users.www_credentials()


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    """The hand-made hostile ACME server (support.hostile)."""
    with hostile_server() as server:
        yield server


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The challenge directory, inside an otherwise empty one to see stray files."""
    (tmp_path / "challenges").mkdir()
    return tmp_path / "challenges"


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory other users can enter (pytest's tmp_path is 0700)."""
    with ExitStack() as stack:
        yield temporary_directory(stack, "lacme-spawn-test.")


@pytest.fixture
def netns() -> Iterator[None]:
    """A network namespace of the test's own, for what changes network state
    (firewall rules, privileged ports)."""
    require_root("a network namespace of the test's own")
    require_packages("iproute2")
    with network_namespace():
        yield


@pytest.fixture
def a2c_namespace() -> Iterator[ExitStack]:
    """A network namespace of the test's own (support/a2c.py); servers
    entered on the stack are stopped before it is left."""
    require_acme2certifier()
    with network_namespace(), ExitStack() as stack:
        yield stack


@pytest.fixture
def a2c(a2c_namespace: ExitStack) -> A2CServer:
    """acme2certifier with the bench's defaults (profiles, ARI), in its namespace."""
    return a2c_namespace.enter_context(running_acme2certifier())


@pytest.fixture(params=["pebble", "acme2certifier"])
def bench(request: pytest.FixtureRequest) -> Bench:
    """Each ACME server in turn, started by the test with its settings."""
    if request.param == "pebble":
        return PebbleBench(request.getfixturevalue("pebble_factory"))
    return A2CBench(request.getfixturevalue("a2c_namespace"))


@pytest.fixture
def offline() -> Iterator[Offline]:
    """Our master with the stand-in client, no ACME server (support.offline)."""
    with offline_setup() as setup:
        yield setup
