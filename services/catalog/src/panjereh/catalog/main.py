"""Catalog application: ``create_app()`` and the resources it opens."""

from __future__ import annotations

from fastapi import FastAPI

from panjereh.catalog import handlers
from panjereh.catalog.config import Settings
from panjereh.catalog.models import messaging
from panjereh.catalog.router import router
from panjereh.common.app import create_service_app
from panjereh.common.auth import install_auth
from panjereh.common.lifespan import Resources
from panjereh.common.logging import configure_logging
from panjereh.common.messaging.consumer import IdempotentConsumer
from panjereh.common.messaging.kafka import create_consumer, create_producer
from panjereh.common.messaging.outbox import OutboxRelay
from panjereh.contracts import topics
from panjereh.contracts.inquiry import AgencyActive


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    async def setup(app: FastAPI, resources: Resources) -> None:
        database = resources.database(settings)
        # The broker is not a readiness condition: the catalog serves reads without it, and
        # published/retired events wait in the outbox until the relay reaches the broker.
        await resources.start(
            OutboxRelay(
                database=database,
                table=messaging.outbox,
                producer_factory=lambda: create_producer(settings),
            )
        )
        await resources.enter(install_auth(app, settings))
        if not settings.consume_agency_activity:
            return
        # The agencies' connection status (agencies_connected_share) is fed by the inquiry
        # broker, which announces each agency it hears from at most once a minute.
        activity = IdempotentConsumer(
            name=handlers.AGENCY_ACTIVITY_GROUP,
            topics=[topics.INQUIRY_AGENCY_ACTIVE],
            database=database,
            inbox=messaging.inbox,
            # topics are left out here: the idempotent consumer subscribes with its listener
            consumer_factory=lambda _topics, group: create_consumer(settings, group_id=group),
            producer_factory=lambda: create_producer(settings),
            max_attempts=settings.kafka_consumer_max_attempts,
            idle_fetch_wait_ms=settings.agency_activity_idle_fetch_wait_ms,
        )
        activity.register(AgencyActive.event_type, handlers.on_agency_active)
        await resources.start(activity)

    configure_logging(settings.service_name, settings.log_level)
    return create_service_app(
        title="Panjereh catalog", settings=settings, setup=setup, routers=[router]
    )
