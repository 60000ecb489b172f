"""Kafka event handlers: agencies' replies and the catalog's published/retired cards.

Registered on :class:`~panjereh.common.messaging.consumer.IdempotentConsumer`s in the lifespan;
each runs in the consumer's transaction, with the event id recorded in the inbox.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.messaging.consumer import Handler, IdempotentConsumer
from panjereh.common.messaging.envelope import CloudEvent
from panjereh.contracts.catalog import ServicePublished, ServiceRetired
from panjereh.contracts.inquiry import InquiryReply
from panjereh.inquiry_broker import service
from panjereh.inquiry_broker.signing import AnswerSigner


def reply_handler(signer: AnswerSigner) -> Handler:
    async def on_reply(session: AsyncSession, event: CloudEvent) -> None:
        await service.record_reply(session, event, signer=signer)

    return on_reply


def register_reply_handlers(consumer: IdempotentConsumer, *, signer: AnswerSigner) -> None:
    consumer.register(InquiryReply.event_type, reply_handler(signer))


def register_catalog_handlers(consumer: IdempotentConsumer) -> None:
    consumer.register(ServicePublished.event_type, service.record_card_published)
    consumer.register(ServiceRetired.event_type, service.record_card_retired)
