"""The recipe every Panjereh process follows to build its FastAPI application."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from panjereh.common.errors import install_error_handlers
from panjereh.common.health import Readiness, health_router
from panjereh.common.heap import long_lived_heap
from panjereh.common.lifespan import Resources, Setup
from panjereh.common.middleware import KernelMiddleware
from panjereh.common.settings import ServiceSettings
from panjereh.common.telemetry import instrument_app, server_telemetry, telemetry_lifespan


def _operation_id(route: APIRoute) -> str:
    return route.name


def create_service_app(
    *,
    title: str,
    settings: ServiceSettings,
    setup: Setup | None = None,
    routers: Sequence[APIRouter] = (),
    readiness: Readiness | None = None,
) -> FastAPI:
    """A FastAPI app with problem+json errors, request ids, tracing, the body limit and health.

    ``setup(app, resources)`` opens what the process needs (engine, relay, consumers, token
    verifier) through :class:`~panjereh.common.lifespan.Resources`, which closes it all in
    reverse order at shutdown; nothing is opened at import. Every response carries
    ``X-Request-ID`` and ``traceparent``; text PostgreSQL cannot store is refused with 422.
    While it serves, what start-up built is frozen out of the garbage collector's passes,
    which are timed (:mod:`panjereh.common.heap`).
    """
    readiness = readiness or Readiness()

    @asynccontextmanager
    async def lifespan_with_telemetry(app: FastAPI) -> AsyncIterator[None]:
        async with (
            telemetry_lifespan(settings.otlp_endpoint),
            contextlib.AsyncExitStack() as stack,
        ):
            if setup is not None:
                await setup(app, Resources(app, stack))
            # what start-up built lives as long as the process: out of the collector's passes
            with long_lived_heap():
                yield

    app = FastAPI(
        title=title,
        version="1.0.0",
        lifespan=lifespan_with_telemetry,
        generate_unique_id_function=_operation_id,
        telemetry=server_telemetry(settings.service_name),
    )
    app.state.settings = settings
    app.state.readiness = readiness
    install_error_handlers(app)
    # traceparent, metrics, request id, body limit, storable text: one layer, right inside
    # the OpenTelemetry server span
    app.add_middleware(KernelMiddleware, max_bytes=settings.max_body_bytes)
    instrument_app(app, settings.service_name)
    app.include_router(health_router(readiness))
    for router in routers:
        app.include_router(router)
    return app
