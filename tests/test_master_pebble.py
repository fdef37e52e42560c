"""Our `lacme` master end to end against Pebble: all-Python, then mixed with Perl's parts."""

from __future__ import annotations

import grp
import json
import os
import pwd
import stat
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from support import requires
from support.accountd import standalone_accountd
from support.commands import ACCOUNTD, CONTACT, PERL_ACCOUNTD, PERL_CLIENT
from support.masters import MasterSetup, leaf_of, master_setup, names_of
from support.pebble import PebbleServer

pytestmark = [pytest.mark.e2e, pytest.mark.root]


def test_all_python_acceptance(pebble: PebbleServer) -> None:
    with master_setup(pebble) as setup:
        account = setup.register()
        assert account["contact"] == [CONTACT]
        # A lookup, then a contact update.
        assert json.loads(setup.run("account").stdout)["contact"] == [CONTACT]
        other = "mailto:other@example.test"
        assert json.loads(setup.run("account", other).stdout)["contact"] == [other]

        d = setup.directory
        keys = {
            name: setup.service_key(name, kind)
            for name, kind in (
                ("rsa2048", "rsa2048"),
                ("rsa4096", "rsa4096"),
                ("p256", "p256"),
                ("p384", "p384"),
            )
        }
        marker = d / "notified"
        setup.write_sections(
            {
                "rsa2048": {
                    "certificate-key": str(keys["rsa2048"][0]),
                    "certificate": str(d / "rsa2048.crt"),
                    "subject": "/CN=a.example.test",
                    "subjectAltName": "DNS:a.example.test,DNS:www.a.example.test",
                    "notify": f"echo rsa2048 >> {marker}",
                },
                "rsa4096": {
                    "certificate-key": str(keys["rsa4096"][0]),
                    "certificate-chain": str(d / "rsa4096.chain"),
                    "subject": "/O=Example/CN=b.example.test",
                    "hash": "sha384",
                    "mode": "0640",
                    "owner": "nobody:nogroup",
                },
                "p256": {
                    "certificate-key": str(keys["p256"][0]),
                    "certificate": str(d / "p256.crt"),
                    "certificate-chain": str(d / "p256.chain"),
                    "subject": "/",
                    "subjectAltName": "DNS:c.example.test, DNS:d.example.test, DNS:e.example.test",
                    "keyUsage": "digitalSignature",
                    "notify": f"echo p256 >> {marker}",
                },
                "p384": {
                    "certificate-key": str(keys["p384"][0]),
                    "certificate": str(d / "p384.crt"),
                    "subject": "/CN=f.example.test",
                    "chmod": "0600",
                    "chown": "_lacme-www",
                },
            }
        )
        result = setup.run("newOrder")
        assert marker.read_text() == "p256\nrsa2048\n"
        assert result.stdout.count("SHA256 Fingerprint=") == 4

        rsa2048 = leaf_of(d / "rsa2048.crt")
        assert isinstance(rsa2048.public_key(), rsa.RSAPublicKey)
        assert rsa2048.public_key() == keys["rsa2048"][1].public_key()
        assert names_of(rsa2048) == ["a.example.test", "www.a.example.test"]
        assert len(x509.load_pem_x509_certificates((d / "rsa2048.crt").read_bytes())) == 1

        chain = x509.load_pem_x509_certificates((d / "rsa4096.chain").read_bytes())
        assert len(chain) >= 2
        assert chain[0].public_key() == keys["rsa4096"][1].public_key()
        st = (d / "rsa4096.chain").stat()
        assert stat.S_IMODE(st.st_mode) == 0o640
        assert (st.st_uid, st.st_gid) == (
            pwd.getpwnam("nobody").pw_uid,
            grp.getgrnam("nogroup").gr_gid,
        )

        assert leaf_of(d / "p256.crt") == leaf_of(d / "p256.chain")
        assert names_of(leaf_of(d / "p256.crt")) == [
            "c.example.test",
            "d.example.test",
            "e.example.test",
        ]
        assert isinstance(leaf_of(d / "p256.crt").public_key(), ec.EllipticCurvePublicKey)
        p384 = d / "p384.crt"
        assert stat.S_IMODE(p384.stat().st_mode) == 0o600
        assert p384.stat().st_uid == pwd.getpwnam("_lacme-www").pw_uid
        assert leaf_of(p384).public_key() == keys["p384"][1].public_key()

        # Nothing left behind next to the certificates.
        assert sorted(p.name for p in d.iterdir() if ".tmp" in p.name) == []

        # Again: all valid for long enough.
        installed = [p for p in d.iterdir() if p.suffix in (".crt", ".chain")]
        before = {p: p.read_bytes() for p in installed}
        result = setup.run("newOrder")
        assert result.stderr.count("skipping") == 4, result.stderr
        assert {p: p.read_bytes() for p in installed} == before

        # --force: one section only, renewed.
        setup.run("newOrder", "--force", "p384")
        assert leaf_of(p384).serial_number != 0
        assert (d / "rsa2048.crt").read_bytes() == before[d / "rsa2048.crt"]
        assert p384.read_bytes() != before[p384]

        # Revocation.
        serial = leaf_of(d / "rsa2048.crt").serial_number
        assert pebble.cert_status(serial)["Status"] == "Valid"
        setup.run("revokeCert", str(d / "rsa2048.crt"))
        assert pebble.cert_status(serial)["Status"] == "Revoked"

        account = json.loads(setup.run("account", "--deactivate").stdout)
        assert account["status"] == "deactivated"


INSPECT = Path(__file__).with_name("inspect_child.py")


def test_children_are_unprivileged_and_isolated(pebble: PebbleServer) -> None:
    with master_setup(
        pebble,
        client=[sys.executable, str(INSPECT), "REPORTS", "client", "KEY"],
        webserver=[sys.executable, str(INSPECT), "REPORTS", "webserver", "KEY"],
    ) as setup:
        reports = setup.directory / "reports"
        reports.mkdir(mode=0o777)
        reports.chmod(0o777)
        key_path, _ = setup.service_key("service", "p256")
        key_path.chmod(0o600)
        config = setup.config.read_text().replace("REPORTS", str(reports))
        setup.config.write_text(config.replace("KEY", str(key_path)))
        setup.register()
        setup.write_sections(
            {
                "s": {
                    "certificate-key": str(key_path),
                    "certificate": str(setup.directory / "s.crt"),
                    "subject": "/CN=s.example.test",
                }
            }
        )
        setup.run("newOrder")
        client_uid = pwd.getpwnam("_lacme-client").pw_uid
        www_uid = pwd.getpwnam("_lacme-www").pw_uid
        nogroup = grp.getgrnam("nogroup").gr_gid
        seen = set()
        challenge_directories = set()
        for path in reports.iterdir():
            report = json.loads(path.read_text())
            kind = path.name.split("-")[0]
            seen.add(kind)
            uid = client_uid if kind == "client" else www_uid
            name = "_lacme-client" if kind == "client" else "_lacme-www"
            assert report["resuid"] == [uid, uid, uid], report
            assert report["resgid"] == [nogroup] * 3
            assert report["groups"] == [nogroup]
            assert report["secret_readable"] is False
            assert report["no_new_privs"] == "1"
            assert report["umask"] == "0022"
            assert report["sid_is_pid"] is True
            entry = pwd.getpwnam(name)
            assert report["environ"] == {
                "USER": name,
                "LOGNAME": name,
                "HOME": entry.pw_dir,
                "SHELL": entry.pw_shell,
                "PATH": "/usr/bin:/bin",
                "DEBUG": "0",
                **({"TERM": os.environ["TERM"]} if "TERM" in os.environ else {}),
            }
            if kind == "client":
                command, config_fd, socket_fd, *_ = report["args"]
                # newOrder has one more: the pipe it names its order on.
                order_fd = report["order_fd"]
                assert (order_fd is not None) == (command == "newOrder")
                contract = {0, 1, 2, int(config_fd), int(socket_fd)}
                assert report["fds"] == sorted(contract | ({order_fd} if order_fd else set()))
                if command == "account":
                    assert report["cwd"] == "/"
                else:
                    challenge_directories.add(report["cwd"])
            else:
                (fd,) = report["args"]
                assert report["fds"] == [0, 1, 2, int(fd)]
                assert Path(report["cwd"]).name.startswith("acme-challenge.")
                challenge_directories.add(report["cwd"])
        assert seen == {"client", "webserver"}
        # The challenge directory is gone.
        (challenges,) = challenge_directories
        assert not Path(challenges).exists()


def issue_one(setup: MasterSetup, *extra: str) -> x509.Certificate:
    """Register, then issue one certificate for two names; return it."""
    result = setup.run("account", "--register", "--tos-agreed", CONTACT, *extra)
    assert json.loads(result.stdout)["status"] == "valid"
    key_path, key = setup.service_key("service", "rsa2048")
    certificate = setup.directory / "chain.pem"
    setup.write_sections(
        {
            "mixed": {
                "certificate-key": str(key_path),
                "certificate-chain": str(certificate),
                "subject": "/CN=m.example.test",
                "subjectAltName": "DNS:n.example.test",
            }
        }
    )
    setup.run("newOrder", *extra)
    leaf = leaf_of(certificate)
    assert leaf.public_key() == key.public_key()
    assert names_of(leaf) == ["m.example.test", "n.example.test"]
    return leaf


@pytest.mark.interop
@pytest.mark.debian(*requires.PERL_ACCOUNTD)
def test_with_perl_accountd_spawned(pebble: PebbleServer) -> None:
    # Perl's lacme-accountd only knows RSA account keys.
    with master_setup(pebble, account_key_kind="rsa2048", accountd=[str(PERL_ACCOUNTD)]) as setup:
        issue_one(setup)


@pytest.mark.interop
@pytest.mark.debian(*requires.PERL_ACCOUNTD)
def test_with_perl_accountd_on_a_socket(pebble: PebbleServer, tmp_path: Path) -> None:
    with (
        master_setup(pebble, account_key_kind="rsa2048", accountd=None) as setup,
        standalone_accountd(
            [PERL_ACCOUNTD],
            tmp_path / "S.lacme",
            f"--privkey=file:{setup.account_key_path}",
            "--quiet",
        ) as accountd,
    ):
        issue_one(setup, f"--socket={accountd.socket}")


def test_with_our_accountd_on_a_socket(pebble: PebbleServer, tmp_path: Path) -> None:
    with (
        master_setup(pebble, accountd=None) as setup,
        standalone_accountd(
            [ACCOUNTD],
            tmp_path / "S.lacme",
            f"--privkey=file:{setup.account_key_path}",
            "--quiet",
        ) as accountd,
    ):
        issue_one(setup, f"--socket={accountd.socket}")
        # lacme refuses a socket others could use.
        accountd.socket.chmod(0o666)
        result = setup.run("account", f"--socket={accountd.socket}", check=False)
        assert result.returncode == 1
        assert result.stderr == (
            f"Error: insecure permissions on {accountd.socket}: open to group or others\n"
        )


@pytest.mark.interop
@pytest.mark.debian(*requires.PERL_MASTER)
def test_with_perl_client_and_webserver(pebble: PebbleServer) -> None:
    # LWP fails the hostname check of an IP URL despite the IP SAN, and
    # takes its CA from the environment; see support/masters.py.
    with master_setup(
        pebble,
        client=["/usr/bin/env", f"SSL_CERT_FILE={pebble.ca_bundle}", str(PERL_CLIENT)],
        webserver=["/usr/libexec/lacme/webserver"],
        extra_client=["SSL_verify = No"],
        ssl_cafile=False,
    ) as setup:
        issue_one(setup)
