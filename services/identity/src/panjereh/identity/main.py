"""Identity application: ``create_app()`` and its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError

from panjereh.common.app import create_service_app
from panjereh.common.auth import TokenVerifier
from panjereh.common.db import Database
from panjereh.common.logging import configure_logging
from panjereh.common.messaging.consumer import IdempotentConsumer
from panjereh.common.messaging.kafka import create_consumer, create_producer
from panjereh.common.messaging.outbox import OutboxRelay
from panjereh.contracts import topics
from panjereh.contracts.requests import RequestStatusChanged
from panjereh.identity import handlers, router, service
from panjereh.identity.config import Settings, SmsProvider
from panjereh.identity.crypto import Keys
from panjereh.identity.inquiries import InquiryClient
from panjereh.identity.keys import DatabaseKeySource, key_source
from panjereh.identity.models import messaging
from panjereh.identity.sms import (
    ConsoleSmsGateway,
    SmsDispatcher,
    SmsGateway,
    VerifyLookupSmsGateway,
)

logger = logging.getLogger(__name__)


def _sms_gateway(settings: Settings, database: Database, http: httpx.AsyncClient) -> SmsGateway:
    if settings.sms_provider is SmsProvider.CONSOLE:
        return ConsoleSmsGateway(database.sessions)
    assert settings.sms_api_key is not None  # enforced by Settings
    return VerifyLookupSmsGateway(
        http,
        base_url=settings.sms_api_url,
        api_key=settings.sms_api_key.get_secret_value(),
        attempts=settings.sms_attempts_per_dispatch,
        backoff_seconds=settings.sms_retry_base_seconds,
    )


HOUSEKEEPING_INTERVAL_SECONDS = 600.0
SELF_URL = "http://identity.internal"


async def _housekeeping(database: Database) -> None:
    """Prune expired challenges, counters and ended sessions, every few minutes."""
    while True:
        try:
            async with database.transaction() as session:
                await service.prune(session, now=datetime.now(UTC))
        except Exception:
            logger.exception("housekeeping pass failed")
        await asyncio.sleep(HOUSEKEEPING_INTERVAL_SECONDS)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database(settings.database_url, pool_size=settings.database_pool_size)
        app.state.database = database
        app.state.readiness.add("database", database.ping)
        keys = Keys.from_secret(settings.secret_key.get_secret_value())
        app.state.keys = keys
        source = key_source(settings, database.sessions)
        app.state.key_source = source
        background: list[asyncio.Task[None]] = []
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(database.dispose)
            broker_http = await stack.enter_async_context(
                httpx.AsyncClient(timeout=httpx.Timeout(settings.inquiry_timeout_seconds))
            )
            sms_http = await stack.enter_async_context(
                httpx.AsyncClient(timeout=httpx.Timeout(settings.sms_timeout_seconds, connect=2.0))
            )
            if isinstance(source, DatabaseKeySource):
                with contextlib.suppress(OSError, SQLAlchemyError):
                    # first start: make the dev keys; an unreachable database is reported by
                    # /readyz instead of crashing, and keys are made when it comes back
                    await source.ensure()

            async def own_token() -> str:
                return await service.own_service_token(
                    key_source=source, settings=settings, now=datetime.now(UTC)
                )

            # identity verifies bearer tokens like every service, through its JWKS, but reads
            # it in-process: no network hop, and no setting that could point elsewhere
            own_jwks = await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=SELF_URL)
            )
            verifier = TokenVerifier(
                jwks_url=f"{SELF_URL}/.well-known/jwks.json",
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                leeway_seconds=settings.jwt_leeway_seconds,
                jwks_cache_seconds=settings.jwks_cache_seconds,
                jwks_refetch_interval_seconds=settings.jwks_refetch_interval_seconds,
                client=own_jwks,
            )
            app.state.token_verifier = verifier

            app.state.inquiries = InquiryClient(broker_http, settings.inquiry_broker_url, own_token)
            dispatcher = SmsDispatcher(
                database.sessions,
                _sms_gateway(settings, database, sms_http),
                keys,
                poll_seconds=settings.sms_poll_seconds,
                max_attempts=settings.sms_max_attempts,
                retry_base_seconds=settings.sms_retry_base_seconds,
            )
            app.state.sms_dispatcher = dispatcher

            relay = OutboxRelay(
                database=database,
                table=messaging.outbox,
                producer_factory=lambda: create_producer(settings),
            )
            await relay.start()
            stack.push_async_callback(relay.stop)
            if settings.consume_status_events:
                consumer = IdempotentConsumer(
                    name=handlers.CONSUMER_NAME,
                    topics=[topics.REQUESTS_STATUS_CHANGED],
                    database=database,
                    inbox=messaging.inbox,
                    consumer_factory=lambda names, group: create_consumer(
                        settings, *names, group_id=group
                    ),
                    producer_factory=lambda: create_producer(settings),
                    max_attempts=settings.kafka_consumer_max_attempts,
                )
                consumer.register(
                    RequestStatusChanged.event_type,
                    handlers.on_request_status_changed(keys=keys, settings=settings),
                )
                await consumer.start()
                stack.push_async_callback(consumer.stop)
            background.append(asyncio.create_task(dispatcher.run(), name="sms-dispatcher"))
            background.append(asyncio.create_task(_housekeeping(database), name="housekeeping"))
            try:
                yield
            finally:
                for task in background:
                    task.cancel()
                for task in background:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    configure_logging(settings.service_name, settings.log_level)
    # httpx logs every request URL at INFO; the SMS provider's URL carries its API key
    logging.getLogger("httpx").setLevel(logging.WARNING)
    routers = [router.auth, router.me_router, router.admin, router.keys]
    if settings.dev_tools_enabled:
        routers.append(router.dev)
    return create_service_app(
        title="Panjereh identity", settings=settings, lifespan=lifespan, routers=routers
    )
