"""Iranian national codes (کد ملی), in the shape an agency's handler needs them.

The rules are the platform's own (:mod:`panjereh.contracts.identifiers`): checksum
``s = Σ d_i·(10 − i)``, ``r = s mod 11``, check digit ``r`` if ``r < 2`` else ``11 − r``, and
all-same-digit codes or codes whose digits 4–9 are zero refused.
"""

from __future__ import annotations

from panjereh.contracts.identifiers import (
    InvalidIdentifier,
    ascii_digits,
    complete_national_code,
    is_valid_national_code,
    national_code_check_digit,
)

__all__ = ["check_digit", "complete", "is_valid", "normalize"]

check_digit = national_code_check_digit
complete = complete_national_code


def normalize(raw: str) -> str | None:
    """The 10-digit form of ``raw`` (Persian/Arabic digits, spaces, dashes, 8-9 digits padded).

    ``None`` when ``raw`` cannot be a national code at all; the checksum is not checked here.
    """
    digits = "".join(ascii_digits(raw).split()).replace("-", "")
    if not digits.isascii() or not digits.isdigit() or not 8 <= len(digits) <= 10:
        return None
    return digits.zfill(10)


def is_valid(code: str) -> bool:
    """True when ``code`` (already normalised, 10 digits) is a valid national code."""
    if len(code) != 10 or not code.isascii() or not code.isdigit():
        return False
    try:
        return is_valid_national_code(code)
    except InvalidIdentifier:  # pragma: no cover - is_valid_* never raises
        return False
