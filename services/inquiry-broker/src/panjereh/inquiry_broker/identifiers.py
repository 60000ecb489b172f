"""Subjects of inquiries: national codes, validated and hashed.

The audit log stores ``HMAC-SHA256(key, national code)``, never the code: a plain hash of a
10-digit code with a checksum (~10⁹ candidates) is reversed in seconds, a keyed one is not
without the key, yet the citizen's tracker can still find its own entries.
"""

from __future__ import annotations

import hashlib
import hmac

_DIGITS = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩", "01234567890123456789")


def normalize_national_code(raw: str) -> str | None:
    """The valid 10-digit national code in ``raw``, or ``None``."""
    digits = raw.translate(_DIGITS).replace(" ", "").replace("-", "")
    if not digits.isascii() or not digits.isdigit() or not 8 <= len(digits) <= 10:
        return None
    code = digits.zfill(10)
    if len(set(code)) == 1 or code[3:9] == "000000":
        return None
    remainder = sum(int(d) * (10 - i) for i, d in enumerate(code[:9])) % 11
    check = remainder if remainder < 2 else 11 - remainder
    return code if int(code[9]) == check else None


def subject_hash(key: bytes, subject: str) -> str:
    return hmac.new(key, subject.encode(), hashlib.sha256).hexdigest()
