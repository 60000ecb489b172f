"""Deciding a request: the one function every decision goes through, by rules or by people.

:func:`conclude` sets the decision on the request, moves it (history row and status event),
publishes ``requests.request.decided``, signs the decision receipt and, on approval, issues
the document, all in the caller's transaction: a decision is either entirely there or not at
all, and the status machine (approved/rejected are final) makes a second one impossible, so
a replayed step can never issue a second document.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.messaging import outbox
from panjereh.contracts.requests import RequestDecided
from panjereh.requests.keys import DocumentKeys
from panjereh.requests.metrics import DECISIONS, TIME_TO_DECISION
from panjereh.requests.models import Request
from panjereh.requests.service import documents, receipts, transitions
from panjereh.requests.statuses import Actor, Status


async def conclude(
    session: AsyncSession,
    request: Request,
    *,
    outcome: Literal["approve", "reject"],
    actor: Actor,
    reason: dict[str, str] | None,
    at: datetime,
    keys: DocumentKeys,
    document_valid_days: int,
    rule_id: str | None = None,
    subject: str | None = None,
) -> None:
    """Decide ``request`` (locked in this transaction) as ``actor`` says.

    ``actor`` is ``rules`` (then ``rule_id`` names the matching rule, or None when no rule
    matched and the card rejects otherwise), ``officer`` or ``agency-system`` (then ``subject``
    is who decided).
    """
    target = Status.APPROVED if outcome == "approve" else Status.REJECTED
    await transitions.move(
        session, request, target, actor=actor, actor_subject=subject, reason=reason, at=at
    )
    request.outcome = outcome
    request.rule_id = rule_id
    request.decision_reason = reason
    request.decided_by = actor.value
    request.decided_by_subject = subject
    request.decided_at = at
    DECISIONS.labels(outcome, actor.value, request.service_code, rule_id or "").inc()
    TIME_TO_DECISION.labels(actor.value).observe(
        max(0.0, (at - request.submitted_at).total_seconds())
    )
    await outbox.add(
        session,
        RequestDecided(
            tracking_code=request.tracking_code,
            service_code=request.service_code,
            outcome=outcome,
            decided_by=actor.value,  # type: ignore[arg-type]  # rules | officer | agency-system
            rule_id=rule_id,
            at=at,
        ),
        key=request.tracking_code,
    )
    await receipts.write(session, request, keys=keys, at=at)
    if outcome == "approve":
        await documents.issue(session, request, keys=keys, at=at, valid_days=document_valid_days)
    await session.flush()
