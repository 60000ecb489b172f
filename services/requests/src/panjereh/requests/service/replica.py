"""The local replica of published service cards.

Fed by ``catalog.service.published`` / ``catalog.service.retired`` (each handler runs in the
idempotent consumer's unit of work) and, when the replica is empty at start-up, by reading
the catalog's public API once, so a fresh deployment can take requests before any event
arrives. Versions are immutable: a redelivered or older publication changes nothing.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.contracts.catalog import PublishedCard
from panjereh.requests.models import CardVersion
from panjereh.requests.repository import CardRepository


async def record_published(session: AsyncSession, *, card: PublishedCard) -> bool:
    """Keep ``card`` (one version); False when that version was already known."""
    result = await session.execute(
        insert(CardVersion)
        .values(
            service_code=card.code,
            version=card.version,
            agency=card.agency,
            card=card.model_dump(mode="json"),
            published_at=card.approved_at,
        )
        .on_conflict_do_nothing(index_elements=[CardVersion.service_code, CardVersion.version])
    )
    return bool(getattr(result, "rowcount", 0))


async def record_retired(session: AsyncSession, *, code: str, version: int, at: datetime) -> None:
    """No new requests for ``code`` up to ``version``; requests already made go on."""
    await CardRepository(session).retire(code, up_to_version=version, at=at)


async def is_empty(session: AsyncSession) -> bool:
    return await CardRepository(session).count() == 0
