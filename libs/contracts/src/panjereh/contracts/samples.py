"""Well-formed sample contract payloads, for consumers' tests and demos.

A consumer's test needs a card the catalog could really publish, not a hand-made dict that
drifts from the contract: :func:`published_card` builds one, with any field overridden.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from panjereh.contracts.catalog import PublishedCard


def published_card(
    code: str = "99010000001",
    *,
    agency: str = "tax",
    version: int = 1,
    inquiries: list[str] | tuple[str, ...] = (),
    rules: list[dict[str, Any]] | None = None,
    mode: str = "automatic",
    otherwise: str = "agency",
    **overrides: Any,
) -> PublishedCard:
    """A published card of ``agency`` using ``inquiries``, decided by ``rules`` (CEL)."""
    card: dict[str, Any] = {
        "code": code,
        "agency": agency,
        "version": version,
        "status": "published",
        "approved_by": "catalog-authority-1",
        "approving_organisation": "catalog-authority",
        "approved_at": datetime(2026, 11, 1, tzinfo=UTC),
        "title": {"fa": "خدمت نمونه", "en": "Sample service"},
        "description": {"fa": "خدمتی برای آزمون", "en": "A service for tests"},
        "category": "test",
        "audience": ["citizen"],
        "channels": [{"type": "web", "url": "https://example.ir/apply"}],
        "sla_days": 1,
        "in_person_visits": 0,
        "maturity": 5 if mode == "automatic" else 4,
        "legal_basis": [
            {
                "title": {"fa": "قانون مالیات‌های مستقیم", "en": "Direct Taxes Act"},
                "reference": "ماده ۱۸۶",
            }
        ],
        "inquiries": [{"type": name} for name in inquiries],
        "form_schema": {"type": "object"},
        "decision": {"mode": mode, "rules": rules or [], "otherwise": otherwise},
    }
    card.update(overrides)
    return PublishedCard.model_validate(card)
