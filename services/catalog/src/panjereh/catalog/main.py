"""Catalog application: ``create_app()`` and its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from panjereh.catalog.config import Settings
from panjereh.catalog.models import messaging
from panjereh.catalog.router import router
from panjereh.common.app import create_service_app
from panjereh.common.auth import install_auth
from panjereh.common.db import Database
from panjereh.common.logging import configure_logging
from panjereh.common.messaging.kafka import create_producer
from panjereh.common.messaging.outbox import OutboxRelay


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database(settings.database_url, pool_size=settings.database_pool_size)
        app.state.database = database
        app.state.readiness.add("database", database.ping)
        # The broker is not a readiness condition: the catalog serves reads without it, and
        # published/retired events wait in the outbox until the relay reaches the broker.
        relay = OutboxRelay(
            database=database,
            table=messaging.outbox,
            producer_factory=lambda: create_producer(settings),
        )
        app.state.outbox_relay = relay
        await relay.start()
        try:
            async with install_auth(app, settings):
                yield
        finally:
            await relay.stop()
            await database.dispose()

    configure_logging(settings.service_name, settings.log_level)
    return create_service_app(
        title="Panjereh catalog", settings=settings, lifespan=lifespan, routers=[router]
    )
