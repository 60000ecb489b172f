"""Deterministic synthetic registries: every answer is a pure function of its inputs.

A valid national code always yields the same person (names, birth date, vehicles, degree, ...),
derived from a hash of the code, so front ends, demos and tests can rely on them; the special
codes in :mod:`panjereh.agency_simulators.special` yield the documented exceptions.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date, timedelta
from typing import Any

from panjereh.agency_sdk import InquiryNotFound, InvalidInquiry
from panjereh.agency_sdk import national_code as codes
from panjereh.agency_simulators import special

MALE_FIRST_NAMES = ("محمد", "علی", "حسین", "رضا", "مهدی", "امیر", "حمید", "سعید", "مجید", "احمد")
FEMALE_FIRST_NAMES = (
    "فاطمه", "زهرا", "مریم", "سارا", "نرگس", "زینب", "مهسا", "الهام", "لیلا", "نازنین",
)  # fmt: skip
LAST_NAMES = (
    "محمدی", "حسینی", "احمدی", "رضایی", "کریمی", "موسوی", "جعفری", "صادقی",
    "رحیمی", "کاظمی", "هاشمی", "نوری", "طاهری", "قاسمی", "عباسی",
)  # fmt: skip
CAR_MODELS = ("پژو ۲۰۶", "سمند", "پراید ۱۳۱", "دنا", "تیبا", "کوییک")
PLATE_LETTERS = ("ب", "د", "ج", "س", "ص", "ط", "ق", "ل", "م", "ن", "و", "ه", "ی")
DEGREES = ("diploma", "associate", "bachelor", "master", "doctorate")
FIELDS = ("مهندسی کامپیوتر", "حقوق", "پزشکی", "مدیریت بازرگانی", "ادبیات فارسی", "حسابداری")
UNIVERSITIES = (
    "دانشگاه تهران", "دانشگاه صنعتی شریف", "دانشگاه شیراز",
    "دانشگاه فردوسی مشهد", "دانشگاه اصفهان", "دانشگاه تبریز",
)  # fmt: skip

#: Every ordinary person is born in this range: an adult on any date from 2023 on.
_BORN_FROM = date(1955, 1, 1)
_BORN_UNTIL = date(2004, 12, 31)
_MOBILE = re.compile(r"^09\d{9}$")


class _Draw:
    """Deterministic draws from a hash of (registry, national code)."""

    def __init__(self, registry: str, code: str) -> None:
        self._seed = hashlib.sha256(f"{registry}:{code}".encode()).digest()
        self._at = 0

    def number(self, upper: int) -> int:
        """A number in ``[0, upper)``."""
        chunk = self._seed[self._at : self._at + 4]
        self._at = (self._at + 4) % 28
        return int.from_bytes(chunk, "big") % upper

    def pick(self, options: tuple[str, ...]) -> str:
        return options[self.number(len(options))]


def _existing(code: str) -> str:
    normalised = codes.normalize(code)
    if normalised is None or not codes.is_valid(normalised):
        msg = "invalid_subject"
        raise InvalidInquiry(msg)
    if normalised == special.NOT_FOUND:
        raise InquiryNotFound
    return normalised


def person(code: str) -> dict[str, Any]:
    """``civil-registry.person``."""
    code = _existing(code)
    draw = _Draw("civil-registry", code)
    gender = "female" if draw.number(2) else "male"
    first_names = FEMALE_FIRST_NAMES if gender == "female" else MALE_FIRST_NAMES
    span = (_BORN_UNTIL - _BORN_FROM).days
    born = _BORN_FROM + timedelta(days=draw.number(span + 1))
    first, last = draw.pick(first_names), draw.pick(LAST_NAMES)
    return {
        "first_name": first,
        "last_name": last,
        "birth_date": special.MINOR_BIRTH_DATE if code == special.MINOR else born.isoformat(),
        "alive": code != special.DECEASED,
        "gender": gender,
    }


def mobile_ownership(code: str, mobile: str) -> dict[str, Any]:
    """``mobile-registry.ownership``: every well-formed mobile belongs to every valid national
    code, except mobiles ending in ``0000``, which belong to nobody."""
    normalised = codes.normalize(code)
    if normalised is None or not codes.is_valid(normalised):
        msg = "invalid_subject"
        raise InvalidInquiry(msg)
    return {"owned": bool(_MOBILE.match(mobile)) and not mobile.endswith("0000")}


def tax_clearance(code: str) -> dict[str, Any]:
    """``tax.clearance``."""
    code = _existing(code)
    if code == special.NO_TAX_FILE:
        raise InquiryNotFound
    if code == special.TAX_DEBT:
        return {"has_debt": True, "debt_amount": special.TAX_DEBT_AMOUNT}
    return {"has_debt": False, "debt_amount": 0}


def clean_record(code: str) -> dict[str, Any]:
    """``police.clean-record``."""
    code = _existing(code)
    return {"has_record": code == special.CRIMINAL_RECORD}


def insurance_record(code: str) -> dict[str, Any]:
    """``social-security.insurance-record``."""
    code = _existing(code)
    if code in {special.NO_INSURANCE, special.MINOR}:
        return {"insured": False, "months": 0}
    return {"insured": True, "months": 12 + _Draw("social-security", code).number(229)}


def vehicles(code: str) -> dict[str, Any]:
    """``vehicle-registry.ownership``."""
    code = _existing(code)
    if code in {special.NO_DEGREE_NO_VEHICLE, special.MINOR}:
        return {"vehicles": []}
    draw = _Draw("vehicle-registry", code)
    owned = []
    for _ in range(draw.number(3)):
        plate = (
            f"{10 + draw.number(90)}{draw.pick(PLATE_LETTERS)}{100 + draw.number(900)}"
            f"-{10 + draw.number(90)}"
        )
        owned.append(
            {"plate": plate, "model": draw.pick(CAR_MODELS), "year": 2005 + draw.number(19)}
        )
    return {"vehicles": owned}


def degree(code: str) -> dict[str, Any]:
    """``education.degree``: the highest degree."""
    code = _existing(code)
    if code in {special.NO_DEGREE_NO_VEHICLE, special.MINOR}:
        return {"degree": "none", "field": None, "university": None}
    draw = _Draw("education", code)
    highest = draw.pick(DEGREES)
    if highest == "diploma":
        return {"degree": highest, "field": None, "university": None}
    return {"degree": highest, "field": draw.pick(FIELDS), "university": draw.pick(UNIVERSITIES)}
