"""The merged OpenAPI document built from the services' real documents, and the edge's
public route table checked against what each service declares."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest

from panjereh.gateway.config import CONTRACT_PUBLIC_ROUTES, CONTRACT_ROUTES
from panjereh.gateway.routing import AccessRules, RouteTable

pytestmark = pytest.mark.integration

SERVICES = {
    "catalog": "panjereh.catalog",
    "identity": "panjereh.identity",
    "requests": "panjereh.requests",
    "inquiry-broker": "panjereh.inquiry_broker",
}
GatewayFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture(scope="module")
def service_documents() -> dict[str, dict[str, Any]]:
    """Each service's own OpenAPI document, from its app (nothing is opened to build it)."""
    documents = {}
    for name, package in SERVICES.items():
        main = pytest.importorskip(f"{package}.main")
        documents[name] = main.create_app().openapi()
    return documents


def routed_operations(
    documents: dict[str, dict[str, Any]],
) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """``(service, METHOD, path, operation)`` for every operation the gateway routes to it."""
    routes = RouteTable(CONTRACT_ROUTES, portal=False)
    for service, document in documents.items():
        for path, item in document["paths"].items():
            if routes.upstream_for(path) != service:
                continue
            for method, operation in item.items():
                yield service, method.upper(), path, operation


def example_path(path: str) -> str:
    return path.replace("{", "x").replace("}", "")


class TestMergedDocument:
    async def test_lists_every_routed_path_of_every_service_and_nothing_internal(
        self,
        start_gateway: GatewayFactory,
        recording: Any,
        service_documents: dict[str, dict[str, Any]],
    ) -> None:
        stand_ins = {
            "catalog": recording.catalog,
            "identity": recording.identity,
            "requests": recording.requests,
            "inquiry-broker": recording.broker,
        }
        for name, upstream in stand_ins.items():
            upstream.openapi = service_documents[name]
        try:
            async with start_gateway() as client:
                merged = (await client.get("/openapi.json")).json()
        finally:
            for upstream in stand_ins.values():
                upstream.openapi = {}

        expected = list(routed_operations(service_documents))
        assert len(expected) > 30
        for service, method, path, _ in expected:
            operation = merged["paths"][path][method.lower()]
            assert operation["x-panjereh-upstream"] == service
        assert set(merged["paths"]) == {path for _, _, path, _ in expected}
        for internal in ("/livez", "/readyz", "/openapi.json", "/docs", "/metrics"):
            assert internal not in merged["paths"]
        assert set(merged["x-panjereh-upstreams"].values()) == {"included"}
        # every reference points at a component that exists
        components = merged["components"]
        for ref in references(merged):
            section, name = ref.removeprefix("#/components/").split("/")
            assert name in components[section], ref
        operation_ids = [
            operation["operationId"]
            for item in merged["paths"].values()
            for operation in item.values()
            if isinstance(operation, dict) and "operationId" in operation
        ]
        assert len(operation_ids) == len(set(operation_ids))


def references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


class TestRouteTableAgainstTheServices:
    def test_every_operation_a_service_serves_without_a_token_is_public_at_the_edge(
        self, service_documents: dict[str, dict[str, Any]]
    ) -> None:
        rules = AccessRules(CONTRACT_PUBLIC_ROUTES)
        blocked = [
            f"{method} {path} ({service})"
            for service, method, path, operation in routed_operations(service_documents)
            if not operation.get("security") and not rules.is_public(method, example_path(path))
        ]
        assert blocked == []

    def test_every_public_pattern_names_something_a_service_serves(
        self, service_documents: dict[str, dict[str, Any]]
    ) -> None:
        served = [
            (method, example_path(path))
            for _, method, path, _ in routed_operations(service_documents)
        ]
        for pattern in CONTRACT_PUBLIC_ROUTES:
            rules = AccessRules([pattern])
            assert any(rules.is_public(method, path) for method, path in served), pattern


_ = importlib
