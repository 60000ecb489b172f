"""The recipe every Panjereh process follows to build its FastAPI application."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from panjereh.common.errors import install_error_handlers
from panjereh.common.health import Readiness, health_router
from panjereh.common.middleware import BodySizeLimitMiddleware, RequestIdMiddleware
from panjereh.common.settings import ServiceSettings
from starlette.types import Lifespan


def _operation_id(route: APIRoute) -> str:
    return route.name


def create_service_app(
    *,
    title: str,
    settings: ServiceSettings,
    lifespan: Lifespan[FastAPI],
    routers: Sequence[APIRouter] = (),
    readiness: Readiness | None = None,
) -> FastAPI:
    """A FastAPI app with problem+json errors, request ids, the body limit and health routes.

    The caller's ``lifespan`` opens resources (engine, producer, consumers) and registers their
    readiness checks on ``app.state.readiness``; nothing is opened here.
    """
    readiness = readiness or Readiness()
    app = FastAPI(
        title=title,
        version="1.0.0",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
    )
    app.state.settings = settings
    app.state.readiness = readiness
    install_error_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health_router(readiness))
    for router in routers:
        app.include_router(router)
    return app
