"""Loading a private key from a file that root, or the account key's owner,
wrote: the service keys (master) and the account key (accountd).

cryptography checks an RSA key in full when it loads it (the primality of
its factors, among others): about 30 ms for RSA 2048, which every run
spends in the master and again in accountd, on its critical path.  These
keys are not hostile input.  So the full check is skipped, and one
signature made and verified in its place (under 2 ms): a key whose
private half does not sign for its public half is refused all the same,
and a key that signs for it is fit for use.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

_PROBE = b"lacme: does this RSA key sign for its public half?"


class MismatchedKeyError(ValueError):
    """An RSA key whose private half does not sign for its public half."""


def load_pem(data: bytes, password: bytes | None) -> PrivateKeyTypes:
    """The private key in the PEM DATA; TypeError, ValueError and
    UnsupportedAlgorithm as serialization.load_pem_private_key."""
    return _checked(
        serialization.load_pem_private_key(data, password, unsafe_skip_rsa_key_validation=True)
    )


def load_der(data: bytes) -> PrivateKeyTypes:
    """The unencrypted private key in the DER DATA; errors as load_pem."""
    return _checked(
        serialization.load_der_private_key(data, None, unsafe_skip_rsa_key_validation=True)
    )


def _checked(key: PrivateKeyTypes) -> PrivateKeyTypes:
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(_PROBE, padding.PKCS1v15(), hashes.SHA256())
        try:
            key.public_key().verify(signature, _PROBE, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise MismatchedKeyError from None
    return key
