"""The card the catalog announces is the typed ``PublishedCard`` contract, without loss."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from panjereh.catalog.models import ServiceCard, ServiceCardVersion
from panjereh.catalog.schemas import CardContent, CardCreate, CardRead
from panjereh.catalog.seed_data import cards
from panjereh.catalog.service import reads
from panjereh.common.messaging.envelope import CloudEvent
from panjereh.contracts.catalog import PublishedCard, ServicePublished

APPROVED_AT = datetime(2026, 3, 21, 8, 30, 15, 123456, tzinfo=UTC)


def shape(schema: dict[str, Any], defs: dict[str, Any]) -> Any:
    """The JSON a schema describes, as nested field names with the JSON types of the leaves."""
    if "$ref" in schema:
        return shape(defs[schema["$ref"].rsplit("/", 1)[1]], defs)
    if "anyOf" in schema:
        (variant,) = [shape(s, defs) for s in schema["anyOf"] if s.get("type") != "null"]
        return variant
    if "properties" in schema:
        return {name: shape(sub, defs) for name, sub in schema["properties"].items()}
    if schema.get("type") == "array":
        return [shape(schema["items"], defs)]
    return schema.get("type", "any")


def wire_shape(model: type[BaseModel]) -> Any:
    schema = model.model_json_schema(mode="serialization")
    return shape(schema, schema.get("$defs", {}))


def as_published(card: CardCreate, *, version: int = 1) -> CardRead:
    """``card`` approved as ``version``, read back the way the catalog reads a version."""
    entity = ServiceCard(
        code=card.code, agency_code=card.agency, status="published", latest_version=version
    )
    stored = ServiceCardVersion(
        version=version,
        content=card.model_dump(mode="json", include=set(CardContent.model_fields)),
        approved_by="staff-authority",
        approving_organisation="test-authority",
        approved_at=APPROVED_AT,
    )
    return reads.card_read(entity, stored)


def over_the_wire(card: CardRead) -> tuple[dict[str, Any], ServicePublished]:
    """The event's ``data`` as a consumer receives it, and what the consumer parses from it."""
    event = ServicePublished(code=card.code, version=card.version, card=reads.published_card(card))
    received = CloudEvent.from_bytes(CloudEvent.from_event(event).to_bytes())
    return received.data, ServicePublished.parse_data(received.data)


def test_the_contract_has_exactly_the_public_card_fields_and_types() -> None:
    """A field added to the card must be added to the contract too (it would be dropped)."""
    assert wire_shape(PublishedCard) == wire_shape(CardRead)


@pytest.mark.parametrize("seed", cards(), ids=lambda card: card.code)
def test_every_seed_card_is_published_without_loss(seed: CardCreate) -> None:
    card = as_published(seed)
    data, parsed = over_the_wire(card)
    assert data["card"] == card.model_dump(mode="json")
    assert parsed.card == PublishedCard.model_validate(card.model_dump(mode="json"))
    assert (parsed.code, parsed.version, parsed.card.approved_at) == (seed.code, 1, APPROVED_AT)
    assert "filled_by" not in data["card"]


def test_a_card_with_every_optional_part_is_published_without_loss() -> None:
    base = next(c for c in cards() if c.code == "11050000001")
    text = {"fa": "متن", "en": "Text"}
    full = CardCreate.model_validate(
        base.model_dump(mode="json")
        | {
            "process_title": text,
            "parent_service": "11050000002",
            "recipients": text,
            "eligibility": text,
            "channels": [
                {"type": "web", "url": "https://my.gov.ir/service/x", "description": text},
                {"type": "counter", "description": text},
            ],
            "locations": [
                {
                    "name": text,
                    "address": text,
                    "province": "تهران",
                    "url": "https://tax.gov.ir/offices",
                }
            ],
            "fees": [
                {"title": text, "amount_rials": 150000, "bank_account": "IR01", "legal_basis": "م۱"}
            ],
            "legal_basis": [
                {"title": text, "reference": "ماده ۱۸۶", "url": "https://rc.majlis.ir/fa/law"}
            ],
            "processing_time": "PT2H",
            "service_hours": text,
            "frequency": {"times": 2, "per": "year"},
            "documents_required": [{"name": text, "note": text}],
            "inquiries": [
                {
                    "type": "tax.clearance",
                    "provider_agency": "tax",
                    "data_items": ["has_debt"],
                    "mode": "batch",
                    "purpose": text,
                }
            ],
            "output": text,
            "prerequisites": ["11050000002"],
            "steps": [text],
            "faq": [{"question": text, "answer": text}],
            "complaint_route": text,
            "yearly_volume": 12,
            "filled_by": {"name": "کارشناس", "unit": "واحد", "phone": "021", "email": "a@b.ir"},
        }
    )
    card = as_published(full, version=3)
    data, parsed = over_the_wire(card)
    assert data["card"] == card.model_dump(mode="json")
    assert parsed.card.locations[0].province == "تهران"
    assert parsed.card.decision.rules[0].outcome == "reject"
    assert "filled_by" not in data["card"]  # staff contact details never leave the catalog
