from __future__ import annotations

from typing import Any

from panjereh.gateway.config import CONTRACT_ROUTES
from panjereh.gateway.openapi import merge
from panjereh.gateway.routing import RouteTable

ROUTES = RouteTable(CONTRACT_ROUTES, portal=False)


def document(paths: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    return {"openapi": "3.1.0", "paths": paths, "components": {"schemas": schemas}}


def operation(operation_id: str, schema: str) -> dict[str, Any]:
    return {
        "get": {
            "operationId": operation_id,
            "responses": {
                "200": {
                    "content": {
                        "application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}
                    }
                }
            },
        }
    }


CATALOG = document(
    {
        "/api/v1/catalog/services": operation("search", "Decision"),
        "/livez": operation("livez", "Health"),
    },
    {
        "Decision": {"type": "object", "properties": {"mode": {"type": "string"}}},
        "Health": {"type": "object"},
        "HTTPValidationError": {"type": "object", "title": "same everywhere"},
    },
)
REQUESTS = document(
    {
        "/api/v1/requests/{tracking_code}": operation("search", "Decision"),
        "/api/v1/catalog/services": operation("stolen", "Decision"),
    },
    {
        "Decision": {"type": "object", "properties": {"outcome": {"type": "string"}}},
        "HTTPValidationError": {"type": "object", "title": "same everywhere"},
    },
)


class TestMerge:
    merged = merge({"catalog": CATALOG, "requests": REQUESTS}, ROUTES)

    def test_only_paths_the_gateway_routes_to_their_service_are_kept(self) -> None:
        assert set(self.merged["paths"]) == {
            "/api/v1/catalog/services",
            "/api/v1/requests/{tracking_code}",
        }
        catalog_search = self.merged["paths"]["/api/v1/catalog/services"]["get"]
        assert catalog_search["x-panjereh-upstream"] == "catalog"

    def test_clashing_components_are_renamed_and_refs_follow(self) -> None:
        schemas = self.merged["components"]["schemas"]
        assert "Decision" not in schemas
        assert schemas["Catalog_Decision"]["properties"] == {"mode": {"type": "string"}}
        assert schemas["Requests_Decision"]["properties"] == {"outcome": {"type": "string"}}
        ref = self.merged["paths"]["/api/v1/requests/{tracking_code}"]["get"]["responses"]["200"]
        schema = ref["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Requests_Decision"}

    def test_identical_components_are_kept_once(self) -> None:
        assert self.merged["components"]["schemas"]["HTTPValidationError"] == {
            "type": "object",
            "title": "same everywhere",
        }

    def test_clashing_operation_ids_get_the_service_in_front(self) -> None:
        ids = [
            operation["operationId"]
            for item in self.merged["paths"].values()
            for operation in item.values()
        ]
        assert sorted(ids) == ["requests_search", "search"]

    def test_unavailable_services_are_named(self) -> None:
        merged = merge({"catalog": CATALOG}, ROUTES, unavailable=("requests",))
        assert merged["x-panjereh-upstreams"] == {"catalog": "included", "requests": "unavailable"}
