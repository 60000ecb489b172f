"""Iranian identifiers: national code, legal-entity national ID and mobile numbers.

Pure functions, no I/O: each ``normalize_*`` returns the canonical ASCII form or raises
:class:`InvalidIdentifier`; each ``is_valid_*`` answers without raising. Rules and test
vectors are in DOMAIN.md ("Identifiers"). They live with the contracts because these
identifiers are what the contracts carry (inquiry subjects, citizens, agencies' replies):
identity, the inquiry broker and the agency SDK all validate them with this one module.
"""

from __future__ import annotations

import re

_PERSIAN_DIGITS = "۰۱۲۳۴۵۶۷۸۹"  # U+06F0..U+06F9
_ARABIC_INDIC_DIGITS = "٠١٢٣٤٥٦٧٨٩"  # U+0660..U+0669
_TO_ASCII = str.maketrans(_PERSIAN_DIGITS + _ARABIC_INDIC_DIGITS, "0123456789" * 2)
_SEPARATORS = re.compile(r"[\s\-\u200c\u200f\u200e()]")
_MOBILE = re.compile(r"^(?:\+98|0098|98|0)?(9\d{9})$")
_LEGAL_ENTITY_WEIGHTS = (29, 27, 23, 19, 17)


class InvalidIdentifier(ValueError):
    """An identifier that cannot be normalised or fails its check.

    ``code`` is stable for machines (``national_code_checksum`` ...); ``messages`` says it in
    Persian and English, so an API can show it next to the field in the caller's language.
    """

    def __init__(self, code: str, *, fa: str, en: str) -> None:
        super().__init__(en)
        self.code = code
        self.messages = {"fa": fa, "en": en}


def ascii_digits(text: str) -> str:
    """``text`` with Persian and Arabic-Indic digits replaced by ASCII digits."""
    return text.translate(_TO_ASCII)


def _compact(text: str) -> str:
    return _SEPARATORS.sub("", ascii_digits(text.strip()))


def normalize_national_code(value: str) -> str:
    """The 10-digit national code for ``value``, or :class:`InvalidIdentifier`.

    Accepts Persian/Arabic digits, spaces and dashes, and 8 or 9 digits (old cards drop
    leading zeros, so they are padded back).
    """
    code = _compact(value)
    if not code.isascii() or not code.isdigit() or not 8 <= len(code) <= 10:
        raise InvalidIdentifier(
            "national_code_length",
            fa="کد ملی ۱۰ رقم دارد",
            en="a national code has 10 digits",
        )
    code = code.zfill(10)
    if len(set(code)) == 1:
        # 1111111111 and friends pass the bare checksum but were never issued
        raise InvalidIdentifier(
            "national_code_repeated_digit",
            fa="کد ملی نمی‌تواند تنها یک رقم تکراری باشد",
            en="a national code cannot repeat one digit",
        )
    if code[3:9] == "000000":
        raise InvalidIdentifier(
            "national_code_zeros",
            fa="کد ملی نمی‌تواند شش صفر در میانه داشته باشد",
            en="a national code cannot have six zeros in its middle",
        )
    if not _national_code_checksum_ok(code):
        raise InvalidIdentifier(
            "national_code_checksum",
            fa="رقم کنترل کد ملی درست نیست",
            en="the national code's check digit does not match",
        )
    return code


def national_code_check_digit(first_nine: str) -> int:
    """The tenth digit that makes ``first_nine`` (nine ASCII digits) a valid national code."""
    remainder = sum(int(digit) * (10 - index) for index, digit in enumerate(first_nine)) % 11
    return remainder if remainder < 2 else 11 - remainder


def complete_national_code(first_nine: str) -> str:
    """``first_nine`` followed by its check digit (for documented test and synthetic codes)."""
    return first_nine + str(national_code_check_digit(first_nine))


def _national_code_checksum_ok(code: str) -> bool:
    return int(code[9]) == national_code_check_digit(code[:9])


def is_valid_national_code(value: str) -> bool:
    try:
        normalize_national_code(value)
    except InvalidIdentifier:
        return False
    return True


def normalize_legal_entity_id(value: str) -> str:
    """The 11-digit legal-entity national ID (شناسه ملی) for ``value``."""
    code = _compact(value)
    if not code.isascii() or not code.isdigit() or len(code) != 11:
        raise InvalidIdentifier(
            "legal_id_length",
            fa="شناسه ملی اشخاص حقوقی ۱۱ رقم دارد",
            en="a legal-entity national ID has 11 digits",
        )
    if len(set(code)) == 1:
        raise InvalidIdentifier(
            "legal_id_repeated_digit",
            fa="شناسه ملی نمی‌تواند تنها یک رقم تکراری باشد",
            en="a legal-entity national ID cannot repeat one digit",
        )
    digits = [int(c) for c in code]
    shift = digits[9] + 2
    total = sum(
        (d + shift) * _LEGAL_ENTITY_WEIGHTS[i % len(_LEGAL_ENTITY_WEIGHTS)]
        for i, d in enumerate(digits[:10])
    )
    remainder = total % 11
    if (0 if remainder == 10 else remainder) != digits[10]:
        raise InvalidIdentifier(
            "legal_id_checksum",
            fa="رقم کنترل شناسه ملی درست نیست",
            en="the legal-entity national ID's check digit does not match",
        )
    return code


def is_valid_legal_entity_id(value: str) -> bool:
    try:
        normalize_legal_entity_id(value)
    except InvalidIdentifier:
        return False
    return True


def normalize_mobile(value: str) -> str:
    """The mobile number as ``09xxxxxxxxx``, from any of ``+98 / 0098 / 98 / 0`` or none.

    Operator prefixes are deliberately not checked: numbers move between operators and new
    ranges appear.
    """
    compact = _compact(value)
    match = _MOBILE.match(compact) if compact.isascii() else None
    if match is None:
        raise InvalidIdentifier(
            "mobile_format",
            fa="شماره همراه به شکل ۰۹xxxxxxxxx است",
            en="a mobile number looks like 09xxxxxxxxx",
        )
    return "0" + match.group(1)


def is_valid_mobile(value: str) -> bool:
    try:
        normalize_mobile(value)
    except InvalidIdentifier:
        return False
    return True


def mask_mobile(mobile: str) -> str:
    """``0912***4567``: enough for a person to recognise their own number."""
    return f"{mobile[:4]}***{mobile[-4:]}"
