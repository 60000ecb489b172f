"""The one way a request changes status: the machine checks the move, a history row records
it, and ``requests.request.status-changed`` leaves through the outbox in the same transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.messaging import outbox
from panjereh.contracts.requests import RequestStatusChanged
from panjereh.requests import statuses
from panjereh.requests.metrics import TRANSITIONS
from panjereh.requests.models import Request, RequestTransition
from panjereh.requests.statuses import Actor, Status


async def move(
    session: AsyncSession,
    request: Request,
    to: Status,
    *,
    actor: Actor,
    at: datetime,
    actor_subject: str | None = None,
    reason: dict[str, Any] | None = None,
) -> None:
    """Move ``request`` (locked or new in this transaction) to ``to``.

    Raises :class:`~panjereh.requests.statuses.IllegalTransition` for a move outside the
    machine: callers check what users may do first and answer with a clear error.
    """
    current = Status(request.status) if request.status else None
    statuses.check(current, to, actor)
    request.status = to
    TRANSITIONS.labels(to.value, actor.value).inc()
    if statuses.is_final(to):
        request.next_step_at = None
    session.add(
        RequestTransition(
            request_id=request.id,
            from_status=current.value if current else None,
            to_status=to.value,
            actor=actor,
            actor_subject=actor_subject,
            reason=reason,
            at=at,
        )
    )
    await outbox.add(
        session,
        RequestStatusChanged(
            tracking_code=request.tracking_code,
            service_code=request.service_code,
            from_status=current.value if current else None,
            to_status=to.value,
            at=at,
            citizen_id=request.citizen_id,
        ),
        key=request.tracking_code,
    )
