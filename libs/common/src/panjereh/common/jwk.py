"""ES256 keys as JSON Web Keys: generate, load, serialise, publish, sign and verify.

One implementation for every ES256 key the platform holds: identity's token-signing keys,
the inquiry broker's answer-signing key, the requests service's document keys, the test
signing keys. ``kid`` is the RFC 7638 thumbprint of the public key, so it needs no bookkeeping
and is the same wherever the key is loaded.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

ALGORITHM = "ES256"
_COORDINATE_BYTES = 32

PrivateKey = ec.EllipticCurvePrivateKey
PublicKey = ec.EllipticCurvePublicKey


class InvalidJws(ValueError):
    """A compact JWS that is malformed, signed by an unknown key, or changed after signing."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the bytes that get hashed and signed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def generate_private_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def load_private_key(pem: str, password: bytes | None = None) -> PrivateKey:
    """A P-256 private key from PEM (PKCS#8, optionally encrypted); anything else is refused."""
    key = serialization.load_pem_private_key(pem.encode(), password=password)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        msg = "a signing key must be an EC P-256 private key (ES256)"
        raise ValueError(msg)
    return key


def private_pem(key: PrivateKey, password: bytes | None = None) -> str:
    """PKCS#8 PEM, encrypted with ``password`` when one is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()


def public_pem(key: PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def thumbprint(members: dict[str, str]) -> str:
    """RFC 7638: SHA-256 over the required members, sorted, without whitespace."""
    required = {name: members[name] for name in ("crv", "kty", "x", "y")}
    return b64url(hashlib.sha256(canonical_json(required)).digest())


def public_jwk(key: PublicKey | PrivateKey) -> dict[str, str]:
    """The public JWK of ``key``, with ``kid`` (its thumbprint), ``use`` and ``alg``."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    numbers = public.public_numbers()
    members = {
        "crv": "P-256",
        "kty": "EC",
        "x": b64url(numbers.x.to_bytes(_COORDINATE_BYTES, "big")),
        "y": b64url(numbers.y.to_bytes(_COORDINATE_BYTES, "big")),
    }
    return {**members, "kid": thumbprint(members), "use": "sig", "alg": ALGORITHM}


def public_key_from_jwk(jwk: dict[str, Any]) -> PublicKey:
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256" or "d" in jwk:
        msg = "not a public EC P-256 key"
        raise ValueError(msg)
    return ec.EllipticCurvePublicNumbers(
        int.from_bytes(b64url_decode(str(jwk["x"])), "big"),
        int.from_bytes(b64url_decode(str(jwk["y"])), "big"),
        ec.SECP256R1(),
    ).public_key()


def sign_compact(
    key: PrivateKey,
    header: dict[str, Any],
    payload: Any,
    *,
    encode: Callable[[Any], bytes] = canonical_json,
    kid: str | None = None,
) -> str:
    """A compact JWS (RFC 7515) of ``payload``: ES256, ``alg`` and ``kid`` set in the header.

    ``encode`` turns header and payload into bytes (canonical JSON unless told otherwise).
    ``kid``: the key's thumbprint, when the caller keeps it (a signer signing many tokens);
    computed from ``key`` otherwise.
    """
    if kid is None:
        kid = thumbprint(public_jwk(key))
    full_header = {**header, "alg": ALGORITHM, "kid": kid}
    signing_input = f"{b64url(encode(full_header))}.{b64url(encode(payload))}"
    der = key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    raw = r.to_bytes(_COORDINATE_BYTES, "big") + s.to_bytes(_COORDINATE_BYTES, "big")
    return f"{signing_input}.{b64url(raw)}"


def verify_compact(token: str, jwks: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(header, payload)`` of ``token`` when a key of ``jwks`` (``{"keys": [...]}``) signed it.

    Only ES256 is accepted, whatever the header says; the key is picked by ``kid``.
    """
    try:
        header_part, payload_part, signature_part = token.split(".")
        header = json.loads(b64url_decode(header_part))
        raw = b64url_decode(signature_part)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidJws(str(exc)) from exc
    if not isinstance(header, dict) or header.get("alg") != ALGORITHM:
        msg = "not an ES256 signature"
        raise InvalidJws(msg)
    if len(raw) != 2 * _COORDINATE_BYTES:
        msg = "an ES256 signature has 64 bytes"
        raise InvalidJws(msg)
    jwk = next((k for k in jwks.get("keys", []) if k.get("kid") == header.get("kid")), None)
    if jwk is None:
        msg = "unknown kid"
        raise InvalidJws(msg)
    try:
        key = public_key_from_jwk(jwk)
        der = encode_dss_signature(
            int.from_bytes(raw[:_COORDINATE_BYTES], "big"),
            int.from_bytes(raw[_COORDINATE_BYTES:], "big"),
        )
        key.verify(der, f"{header_part}.{payload_part}".encode(), ec.ECDSA(hashes.SHA256()))
        payload = json.loads(b64url_decode(payload_part))
    except (InvalidSignature, ValueError, UnicodeDecodeError, KeyError) as exc:
        raise InvalidJws("signature does not verify") from exc
    if not isinstance(payload, dict):
        msg = "the payload is not a JSON object"
        raise InvalidJws(msg)
    return header, payload
