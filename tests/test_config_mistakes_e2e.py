"""Certificate configuration mistakes as an administrator meets them, with
our master against Pebble: a section defined twice, two sections installing
to one file, a file of lacme-certs.conf.d/ not read, no section at all
(lacme.config; tests/test_config_mistakes.py has the rules)."""

from __future__ import annotations

import pytest

from support.masters import leaf_of, master_setup
from support.pebble import PebbleServer


@pytest.mark.e2e
@pytest.mark.root
def test_mistaken_sections_fail_alone(pebble: PebbleServer) -> None:
    with master_setup(pebble) as setup:
        setup.register()
        key, _ = setup.service_key("site", "p256")
        shared = setup.directory / "shared.chain"
        good = setup.directory / "mail.chain"

        def site(name: str, chain: object) -> dict[str, str]:
            return {
                "certificate-key": str(key),
                "certificate-chain": str(chain),
                "subject": f"/CN={name}.example.test",
            }

        setup.write_sections(
            {
                "a": site("a", shared),
                "b": site("b", shared),
                "mail": site("mail", good),
                "www": site("www", setup.directory / "www.chain"),
            }
        )
        directory = setup.directory / "lacme-certs.conf.d"
        directory.mkdir()
        again = directory / "www.conf"
        again.write_text("[www]\nsubject = /CN=www2.example.test\n")
        (directory / "notes.cfg").write_text("[notes]\n")
        result = setup.run("newOrder", check=False)
        assert result.returncode == 1
        certs = setup.certs_config
        same = "give each section files of its own"
        # lacme-certs.conf: CAfile, an empty line, then the four sections of four lines.
        assert result.stderr.splitlines() == [
            f"Warning: {directory}/notes.cfg: not read, as its name does not end in .conf",
            f"Error: {certs}: [a] certificate-chain = {shared}: "
            f"the same file as [b] certificate-chain: {same}",
            f"Error: {certs}: [b] certificate-chain = {shared}: "
            f"the same file as [a] certificate-chain: {same}",
            f"Installing X.509 certificate chain {good}",
            f"Error: {again}:1: [www] is defined again (first at {certs}:15): "
            "merge the two or rename one",
        ]
        assert leaf_of(good).subject.rfc4514_string() == "CN=mail.example.test"
        assert not shared.exists()
        assert not (setup.directory / "www.chain").exists()


@pytest.mark.e2e
@pytest.mark.root
def test_no_section_is_warned_about(pebble: PebbleServer) -> None:
    with master_setup(pebble) as setup:
        setup.certs_config.write_text("# The sections will come here.\nmin-days = 30\n")
        result = setup.run("newOrder")
        assert result.stderr == (
            f"Warning: no certificate section in {setup.certs_config}: nothing to issue or renew\n"
        )
        setup.certs_config.unlink()
        result = setup.run("newOrder")
        assert result.stderr == (
            "Warning: no certificate configuration file (see config-certs): "
            "nothing to issue or renew\n"
        )
