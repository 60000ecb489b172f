"""The names of the catalog's service categories, in Persian and English.

A card's ``category`` is a slug; front ends show its name. A slug the list does not hold yet
(a new category a card introduced) has no name: front ends show the slug itself.
"""

from __future__ import annotations

from panjereh.catalog.schemas import Text

#: slug → (Persian, English)
CATEGORIES: dict[str, tuple[str, str]] = {
    "identity-documents": ("اسناد هویتی", "Identity documents"),
    "travel": ("سفر و گذرنامه", "Travel and passports"),
    "security-certificates": ("گواهی‌های انتظامی و قضایی", "Police and court certificates"),
    "vehicles-and-driving": ("خودرو و رانندگی", "Vehicles and driving"),
    "taxes": ("مالیات", "Taxes"),
    "insurance-and-pensions": ("بیمه و بازنشستگی", "Insurance and pensions"),
    "education": ("آموزش و دانشجویان", "Education and students"),
    "business-and-trade": ("کسب‌وکار و بازرگانی", "Business and trade"),
    "property-and-construction": ("ملک و ساختمان", "Property and construction"),
    "social-support": ("حمایت اجتماعی و یارانه", "Social support and subsidies"),
    "telecommunications": ("ارتباطات و تلفن همراه", "Telecommunications"),
    "health": ("سلامت", "Health"),
    "legal-services": ("خدمات حقوقی و قضایی", "Legal services"),
}


def category_label(slug: str) -> Text | None:
    """The category's name in both languages; ``None`` for a slug not named yet."""
    names = CATEGORIES.get(slug)
    return None if names is None else Text(fa=names[0], en=names[1])
