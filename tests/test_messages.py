"""Messages that point at the fix (issue 15, point 4), each refusal on its
own: the [client] settings checked when the master reads lacme.conf
(lacme.config), `[accountd] privkey` in lacme.conf."""

from __future__ import annotations

from pathlib import Path

import pytest

from lacme import config
from lacme.client_contract import tls_versions
from lacme.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def refusal(tmp_path: Path, text: str) -> str:
    path = write(tmp_path / "lacme.conf", text)
    with pytest.raises(ConfigError) as refused:
        config.load(str(path))
    return str(refused.value).removeprefix(f"{path}: ")


# --- [client] settings, checked by the master -----------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("timeout = 30s", "timeout = 30s: not a number of seconds, such as 30 (without a unit)"),
        ("timeout = -1", "timeout = -1: not a number of seconds, such as 30 (without a unit)"),
        ("timeout = nan", "timeout = nan: not a number of seconds, such as 30 (without a unit)"),
        (
            "server = http://acme.example/dir",
            "server = http://acme.example/dir: not an https:// URL with a host "
            "(RFC 8555 section 6.1)",
        ),
        ("server =", "server = : not an https:// URL with a host (RFC 8555 section 6.1)"),
        ("server = https://acme.example:99999/", "server = https://acme.example:99999/: "),
        ("SSL_verify = false", "SSL_verify = false: expected Yes or No"),
        (
            "SSL_version = TLSv9",
            "SSL_version = TLSv9: unknown TLS version 'tlsv9' "
            "(one of tlsv1, tlsv1_1, tlsv1_2, tlsv1_3)",
        ),
        (
            "SSL_version = SSLv3:!TLSv1_2",
            "SSL_version = SSLv3:!TLSv1_2: allows no TLS version",
        ),
        (
            "SSL_cipher_list = NO-SUCH-CIPHER",
            "SSL_cipher_list = NO-SUCH-CIPHER: no cipher OpenSSL knows matches (see ciphers(1ssl))",
        ),
        (
            "SSL_CAfile = ca.pem",
            "SSL_CAfile = ca.pem: not an absolute path (the client runs in another directory)",
        ),
        (
            "SSL_CAfile =",
            "SSL_CAfile = : empty: leave SSL_CAfile out to trust what OpenSSL trusts",
        ),
    ],
)
def test_client_settings_the_client_would_refuse(
    tmp_path: Path, setting: str, message: str
) -> None:
    assert refusal(tmp_path, f"[client]\n{setting}\n").startswith(f"[client] {message}")


@pytest.mark.unit
def test_client_settings_the_client_takes(tmp_path: Path) -> None:
    conf = config.load(
        str(
            write(
                tmp_path / "lacme.conf",
                "[client]\nserver = https://acme.example:8443/dir\ntimeout = 0.5\n"
                "SSL_verify = no\nSSL_version = SSLv23:!TLSv1:!TLSv1_1\n"
                "SSL_cipher_list = HIGH:!aNULL\nSSL_CAfile = /etc/lacme/ca.pem\n",
            )
        )
    )
    assert conf.client.timeout == "0.5"
    assert tls_versions("SSLv23:!TLSv1:!TLSv1_1") == ("tlsv1_2", "tlsv1_3")
    assert tls_versions("TLSv1_2") == ("tlsv1_2", "tlsv1_2")
    assert tls_versions("!TLSv1_3") == ("tlsv1", "tlsv1_2")


@pytest.mark.unit
def test_perl_era_privkey_says_where_it_goes(tmp_path: Path) -> None:
    assert refusal(tmp_path, "[accountd]\nprivkey = file:/etc/lacme/account.key\n") == (
        "[accountd] privkey: lacme 0.8 moved it to lacme-accountd.conf; write "
        "`privkey = file:/etc/lacme/account.key` in %E/lacme/lacme-accountd.conf "
        "([accountd] config), before any section, and remove it here"
    )
    assert "in /srv/accountd.conf ([accountd] config)" in refusal(
        tmp_path, "[accountd]\nconfig = /srv/accountd.conf\nprivkey = gpg:/k.gpg\n"
    )
