"""Signed answers: compact JWS (RFC 7515), ES256, over what the answer says about whom.

The payload holds the inquiry id, its type, ``subject_sha256`` (SHA-256 of the subject's
national code, so whoever knows the subject can check it without the answer carrying it), the
status, the result and when it was answered. The header is
``{"alg": "ES256", "kid": <RFC 7638 thumbprint>, "typ": "inquiry-answer+jws"}``. The public key
is served as a JWKS. :func:`verify` is what a relying party runs; see docs/inquiries.md.

Keys, signatures and thumbprints are the kernel's (:mod:`panjereh.common.jwk`); what is the
broker's own is the ``typ`` and the encoding of what is signed: its canonical JSON
(:mod:`panjereh.inquiry_broker.canonical`), the one the documentation describes.
"""

from __future__ import annotations

import hashlib
from typing import Any

from panjereh.common import jwk
from panjereh.inquiry_broker.canonical import canonical_json

ALGORITHM = jwk.ALGORITHM
JWS_MEDIA_TYPE = "inquiry-answer+jws"


class InvalidAnswerSignature(jwk.InvalidJws):
    """The token is malformed, signed by another key, not an answer, or changed after signing."""


def subject_sha256(subject: str) -> str:
    return hashlib.sha256(subject.encode()).hexdigest()


class AnswerSigner:
    """Signs answers with one P-256 private key (shared by every replica)."""

    def __init__(self, private_key: jwk.PrivateKey) -> None:
        self._key = private_key
        self.jwk = jwk.public_jwk(private_key)
        self.kid = self.jwk["kid"]

    @classmethod
    def from_pem(cls, pem: str) -> AnswerSigner:
        return cls(jwk.load_private_key(pem))

    @classmethod
    def generate(cls) -> AnswerSigner:
        return cls(jwk.generate_private_key())

    def private_pem(self) -> str:
        return jwk.private_pem(self._key)

    def jwks(self) -> dict[str, Any]:
        """The JWK Set relying parties verify answers with."""
        return {"keys": [self.jwk]}

    def sign(self, payload: dict[str, Any]) -> str:
        return self.sign_as(JWS_MEDIA_TYPE, payload)

    def sign_as(self, media_type: str, payload: dict[str, Any]) -> str:
        """Sign ``payload`` as a ``media_type`` token (an answer, an audit checkpoint): each
        verifier checks ``typ``, so one kind is never taken for the other."""
        return jwk.sign_compact(
            self._key, {"typ": media_type}, payload, encode=canonical_json, kid=self.kid
        )


def verify(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """The payload of ``token`` if a key of ``jwks`` (``{"keys": [...]}``) signed it as an answer.

    A valid ES256 signature over something that is not an answer (another ``typ``) is refused
    too: the same key must not vouch for a token of another kind.
    """
    try:
        header, payload = jwk.verify_compact(token, jwks)
    except jwk.InvalidJws as exc:
        raise InvalidAnswerSignature(str(exc)) from exc
    if header.get("typ") != JWS_MEDIA_TYPE:
        msg = f"not an inquiry answer (typ {header.get('typ')!r})"
        raise InvalidAnswerSignature(msg)
    return payload
