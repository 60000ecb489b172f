"""The CPSV-AP export conforms to the official SHACL shapes (validated offline)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from pyshacl import validate
from rdflib import Graph, Literal, Namespace, URIRef

from panjereh.catalog import cpsv
from panjereh.catalog.schemas import CardRead
from panjereh.catalog.seed_data import AGENCIES, cards

DATA = Path(__file__).resolve().parents[1] / "data" / "cpsv-ap-3.2.0"
CPSV = Namespace("http://purl.org/vocab/cpsv#")
DCT = Namespace("http://purl.org/dc/terms/")
CV = Namespace("http://data.europa.eu/m8g/")

# rdflib's own JSON-LD parser still builds a ConjunctiveGraph internally (rdflib 7.x)
pytestmark = pytest.mark.filterwarnings(
    "ignore:ConjunctiveGraph is deprecated:DeprecationWarning:rdflib"
)

LABELS = {
    entry["code"]: cpsv.AgencyLabel(entry["code"], entry["name"]["fa"], entry["name"]["en"])
    for entry in AGENCIES
}


@cache
def shapes() -> Graph:
    return Graph().parse(DATA / "cpsv-ap-SHACL.ttl", format="turtle")


@cache
def local_context() -> dict[str, Any]:
    context: dict[str, Any] = json.loads((DATA / "cpsv-ap.jsonld").read_text())["@context"]
    return context


def published(code: str) -> CardRead:
    new = next(c for c in cards() if c.code == code)
    return CardRead.model_validate(
        new.model_dump()
        | {
            "version": 1,
            "status": "published",
            "approved_by": "authority-1",
            "approving_organisation": "arao",
            "approved_at": datetime(2026, 11, 28, tzinfo=UTC),
            "filled_by": None,
        }
    )


def parse(document: dict[str, Any]) -> Graph:
    """Parse the export with the profile's context read from the local copy (no network)."""
    offline = dict(document)
    offline["@context"] = [
        local_context() if item == cpsv.CPSV_AP_CONTEXT else item for item in document["@context"]
    ]
    return Graph().parse(data=json.dumps(offline), format="json-ld")


def conforms(graph: Graph) -> tuple[bool, str]:
    ok, _, report = validate(graph, shacl_graph=shapes(), inference="none", advanced=True)
    return bool(ok), str(report)


@pytest.mark.parametrize("code", [c.code for c in cards()])
def test_every_seed_card_conforms_to_the_cpsv_ap_shapes(code: str) -> None:
    graph = parse(cpsv.to_jsonld(published(code), LABELS))
    ok, report = conforms(graph)
    assert ok, report
    service = URIRef(f"{cpsv.BASE}service/{code}")
    assert (service, DCT.identifier, Literal(code)) in graph


def test_the_export_maps_the_card() -> None:
    graph = parse(cpsv.to_jsonld(published("11030000001"), LABELS))
    service = URIRef(f"{cpsv.BASE}service/11030000001")
    assert (service, DCT.title, Literal("گواهی عدم سوء پیشینه", lang="fa")) in graph
    assert (service, CV.hasCompetentAuthority, URIRef(f"{cpsv.BASE}agency/judiciary")) in graph
    rules = set(graph.objects(service, CPSV.follows))
    assert len(rules) == 3
    inputs = set(graph.objects(service, CPSV.hasInput))
    # the once-only evidence comes from the provider's dataset, not from the citizen
    datasets = {graph.value(evidence, DCT.isPartOf) for evidence in inputs}
    assert URIRef(f"{cpsv.BASE}inquiry-type/police.clean-record") in datasets


def test_the_shapes_do_catch_a_broken_export() -> None:
    document = cpsv.to_jsonld(published("11030000001"), LABELS)
    for node in document["@graph"]:
        if node["@type"] == "cpsv:PublicService":
            del node["cv:hasCompetentAuthority"]
    ok, report = conforms(parse(document))
    assert not ok
    assert "hasCompetentAuthority" in report
