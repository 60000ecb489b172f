"""The catalog as a front end sees it through the gateway, on the stack `make run` starts."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.e2e


def test_the_seeded_catalog_is_searchable_through_the_gateway(gateway: httpx.Client) -> None:
    found = gateway.get("/api/v1/catalog/services", params={"q": "گواهی عدم سوء پیشينه"})
    assert found.status_code == 200
    assert found.json()["items"][0]["code"] == "11030000001"
    assert found.headers["x-request-id"]


def test_a_card_as_cpsv_ap_jsonld_through_the_gateway(gateway: httpx.Client) -> None:
    response = gateway.get(
        "/api/v1/catalog/services/11020000002", headers={"Accept": "application/ld+json"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/ld+json")
    types = {
        node["@type"] if isinstance(node["@type"], str) else ""
        for node in response.json()["@graph"]
    }
    assert "cpsv:PublicService" in types


def test_live_stats_through_the_gateway(gateway: httpx.Client) -> None:
    stats = gateway.get("/api/v1/catalog/stats").json()
    assert stats["services_total"] >= 45
    assert 0 < stats["smart_share"] < 1
