"""Inquiry broker application: ``create_app()`` and its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import httpx
from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI

from panjereh.common.app import create_service_app
from panjereh.common.auth import install_auth
from panjereh.common.db import Database
from panjereh.common.logging import configure_logging
from panjereh.common.messaging.consumer import IdempotentConsumer
from panjereh.common.messaging.kafka import (
    broker_readiness_check,
    create_consumer,
    create_producer,
)
from panjereh.common.messaging.outbox import OutboxRelay
from panjereh.common.settings import Environment
from panjereh.contracts import topics
from panjereh.inquiry_broker import service
from panjereh.inquiry_broker.config import Settings
from panjereh.inquiry_broker.connectors import ConnectorDispatcher
from panjereh.inquiry_broker.dependencies import BrokerRuntime
from panjereh.inquiry_broker.handlers import register_catalog_handlers, register_reply_handlers
from panjereh.inquiry_broker.models import messaging
from panjereh.inquiry_broker.router import router
from panjereh.inquiry_broker.service import BrokerKeys
from panjereh.inquiry_broker.signing import AnswerSigner
from panjereh.inquiry_broker.waiting import AnswerListener, libpq_dsn

logger = logging.getLogger(__name__)

#: Consumer groups: every replica joins the same ones, so each reply is handled once.
REPLIES_GROUP = "inquiry-broker.replies"
CATALOG_GROUP = "inquiry-broker.catalog"


def _signer(settings: Settings) -> AnswerSigner:
    pem = settings.signing_private_key.get_secret_value()
    if pem:
        return AnswerSigner.from_pem(pem)
    # dev/test only (refused in prod by Settings): answers verify until this process stops
    if settings.environment is not Environment.TEST:
        logger.warning("no signing key configured: using an ephemeral one (dev only)")
    return AnswerSigner.generate()


async def _sweep(database: Database, relay: OutboxRelay, interval: float) -> None:
    """Resend overdue inquiries and time out expired ones, on every replica (SKIP LOCKED)."""
    while True:
        try:
            async with database.transaction() as session:
                swept = await service.sweep_overdue(session)
            if swept:
                relay.wake()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("sweeping overdue inquiries failed")
        await asyncio.sleep(interval)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    def consumer_factory(
        fetch_max_wait_ms: int,
    ) -> Callable[[Sequence[str], str], AIOKafkaConsumer]:
        # the idempotent consumer subscribes to its topics itself
        def build(_topics: Sequence[str], group: str) -> AIOKafkaConsumer:
            return create_consumer(settings, group_id=group, fetch_max_wait_ms=fetch_max_wait_ms)

        return build

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database(settings.database_url, pool_size=settings.database_pool_size)
        app.state.database = database
        app.state.readiness.add("database", database.ping)
        app.state.readiness.add("broker", broker_readiness_check(settings))
        keys = BrokerKeys(
            signer=_signer(settings),
            subject_hash_key=settings.subject_hash_key.get_secret_value().encode(),
            card_acting_services=settings.card_acting_services,
        )
        relay = OutboxRelay(
            database=database,
            table=messaging.outbox,
            producer_factory=lambda: create_producer(settings, linger_ms=0),
        )
        replies = IdempotentConsumer(
            name=REPLIES_GROUP,
            topics=[topics.INQUIRY_REPLIES],
            database=database,
            inbox=messaging.inbox,
            consumer_factory=consumer_factory(settings.replies_fetch_max_wait_ms),
            producer_factory=lambda: create_producer(settings),
            max_attempts=settings.kafka_consumer_max_attempts,
        )
        register_reply_handlers(replies, signer=keys.signer)
        catalog = IdempotentConsumer(
            name=CATALOG_GROUP,
            topics=[topics.CATALOG_SERVICE_PUBLISHED, topics.CATALOG_SERVICE_RETIRED],
            database=database,
            inbox=messaging.inbox,
            consumer_factory=consumer_factory(500),
            producer_factory=lambda: create_producer(settings),
            max_attempts=settings.kafka_consumer_max_attempts,
        )
        register_catalog_handlers(catalog)
        connector_http = httpx.AsyncClient(follow_redirects=False)
        connectors = ConnectorDispatcher(
            database=database,
            signer=keys.signer,
            client=connector_http,
            poll_interval=settings.sweep_interval_seconds,
        )
        listener = AnswerListener(
            libpq_dsn(settings.database_url), poll_interval=settings.answer_poll_interval_seconds
        )
        app.state.broker = BrokerRuntime(
            database=database,
            keys=keys,
            relay=relay,
            listener=listener,
            connectors=connectors,
        )
        sweeper: asyncio.Task[None] | None = None
        async with install_auth(app, settings):
            try:
                await listener.start()
                await relay.start()
                if settings.run_consumers:
                    await replies.start()
                    await catalog.start()
                    await connectors.start()
                    sweeper = asyncio.create_task(
                        _sweep(database, relay, settings.sweep_interval_seconds), name="sweeper"
                    )
                yield
            finally:
                if sweeper is not None:
                    sweeper.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await sweeper
                await connectors.stop()
                await connector_http.aclose()
                await catalog.stop()
                await replies.stop()
                await relay.stop()
                await listener.stop()
                await database.dispose()

    configure_logging(settings.service_name, settings.log_level)
    return create_service_app(
        title="Panjereh inquiry broker", settings=settings, lifespan=lifespan, routers=[router]
    )
