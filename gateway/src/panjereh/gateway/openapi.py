"""One OpenAPI document for front ends: the services' documents merged as seen through the
gateway.

Only paths the gateway routes to the service that describes them are kept (a service's own
``/livez`` or a path another service owns at the gateway never appear). Components that two
services define differently under one name are renamed ``<Service>_<Name>`` in each, with every
``$ref`` rewritten; identical ones are kept once. Operation ids that clash get the service's
name in front. A service that cannot be reached keeps its last fetched document; one never
fetched is listed under ``x-panjereh-upstreams`` as unavailable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import httpx

from panjereh.gateway.routing import RouteTable

logger = logging.getLogger(__name__)

Document = dict[str, Any]
_REF_PREFIX = "#/components/"


def _camel(service: str) -> str:
    return "".join(part.capitalize() for part in service.replace("_", "-").split("-"))


def _rewrite_refs(node: Any, renames: Mapping[str, str]) -> Any:
    """A copy of ``node`` with ``$ref``s to renamed components pointing at the new names."""
    if isinstance(node, dict):
        result = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value in renames:
                result[key] = renames[value]
            else:
                result[key] = _rewrite_refs(value, renames)
        return result
    if isinstance(node, list):
        return [_rewrite_refs(item, renames) for item in node]
    return node


def merge(
    documents: Mapping[str, Document],
    routes: RouteTable,
    *,
    title: str = "Panjereh API",
    unavailable: tuple[str, ...] = (),
) -> Document:
    """The gateway's document from each service's (by upstream name)."""
    # 1. which component names clash: the same name, different definitions
    definitions: dict[tuple[str, str], dict[str, Any]] = {}
    for service, document in documents.items():
        for section, members in (document.get("components") or {}).items():
            for name, definition in (members or {}).items():
                definitions.setdefault((section, name), {})[service] = definition
    clashing = {
        key
        for key, by_service in definitions.items()
        if len(by_service) > 1
        and any(value != next(iter(by_service.values())) for value in by_service.values())
    }

    components: dict[str, dict[str, Any]] = {}
    paths: dict[str, Any] = {}
    operation_ids: dict[str, str] = {}
    for service in sorted(documents):
        document = documents[service]
        renames = {
            f"{_REF_PREFIX}{section}/{name}": f"{_REF_PREFIX}{section}/{_camel(service)}_{name}"
            for (section, name), by_service in definitions.items()
            if (section, name) in clashing and service in by_service
        }
        for section, members in (document.get("components") or {}).items():
            target = components.setdefault(section, {})
            for name, definition in (members or {}).items():
                new_name = f"{_camel(service)}_{name}" if (section, name) in clashing else name
                target[new_name] = _rewrite_refs(definition, renames)
        for path, item in (document.get("paths") or {}).items():
            if routes.upstream_for(path) != service or path in paths:
                continue
            rewritten = _rewrite_refs(item, renames)
            for operation in rewritten.values():
                if not isinstance(operation, dict) or "operationId" not in operation:
                    continue
                operation_id = operation["operationId"]
                if operation_ids.get(operation_id, service) != service:
                    operation["operationId"] = f"{service}_{operation_id}"
                operation_ids.setdefault(operation["operationId"], service)
                operation["x-panjereh-upstream"] = service
            paths[path] = rewritten

    upstreams = dict.fromkeys(sorted(documents), "included")
    upstreams.update(dict.fromkeys(unavailable, "unavailable"))
    merged: Document = {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": "1.0.0",
            "description": (
                "The platform's REST API as seen through the gateway: every service's "
                "public paths in one document. Send `Authorization: Bearer <access token>` "
                "(issued by identity) on protected operations."
            ),
        },
        "paths": dict(sorted(paths.items())),
        "x-panjereh-upstreams": upstreams,
    }
    if components:
        merged["components"] = {
            section: dict(sorted(members.items())) for section, members in components.items()
        }
    return merged


class ApiDocument:
    """The merged document, refreshed from the services on a timer and on demand."""

    def __init__(
        self,
        upstreams: Mapping[str, str],
        routes: RouteTable,
        *,
        client: httpx.AsyncClient,
        min_refresh_interval: float = 5.0,
    ) -> None:
        self._upstreams = dict(upstreams)
        self._routes = routes
        self._client = client
        self._fetched: dict[str, Document] = {}
        self._document: Document = merge({}, routes, unavailable=tuple(sorted(upstreams)))
        self._min_interval = min_refresh_interval
        self._last_attempt: float | None = None
        self._refreshed_at: float | None = None
        self._lock = asyncio.Lock()

    @property
    def document(self) -> Document:
        return self._document

    @property
    def complete(self) -> bool:
        return set(self._fetched) == set(self._upstreams)

    def age(self) -> float:
        """Seconds since every service's document was last fetched in one pass."""
        if self._refreshed_at is None:
            return float("inf")
        return time.monotonic() - self._refreshed_at

    def due(self) -> bool:
        """True when a refresh on demand would not hammer the services."""
        return self._last_attempt is None or (
            time.monotonic() - self._last_attempt >= self._min_interval
        )

    async def settle(self) -> None:
        """Before serving an incomplete document: wait for a refresh under way, or start one
        when a service is missing and the last attempt is old enough (on demand)."""
        if self.complete:
            return
        if self._lock.locked():
            async with self._lock:
                return
        if self.due():
            await self.refresh()

    async def refresh(self) -> bool:
        """Fetch every service's document; ``True`` when all were fetched this time."""
        async with self._lock:
            self._last_attempt = time.monotonic()
            names = list(self._upstreams)
            results = await asyncio.gather(*(self._fetch(name) for name in names))
            for name, document in zip(names, results, strict=True):
                if document is not None:
                    self._fetched[name] = document
            missing = tuple(name for name in names if name not in self._fetched)
            self._document = merge(self._fetched, self._routes, unavailable=missing)
            if not missing:
                self._refreshed_at = self._last_attempt
            return not missing

    async def _fetch(self, name: str) -> Document | None:
        url = self._upstreams[name].rstrip("/") + "/openapi.json"
        try:
            response = await self._client.get(url)
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            logger.warning(
                "OpenAPI document not fetched", extra={"upstream": name, "error": repr(exc)}
            )
            return None
        if not isinstance(document, dict) or not isinstance(document.get("paths"), dict):
            logger.warning("OpenAPI document malformed", extra={"upstream": name})
            return None
        return document
