"""Subjects of inquiries in the audit log: national codes, hashed with a key.

The audit log stores ``HMAC-SHA256(key, national code)``, never the code: a plain hash of a
10-digit code with a checksum (~10⁹ candidates) is reversed in seconds, a keyed one is not
without the key, yet the citizen's tracker can still find its own entries. (Validating a
subject is :func:`panjereh.contracts.identifiers.normalize_national_code`.)
"""

from __future__ import annotations

import hashlib
import hmac


def subject_hash(key: bytes, subject: str) -> str:
    return hmac.new(key, subject.encode(), hashlib.sha256).hexdigest()
