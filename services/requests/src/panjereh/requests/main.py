"""Requests application: ``create_app()`` and its setup."""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime

import httpx
from fastapi import FastAPI

from panjereh.common.app import create_service_app
from panjereh.common.auth import install_auth
from panjereh.common.db import Database, after_commit
from panjereh.common.http import ServiceClient, outbound_client
from panjereh.common.lifespan import Resources
from panjereh.common.logging import configure_logging
from panjereh.common.messaging.consumer import IdempotentConsumer
from panjereh.common.messaging.kafka import (
    broker_readiness_check,
    create_consumer,
    create_producer,
)
from panjereh.common.messaging.outbox import OutboxRelay
from panjereh.common.workers import PeriodicWorker
from panjereh.contracts import topics
from panjereh.requests import catalog_client, handlers, router
from panjereh.requests.broker_client import BrokerClient, ServiceToken
from panjereh.requests.config import Settings
from panjereh.requests.keys import KeyRing, SigningKeysUnavailable
from panjereh.requests.models import messaging
from panjereh.requests.orchestrator import Orchestrator
from panjereh.requests.rules import RuleEvaluator
from panjereh.requests.service import escalation, replica

logger = logging.getLogger(__name__)
BOOTSTRAP_RETRY_SECONDS = 5.0


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    async def setup(app: FastAPI, resources: Resources) -> None:
        database = resources.database(settings)
        resources.ready_when("broker", broker_readiness_check(settings))
        keys = KeyRing(settings, database)
        app.state.key_ring = keys
        with contextlib.suppress(SigningKeysUnavailable):
            await keys.get()  # early when the database is up; lazily once it comes back
        relay = await resources.start(
            OutboxRelay(
                database=database,
                table=messaging.outbox,
                producer_factory=lambda: create_producer(settings),
            )
        )
        app.state.outbox_relay = relay
        await resources.enter(install_auth(app, settings))
        catalog_http = await resources.enter(outbound_client(timeout=10.0))
        # API-only replicas need rule workers too: receipts are replayed there
        app.state.evaluator = await resources.start(
            RuleEvaluator(workers=settings.rule_workers, timeout=settings.rule_timeout_seconds)
        )
        app.state.orchestrator = None
        if not settings.run_workers:
            return
        # a broker call waits up to inquiry_wait_seconds for the answer, then answers
        broker_http = ServiceClient(
            "inquiry-broker",
            settings.inquiry_broker_url,
            timeout=settings.inquiry_wait_seconds + 10.0,
            connect_timeout=5.0,
        )
        resources.on_close(broker_http.aclose)
        identity_http = await resources.enter(
            outbound_client(timeout=httpx.Timeout(10.0, connect=5.0))
        )
        token = ServiceToken(
            identity_http,
            identity_url=settings.identity_url,
            client_id=settings.client_id,
            client_secret=settings.client_secret.get_secret_value(),
        )
        orchestrator = await resources.start(
            Orchestrator(
                database=database,
                broker=BrokerClient(
                    broker_http,
                    token=token,
                    wait=settings.inquiry_wait_seconds,
                ),
                evaluator=app.state.evaluator,
                keys=keys,
                settings=settings,
            )
        )
        app.state.orchestrator = orchestrator
        app.state.service_token = token
        app.state.sla_watch = await resources.start(_sla_watch(database, relay, settings))
        if settings.consume_events:
            await resources.start(_catalog_consumer(database, settings))
            await resources.start(_inquiry_consumer(database, settings, orchestrator))
        cards = _CardReplica(database, catalog_http, settings.catalog_url)
        resources.ready_when("card_replica", cards.ready)
        await resources.start(cards.worker())

    configure_logging(settings.service_name, settings.log_level)
    return create_service_app(
        title="Panjereh requests",
        settings=settings,
        setup=setup,
        routers=[router.router, router.agency_router, router.verify_router],
    )


def _consumer(database: Database, settings: Settings, name: str, *names: str) -> IdempotentConsumer:
    return IdempotentConsumer(
        name=name,
        topics=list(names),
        database=database,
        inbox=messaging.inbox,
        consumer_factory=lambda topics_, group: create_consumer(settings, *topics_, group_id=group),
        producer_factory=lambda: create_producer(settings),
        max_attempts=settings.kafka_consumer_max_attempts,
        idle_fetch_wait_ms=settings.events_idle_fetch_wait_ms,
    )


def _catalog_consumer(database: Database, settings: Settings) -> IdempotentConsumer:
    consumer = _consumer(
        database,
        settings,
        handlers.CATALOG_CONSUMER,
        topics.CATALOG_SERVICE_PUBLISHED,
        topics.CATALOG_SERVICE_RETIRED,
    )
    handlers.register_catalog_handlers(consumer)
    return consumer


def _inquiry_consumer(
    database: Database, settings: Settings, orchestrator: Orchestrator
) -> IdempotentConsumer:
    consumer = _consumer(database, settings, handlers.INQUIRY_CONSUMER, topics.INQUIRY_ANSWERED)
    handlers.register_inquiry_handlers(consumer, wake=orchestrator.wake)
    return consumer


def _sla_watch(database: Database, relay: OutboxRelay, settings: Settings) -> PeriodicWorker:
    """Every ``sla_check_seconds``: escalate open requests past their due time, in batches."""

    async def step() -> bool:
        async with database.transaction() as session:
            escalated = await escalation.escalate_overdue(
                session, now=datetime.now(UTC), limit=settings.step_batch_size
            )
            if escalated:
                after_commit(session, relay.wake)
        return escalated == settings.step_batch_size

    return PeriodicWorker("sla-watch", step, interval=settings.sla_check_seconds)


class _CardReplica:
    """Fills an empty card replica from the catalog's API, retrying until it is reachable, and
    holds readiness until the replica has its cards.

    Once the replica holds cards (from here or from the catalog's events) the step does
    nothing. Until then the process is not ready: a citizen's submission there would be
    refused as ``service_not_found`` for a card the catalog has published (right after a
    first start, the catalog's events may still be on their way).
    """

    def __init__(self, database: Database, client: httpx.AsyncClient, catalog_url: str) -> None:
        self._database = database
        self._client = client
        self._catalog_url = catalog_url
        self.filled = False

    def worker(self) -> PeriodicWorker:
        return PeriodicWorker("replica-bootstrap", self.step, interval=BOOTSTRAP_RETRY_SECONDS)

    async def _holds_cards(self) -> bool:
        async with self._database.transaction() as session:
            return not await replica.is_empty(session)

    async def step(self) -> None:
        if self.filled:
            return
        if await self._holds_cards():
            self.filled = True
            return
        cards = await catalog_client.published_cards(self._client, self._catalog_url)
        async with self._database.transaction() as session:
            for card in cards:
                await replica.record_published(session, card=card)
        self.filled = True
        logger.info("card replica filled from the catalog", extra={"cards": len(cards)})

    async def ready(self) -> None:
        """Readiness: the replica was filled (by either way) since this process started."""
        if not self.filled and await self._holds_cards():
            self.filled = True
        if not self.filled:
            msg = "the card replica is empty: the catalog was not reached yet"
            raise RuntimeError(msg)
