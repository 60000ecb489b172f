"""Gateway application: ``create_app()`` and its setup."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response

from panjereh.common.app import create_service_app
from panjereh.common.health import ReadinessCheck
from panjereh.common.lifespan import Resources
from panjereh.common.logging import configure_logging
from panjereh.gateway.config import Settings
from panjereh.gateway.proxy import RouteNotFound, forward
from panjereh.gateway.routing import upstream_for

PROXIED_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def _client(app: FastAPI) -> httpx.AsyncClient:
    client: httpx.AsyncClient = app.state.http
    return client


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    upstreams = settings.upstreams()

    async def setup(app: FastAPI, resources: Resources) -> None:
        timeout = httpx.Timeout(
            settings.upstream_timeout_seconds, connect=settings.upstream_connect_timeout_seconds
        )
        limits = httpx.Limits(max_connections=500, max_keepalive_connections=100)
        # upstreams are the platform's own services, not outside systems: a plain client
        client = await resources.enter(httpx.AsyncClient(timeout=timeout, limits=limits))
        app.state.http = client
        # the gateway is ready when every upstream is: one component per service
        for name, base_url in upstreams.items():
            resources.ready_when(name, _upstream_check(client, base_url))

    router = APIRouter()

    @router.api_route("/{path:path}", methods=PROXIED_METHODS, include_in_schema=False)
    async def proxy(request: Request, path: str) -> Response:
        service = upstream_for(request.url.path)
        if service is None:
            raise RouteNotFound
        return await forward(request, _client(request.app), upstreams[service], service)

    configure_logging(settings.service_name, settings.log_level)
    return create_service_app(
        title="Panjereh gateway", settings=settings, setup=setup, routers=[router]
    )


def _upstream_check(client: httpx.AsyncClient, base_url: str) -> ReadinessCheck:
    async def check() -> None:
        response = await client.get(base_url + "/readyz")
        response.raise_for_status()

    return check
