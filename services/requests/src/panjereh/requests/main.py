"""Requests application: ``create_app()`` and its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from panjereh.common.app import create_service_app
from panjereh.common.auth import install_auth
from panjereh.common.db import Database
from panjereh.common.logging import configure_logging
from panjereh.common.messaging.kafka import broker_readiness_check, create_producer
from panjereh.common.messaging.outbox import OutboxRelay
from panjereh.requests.config import Settings
from panjereh.requests.models import messaging


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database(settings.database_url, pool_size=settings.database_pool_size)
        app.state.database = database
        app.state.readiness.add("database", database.ping)
        app.state.readiness.add("broker", broker_readiness_check(settings))
        relay = OutboxRelay(
            database=database,
            table=messaging.outbox,
            producer_factory=lambda: create_producer(settings),
        )
        await relay.start()
        try:
            async with install_auth(app, settings):
                yield
        finally:
            await relay.stop()
            await database.dispose()

    configure_logging(settings.service_name, settings.log_level)
    return create_service_app(title="Panjereh requests", settings=settings, lifespan=lifespan)
