"""Attempts to reach the provider agency: through the outbox (Kafka) or an HTTP connector.

Each inquiry has up to ``max_attempts`` attempts spaced evenly inside its deadline. A Kafka
attempt is an outbox row in the caller's transaction. An HTTP-connector attempt is only
scheduled (``next_attempt_at``); the connector dispatcher claims it here, calls the connector
outside any transaction and records the answer (:mod:`.answers`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.db import Unit
from panjereh.common.messaging import outbox
from panjereh.contracts.inquiry import InquiryPurpose, InquiryToAgency
from panjereh.contracts.topics import agency_inquiries
from panjereh.inquiry_broker.models import Inquiry, InquiryType
from panjereh.inquiry_broker.repository import InquiryRepository, InquiryTypeRepository

#: How many connector attempts one claim takes; a full batch means more may be due.
CONNECTOR_BATCH = 50


@dataclass(frozen=True)
class ConnectorCall:
    """One attempt to be made on an agency's HTTP connector, outside any transaction."""

    inquiry_id: uuid.UUID
    url: str
    payload: dict[str, Any]
    timeout_seconds: float


async def send(
    session: Unit, inquiry: Inquiry, inquiry_type: InquiryType, *, now: datetime
) -> None:
    """Route one attempt to the provider's topic (through the outbox) and plan the next
    (written by the session's flush for an inquiry it loaded; the caller writes a detached
    one)."""
    plan_attempt(inquiry, inquiry_type, now=now)
    await queue(session, inquiry)
    if isinstance(session, AsyncSession):
        await session.flush()


async def queue(session: Unit, inquiry: Inquiry) -> None:
    """The attempt :func:`plan_attempt` counted, on the provider's topic (through the outbox)."""
    await outbox.add(
        session,
        message(inquiry),
        key=str(inquiry.id),
        topic=agency_inquiries(inquiry.provider_agency),
    )


def attempt(session: Unit, inquiry: Inquiry) -> outbox.Row:
    """:func:`queue`'s outbox row, for a new inquiry inserted with it in one statement
    (:meth:`~panjereh.inquiry_broker.repository.InquiryRepository.adding_and_sending`). A new
    inquiry is planned before it is inserted: that INSERT carries the attempt, with no
    UPDATE after it."""
    return outbox.row(
        session,
        message(inquiry),
        key=str(inquiry.id),
        topic=agency_inquiries(inquiry.provider_agency),
    )


def plan_attempt(inquiry: Inquiry, inquiry_type: InquiryType, *, now: datetime) -> timedelta:
    """Count an attempt made now and schedule the next; returns the spacing between them."""
    inquiry.attempts += 1
    inquiry.last_sent_at = now
    spacing = timedelta(milliseconds=inquiry_type.timeout_ms / max(inquiry_type.max_attempts, 1))
    inquiry.next_attempt_at = (
        now + spacing if inquiry.attempts < inquiry_type.max_attempts else None
    )
    return spacing


def message(inquiry: Inquiry) -> InquiryToAgency:
    """What the provider receives, on its topic or its connector."""
    return InquiryToAgency(
        inquiry_id=str(inquiry.id),
        type=inquiry.type,
        subject=inquiry.subject,
        params=inquiry.params,
        purpose=InquiryPurpose(
            service_code=inquiry.service_code or "-",
            tracking_code=inquiry.tracking_code,
            legal_basis=inquiry.legal_basis or "-",
        ),
    )


async def claim_connector_calls(
    session: AsyncSession, *, now: datetime, limit: int = CONNECTOR_BATCH
) -> list[ConnectorCall]:
    """Take the HTTP-connector attempts that are due (this replica's, SKIP LOCKED).

    Each is counted as made now; the caller commits that, then calls the connectors.
    """
    due = await InquiryRepository(session).due_connector_calls(now=now, limit=limit)
    if not due:
        return []
    types = {t.name: t for t in await InquiryTypeRepository(session).all()}
    calls = []
    for inquiry in due:
        assert inquiry.connector_url is not None  # the query selects connector inquiries only
        spacing = plan_attempt(inquiry, types[inquiry.type], now=now)
        calls.append(
            ConnectorCall(
                inquiry_id=inquiry.id,
                url=inquiry.connector_url,
                payload=message(inquiry).model_dump(mode="json"),
                timeout_seconds=max(spacing.total_seconds(), 0.1),
            )
        )
    await session.flush()
    return calls
