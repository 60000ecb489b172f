"""Identity application: ``create_app()`` and its setup."""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime

import httpx
from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError

from panjereh.common.app import create_service_app
from panjereh.common.auth import REVOKED_SESSIONS_PATH, TokenVerifier
from panjereh.common.db import Database
from panjereh.common.http import ServiceClient, outbound_client
from panjereh.common.lifespan import Resources
from panjereh.common.logging import configure_logging
from panjereh.common.messaging.consumer import IdempotentConsumer
from panjereh.common.messaging.kafka import create_consumer, create_producer
from panjereh.common.messaging.outbox import OutboxRelay
from panjereh.common.workers import PeriodicWorker
from panjereh.contracts import topics
from panjereh.contracts.requests import RequestStatusChanged
from panjereh.identity import handlers
from panjereh.identity.config import Settings, SmsProvider
from panjereh.identity.crypto import Keys
from panjereh.identity.inquiries import InquiryClient
from panjereh.identity.keys import DatabaseKeySource, key_source
from panjereh.identity.models import messaging
from panjereh.identity.router import (
    admin_router,
    auth_router,
    dev_router,
    keys_router,
    me_router,
)
from panjereh.identity.service import housekeeping, tokens
from panjereh.identity.sms import (
    ConsoleSmsGateway,
    SmsDispatcher,
    SmsGateway,
    SmsQueue,
    VerifyLookupSmsGateway,
    verify_lookup_client,
)
from panjereh.identity.tokens import ReusedToken

HOUSEKEEPING_INTERVAL_SECONDS = 600.0
SELF_URL = "http://identity.internal"


def _sms_gateway(settings: Settings, database: Database, http: httpx.AsyncClient) -> SmsGateway:
    if settings.sms_provider is SmsProvider.CONSOLE:
        return ConsoleSmsGateway(database)
    return VerifyLookupSmsGateway(
        http,
        base_url=settings.sms_api_url,
        attempts=settings.sms_attempts_per_dispatch,
        backoff_seconds=settings.sms_retry_base_seconds,
    )


def _sms_client(settings: Settings) -> httpx.AsyncClient:
    timeout = httpx.Timeout(settings.sms_timeout_seconds, connect=2.0)
    if settings.sms_provider is SmsProvider.CONSOLE or settings.sms_api_key is None:
        return outbound_client(timeout=timeout)
    # the provider wants its key in the URL path: only this client's transport ever holds it
    return verify_lookup_client(settings.sms_api_key.get_secret_value(), timeout=timeout)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    async def setup(app: FastAPI, resources: Resources) -> None:
        database = resources.database(settings)
        keys = Keys.from_secret(settings.secret_key.get_secret_value())
        app.state.keys = keys
        source = key_source(settings, database)
        app.state.key_source = source
        if isinstance(source, DatabaseKeySource):
            with contextlib.suppress(OSError, SQLAlchemyError):
                # first start: make the dev keys; an unreachable database is reported by
                # /readyz instead of crashing, and keys are made when it comes back
                await source.ensure()

        # every call to another system goes through a client that refuses to send while a
        # transaction is open (claim, commit, call, record)
        broker_http = ServiceClient(
            "inquiry-broker",
            settings.inquiry_broker_url,
            timeout=settings.inquiry_timeout_seconds,
        )
        resources.on_close(broker_http.aclose)
        sms_http = await resources.enter(_sms_client(settings))

        # identity verifies bearer tokens like every service, through its JWKS, but reads it
        # in-process (no network hop, so a plain client): no setting could point elsewhere
        own_jwks = await resources.enter(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=SELF_URL)
        )
        verifier = TokenVerifier(
            jwks_url=f"{SELF_URL}/.well-known/jwks.json",
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            leeway_seconds=settings.jwt_leeway_seconds,
            jwks_cache_seconds=settings.jwks_cache_seconds,
            jwks_refetch_interval_seconds=settings.jwks_refetch_interval_seconds,
            # and the sessions ended lately, from itself too (another replica's logouts)
            revoked_sessions_url=f"{SELF_URL}{REVOKED_SESSIONS_PATH}",
            revocation_poll_seconds=settings.revocation_poll_seconds,
            client=own_jwks,
        )
        app.state.token_verifier = verifier
        resources.on_close(verifier.aclose)

        async def mint_own_token(now: datetime) -> str:
            return await tokens.own_service_token(key_source=source, settings=settings, now=now)

        # one token for many inquiries: minted again at half its lifetime or a key rotation
        own_token = ReusedToken(
            mint_own_token, source, lifetime=tokens.token_policy(settings).lifetime
        )
        app.state.inquiries = InquiryClient(broker_http, own_token)

        await resources.start(
            OutboxRelay(
                database=database,
                table=messaging.outbox,
                producer_factory=lambda: create_producer(settings),
            )
        )
        dispatcher = SmsDispatcher(
            database,
            _sms_gateway(settings, database, sms_http),
            keys,
            max_attempts=settings.sms_max_attempts,
            retry_base_seconds=settings.sms_retry_base_seconds,
            lease_seconds=settings.sms_lease_seconds,
        )
        sms_worker = PeriodicWorker(
            "sms-dispatcher",
            dispatcher.step,
            interval=settings.sms_poll_seconds,
            idle_interval=settings.sms_idle_poll_seconds,
        )
        dispatcher.pace(sms_worker)
        await resources.start(sms_worker)
        # messages queued here are handed to this dispatcher after their commit, already
        # claimed; the worker's passes send the rest (retries, other replicas' leftovers)
        resources.on_close(dispatcher.close)
        sms = SmsQueue(keys, wake=sms_worker.wake, dispatcher=dispatcher)
        app.state.sms = sms

        async def housekeeping_pass() -> None:
            async with database.transaction() as session:
                await housekeeping.prune(session, now=datetime.now(UTC))

        await resources.start(
            PeriodicWorker(
                "identity-housekeeping", housekeeping_pass, interval=HOUSEKEEPING_INTERVAL_SECONDS
            )
        )

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
                idle_fetch_wait_ms=settings.status_events_idle_fetch_wait_ms,
            )
            consumer.register(
                RequestStatusChanged.event_type,
                handlers.on_request_status_changed(sms=sms, settings=settings),
            )
            await resources.start(consumer)

    configure_logging(settings.service_name, settings.log_level)
    # httpx logs every request URL at INFO; the SMS provider's URL carries its API key
    logging.getLogger("httpx").setLevel(logging.WARNING)
    routers = [auth_router, me_router, admin_router, keys_router]
    if settings.dev_tools_enabled:
        routers.append(dev_router)
    return create_service_app(
        title="Panjereh identity", settings=settings, setup=setup, routers=routers
    )
