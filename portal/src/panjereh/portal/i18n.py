"""Persian first: digits, Jalali dates, labels of the platform's fixed vocabularies, UI words.

Every page is rendered in Persian (``fa``, right to left) unless the visitor chose English.
Numbers are written with Persian digits and dates in the Jalali calendar, Tehran time.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import jdatetime

LANGUAGES = ("fa", "en")
DEFAULT_LANGUAGE = "fa"
TEHRAN = ZoneInfo("Asia/Tehran")

_TO_PERSIAN = str.maketrans("0123456789.%,", "۰۱۲۳۴۵۶۷۸۹٫٪٬")
_TO_LATIN = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩", "01234567890123456789")


def persian_digits(value: object) -> str:
    """``"12.5%"`` → ``"۱۲٫۵٪"``."""
    return str(value).translate(_TO_PERSIAN)


def latin_digits(value: str) -> str:
    """Persian and Arabic-Indic digits typed by a visitor, as ASCII digits."""
    return value.translate(_TO_LATIN)


def number(value: object, lang: str) -> str:
    """An integer with thousands separators, in the page's digits."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        text = str(value)
    elif isinstance(value, float) and not value.is_integer():
        text = f"{value:,.1f}"
    else:
        text = f"{int(value):,}"
    if lang == "fa":
        return text.replace(",", "٬").translate(_TO_PERSIAN)
    return text


def percent(share: float | None, lang: str) -> str:
    if share is None:
        return "—"
    text = f"{share * 100:.0f}%"
    return persian_digits(text) if lang == "fa" else text


def digits(value: object, lang: str) -> str:
    return persian_digits(value) if lang == "fa" else str(value)


def parse_time(value: str | datetime | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def date(value: str | datetime | None, lang: str, *, with_time: bool = False) -> str:
    """A date (and time) for people: Jalali with Persian digits, or Gregorian in English."""
    moment = parse_time(value)
    if moment is None:
        return "—"
    local = moment.astimezone(TEHRAN)
    if lang == "fa":
        jalali = jdatetime.datetime.fromgregorian(datetime=local.replace(tzinfo=None))
        text = f"{jalali.day} {JALALI_MONTHS[jalali.month - 1]} {jalali.year}"
        if with_time:
            text += f"، ساعت {local:%H:%M}"
        return persian_digits(text)
    text = f"{local:%d %b %Y}"
    return f"{text}, {local:%H:%M}" if with_time else text


def iso_date(value: str | datetime | None) -> str:
    """The machine-readable form for ``<time datetime=...>``."""
    moment = parse_time(value)
    return moment.isoformat() if moment else ""


JALALI_MONTHS = (
    "فروردین",
    "اردیبهشت",
    "خرداد",
    "تیر",
    "مرداد",
    "شهریور",
    "مهر",
    "آبان",
    "آذر",
    "دی",
    "بهمن",
    "اسفند",
)


def text(value: Mapping[str, Any] | str | None, lang: str) -> str:
    """A ``{"fa": ..., "en": ...}`` text of the API in the page's language (Persian when the
    English is missing)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    chosen = value.get(lang) or value.get("fa") or ""
    return str(chosen)


# ------------------------------------------------------------------ fixed vocabularies
#: The platform's enumerations (the official card's lists), as people read them.
VOCABULARY: dict[str, dict[str, tuple[str, str]]] = {
    "life_event": {
        "birth": ("تولد", "Birth"),
        "education": ("تحصیل", "Education"),
        "health": ("سلامت", "Health"),
        "taxes": ("مالیات", "Taxes"),
        "business": ("کسب‌وکار", "Business"),
        "social-security": ("تأمین اجتماعی", "Social security"),
        "property-registration": ("ثبت املاک", "Property registration"),
        "utilities": ("آب، برق و گاز", "Utilities"),
        "insurance": ("بیمه", "Insurance"),
        "marriage": ("ازدواج", "Marriage"),
        "retirement": ("بازنشستگی", "Retirement"),
        "documents-and-certificates": ("مدارک و گواهی‌ها", "Documents and certificates"),
        "death": ("فوت", "Death"),
        "other": ("سایر", "Other"),
    },
    "channel": {
        "web": ("وب", "Web"),
        "mobile": ("تلفن همراه", "Mobile"),
        "sms": ("پیامک", "SMS"),
        "phone": ("تلفن", "Phone"),
        "kiosk": ("کیوسک", "Kiosk"),
        "counter": ("پیشخوان خدمات دولت", "Government service counter"),
        "agency-office": ("دفتر دستگاه", "Agency office"),
        "in-person": ("حضوری", "In person"),
        "other": ("سایر", "Other"),
    },
    "audience": {
        "citizen": ("شهروندان", "Citizens"),
        "business": ("کسب‌وکارها", "Businesses"),
        "government": ("دستگاه‌های دولتی", "Government"),
    },
    "maturity": {
        "0": ("اطلاع‌رسانی", "Informational"),
        "1": ("دریافت فرم", "Downloadable forms"),
        "2": ("تعاملی", "Interactive"),
        "3": ("تراکنشی", "Transactional"),
        "4": ("تمام الکترونیکی", "Fully electronic"),
        "5": ("هوشمند", "Smart"),
    },
    "status": {
        "submitted": ("ثبت شد", "Submitted"),
        "awaiting_inquiries": ("در انتظار استعلام‌ها", "Awaiting inquiries"),
        "deciding": ("در حال تصمیم‌گیری", "Deciding"),
        "in_review": ("در بررسی کارشناس", "In review"),
        "approved": ("تأیید شد", "Approved"),
        "rejected": ("رد شد", "Rejected"),
        "cancelled": ("لغو شد", "Cancelled"),
        "failed": ("ناموفق", "Failed"),
    },
    "inquiry_status": {
        "pending": ("در انتظار پاسخ", "Pending"),
        "answered": ("پاسخ داده شد", "Answered"),
        "not_found": ("سابقه‌ای یافت نشد", "No record"),
        "failed": ("ناموفق", "Failed"),
    },
    "outcome": {
        "approve": ("تأیید", "Approve"),
        "reject": ("رد", "Reject"),
    },
    "decided_by": {
        "rules": ("خودکار، با قواعد شناسنامه خدمت", "Automatically, by the card's rules"),
        "officer": ("کارشناس دستگاه", "An agency officer"),
        "agency-system": ("سامانه دستگاه", "The agency's system"),
    },
    "actor": {
        "citizen": ("شما", "You"),
        "system": ("سامانه", "The platform"),
        "rules": ("قواعد خدمت", "The rules"),
        "officer": ("کارشناس", "An officer"),
        "agency-system": ("سامانه دستگاه", "Agency system"),
    },
    "actor_staff": {
        "citizen": ("متقاضی", "The applicant"),
        "system": ("سامانه", "The platform"),
        "rules": ("قواعد خدمت", "The rules"),
        "officer": ("کارشناس", "An officer"),
        "agency-system": ("سامانه دستگاه", "Agency system"),
    },
    "draft_state": {
        "editing": ("در حال ویرایش", "Being edited"),
        "submitted": ("فرستاده برای تأیید", "Sent for approval"),
        "rejected": ("بازگردانده با دلیل", "Sent back"),
        "published": ("منتشرشده", "Published"),
    },
    "caller": {
        "service:requests": ("سامانه درخواست‌های پنجره", "Panjereh requests"),
        "service:identity": ("سامانه ورود پنجره", "Panjereh sign-in"),
    },
    "purpose": {
        "identity.login": ("ورود شما به پنجره", "Your sign-in to Panjereh"),
        "identity.registration": ("ثبت‌نام شما در پنجره", "Your registration in Panjereh"),
    },
    "decision": {
        "allowed": ("مجاز", "Allowed"),
        "denied": ("رد شد", "Refused"),
    },
}


def label(kind: str, value: object, lang: str) -> str:
    """The people's name of a vocabulary value (the value itself when it is not known)."""
    names = VOCABULARY.get(kind, {}).get(str(value))
    if names is None:
        return str(value)
    return names[0] if lang == "fa" else names[1]


def choose(lang: str, fa: str, en: str) -> str:
    return fa if lang == "fa" else en


def utcnow() -> datetime:
    return datetime.now(UTC)
