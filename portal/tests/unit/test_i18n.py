"""Persian digits, Jalali dates in Tehran time, the platform's vocabularies."""

from __future__ import annotations

from panjereh.portal import i18n


def test_numbers_and_shares_are_written_with_persian_digits() -> None:
    assert i18n.number(1234567, "fa") == "۱٬۲۳۴٬۵۶۷"
    assert i18n.number(1234567, "en") == "1,234,567"
    assert i18n.percent(0.2667, "fa") == "۲۷٪"
    assert i18n.percent(None, "fa") == "—"
    assert i18n.latin_digits("۰۹۱۲٠١٢") == "0912012"


def test_dates_are_jalali_in_tehran_time() -> None:
    # 19 March 2024, 21:00 UTC is already 20 March in Tehran: 1 Farvardin 1403 (Nowruz)
    assert i18n.date("2024-03-19T21:00:00Z", "fa") == "۱ فروردین ۱۴۰۳"
    assert i18n.date("2024-03-19T21:00:00Z", "fa", with_time=True) == "۱ فروردین ۱۴۰۳، ساعت ۰۰:۳۰"
    assert i18n.date("2024-03-19T20:00:00Z", "fa") == "۲۹ اسفند ۱۴۰۲"
    assert i18n.date("2024-03-19T21:00:00Z", "en") == "20 Mar 2024"
    assert i18n.date(None, "fa") == "—"


def test_texts_and_labels_fall_back_to_persian_then_to_the_value() -> None:
    assert i18n.text({"fa": "وام", "en": None}, "en") == "وام"
    assert i18n.label("status", "in_review", "fa") == "در بررسی کارشناس"
    assert i18n.label("maturity", 5, "en") == "Smart"
    assert i18n.label("channel", "telegraph", "fa") == "telegraph"
