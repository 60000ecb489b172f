"""The catalog's public endpoints over HTTP (ASGI, real PostgreSQL, seeded catalog)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from pyshacl import validate
from rdflib import Graph

pytestmark = [
    pytest.mark.integration,
    # rdflib's own JSON-LD parser still builds a ConjunctiveGraph internally (rdflib 7.x)
    pytest.mark.filterwarnings("ignore:ConjunctiveGraph is deprecated:DeprecationWarning:rdflib"),
]

DATA = Path(__file__).resolve().parents[1] / "data" / "cpsv-ap-3.2.0"


class TestSearch:
    async def test_persian_aware_search_with_facets(self, public_api: httpx.AsyncClient) -> None:
        response = await public_api.get("/api/v1/catalog/services", params={"q": "كارت ملي"})
        assert response.status_code == 200
        body = response.json()
        assert body["items"][0]["code"] == "11010000003"
        assert body["items"][0]["title"]["fa"] == "صدور کارت هوشمند ملی"
        assert set(body["facets"]) == {
            "agency", "category", "life_event", "channel", "maturity", "audience"
        }  # fmt: skip
        assert {k: body[k] for k in ("page", "page_size")} == {"page": 1, "page_size": 20}

    async def test_category_facets_carry_their_names(self, public_api: httpx.AsyncClient) -> None:
        body = (await public_api.get("/api/v1/catalog/services", params={"page_size": 1})).json()
        categories = {facet["value"]: facet for facet in body["facets"]["category"]}
        assert categories["travel"]["label"] == {
            "fa": "سفر و گذرنامه",
            "en": "Travel and passports",
        }
        # every category the demo catalog uses is named in both languages
        assert len(categories) > 5
        assert all(facet["label"]["fa"] and facet["label"]["en"] for facet in categories.values())
        # the platform's fixed vocabularies are for front ends to name: no label there
        assert all(facet.get("label") is None for facet in body["facets"]["maturity"])

    async def test_filters_and_paging(self, public_api: httpx.AsyncClient) -> None:
        response = await public_api.get(
            "/api/v1/catalog/services", params={"maturity": 5, "page_size": 5, "page": 2}
        )
        body = response.json()
        assert (body["total"], len(body["items"])) == (12, 5)
        assert all(item["maturity"] == 5 for item in body["items"])

    @pytest.mark.parametrize(
        "params",
        [{"page_size": 101}, {"page": 0}, {"maturity": 6}, {"channel": "pigeon"}, {"q": "x" * 201}],
    )
    async def test_bad_parameters_are_422_problems(
        self, public_api: httpx.AsyncClient, params: dict[str, Any]
    ) -> None:
        response = await public_api.get("/api/v1/catalog/services", params=params)
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "validation_failed"

    async def test_a_nul_byte_in_the_query_is_a_422_naming_the_field(
        self, public_api: httpx.AsyncClient
    ) -> None:
        """PostgreSQL cannot store NUL: refused up front, not a 500 from the driver."""
        response = await public_api.get(
            "/api/v1/catalog/services?category=a%00", headers={"Accept-Language": "en"}
        )
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert body["code"] == "validation_failed"
        assert [(e["field"], e["code"]) for e in body["errors"]] == [
            ("query.category", "text_not_storable")
        ]


class TestServiceCard:
    async def test_the_published_card_as_json(self, public_api: httpx.AsyncClient) -> None:
        response = await public_api.get("/api/v1/catalog/services/11030000001")
        assert response.status_code == 200
        card = response.json()
        assert (card["code"], card["version"], card["status"]) == ("11030000001", 1, "published")
        assert card["decision"]["mode"] == "automatic"
        assert card["approved_by"] == "system:catalog-seed-authority"
        assert "filled_by" not in card  # staff contact details are not public

    async def test_the_published_card_as_cpsv_ap_jsonld(
        self, public_api: httpx.AsyncClient
    ) -> None:
        response = await public_api.get(
            "/api/v1/catalog/services/11030000001",
            headers={"Accept": "application/ld+json, application/json;q=0.5"},
        )
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/ld+json"
        assert response.headers["vary"] == "Accept"
        document = response.json()
        context = json.loads((DATA / "cpsv-ap.jsonld").read_text())["@context"]
        document["@context"] = [
            context if isinstance(item, str) else item for item in document["@context"]
        ]
        graph = Graph().parse(data=json.dumps(document), format="json-ld")
        shapes = Graph().parse(DATA / "cpsv-ap-SHACL.ttl", format="turtle")
        conforms, _, report = validate(graph, shacl_graph=shapes, inference="none")
        assert conforms, report

    async def test_an_unknown_card_is_a_404_problem(self, public_api: httpx.AsyncClient) -> None:
        response = await public_api.get(
            "/api/v1/catalog/services/00000000000", headers={"Accept-Language": "en"}
        )
        assert response.status_code == 404
        assert response.json()["code"] == "service_not_found"
        assert response.json()["title"] == "Service not found"

    async def test_version_history(self, public_api: httpx.AsyncClient) -> None:
        versions = await public_api.get("/api/v1/catalog/services/11030000001/versions")
        assert versions.status_code == 200
        body = versions.json()
        assert body["total"] == 1
        assert body["items"][0]["version"] == 1
        assert body["items"][0]["approved_by"] == "system:catalog-seed-authority"
        first = await public_api.get("/api/v1/catalog/services/11030000001/versions/1")
        assert first.json()["version"] == 1
        missing = await public_api.get("/api/v1/catalog/services/11030000001/versions/9")
        assert (missing.status_code, missing.json()["code"]) == (404, "version_not_found")


class TestAgenciesAndStats:
    async def test_agencies_with_connection_status(self, public_api: httpx.AsyncClient) -> None:
        response = await public_api.get("/api/v1/catalog/agencies", params={"page_size": 100})
        body = response.json()
        assert body["total"] == 19
        tax = next(a for a in body["items"] if a["code"] == "tax")
        assert tax["name"]["fa"] == "سازمان امور مالیاتی کشور"
        assert (tax["parent"], tax["connected"]) == ("economy", False)
        one = await public_api.get("/api/v1/catalog/agencies/tax")
        assert one.json()["code"] == "tax"

    async def test_stats(self, public_api: httpx.AsyncClient) -> None:
        body = (await public_api.get("/api/v1/catalog/stats")).json()
        assert body["services_total"] == 45
        assert body["smart_share"] == round(12 / 45, 4)
        assert set(body) == {
            "services_total", "by_maturity", "electronic_share", "smart_share",
            "once_only_share", "agencies_total", "agencies_connected_share",
        }  # fmt: skip


async def test_the_openapi_document_lists_the_catalog(public_api: httpx.AsyncClient) -> None:
    document = (await public_api.get("/openapi.json")).json()
    paths = document["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/catalog/services"])
    assert {"get", "put"} <= set(paths["/api/v1/catalog/services/{code}/draft"])
    assert (
        "application/ld+json"
        in (paths["/api/v1/catalog/services/{code}"]["get"]["responses"]["200"]["content"])
    )


async def test_a_code_typed_with_persian_digits_names_the_card(
    public_api: httpx.AsyncClient,
) -> None:
    response = await public_api.get("/api/v1/catalog/services/۱۱۰۳۰۰۰۰۰۰۱")
    assert (response.status_code, response.json()["code"]) == (200, "11030000001")
