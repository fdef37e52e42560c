"""The README's demo: a certificate from a local Pebble, through our
lacme-accountd, client and webserver.

Our master doesn't exist yet (issue #4), so the demo has Debian's Perl
lacme 0.8.2 master drive our three other processes, and says so.
"""

import argparse
import shutil
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from lacme_perl import OUR_ACCOUNTD, lacme_setup
from pebble import running_pebble

from lacme import __version__


def describe(certificate: x509.Certificate) -> list[str]:
    sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [
        f"subject:     {certificate.subject.rfc4514_string()}",
        f"names:       {', '.join(sans.get_values_for_type(x509.DNSName))}",
        f"issuer:      {certificate.issuer.rfc4514_string()}",
        f"valid:       {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} to "
        f"{certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC",
        f"SHA-256:     {certificate.fingerprint(hashes.SHA256()).hex(':').upper()}",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the configuration, keys and certificate for exploring",
    )
    args = parser.parse_args()

    with ExitStack() as stack:
        print("Starting Pebble (test ACME server) and its mock DNS on 127.0.0.1 ...")
        pebble = stack.enter_context(running_pebble())
        setup = stack.enter_context(
            lacme_setup(
                pebble,
                account_key_type="ec",
                accountd_command=[str(OUR_ACCOUNTD)],
                client_command=[sys.executable, "-I", "-m", "lacme.client"],
                webserver_command=[sys.executable, "-I", "-m", "lacme.webserver"],
            )
        )
        print(f"Configuration in {setup.directory}; account key: ECDSA P-256\n")
        print("Running, as root: lacme account --register --tos-agreed mailto:admin@example.test")
        print("                  lacme newOrder")
        setup.register_and_issue()
        chain = x509.load_pem_x509_certificates(setup.certificate_chain.read_bytes())
        print("\nCertificate installed and verified against Pebble's root:")
        print("\n".join("  " + line for line in describe(chain[0])))
        print(f"  chain:       {len(chain)} certificates in {setup.certificate_chain.name}")
        print("\nProcesses:")
        print(f"  account key manager  our lacme-accountd {__version__} ({OUR_ACCOUNTD})")
        print("  master (root)        Perl lacme 0.8.2, /usr/sbin/lacme")
        print("  client               our python -m lacme.client, as _lacme-client")
        print("  webserver            our python -m lacme.webserver, as _lacme-www")
        print("Our master is not written yet (issue #4): this demo stops at what exists.")
        if args.keep:
            kept = Path(tempfile.mkdtemp(prefix="lacme-demo-"))
            shutil.copytree(setup.directory, kept, dirs_exist_ok=True)
            print(f"\nKept a copy of the configuration, keys and certificates in {kept}")
            print("(its lacme.conf names Pebble's ports, which are gone now).")
    print("\nPebble stopped, temporary files removed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
