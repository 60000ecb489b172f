"""SLA watch: requests past their due time, still open, are marked overdue and escalated.

Each pass takes a small batch (``FOR UPDATE SKIP LOCKED``, so replicas share it), marks each
request ``overdue`` with ``escalated_at`` and sends ``RequestEscalated`` to the owning agency's
topic (``agency.<agency>.requests``) in the same transaction. A request is escalated once:
``overdue`` stays set, and the partial index over open, not-overdue requests keeps the search
cheap however many requests are already late.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.messaging import outbox
from panjereh.contracts import topics
from panjereh.contracts.requests import RequestEscalated
from panjereh.requests.metrics import OVERDUE
from panjereh.requests.repository import RequestRepository
from panjereh.requests.statuses import OPEN


async def escalate_overdue(session: AsyncSession, *, now: datetime, limit: int) -> int:
    """Escalate up to ``limit`` requests past due; how many were."""
    rows = await RequestRepository(session).past_due(
        now=now, open_statuses=sorted(status.value for status in OPEN), limit=limit
    )
    for request in rows:
        assert request.due_at is not None  # selected for being past it
        request.overdue = True
        OVERDUE.inc()
        request.escalated_at = now
        await outbox.add(
            session,
            RequestEscalated(
                tracking_code=request.tracking_code,
                service_code=request.service_code,
                agency=request.agency,
                status=request.status,  # type: ignore[arg-type]  # an open status
                due_at=request.due_at,
                at=now,
            ),
            key=request.tracking_code,
            topic=topics.agency_requests(request.agency),
        )
    return len(rows)
