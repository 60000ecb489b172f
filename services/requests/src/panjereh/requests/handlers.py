"""Kafka event handlers: each runs inside the idempotent consumer's unit of work."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.db import after_commit
from panjereh.common.messaging.consumer import IdempotentConsumer
from panjereh.common.messaging.envelope import CloudEvent
from panjereh.contracts.catalog import ServicePublished, ServiceRetired
from panjereh.contracts.inquiry import InquiryAnswered
from panjereh.requests.service import orchestration, replica

CATALOG_CONSUMER = "requests.catalog"
INQUIRY_CONSUMER = "requests.inquiries"


async def on_service_published(session: AsyncSession, event: CloudEvent) -> None:
    published = ServicePublished.parse_data(event.data)
    await replica.record_published(session, card=published.card)


async def on_service_retired(session: AsyncSession, event: CloudEvent) -> None:
    retired = ServiceRetired.parse_data(event.data)
    await replica.record_retired(session, code=retired.code, version=retired.version, at=event.time)


def register_catalog_handlers(consumer: IdempotentConsumer) -> None:
    consumer.register(ServicePublished.event_type, on_service_published)
    consumer.register(ServiceRetired.event_type, on_service_retired)


def register_inquiry_handlers(consumer: IdempotentConsumer, *, wake: Callable[[], None]) -> None:
    """``inquiry.inquiry.answered``: the request waiting on it is due now; ``wake`` the worker.

    The event carries no answer (answers stay off the bus): the orchestration reads it from
    the broker. The event only saves the wait until the next re-read.
    """

    async def on_inquiry_answered(session: AsyncSession, event: CloudEvent) -> None:
        answered = InquiryAnswered.parse_data(event.data)
        if await orchestration.wake_for_answer(
            session, tracking_code=answered.tracking_code, now=datetime.now(UTC)
        ):
            after_commit(session, wake)

    consumer.register(InquiryAnswered.event_type, on_inquiry_answered)
