"""Overdue inquiries: resent while attempts remain, timed out at their deadline.

Run by a worker on every replica; ``FOR UPDATE SKIP LOCKED`` gives each overdue inquiry to one
of them. HTTP-connector attempts are the connector dispatcher's, not the sweeper's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.inquiry_broker.repository import InquiryRepository, InquiryTypeRepository
from panjereh.inquiry_broker.service import answers, delivery

#: How many overdue inquiries one sweep takes; a full batch means more may be waiting.
SWEEP_BATCH = 100


@dataclass(frozen=True)
class Swept:
    """What one sweep did."""

    resent: int
    timed_out: int
    #: the batch was full: sweep again at once rather than after the interval
    more: bool


async def sweep_overdue(
    session: AsyncSession, *, now: datetime | None = None, limit: int = SWEEP_BATCH
) -> Swept:
    """Resend inquiries due another attempt; time out those past their deadline."""
    now = now or datetime.now(UTC)
    overdue = await InquiryRepository(session).overdue(now=now, limit=limit)
    if not overdue:
        return Swept(resent=0, timed_out=0, more=False)
    types = {t.name: t for t in await InquiryTypeRepository(session).all()}
    timed_out = 0
    for inquiry in overdue:
        if inquiry.deadline_at <= now:
            answers.complete(
                inquiry, status="timed_out", result=None, signer=None, error="timed_out"
            )
            await answers.publish(session, inquiry)
            timed_out += 1
        else:
            await delivery.send(session, inquiry, types[inquiry.type], now=now)
    await session.flush()
    return Swept(resent=len(overdue) - timed_out, timed_out=timed_out, more=len(overdue) >= limit)
