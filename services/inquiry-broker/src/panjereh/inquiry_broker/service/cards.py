"""The replica of the catalog's published service cards that the access policy reads.

Kept from ``catalog.service.published`` / ``catalog.service.retired`` by an idempotent
consumer (see :mod:`panjereh.inquiry_broker.handlers`); the card is the contracts' typed
``PublishedCard``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.messaging.envelope import CloudEvent
from panjereh.contracts.catalog import CardLegalResource, ServicePublished, ServiceRetired
from panjereh.inquiry_broker.repository import CardRepository

logger = logging.getLogger(__name__)


async def record_card_published(session: AsyncSession, event: CloudEvent) -> None:
    published = ServicePublished.parse_data(event.data)
    card = published.card
    await CardRepository(session).save_published(
        service_code=published.code,
        agency=card.agency,
        version=published.version,
        inquiry_types=[inquiry.type for inquiry in card.inquiries],
        legal_basis=legal_basis_line(card.legal_basis),
    )


async def record_card_retired(session: AsyncSession, event: CloudEvent) -> None:
    retired = ServiceRetired.parse_data(event.data)
    await CardRepository(session).retire(service_code=retired.code, version=retired.version)


def legal_basis_line(resources: Sequence[CardLegalResource]) -> str | None:
    """The card's legal basis as one line: Persian titles (with references), joined."""
    parts = [
        f"{resource.title.fa} ({resource.reference})" if resource.reference else resource.title.fa
        for resource in resources
        if resource.title.fa
    ]
    return "؛ ".join(parts) or None
