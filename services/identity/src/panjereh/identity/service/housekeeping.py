"""Pruning: rows whose purpose is over do not linger (personal data kept only as needed)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.identity.repository import HousekeepingRepository, idempotency

#: how long spent challenges, settled SMS and ended sessions are kept (for support questions)
RETENTION = timedelta(days=7)
#: how long a creating request can be repeated with its ``Idempotency-Key``
IDEMPOTENCY_RETENTION = timedelta(hours=24)


async def prune(session: AsyncSession, *, now: datetime) -> None:
    await HousekeepingRepository(session).prune(now=now, keep=RETENTION)
    await idempotency.prune(session, before=now - IDEMPOTENCY_RETENTION)
