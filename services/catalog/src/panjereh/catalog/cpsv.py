"""A published service card as CPSV-AP 3.2 JSON-LD (the EU Core Public Service Vocabulary).

Every node the export references is declared with its class in the same graph (concepts,
locations, organisations), because the official SHACL shapes check ``sh:class`` against the
data itself. Mapping (see the domain notes): code → ``dct:identifier``; title →
``dct:title``; agency → ``cv:hasCompetentAuthority``; audience → ``dct:audience``; life events
→ ``cv:isGroupedBy`` ``cv:LifeEvent``; legal basis → ``cv:hasLegalResource``; documents still
required → ``cpsv:hasInput`` ``cv:Evidence``; inquiries → ``cv:Evidence`` ``dct:isPartOf`` a
``dcat:Dataset`` published by the provider agency (once-only); channels → ``cv:hasChannel``;
fees → ``cv:hasCost`` in IRR; average duration → ``cv:processingTime``; output →
``cpsv:produces``; decision rules → ``cpsv:follows`` ``cpsv:Rule``. Iran-only fields (maturity,
SLA, in-person visits, decision mode, version, approval) use the ``pj:`` extension namespace.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from panjereh.catalog.schemas import CardRead, LongLocalText, Text

CPSV_AP_CONTEXT = (
    "https://semiceu.github.io/uri.semic.eu-generated/CPSV-AP/releases/3.2.0/context/cpsv-ap.jsonld"
)
MEDIA_TYPE = "application/ld+json"
BASE = "https://panjereh.ir/id/"
EXTENSION = "https://panjereh.ir/ns/catalog#"
IRAN = "http://publications.europa.eu/resource/authority/country/IRN"
RIAL = "http://publications.europa.eu/resource/authority/currency/IRR"

PREFIXES = {
    "cpsv": "http://purl.org/vocab/cpsv#",
    "cv": "http://data.europa.eu/m8g/",
    "dct": "http://purl.org/dc/terms/",
    "dcat": "http://www.w3.org/ns/dcat#",
    "eli": "http://data.europa.eu/eli/ontology#",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "pj": EXTENSION,
}


@dataclass(frozen=True)
class AgencyLabel:
    code: str
    name_fa: str
    name_en: str | None


def _text(text: Text | LongLocalText | None) -> list[dict[str, str]]:
    if text is None:
        return []
    values = [{"@value": text.fa, "@language": "fa"}]
    if text.en:
        values.append({"@value": text.en, "@language": "en"})
    return values


def _ref(iri: str) -> dict[str, str]:
    return {"@id": iri}


def _xsd_duration(value: str) -> str:
    """``xsd:duration`` has no weeks: ``P2W`` becomes ``P14D``."""
    match = re.fullmatch(r"P(\d+)W", value)
    return f"P{int(match.group(1)) * 7}D" if match else value


class _Graph:
    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}

    def add(self, iri: str, types: str | list[str], **properties: Any) -> str:
        node = self.nodes.setdefault(iri, {"@id": iri})
        node["@type"] = types
        for name, value in properties.items():
            if value not in (None, [], ""):
                node[name.replace("__", ":")] = value
        return iri

    def concept(self, scheme: str, value: str, label: Text | None = None) -> dict[str, str]:
        iri = f"{BASE}concept/{scheme}/{value}"
        self.add(
            iri,
            "skos:Concept",
            skos__prefLabel=_text(label) or [{"@value": value, "@language": "en"}],
            skos__notation=value,
        )
        return _ref(iri)

    def location(self) -> dict[str, str]:
        self.add(IRAN, "dct:Location", skos__prefLabel=[{"@value": "ایران", "@language": "fa"}])
        return _ref(IRAN)

    def organisation(self, agency: AgencyLabel) -> dict[str, str]:
        iri = f"{BASE}agency/{agency.code}"
        name = Text(fa=agency.name_fa, en=agency.name_en)
        self.add(
            iri,
            ["cv:PublicOrganisation", "foaf:Agent"],
            dct__identifier=agency.code,
            skos__prefLabel=_text(name),
            dct__title=_text(name),
            dct__spatial=self.location(),
        )
        return _ref(iri)


def to_jsonld(card: CardRead, agencies: Mapping[str, AgencyLabel]) -> dict[str, Any]:
    """The card as a CPSV-AP 3.2 JSON-LD document (``@graph`` of every node it references)."""
    graph = _Graph()
    service = f"{BASE}service/{card.code}"

    authority = agencies.get(card.agency) or AgencyLabel(card.agency, card.agency, None)
    channels = []
    for index, channel in enumerate(card.channels):
        channel_iri = f"{service}/channel/{index + 1}"
        graph.add(
            channel_iri,
            "cv:Channel",
            dct__identifier=f"{card.code}-channel-{index + 1}",
            dct__type=graph.concept("channel", str(channel.type)),
            dct__description=_text(channel.description),
            foaf__page=_ref(str(channel.url)) if channel.url else None,
        )
        channels.append(_ref(channel_iri))

    costs = []
    for index, fee in enumerate(card.fees):
        cost_iri = f"{service}/cost/{index + 1}"
        graph.add(
            cost_iri,
            "cv:Cost",
            dct__identifier=f"{card.code}-cost-{index + 1}",
            dct__description=_text(fee.title),
            cv__hasValue={"@value": str(float(fee.amount_rials)), "@type": "xsd:double"},
            cv__currency=_ref(RIAL),
        )
        graph.add(RIAL, "skos:Concept", skos__notation="IRR")
        costs.append(_ref(cost_iri))

    inputs = []
    for index, document in enumerate(card.documents_required):
        evidence_iri = f"{service}/evidence/{index + 1}"
        graph.add(
            evidence_iri,
            "cv:Evidence",
            dct__identifier=f"{card.code}-evidence-{index + 1}",
            dct__title=_text(document.name),
            dct__description=_text(document.note),
        )
        inputs.append(_ref(evidence_iri))
    for inquiry in card.inquiries:
        evidence_iri = f"{service}/inquiry/{inquiry.type}"
        provider = agencies.get(inquiry.provider_agency or "")
        dataset = None
        if provider is not None:
            dataset_iri = f"{BASE}inquiry-type/{inquiry.type}"
            graph.add(
                dataset_iri,
                "dcat:Dataset",
                dct__identifier=inquiry.type,
                dct__title=[{"@value": inquiry.type, "@language": "en"}],
                dct__description=_text(inquiry.purpose)
                or [{"@value": f"Inquiry {inquiry.type}", "@language": "en"}],
                dct__publisher=graph.organisation(provider),
            )
            dataset = _ref(dataset_iri)
        graph.add(
            evidence_iri,
            "cv:Evidence",
            dct__identifier=f"{card.code}-inquiry-{inquiry.type}",
            dct__title=_text(inquiry.purpose) or [{"@value": inquiry.type, "@language": "en"}],
            dct__isPartOf=dataset,
            dct__type=graph.concept("inquiry-mode", str(inquiry.mode)),
        )
        inputs.append(_ref(evidence_iri))

    legal = []
    for index, resource in enumerate(card.legal_basis):
        legal_iri = str(resource.url) if resource.url else f"{service}/legal/{index + 1}"
        graph.add(
            legal_iri,
            "eli:LegalResource",
            dct__title=_text(resource.title),
            dct__identifier=resource.reference,
        )
        legal.append(_ref(legal_iri))

    rules = []
    for rule in card.decision.rules:
        rule_iri = f"{service}/rule/{rule.id}"
        graph.add(
            rule_iri,
            "cpsv:Rule",
            dct__identifier=rule.id,
            dct__title=_text(rule.reason),
            dct__description=[{"@value": f"{rule.outcome} when {rule.when}", "@language": "en"}],
            cpsv__implements=legal,
        )
        rules.append(_ref(rule_iri))

    events = []
    for event in card.life_events:
        event_iri = f"{BASE}life-event/{event}"
        graph.add(
            event_iri,
            ["cv:LifeEvent", "cv:Event"],
            dct__identifier=str(event),
            dct__title=[{"@value": str(event), "@language": "en"}],
        )
        events.append(_ref(event_iri))

    output = None
    if card.output is not None:
        output_iri = f"{service}/output"
        graph.add(
            output_iri,
            "cv:Output",
            dct__identifier=f"{card.code}-output",
            dct__title=_text(card.output),
        )
        output = _ref(output_iri)

    graph.add(
        service,
        "cpsv:PublicService",
        dct__identifier=card.code,
        dct__title=_text(card.title),
        dct__description=_text(card.description),
        cv__hasCompetentAuthority=graph.organisation(authority),
        dct__audience=[graph.concept("audience", str(a)) for a in card.audience],
        cv__isGroupedBy=events,
        cv__isClassifiedBy=graph.concept("category", card.category),
        dct__spatial=graph.location(),
        cv__hasLegalResource=legal,
        cpsv__hasInput=inputs,
        cv__hasChannel=channels,
        cv__hasCost=costs,
        cv__processingTime=(
            {"@value": _xsd_duration(card.processing_time), "@type": "xsd:duration"}
            if card.processing_time
            else None
        ),
        cpsv__produces=output,
        cpsv__follows=rules,
        dcat__keyword=[{"@value": keyword, "@language": "fa"} for keyword in card.keywords],
        pj__maturity={"@value": str(int(card.maturity)), "@type": "xsd:integer"},
        pj__slaDays={"@value": str(card.sla_days), "@type": "xsd:integer"},
        pj__inPersonVisits={"@value": str(card.in_person_visits), "@type": "xsd:integer"},
        pj__decisionMode=str(card.decision.mode),
        pj__version={"@value": str(card.version), "@type": "xsd:integer"},
        pj__approvedAt={"@value": card.approved_at.isoformat(), "@type": "xsd:dateTime"},
        pj__approvingOrganisation=card.approving_organisation,
    )
    return {"@context": [CPSV_AP_CONTEXT, PREFIXES], "@graph": list(graph.nodes.values())}
