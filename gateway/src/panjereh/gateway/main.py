"""Gateway application: ``create_app()`` and its setup.

``create_app()`` returns the raw ASGI :class:`~panjereh.gateway.proxy.Gateway`; its lifespan
and its own paths are a kernel app (``create_service_app``): the same readiness, problem+json,
request ids and traceparent as every process, and ``/readyz`` names each upstream.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from fastapi import FastAPI

from panjereh.common.app import create_service_app
from panjereh.common.auth import install_auth
from panjereh.common.health import ReadinessCheck
from panjereh.common.lifespan import Resources
from panjereh.common.logging import configure_logging
from panjereh.common.telemetry import tracer_provider
from panjereh.common.upstream import UpstreamPool
from panjereh.common.workers import PeriodicWorker
from panjereh.gateway.config import Settings
from panjereh.gateway.edge_auth import EdgeAuthenticator
from panjereh.gateway.metrics import MetricsServer
from panjereh.gateway.openapi import ApiDocument
from panjereh.gateway.proxy import Gateway
from panjereh.gateway.routing import PORTAL

#: How often the refresher looks whether the merged OpenAPI document is due (it fetches only
#: when a service is missing from it or the document is older than the configured refresh).
OPENAPI_CHECK_SECONDS = 10.0


def create_app(settings: Settings | None = None) -> Any:
    """The gateway's ASGI application (``uvicorn panjereh.gateway.main:create_app --factory``).

    Run uvicorn with ``--no-proxy-headers`` (or ``FORWARDED_ALLOW_IPS=""``): the gateway
    decides which ``X-Forwarded-For`` to believe itself (setting ``trusted_proxies``).
    """
    settings = settings or Settings()
    upstreams = settings.upstreams()
    if settings.portal_url is not None:
        upstreams[PORTAL] = settings.portal_url
    gateway: Gateway

    async def setup(app: FastAPI, resources: Resources) -> None:
        if settings.metrics_port is not None:
            # /metrics on a port of its own: the public port refuses it (docs/gateway.md)
            app.state.metrics_server = await resources.start(
                MetricsServer(settings.metrics_host, settings.metrics_port)
            )
        for name, url in upstreams.items():
            pool = UpstreamPool(
                name,
                url,
                max_connections=settings.upstream_max_connections,
                keepalive_seconds=settings.upstream_keepalive_seconds,
                connect_timeout=settings.upstream_connect_timeout_seconds,
                read_timeout=settings.upstream_timeout_seconds,
            )
            resources.on_close(pool.close)
            gateway.pools[name] = pool
        verifier = await resources.enter(install_auth(app, settings))
        gateway.auth = EdgeAuthenticator(
            verifier,
            cache_seconds=settings.token_cache_seconds,
            cache_size=settings.token_cache_size,
        )
        # control-plane calls (readiness, OpenAPI): rare, so the plain client is fine
        timeout = httpx.Timeout(5.0, connect=settings.upstream_connect_timeout_seconds)
        client = await resources.enter(httpx.AsyncClient(timeout=timeout))
        for name, url in upstreams.items():
            resources.ready_when(name, _upstream_check(client, url))
        document = ApiDocument(
            settings.upstreams(),
            gateway.routes,
            client=client,
            min_refresh_interval=settings.openapi_retry_seconds,
        )
        gateway.api_document = document
        app.openapi = lambda: document.document  # type: ignore[method-assign]

        async def refresh_openapi() -> None:
            stale = document.age() >= settings.openapi_refresh_seconds
            if (stale or not document.complete) and document.due():
                await document.refresh()

        # the first pass runs in the worker's task: the gateway serves while services are down
        await resources.start(
            PeriodicWorker(
                "openapi-refresh",
                refresh_openapi,
                interval=min(OPENAPI_CHECK_SECONDS, settings.openapi_refresh_seconds),
            )
        )

    configure_logging(settings.service_name, settings.log_level)
    # readiness probes and OpenAPI refreshes would log a line each: the access log says enough
    logging.getLogger("httpx").setLevel(logging.WARNING)
    own = create_service_app(title="Panjereh API", settings=settings, setup=setup)
    gateway = Gateway(settings, own)
    if settings.otlp_endpoint:
        # spans only when they are exported: the hot path pays nothing otherwise
        from opentelemetry.instrumentation.asgi import (  # noqa: PLC0415
            OpenTelemetryMiddleware,
        )

        return OpenTelemetryMiddleware(
            gateway,
            excluded_urls="/livez,/readyz",
            tracer_provider=tracer_provider(settings.service_name),
            exclude_spans=["receive", "send"],
        )
    return gateway


def _upstream_check(client: httpx.AsyncClient, base_url: str) -> ReadinessCheck:
    async def check() -> None:
        response = await client.get(base_url.rstrip("/") + "/readyz")
        response.raise_for_status()

    return check
