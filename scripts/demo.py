"""The README's demo: a certificate from a local Pebble through lacme's four
processes, and who ran what.

It starts Pebble on loopback, writes a throwaway configuration, registers an
account (the key stays in lacme-accountd) and issues a certificate for two
names, watching /proc meanwhile to show which user each process ran as.
"""

import argparse
import pwd
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from master_helpers import CONTACT, LACME, master_setup
from pebble import running_pebble

NAMES = ("www.example.test", "example.test")
ROLES = (
    ("lacme-accountd", "account key manager"),
    ("lacme.client", "ACME client"),
    ("lacme.webserver", "http-01 webserver"),
    ("bin/lacme ", "master"),
)


def describe(certificate: x509.Certificate) -> list[str]:
    sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [
        f"subject:  {certificate.subject.rfc4514_string()}",
        f"names:    {', '.join(sans.get_values_for_type(x509.DNSName))}",
        f"issuer:   {certificate.issuer.rfc4514_string()}",
        f"valid:    {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} to "
        f"{certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC",
        f"SHA-256:  {certificate.fingerprint(hashes.SHA256()).hex(':').upper()}",
    ]


def run_watching(argv: list[str]) -> dict[str, str]:
    """Run ARGV (failing loudly) and return, for each lacme process seen
    while it ran, the user it ran as."""
    seen: dict[str, str] = {}
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        while proc.poll() is None:
            for status in Path("/proc").glob("[0-9]*/status"):
                try:
                    cmdline = (status.parent / "cmdline").read_bytes().replace(b"\0", b" ")
                    uid = next(
                        int(line.split()[1])
                        for line in status.read_text().splitlines()
                        if line.startswith("Uid:")
                    )
                except (OSError, StopIteration):
                    continue  # gone meanwhile
                for marker, role in ROLES:
                    if marker.encode() in cmdline:
                        seen.setdefault(role, pwd.getpwuid(uid).pw_name)
        out, err = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{out}{err}")
    return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--keep", action="store_true", help="keep the configuration, keys and certificate"
    )
    args = parser.parse_args()

    with ExitStack() as stack:
        print("Starting Pebble (a test ACME server) and its mock DNS on 127.0.0.1 ...")
        pebble = stack.enter_context(running_pebble())
        setup = stack.enter_context(master_setup(pebble))
        key_path, _ = setup.service_key("demo", "p256")
        chain_path = setup.directory / "demo.chain.pem"
        setup.write_sections(
            {
                "demo": {
                    "certificate-key": str(key_path),
                    "certificate-chain": str(chain_path),
                    "subject": f"/CN={NAMES[0]}",
                    "subjectAltName": ",".join(f"DNS:{name}" for name in NAMES),
                }
            }
        )
        print(f"Configuration in {setup.directory}\n")
        lacme = [str(LACME), f"--config={setup.config}"]
        print(f"# lacme account --register --tos-agreed {CONTACT}")
        users = run_watching([*lacme, "account", "--register", "--tos-agreed", CONTACT])
        print("# lacme newOrder")
        users.update(run_watching([*lacme, "newOrder"]))

        chain = x509.load_pem_x509_certificates(chain_path.read_bytes())
        print("\nCertificate installed after verification against Pebble's root:")
        print("\n".join("  " + line for line in describe(chain[0])))
        print(f"  chain:    {len(chain)} certificates in {chain_path.name}")
        print("\nProcesses seen, and the user each ran as:")
        for _, role in ROLES:
            print(f"  {role:20} {users.get(role, '(not seen)')}")
        if args.keep:
            kept = Path(tempfile.mkdtemp(prefix="lacme-demo-"))
            shutil.copytree(setup.directory, kept, dirs_exist_ok=True)
            print(f"\nKept a copy of the configuration, keys and certificate in {kept}")
            print("(its lacme.conf names Pebble's ports, which are closed now).")
    print("\nPebble stopped, temporary files removed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
