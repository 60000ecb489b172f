"""Iranian national codes (کد ملی): normalisation and the checksum.

Rule: ``s = Σ d_i·(10 − i)`` for i = 0..8, ``r = s mod 11``; valid iff ``d9 == r`` when
``r < 2``, else ``d9 == 11 − r``. All-same-digit codes and codes whose digits 4–9 are zero pass
the bare checksum but are not issued, so they are refused too.
"""

from __future__ import annotations

import re

_DIGITS = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩", "01234567890123456789")
_SEPARATORS = re.compile(r"[\s\-]")


def normalize(raw: str) -> str | None:
    """The 10-digit form of ``raw`` (Persian/Arabic digits, spaces, dashes, 8-9 digits padded).

    ``None`` when ``raw`` cannot be a national code at all; the checksum is not checked here.
    """
    digits = _SEPARATORS.sub("", raw.translate(_DIGITS))
    if not digits.isascii() or not digits.isdigit() or not 8 <= len(digits) <= 10:
        return None
    return digits.zfill(10)


def check_digit(first_nine: str) -> int:
    """The tenth digit that makes ``first_nine`` a valid national code."""
    total = sum(int(digit) * (10 - index) for index, digit in enumerate(first_nine))
    remainder = total % 11
    return remainder if remainder < 2 else 11 - remainder


def is_valid(code: str) -> bool:
    """True when ``code`` (already normalised, 10 digits) is a valid national code."""
    if len(code) != 10 or not code.isascii() or not code.isdigit():
        return False
    if len(set(code)) == 1 or code[3:9] == "000000":
        return False
    return int(code[9]) == check_digit(code[:9])


def complete(first_nine: str) -> str:
    """``first_nine`` followed by its check digit (used to make documented test codes)."""
    return first_nine + str(check_digit(first_nine))
