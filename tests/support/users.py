"""lacme's unprivileged users, which Debian's lacme package creates
(_lacme-client and _lacme-www, with group nogroup as lacme.conf has them),
looked up when a test runs: where they are missing, only the tests that
need them fail (marked `debian("lacme")`), not the collection."""

from __future__ import annotations

import pwd

from lacme.privdrop import Credentials, resolve_credentials

NOGROUP = 65534


def client_user() -> pwd.struct_passwd:
    """The client's user."""
    return pwd.getpwnam("_lacme-client")


def www_user() -> pwd.struct_passwd:
    """The webserver's user."""
    return pwd.getpwnam("_lacme-www")


def client_credentials() -> Credentials:
    """The client's credentials, as lacme.conf's [client] user and group give them."""
    return _resolve("_lacme-client", "client")


def www_credentials() -> Credentials:
    """The webserver's credentials, as lacme.conf's [webserver] user and group give them."""
    return _resolve("_lacme-www", "webserver")


def _resolve(user: str, section: str) -> Credentials:
    resolved = resolve_credentials(user, "nogroup", section)
    assert resolved is not None
    return resolved
