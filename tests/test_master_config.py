"""Unit tests of lacme.config: lacme.conf and the certificate configuration files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lacme import config
from lacme.client_contract import encode_settings
from lacme.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- lacme.conf -------------------------------------------------------------


@pytest.mark.unit
def test_defaults_work_right_after_installation(tmp_path: Path) -> None:
    conf = config.load(str(write(tmp_path / "lacme.conf", "[accountd]\n")))
    bindir = os.path.dirname(sys.executable)
    assert conf.client == config.ClientConfig(
        socket="%t/S.lacme",
        user="_lacme-client",
        group="nogroup",
        command=f"{sys.executable} -I -m lacme.client",
    )
    assert conf.webserver == config.WebserverConfig(
        listen="/run/lacme-www.socket",
        challenge_directory=None,
        user="_lacme-www",
        group="nogroup",
        command=f"{sys.executable} -I -m lacme.webserver",
        iptables=False,
    )
    assert conf.accountd == config.AccountdConfig(
        user="", group="", command=f"{bindir}/lacme-accountd", config="", quiet=True
    )
    assert os.access(conf.accountd.command, os.X_OK)
    assert conf.config_certs is None
    assert conf.path == str(tmp_path / "lacme.conf")


@pytest.mark.unit
def test_the_shipped_configuration_loads() -> None:
    conf = config.load("/etc/lacme/lacme.conf")
    assert conf.accountd is not None
    assert conf.client.server is None


@pytest.mark.unit
def test_every_documented_key(tmp_path: Path) -> None:
    path = write(
        tmp_path / "lacme.conf",
        "config-certs = a.conf  b.d/ \n"
        "[client]\nsocket = /s\nuser = u\ngroup = g\ncommand = c -x\nserver = https://x/dir\n"
        "timeout = 5\nSSL_verify = No\nSSL_version = TLSv1_2\nSSL_cipher_list = HIGH\n"
        "SSL_CAfile = /ca.pem\nconfinement = No\n"
        "[webserver]\nlisten = 127.0.0.1:80\nchallenge-directory = /var/www/acme\nuser = w\n"
        "group = wg\ncommand = wc\niptables = YES\nconfinement = no\n"
        "[accountd]\nuser = a\ngroup = ag\ncommand = ssh -T host lacme-accountd\n"
        "config = /c.conf\nquiet = no\n",
    )
    conf = config.load(str(path))
    assert conf.config_certs == ("a.conf", "b.d/")
    assert conf.client.ssl_cafile == "/ca.pem"
    assert conf.client.timeout == "5"
    assert conf.webserver.iptables is True
    assert conf.webserver.confinement is False
    assert conf.webserver.challenge_directory == "/var/www/acme"
    assert conf.accountd == config.AccountdConfig(
        "a", "ag", "ssh -T host lacme-accountd", "/c.conf", False
    )
    assert json.loads(encode_settings(conf.client.settings())) == {
        "socket": "/s",
        "user": "u",
        "group": "g",
        "command": "c -x",
        "server": "https://x/dir",
        "timeout": "5",
        "SSL_verify": "No",
        "SSL_version": "TLSv1_2",
        "SSL_cipher_list": "HIGH",
        "SSL_CAfile": "/ca.pem",
        "confinement": "No",
    }


@pytest.mark.unit
def test_client_json_has_nulls_as_lacme_0_8_2_but_no_unset_cafile(tmp_path: Path) -> None:
    conf = config.load(str(write(tmp_path / "lacme.conf", "")))
    settings = json.loads(encode_settings(conf.client.settings()))
    assert settings["server"] is None
    assert settings["SSL_verify"] is None
    assert "SSL_CAfile" not in settings


@pytest.mark.unit
def test_socket_option_drops_accountd(tmp_path: Path) -> None:
    path = str(write(tmp_path / "lacme.conf", "[accountd]\n[client]\nsocket = /conf\n"))
    assert config.load(path).accountd is not None
    conf = config.load(path, socket="/option")
    assert conf.accountd is None
    assert conf.client.socket == "/option"
    assert config.load(str(write(tmp_path / "b.conf", "[client]\n"))).accountd is None


@pytest.mark.unit
def test_empty_challenge_directory_is_unset(tmp_path: Path) -> None:
    conf = config.load(str(write(tmp_path / "lacme.conf", "[webserver]\nchallenge-directory =\n")))
    assert conf.webserver.challenge_directory is None


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[clients]\n", r"lacme\.conf: unknown section \[clients\]$"),
        ("[client]\nSSL_ca_file = x\n", r"lacme\.conf: unknown key 'SSL_ca_file' in \[client\]$"),
        ("[webserver]\nsocket = x\n", r"unknown key 'socket' in \[webserver\]$"),
        ("[accountd]\nprivkey = file:/k\n", r"\[accountd\] privkey: lacme 0\.8 moved it to "),
        ("server = x\n", r"unknown key 'server' in the default section$"),
        ("[client]\nno equals\n", r"lacme\.conf:2: syntax error"),
        (
            "[webserver]\niptables = true\n",
            r"lacme\.conf: \[webserver\] iptables = true: expected Yes or No$",
        ),
        ("[accountd]\nquiet = 0\n", r"lacme\.conf: \[accountd\] quiet = 0: expected Yes or No$"),
        (
            "[client]\nconfinement = off\n",
            r"lacme\.conf: \[client\] confinement = off: expected Yes or No$",
        ),
        (
            "[webserver]\nconfinement = 0\n",
            r"lacme\.conf: \[webserver\] confinement = 0: expected Yes or No$",
        ),
    ],
)
def test_lacme_conf_refusals(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.load(str(write(tmp_path / "lacme.conf", text)))


@pytest.mark.unit
def test_missing_lacme_conf(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^can't read .*/nope\.conf: No such file or directory$"):
        config.load(str(tmp_path / "nope.conf"))


@pytest.mark.unit
def test_config_path_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "lacme.conf", "")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    assert config.load("%T/lacme.conf").path == str(tmp_path / "lacme.conf")
    with pytest.raises(ConfigError, match=r"^--config: .*unknown specifier %Q"):
        config.load("%Q")


# --- certificate files --------------------------------------------------------


def conf_in(tmp_path: Path, config_certs: str | None = None) -> config.Config:
    line = "" if config_certs is None else f"config-certs = {config_certs}\n"
    return config.load(str(write(tmp_path / "lacme.conf", line)))


@pytest.mark.unit
def test_default_config_certs_may_be_missing(tmp_path: Path) -> None:
    assert config.certificate_files(conf_in(tmp_path)) == []
    write(tmp_path / "lacme-certs.conf", "")
    write(tmp_path / "lacme-certs.conf.d/b.conf", "")
    write(tmp_path / "lacme-certs.conf.d/a.conf", "")
    write(tmp_path / "lacme-certs.conf.d/c.conf.dpkg-old", "")
    assert config.certificate_files(conf_in(tmp_path)) == [
        str(tmp_path / "lacme-certs.conf"),
        str(tmp_path / "lacme-certs.conf.d/a.conf"),
        str(tmp_path / "lacme-certs.conf.d/b.conf"),
    ]


@pytest.mark.unit
def test_explicit_items_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no such directory .*/gone$"):
        config.certificate_files(conf_in(tmp_path, "gone/"))
    # A missing file is reported when it is read.
    files = config.certificate_files(conf_in(tmp_path, "missing.conf"))
    with pytest.raises(ConfigError, match=r"^can't read .*/missing\.conf: No such file"):
        config.load_certs(files)


@pytest.mark.unit
def test_options_win_and_are_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", "/elsewhere")
    conf = conf_in(tmp_path, "from-conf.conf")
    assert config.certificate_files(conf, ["%T/x.conf", "rel.conf"]) == [
        "/elsewhere/x.conf",
        str(tmp_path / "rel.conf"),
    ]
    assert config.certificate_files(conf) == [str(tmp_path / "from-conf.conf")]
    assert config.certificate_files(conf, [""]) == []
    # A directory without the trailing slash is still a directory.
    write(tmp_path / "d/z.conf", "")
    assert config.certificate_files(conf, ["d"]) == [str(tmp_path / "d/z.conf")]


GOOD = (
    "certificate-key = /k\ncertificate = /c\nsubject = /CN=www.Example.org\n"
    "subjectAltName = DNS:example.org, DNS:www.example.org\n"
)


@pytest.mark.unit
def test_later_defaults_win_and_apply_everywhere(tmp_path: Path) -> None:
    a = write(tmp_path / "a.conf", f"hash = sha384\nmin-days = 10\n[smtp]\n{GOOD}")
    b = write(tmp_path / "b.conf", f"min-days = 30\n[www]\n{GOOD}min-days = 5\ncertificate = /w\n")
    sources = config.load_certs([str(a), str(b)])
    assert sorted(sources) == ["smtp", "www"]
    www = config.parse_section(sources["www"])
    smtp = config.parse_section(sources["smtp"])
    assert (www.filename, www.min_days, www.hash) == (str(b), 5, "sha384")
    assert (smtp.filename, smtp.min_days, smtp.hash) == (str(a), 30, "sha384")


@pytest.mark.unit
def test_a_parsed_section(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.conf",
        "[s]\ncertificate-key = /k\ncertificate-chain = /chain\n"
        "subject = /C=FR/O=Acme\\/Co/CN=www.example.org+OU=x/CN=\n"
        "subjectAltName = DNS:A.example.org,dns: www.example.org\n"
        "keyUsage = digitalSignature, keyencipherment\n"
        "hash = SHA512\nchown = root:root\nchmod = 0640\nnotify = systemctl reload nginx\n"
        "CAfile =\n",
    )
    section = config.parse_section(config.load_certs([str(path)])["s"])
    assert section == config.CertSection(
        name="s",
        filename=str(path),
        certificate_key="/k",
        certificate=None,
        certificate_chain="/chain",
        min_days=None,
        cafile=None,
        hash="sha512",
        key_usage=("digitalSignature", "keyEncipherment"),
        subject=(
            (("C", "FR"),),
            (("O", "Acme/Co"),),
            (("CN", "www.example.org"), ("OU", "x")),
        ),
        owner="root:root",
        mode=0o640,
        notify="systemctl reload nginx",
        identifiers=("www.example.org", "a.example.org"),
    )
    assert section.certificate_paths() == ("/chain",)


@pytest.mark.unit
def test_cafile_default_and_empty_values_are_unset(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.conf",
        f"[s]\n{GOOD}certificate-chain =\nhash =\nnotify =\ntlsfeature =\n",
    )
    section = config.parse_section(config.load_certs([str(path)])["s"])
    assert section.cafile == "/usr/share/lacme/ca-certificates.crt"
    assert (section.certificate_chain, section.hash, section.notify) == (None, None, None)
    assert section.certificate_paths() == ("/c",)


@pytest.mark.unit
def test_wildcard_names(tmp_path: Path) -> None:
    # RFC 8555 section 7.1.3: `*.` and a domain name, in CN or subjectAltName.
    path = write(
        tmp_path / "c.conf",
        "[s]\ncertificate-key=/k\ncertificate=/c\nsubject=/CN=*.A.example\n"
        "subjectAltName = DNS:a.example, DNS:*.a.example, DNS:*.B.a.example\n",
    )
    section = config.parse_section(config.load_certs([str(path)])["s"])
    assert section.identifiers == ("*.a.example", "a.example", "*.b.a.example")
    assert config.common_names(section.subject) == ("*.A.example",)


@pytest.mark.unit
def test_subject_without_cn_but_with_sans(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.conf",
        "[s]\ncertificate-key=/k\ncertificate=/c\nsubject=/\n"
        "subjectAltName = DNS:b.example, DNS:a.example, DNS:B.example\n",
    )
    section = config.parse_section(config.load_certs([str(path)])["s"])
    assert section.subject == ()
    assert section.identifiers == ("b.example", "a.example")


# Both TLS features are Must-Staple, which Let's Encrypt refuses since OCSP ended.
MUST_STAPLE = (
    r"asks for OCSP Must-Staple, but OCSP has ended \(Let's Encrypt stopped OCSP in 2025 "
    r"and refuses Must-Staple CSRs\); remove tlsfeature"
)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("min-days = soon\n", r"min-days = soon: not an integer$"),
        ("mode = 0698\n", r"mode = 0698: not an octal mode$"),
        ("chmod = u+rw\n", r"chmod = u\+rw: not an octal mode$"),
        ("mode = 17777\n", r"mode = 17777: not an octal mode$"),
        ("hash = md5\n", r"hash = md5: unsupported hash \(one of sha256, sha384, sha512\)$"),
        ("keyUsage = digitalSignature, bogus\n", r"keyUsage = .*: unknown key usage 'bogus'$"),
        ("keyUsage = encipherOnly\n", r"keyUsage = .*: encipherOnly and decipherOnly need"),
        ("tlsfeature = must_staple\n", r"tlsfeature = must_staple: unknown TLS feature"),
        ("tlsfeature = status_request\n", rf"tlsfeature = status_request: {MUST_STAPLE}$"),
        ("tlsfeature = Status_Request_V2\n", rf"tlsfeature = Status_Request_V2: {MUST_STAPLE}$"),
        (
            "tlsfeature = status_request, must_staple\n",
            rf"tlsfeature = status_request, must_staple: {MUST_STAPLE}$",
        ),
        (
            "subjectAltName = email:a@b.example\n",
            r"subjectAltName = .*: 'email:a@b.example' is not DNS:name or IP:address$",
        ),
        ("subjectAltName = DNS:*.org\n", r"subjectAltName = .*: '\*\.org' is not a valid"),
        ("subjectAltName = DNS:a.*.example\n", r"subjectAltName = .*: 'a\.\*\.example' is not"),
        ("subjectAltName = DNS:**.example\n", r"subjectAltName = .*: '\*\*\.example' is not"),
        ("subjectAltName = DNS:*example.org\n", r"subjectAltName = .*: '\*example\.org' is not"),
        ("subject = /CN=*.org\n", r"subject = /CN=\*\.org: CN '\*\.org' is not a domain name$"),
        ("subjectAltName = DNS:localhost\n", r"subjectAltName = .*: 'localhost' is not a valid"),
        ("subject = /CN=not a domain\n", r"subject = .*: CN 'not a domain' is not a domain name$"),
        ("subject = /O=Acme\n", r"subject = /O=Acme: no domain name in CN nor in subjectAltName$"),
        ("subject = CN=x.org\n", r"subject = CN=x.org: does not start with /$"),
        ("subject = /CNx.org\n", r"subject = /CNx.org: 'CNx.org' has no '='$"),
        ("subject = /=x.org\n", r"subject = /=x.org: attribute without a type$"),
        ("subject = /CN=x.org\\\n", r"subject = .*: ends with a lone \\$"),
        ("owner = no-such-user\n", r"owner = no-such-user: unknown user 'no-such-user'$"),
        ("chown = root:no-such-group\n", r"chown = root:no-such-group: unknown group"),
    ],
)
def test_section_refusals_name_file_section_key_value(
    tmp_path: Path, extra: str, message: str
) -> None:
    path = write(tmp_path / "c.conf", f"[s]\ncertificate-key = /k\ncertificate = /c\n{extra}")
    source = config.load_certs([str(path)])["s"]
    if "subject" not in extra:
        source = source._replace(
            settings={
                **source.settings,
                "subject": config.Setting("subject", "/CN=x.org", str(path)),
            }
        )
    with pytest.raises(ConfigError, match=rf"^{path}: \[s\] {message}") as caught:
        config.parse_section(source)
    assert "\n" not in str(caught.value)


@pytest.mark.unit
def test_a_default_names_its_own_file(tmp_path: Path) -> None:
    defaults = write(tmp_path / "a.conf", "hash = md4\n")
    section = write(tmp_path / "b.conf", f"[s]\n{GOOD}")
    source = config.load_certs([str(defaults), str(section)])["s"]
    with pytest.raises(ConfigError, match=rf"^{defaults}: \[s\] hash = md4: unsupported hash"):
        config.parse_section(source)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[s]\ncertificate = /c\nsubject = /CN=x.org\n", r"\[s\] certificate-key is required$"),
        (
            "[s]\ncertificate-key = /k\nsubject = /CN=x.org\ncertificate =\n",
            r"\[s\] certificate or certificate-chain is required$",
        ),
        ("[s]\ncertificate-key = /k\ncertificate = /c\n", r"\[s\] subject is required$"),
    ],
)
def test_missing_settings(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "c.conf", text)
    with pytest.raises(ConfigError, match=rf"^{path}: {message}"):
        config.parse_section(config.load_certs([str(path)])["s"])


@pytest.mark.unit
def test_unknown_key_in_a_certificate_file_stops_everything(tmp_path: Path) -> None:
    path = write(tmp_path / "c.conf", f"[s]\n{GOOD}[t]\n{GOOD}certificate-keys = /k\n")
    with pytest.raises(ConfigError, match=rf"^{path}: unknown key 'certificate-keys' in \[t\]$"):
        config.load_certs([str(path)])
    default = write(tmp_path / "d.conf", "listen = x\n")
    with pytest.raises(ConfigError, match=r"unknown key 'listen' in the default section$"):
        config.load_certs([str(default)])


@pytest.mark.unit
def test_parse_subject_as_openssl_req_subj() -> None:
    assert config.parse_subject("/") == ()
    assert config.parse_subject("/CN=a=b") == ((("CN", "a=b"),),)
    assert config.parse_subject("/O= spaced /CN=x") == ((("O", " spaced "),), (("CN", "x"),))
    assert config.parse_subject("/O=a\\+b+OU=c") == ((("O", "a+b"), ("OU", "c")),)
    assert config.parse_subject("/O=/CN=x") == ((("CN", "x"),),)


@pytest.mark.unit
def test_resolve_owner() -> None:
    assert config.resolve_owner("root") == (0, -1)
    assert config.resolve_owner("root:root") == (0, 0)
    with pytest.raises(ValueError, match="unknown group ''"):
        config.resolve_owner("root:")


@pytest.mark.process
def test_default_commands_import_nothing_from_their_working_directory(tmp_path: Path) -> None:
    # The client and the webserver run in the challenge directory, which the
    # client can write to.
    write(tmp_path / "lacme/__init__.py", "raise SystemExit(99)\n")
    for command in (config.ClientConfig().command, config.WebserverConfig().command):
        result = subprocess.run(command.split(), cwd=tmp_path, capture_output=True, check=False)
        assert result.returncode not in (0, 99), result


@pytest.mark.unit
def test_default_cafile_falls_back_to_the_system_trust_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    perl_bundle = tmp_path / "ca-certificates.crt"
    monkeypatch.setattr(config, "PERL_LACME_CAFILE", str(perl_bundle))
    assert config.default_cafile() == config.SYSTEM_CAFILE
    perl_bundle.write_text("")
    assert config.default_cafile() == str(perl_bundle)
