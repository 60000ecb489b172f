"""Reading the catalog's published card: its inquiry types and legal basis."""

from __future__ import annotations

from panjereh.inquiry_broker.service import _inquiry_types, _legal_basis


def test_inquiry_types_are_read_from_inquiry_uses_or_names() -> None:
    uses = [{"type": "tax.clearance", "mode": "online"}, "police.clean-record", {"x": 1}]
    assert _inquiry_types(uses) == ["tax.clearance", "police.clean-record"]
    assert _inquiry_types(None) == []


def test_legal_resources_become_one_persian_line() -> None:
    resources = [
        {"title": {"fa": "قانون گذرنامه", "en": "Passport Act"}, "reference": "ماده ۱۷"},
        {"title": {"fa": "آیین‌نامه اجرایی", "en": "Bylaw"}},
    ]
    assert _legal_basis(resources) == "قانون گذرنامه (ماده ۱۷)؛ آیین‌نامه اجرایی"
    assert _legal_basis("قانون") == "قانون"
    assert _legal_basis([]) is None
