"""Liveness and readiness endpoints.

``/livez`` answers while the event loop runs. ``/readyz`` runs every registered check (the
database, the broker, ...) and is 200 only when all pass, naming each component.
``/metrics`` is the process's Prometheus text (:mod:`panjereh.common.metrics`); the gateway
never routes these paths, so they are reachable only on each process's own port.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter
from starlette.responses import JSONResponse, Response

from panjereh.common.metrics import exposition

logger = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[None]]
CHECK_TIMEOUT_SECONDS = 2.0


class Readiness:
    """The named checks a process must pass to be ready."""

    def __init__(self) -> None:
        self._checks: dict[str, ReadinessCheck] = {}

    def add(self, name: str, check: ReadinessCheck) -> None:
        self._checks[name] = check

    async def report(self) -> dict[str, str]:
        names = list(self._checks)
        results = await asyncio.gather(
            *(self._run(name) for name in names), return_exceptions=False
        )
        return dict(zip(names, results, strict=True))

    async def _run(self, name: str) -> str:
        try:
            await asyncio.wait_for(self._checks[name](), timeout=CHECK_TIMEOUT_SECONDS)
        except Exception as exc:
            logger.warning("readiness check failed", extra={"check": name, "error": repr(exc)})
            return "unavailable"
        return "ready"


def health_router(readiness: Readiness) -> APIRouter:
    router = APIRouter(tags=["health"], include_in_schema=False)

    @router.get("/livez")
    async def livez() -> dict[str, str]:
        return {"status": "live"}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        components = await readiness.report()
        ready = all(state == "ready" for state in components.values())
        return JSONResponse(
            {"status": "ready" if ready else "unavailable", "components": components},
            status_code=200 if ready else 503,
        )

    @router.get("/metrics")
    async def metrics() -> Response:
        body, content_type = exposition()
        return Response(body, media_type=content_type)

    return router
