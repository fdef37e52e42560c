"""JSON Web Signatures as RFC 8555 section 6.2 wants them: flattened JSON
serialization (RFC 7515 section 7.2.2), compact JSON in each part, the
signature made by a callback (lacme-accountd holds every key)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from lacme.accountd_protocol import b64url_encode

# sign(signing input) -> base64url signature
Signer = Callable[[bytes], str]


def _encoded(obj: Mapping[str, Any]) -> bytes:
    return b64url_encode(json.dumps(obj, separators=(",", ":")).encode())


def sign(
    header: Mapping[str, Any], payload: Mapping[str, Any] | None, signer: Signer
) -> dict[str, str]:
    """The flattened JWS of PAYLOAD (None: the empty payload of a
    POST-as-GET) under the protected HEADER, signed by SIGNER."""
    protected = _encoded(header)
    encoded_payload = b"" if payload is None else _encoded(payload)
    return {
        "protected": protected.decode(),
        "payload": encoded_payload.decode(),
        "signature": signer(protected + b"." + encoded_payload),
    }
