"""Requests application: ``create_app()`` and its setup."""

from __future__ import annotations

from fastapi import FastAPI

from panjereh.common.app import create_service_app
from panjereh.common.auth import install_auth
from panjereh.common.lifespan import Resources
from panjereh.common.logging import configure_logging
from panjereh.common.messaging.kafka import broker_readiness_check, create_producer
from panjereh.common.messaging.outbox import OutboxRelay
from panjereh.requests.config import Settings
from panjereh.requests.models import messaging


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    async def setup(app: FastAPI, resources: Resources) -> None:
        database = resources.database(settings)
        resources.ready_when("broker", broker_readiness_check(settings))
        await resources.start(
            OutboxRelay(
                database=database,
                table=messaging.outbox,
                producer_factory=lambda: create_producer(settings),
            )
        )
        await resources.enter(install_auth(app, settings))

    configure_logging(settings.service_name, settings.log_level)
    return create_service_app(title="Panjereh requests", settings=settings, setup=setup)
