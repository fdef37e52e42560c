"""The account key inside lacme-accountd: loading it, its public JWK, signing;
and the external account binding HMAC key, if any.

Only lacme-accountd imports this module; no other process ever holds the
account's private key or the HMAC key.
"""

import os
import stat
import termios
from collections.abc import Callable
from typing import NamedTuple

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from lacme import private_keys
from lacme.accountd_protocol import b64url_encode, canonical_json

# Below this, RSA account keys are refused: ACME CAs refuse them too.
MIN_RSA_BITS = 2048

# RFC 7518 section 3.4: the curve, its JWS algorithm and hash, and the byte
# length of each of r and s in the raw signature.
_CURVES: dict[str, tuple[str, str, hashes.HashAlgorithm, int]] = {
    "secp256r1": ("P-256", "ES256", hashes.SHA256(), 32),
    "secp384r1": ("P-384", "ES384", hashes.SHA384(), 48),
}


class AccountKeyError(Exception):
    """The account key can't be had; the message names the file and why."""


def _b64uint(value: int, length: int | None = None) -> str:
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return b64url_encode(value.to_bytes(size, "big")).decode()


class AccountKey(NamedTuple):
    alg: str
    jwk: dict[str, str]
    sign: Callable[[bytes], bytes]

    @property
    def thumbprint(self) -> str:
        """RFC 7638 thumbprint; RFC 8555 section 8.1 fixes SHA-256."""
        digest = hashes.Hash(hashes.SHA256())
        digest.update(canonical_json(self.jwk))
        return b64url_encode(digest.finalize()).decode()


def _rsa_account_key(key: rsa.RSAPrivateKey, source: str) -> AccountKey:
    if key.key_size < MIN_RSA_BITS:
        raise AccountKeyError(
            f"{source}: RSA key of {key.key_size} bits is too short (at least {MIN_RSA_BITS})"
        )
    numbers = key.public_key().public_numbers()
    pkcs1v15, sha256 = padding.PKCS1v15(), hashes.SHA256()
    return AccountKey(
        alg="RS256",
        jwk={"e": _b64uint(numbers.e), "kty": "RSA", "n": _b64uint(numbers.n)},
        sign=lambda data: key.sign(data, pkcs1v15, sha256),
    )


def _ec_account_key(key: ec.EllipticCurvePrivateKey, source: str) -> AccountKey:
    if key.curve.name not in _CURVES:
        raise AccountKeyError(
            f"{source}: unsupported ECDSA curve {key.curve.name} (supported: P-256, P-384)"
        )
    crv, alg, digest, size = _CURVES[key.curve.name]
    numbers = key.public_key().public_numbers()
    ecdsa = ec.ECDSA(digest)

    def sign(data: bytes) -> bytes:
        r, s = decode_dss_signature(key.sign(data, ecdsa))
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")

    return AccountKey(
        alg=alg,
        jwk={
            "crv": crv,
            "kty": "EC",
            "x": _b64uint(numbers.x, size),
            "y": _b64uint(numbers.y, size),
        },
        sign=sign,
    )


def from_pem(pem: bytes, source: str, ask_passphrase: Callable[[], bytes]) -> AccountKey:
    """Build the account key from PEM data, asking for a passphrase if needed."""
    try:
        try:
            key = private_keys.load_pem(pem, None)
        except TypeError:  # encrypted
            try:
                key = private_keys.load_pem(pem, ask_passphrase())
            except private_keys.MismatchedKeyError:
                raise
            except ValueError:
                raise AccountKeyError(f"{source}: wrong passphrase (or corrupt key)") from None
    except private_keys.MismatchedKeyError:
        raise AccountKeyError(
            f"{source}: the key's private half does not sign for its public half"
        ) from None
    except UnsupportedAlgorithm as e:
        raise AccountKeyError(f"{source}: unsupported key: {e}") from None
    except ValueError:
        if b"-----BEGIN PUBLIC KEY-----" in pem or b"-----BEGIN RSA PUBLIC KEY-----" in pem:
            raise AccountKeyError(f"{source}: not a private key (this is a public key)") from None
        raise AccountKeyError(f"{source}: not a PEM private key") from None
    if isinstance(key, rsa.RSAPrivateKey):
        return _rsa_account_key(key, source)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return _ec_account_key(key, source)
    raise AccountKeyError(
        f"{source}: unsupported key type {type(key).__name__.removesuffix('PrivateKey')}"
        " (supported: RSA, ECDSA P-256, ECDSA P-384)"
    )


def ask_passphrase_on_tty(path: str) -> Callable[[], bytes]:
    """A passphrase prompt on the controlling terminal, never on stdin,
    which in --stdio mode carries the protocol."""

    def ask() -> bytes:
        try:
            fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
        except OSError:
            raise AccountKeyError(
                f"{path}: the key is encrypted and there is no terminal to ask for its passphrase"
            ) from None
        with open(fd, "r+b", buffering=0) as tty:
            saved = termios.tcgetattr(fd)
            quiet = list(saved)
            quiet[3] &= ~termios.ECHO
            # Echo goes off before the prompt shows: what is typed after it
            # is neither echoed nor flushed away.
            termios.tcsetattr(fd, termios.TCSAFLUSH, quiet)
            try:
                tty.write(f"Passphrase for {path}: ".encode())
                answer = bytearray()
                while not answer.endswith(b"\n"):
                    chunk = os.read(fd, 1)
                    if not chunk:
                        break
                    answer += chunk
            finally:
                termios.tcsetattr(fd, termios.TCSAFLUSH, saved)
                tty.write(b"\n")
        return bytes(answer).rstrip(b"\r\n")

    return ask


def load_file(path: str, warn: Callable[[str], None]) -> AccountKey:
    """`privkey = file:PATH`: a PEM private key, possibly encrypted."""
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            pem = f.read()
    except OSError as e:
        raise AccountKeyError(f"can't read account key {path}: {e.strerror}") from None
    key = from_pem(pem, path, ask_passphrase_on_tty(path))
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        warn(
            f"Warning: account key {path} is accessible to group or others (mode "
            f"{stat.S_IMODE(mode):04o}); make it 0600"
        )
    return key


def load_gpg(path: str, gpg_command: str) -> AccountKey:
    """`privkey = gpg:PATH`: a key decrypted by gpg(1) into our memory only."""
    import subprocess  # here: only a gpg key needs it

    argv = [*gpg_command.split(), "-o", "-", "--decrypt", "--", path]
    try:
        # stdin is the protocol channel in --stdio mode: gpg must not read it.
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, check=False)
    except OSError as e:
        raise AccountKeyError(f"can't run gpg command {argv[0]!r}: {e.strerror}") from None
    if done.returncode != 0:
        raise AccountKeyError(f"{argv[0]} failed to decrypt {path} (exit status {done.returncode})")
    return from_pem(done.stdout, path, ask_passphrase_on_tty(path))


# RFC 7518 section 3.2: the MAC algorithms an external account binding may use.
EAB_ALGORITHMS = {"HS256": "sha256", "HS384": "sha384", "HS512": "sha512"}


def load_eab_signer(path: str, alg: str) -> Callable[[bytes], bytes]:
    """The external account binding MAC with the base64url HMAC key in PATH,
    a file only its owner may access: CAs hand these keys out like passwords."""
    import hmac

    from lacme.accountd_protocol import b64url_decode

    if alg not in EAB_ALGORITHMS:
        raise AccountKeyError(f"eab-alg {alg!r}: expected one of {', '.join(EAB_ALGORITHMS)}")
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            text = f.read(4096)
    except OSError as e:
        raise AccountKeyError(f"can't read EAB HMAC key {path}: {e.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO) or st.st_uid != os.geteuid():
        raise AccountKeyError(
            f"EAB HMAC key {path} must be owned by uid {os.geteuid()} and accessible to "
            f"nobody else (it is uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o})"
        )
    try:
        # CAs show the key base64url-encoded, sometimes padded.
        secret = b64url_decode(text.strip().rstrip(b"="))
    except ValueError:
        raise AccountKeyError(f"EAB HMAC key {path} is not base64url") from None
    if not secret:
        raise AccountKeyError(f"EAB HMAC key {path} is empty")
    digest = EAB_ALGORITHMS[alg]
    return lambda data: hmac.digest(secret, data, digest)
