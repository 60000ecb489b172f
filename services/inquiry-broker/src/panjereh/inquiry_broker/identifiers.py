"""Subjects of inquiries: national codes, validated and hashed.

The audit log stores ``HMAC-SHA256(key, national code)``, never the code: a plain hash of a
10-digit code with a checksum (~10⁹ candidates) is reversed in seconds, a keyed one is not
without the key, yet the citizen's tracker can still find its own entries.
"""

from __future__ import annotations

import hashlib
import hmac

from panjereh.contracts.identifiers import InvalidIdentifier
from panjereh.contracts.identifiers import normalize_national_code as normalize


def normalize_national_code(raw: str) -> str | None:
    """The valid 10-digit national code in ``raw``, or ``None``."""
    try:
        return normalize(raw)
    except InvalidIdentifier:
        return None


def subject_hash(key: bytes, subject: str) -> str:
    return hmac.new(key, subject.encode(), hashlib.sha256).hexdigest()
