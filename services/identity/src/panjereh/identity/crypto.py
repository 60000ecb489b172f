"""Keyed hashing, secret generation and encryption at rest, from one master secret.

Each purpose gets its own key derived with HKDF-SHA256, so a key is never used for two jobs
and only one secret has to be mounted.
"""

from __future__ import annotations

import base64
import hmac
import os
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_SEPARATOR = b"\x1f"
OTP_DIGITS = 6


def derive_key(master: bytes, purpose: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=b"panjereh-identity/" + purpose.encode(),
    ).derive(master)


def _keyed(key: bytes, parts: tuple[str, ...]) -> str:
    message = _SEPARATOR.join(part.encode() for part in parts)
    # the one-shot form: the same HMAC-SHA256, without building an hmac object each time
    return hmac.digest(key, message, "sha256").hex()


def new_otp_code() -> str:
    """Six digits from the OS's CSPRNG (never ``random``)."""
    return f"{secrets.randbelow(10**OTP_DIGITS):0{OTP_DIGITS}d}"


def new_opaque_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


@dataclass(frozen=True)
class Keys:
    """The purpose keys of one process."""

    otp: bytes
    tokens: bytes
    lookup: bytes
    storage: bytes
    signing_key_password: bytes

    @classmethod
    def from_secret(cls, secret: str) -> Keys:
        master = secret.encode()
        return cls(
            otp=derive_key(master, "otp"),
            tokens=derive_key(master, "tokens"),
            lookup=derive_key(master, "lookup"),
            storage=derive_key(master, "storage"),
            signing_key_password=base64.urlsafe_b64encode(derive_key(master, "signing-keys")),
        )

    def otp_hash(self, *, challenge_id: str, national_code: str, mobile: str, code: str) -> str:
        """The stored form of an OTP: bound to its challenge, national code and mobile."""
        return _keyed(self.otp, (challenge_id, national_code, mobile, code))

    def otp_matches(
        self, stored: str, *, challenge_id: str, national_code: str, mobile: str, code: str
    ) -> bool:
        candidate = self.otp_hash(
            challenge_id=challenge_id, national_code=national_code, mobile=mobile, code=code
        )
        # compare with hmac.compare_digest: no timing leak about how many characters matched
        return hmac.compare_digest(stored, candidate)

    def token_hash(self, token: str) -> str:
        """Stored form of refresh tokens and client secrets (high entropy: one HMAC suffices)."""
        return _keyed(self.tokens, (token,))

    def token_matches(self, stored: str, token: str) -> bool:
        return hmac.compare_digest(stored, self.token_hash(token))

    def lookup_key(self, *parts: str) -> str:
        """A pseudonymous key (rate-limit buckets) that reveals no mobile or address."""
        return _keyed(self.lookup, parts)

    def encrypt(self, plaintext: bytes, *, context: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + AESGCM(self.storage).encrypt(nonce, plaintext, context)

    def decrypt(self, sealed: bytes, *, context: bytes) -> bytes:
        return AESGCM(self.storage).decrypt(sealed[:12], sealed[12:], context)
