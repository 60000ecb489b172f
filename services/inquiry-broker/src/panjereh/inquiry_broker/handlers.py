"""Kafka event handlers: agencies' replies, the catalog's published/retired cards and the
requests service's submitted/decided requests (live purposes).

Registered on :class:`~panjereh.common.messaging.consumer.IdempotentConsumer`s in the lifespan;
each runs in the consumer's transaction, with the event id recorded in the inbox.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.db import DirectUnit
from panjereh.common.messaging.consumer import (
    ClaimingHandler,
    IdempotentConsumer,
    InboxClaim,
    TopicHandler,
)
from panjereh.common.messaging.envelope import CloudEvent
from panjereh.contracts.catalog import ServicePublished, ServiceRetired
from panjereh.contracts.inquiry import InquiryReply
from panjereh.contracts.requests import RequestStatusChanged, RequestSubmitted
from panjereh.inquiry_broker.service import answers, cards, purposes
from panjereh.inquiry_broker.signing import AnswerSigner


def reply_handler(signer: AnswerSigner, chain_key: bytes | None = None) -> TopicHandler:
    async def on_reply(session: AsyncSession, event: CloudEvent, topic: str) -> None:
        # the topic, not the event's source, says which agency sent it (Kafka ACLs)
        await answers.record_reply(session, event, topic=topic, signer=signer, chain_key=chain_key)

    return on_reply


def claiming_reply_handler(signer: AnswerSigner, chain_key: bytes | None = None) -> ClaimingHandler:
    """:func:`reply_handler` that claims the reply's inbox row itself, in the statement that
    writes its answer (or in the read that locks its inquiry), its unit of work sent by the
    driver."""

    async def on_reply(unit: DirectUnit, event: CloudEvent, topic: str, claim: InboxClaim) -> None:
        await answers.record_reply(
            unit, event, topic=topic, signer=signer, chain_key=chain_key, claim=claim
        )

    return on_reply


def register_reply_handlers(
    consumer: IdempotentConsumer, *, signer: AnswerSigner, chain_key: bytes | None = None
) -> None:
    consumer.register_claiming(InquiryReply.event_type, claiming_reply_handler(signer, chain_key))


def register_catalog_handlers(consumer: IdempotentConsumer) -> None:
    consumer.register(ServicePublished.event_type, cards.record_card_published)
    consumer.register(ServiceRetired.event_type, cards.record_card_retired)


def register_purpose_handlers(consumer: IdempotentConsumer, *, subject_hash_key: bytes) -> None:
    async def on_submitted(session: AsyncSession, event: CloudEvent) -> None:
        await purposes.record_request_submitted(session, event, subject_hash_key=subject_hash_key)

    consumer.register(RequestSubmitted.event_type, on_submitted)
    consumer.register(RequestStatusChanged.event_type, purposes.record_status_changed)
