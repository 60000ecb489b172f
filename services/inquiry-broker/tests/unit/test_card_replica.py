"""Reading the catalog's published card: its legal basis as one line."""

from __future__ import annotations

from panjereh.contracts.catalog import CardLegalResource
from panjereh.inquiry_broker.service.cards import legal_basis_line


def test_legal_resources_become_one_persian_line() -> None:
    resources = [
        CardLegalResource.model_validate(
            {"title": {"fa": "قانون گذرنامه", "en": "Passport Act"}, "reference": "ماده ۱۷"}
        ),
        CardLegalResource.model_validate({"title": {"fa": "آیین‌نامه اجرایی", "en": "Bylaw"}}),
    ]
    assert legal_basis_line(resources) == "قانون گذرنامه (ماده ۱۷)؛ آیین‌نامه اجرایی"
    assert legal_basis_line([]) is None
