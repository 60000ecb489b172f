"""Signed answers: compact JWS (RFC 7515), ES256, over what the answer says about whom.

The payload holds the inquiry id, its type, ``subject_sha256`` (SHA-256 of the subject's
national code, so whoever knows the subject can check it without the answer carrying it), the
status, the result and when it was answered. The public key is served as a JWKS with a ``kid``
(its RFC 7638 thumbprint). :func:`verify` is what a relying party runs; see docs/inquiries.md.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from panjereh.inquiry_broker.canonical import canonical_json

ALGORITHM = "ES256"
JWS_MEDIA_TYPE = "inquiry-answer+jws"
_COORDINATE_BYTES = 32


class InvalidAnswerSignature(Exception):
    """The token is malformed, signed by another key, or was changed after signing."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def subject_sha256(subject: str) -> str:
    return hashlib.sha256(subject.encode()).hexdigest()


def public_jwk(key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    numbers = key.public_numbers()
    jwk = {
        "crv": "P-256",
        "kty": "EC",
        "x": b64url(numbers.x.to_bytes(_COORDINATE_BYTES, "big")),
        "y": b64url(numbers.y.to_bytes(_COORDINATE_BYTES, "big")),
    }
    # RFC 7638 thumbprint: the required members, sorted, no whitespace
    thumbprint = hashlib.sha256(canonical_json(jwk)).digest()
    return {**jwk, "kid": b64url(thumbprint), "alg": ALGORITHM, "use": "sig"}


class AnswerSigner:
    """Signs answers with one P-256 private key (shared by every replica)."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        self._key = private_key
        self.jwk = public_jwk(private_key.public_key())
        self.kid = self.jwk["kid"]

    @classmethod
    def from_pem(cls, pem: str) -> AnswerSigner:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            msg = "the signing key must be an EC P-256 private key"
            raise ValueError(msg)
        return cls(key)

    @classmethod
    def generate(cls) -> AnswerSigner:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    def private_pem(self) -> str:
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    def sign(self, payload: dict[str, Any]) -> str:
        header = {"alg": ALGORITHM, "kid": self.kid, "typ": JWS_MEDIA_TYPE}
        signing_input = f"{b64url(canonical_json(header))}.{b64url(canonical_json(payload))}"
        der = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        raw = r.to_bytes(_COORDINATE_BYTES, "big") + s.to_bytes(_COORDINATE_BYTES, "big")
        return f"{signing_input}.{b64url(raw)}"


def verify(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """The payload of ``token`` if a key of ``jwks`` (``{"keys": [...]}``) signed it."""
    try:
        header_part, payload_part, signature_part = token.split(".")
        header = json.loads(b64url_decode(header_part))
        raw = b64url_decode(signature_part)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidAnswerSignature(str(exc)) from exc
    if header.get("alg") != ALGORITHM or len(raw) != 2 * _COORDINATE_BYTES:
        msg = "not an ES256 signature"
        raise InvalidAnswerSignature(msg)
    jwk = next((k for k in jwks.get("keys", []) if k.get("kid") == header.get("kid")), None)
    if jwk is None:
        msg = "unknown kid"
        raise InvalidAnswerSignature(msg)
    key = ec.EllipticCurvePublicNumbers(
        int.from_bytes(b64url_decode(jwk["x"]), "big"),
        int.from_bytes(b64url_decode(jwk["y"]), "big"),
        ec.SECP256R1(),
    ).public_key()
    der = encode_dss_signature(
        int.from_bytes(raw[:_COORDINATE_BYTES], "big"),
        int.from_bytes(raw[_COORDINATE_BYTES:], "big"),
    )
    try:
        key.verify(der, f"{header_part}.{payload_part}".encode(), ec.ECDSA(hashes.SHA256()))
        payload: dict[str, Any] = json.loads(b64url_decode(payload_part))
    except (InvalidSignature, ValueError, UnicodeDecodeError) as exc:
        raise InvalidAnswerSignature("signature does not verify") from exc
    return payload
