"""The contracts: wire shapes, strict producers, tolerant consumers, the committed documents."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from panjereh.contracts import asyncapi, snapshot, topics
from panjereh.contracts.catalog import PublishedCard, ServicePublished
from panjereh.contracts.identity import CitizenRegistered
from panjereh.contracts.inquiry import InquiryPurpose, InquiryReply, InquiryToAgency
from panjereh.contracts.registry import ALL_EVENTS, by_type
from panjereh.contracts.requests import RequestStatusChanged

ASYNCAPI_SCHEMA = (
    Path(__file__).parents[1] / "data" / "asyncapi-3.0.0" / "asyncapi-3.0.0.schema.json"
)


class TestEventShapes:
    def test_type_strings_follow_producer_aggregate_event_version(self) -> None:
        for event in ALL_EVENTS:
            parts = event.event_type.split(".")
            assert len(parts) == 4, event
            assert parts[-1] == "v1"
            assert by_type(event.event_type) is event

    def test_status_changed_carries_from_and_to_on_the_wire(self) -> None:
        at = datetime(2026, 1, 1, tzinfo=UTC)
        event = RequestStatusChanged.model_validate(
            {
                "tracking_code": "1234",
                "service_code": "s",
                "from": "submitted",
                "to": "deciding",
                "at": at,
            }
        )
        wire = event.model_dump(mode="json", by_alias=True)
        assert wire["from"] == "submitted"
        assert wire["to"] == "deciding"
        assert "from_status" not in wire

    def test_producers_are_strict(self) -> None:
        with pytest.raises(ValidationError):
            CitizenRegistered.model_validate({"citizen_id": "c1", "national_code": "0012345679"})
        with pytest.raises(ValidationError):
            InquiryReply.model_validate({"inquiry_id": "i", "status": "maybe"})

    def test_consumers_ignore_unknown_fields(self) -> None:
        reply = InquiryReply.parse_data(
            {"inquiry_id": "i", "status": "ok", "result": {"alive": True}, "added_in_v1_1": 3}
        )
        assert reply.result == {"alive": True}
        changed = RequestStatusChanged.parse_data(
            {
                "tracking_code": "1",
                "service_code": "s",
                "from": None,
                "to": "submitted",
                "at": "2026-01-01T00:00:00Z",
                "channel": "web",
            }
        )
        assert changed.to_status == "submitted"

    def test_identity_event_holds_no_personal_data(self) -> None:
        assert set(CitizenRegistered.model_fields) == {"citizen_id"}

    def test_agency_topics_are_templated_and_resolved_by_the_producer(self) -> None:
        assert InquiryToAgency.topic == "agency.{agency}.inquiries"
        assert topics.agency_inquiries("civil-registry") == "agency.civil-registry.inquiries"
        # a reply's topic names its sender: each agency writes only its own (Kafka ACL)
        assert InquiryReply.topic == "agency.{agency}.replies"
        assert topics.agency_replies("civil-registry") == "agency.civil-registry.replies"
        inquiry = InquiryToAgency(
            inquiry_id="i1",
            type="civil-registry.person",
            subject="s",
            purpose=InquiryPurpose(service_code="x", tracking_code="1", legal_basis="law"),
        )
        assert inquiry.model_dump()["purpose"]["legal_basis"] == "law"

    def test_service_published_carries_the_full_card_as_json(self) -> None:
        card = published_card()
        event = ServicePublished(
            code="11020000002", version=2, card=PublishedCard.model_validate(card)
        )
        assert json.loads(event.model_dump_json())["card"] == card


def published_card(**changes: Any) -> dict[str, Any]:
    """A card as the catalog publishes it (every field, ``null`` where the card has none)."""
    text = {"fa": "تمدید گذرنامه", "en": "Passport renewal"}
    card: dict[str, Any] = {
        "code": "11020000002",
        "agency": "passport-police",
        "version": 2,
        "status": "published",
        "approved_by": "staff-authority",
        "approving_organisation": "administrative-and-recruitment-affairs-organization",
        "approved_at": "2026-03-21T08:30:15.123456Z",
        "title": text,
        "process_title": None,
        "description": {"fa": "تمدید گذرنامه عادی", "en": None},
        "category": "travel",
        "parent_service": None,
        "life_events": ["documents-and-certificates"],
        "audience": ["citizen"],
        "recipients": None,
        "nature": "sovereign",
        "service_levels": ["national"],
        "trigger": "request",
        "keywords": ["گذرنامه"],
        "legal_basis": [
            {"title": {"fa": "قانون گذرنامه", "en": None}, "reference": "ماده ۱۸", "url": None}
        ],
        "eligibility": None,
        "channels": [
            {"type": "web", "url": "https://my.gov.ir/service/11020000002", "description": None}
        ],
        "locations": [
            {"name": text, "address": None, "province": "تهران", "url": None},
        ],
        "fees": [
            {"title": text, "amount_rials": 2000000, "bank_account": None, "legal_basis": None}
        ],
        "sla_days": 7,
        "processing_time": "P7D",
        "service_hours": None,
        "frequency": {"times": 1, "per": "year"},
        "in_person_visits": 0,
        "electronic_stages": {
            "information": True,
            "application": True,
            "processing": True,
            "delivery": True,
        },
        "documents_required": [],
        "inquiries": [
            {
                "type": "civil-registry.person",
                "provider_agency": "civil-registry",
                "data_items": ["alive"],
                "mode": "online",
                "purpose": {"fa": "احراز هویت", "en": None},
            }
        ],
        "maturity": 5,
        "form_schema": {"type": "object", "properties": {}},
        "decision": {
            "mode": "automatic",
            "rules": [
                {
                    "id": "alive",
                    "when": 'inquiries["civil-registry.person"].alive',
                    "outcome": "approve",
                    "reason": {"fa": "متقاضی در قید حیات است", "en": None},
                }
            ],
            "otherwise": "reject",
        },
        "output": {"fa": "گذرنامه", "en": "Passport"},
        "prerequisites": [],
        "steps": [{"fa": "ثبت درخواست", "en": None}],
        "faq": [{"question": text, "answer": {"fa": "بله", "en": "Yes"}}],
        "complaint_route": None,
        "yearly_volume": 1000,
    }
    return card | changes


class TestPublishedCard:
    def test_the_card_round_trips_exactly(self) -> None:
        card = published_card()
        assert PublishedCard.model_validate(card).model_dump(mode="json") == card

    def test_the_decision_is_typed(self) -> None:
        decision = PublishedCard.model_validate(published_card()).decision
        assert (decision.mode, decision.otherwise) == ("automatic", "reject")
        assert decision.rules[0].outcome == "approve"
        assert decision.rules[0].reason.fa == "متقاضی در قید حیات است"
        broken = published_card(decision={"mode": "automatic", "rules": [], "otherwise": "maybe"})
        with pytest.raises(ValidationError):
            PublishedCard.model_validate(broken)

    def test_consumers_ignore_fields_added_at_any_depth(self) -> None:
        card = published_card(added_later={"x": 1})
        card["decision"]["rules"][0]["weight"] = 3
        card["title"]["ar"] = "تجديد جواز السفر"
        event = ServicePublished.parse_data(
            {"code": "11020000002", "version": 2, "card": card, "channel": "kafka"}
        )
        assert event.card.decision.rules[0].id == "alive"
        assert "added_later" not in event.card.model_dump()

    def test_parts_a_card_may_leave_out_take_the_catalogs_defaults(self) -> None:
        required = {
            "code", "agency", "version", "status", "approved_by", "approving_organisation",
            "approved_at", "title", "description", "category", "audience", "channels",
            "sla_days", "in_person_visits", "maturity", "decision",
        }  # fmt: skip
        minimal = {k: v for k, v in published_card().items() if k in required}
        minimal["decision"] = {"mode": "agency"}
        card = PublishedCard.model_validate(minimal)
        assert (card.nature, card.service_levels, card.trigger) == (
            "sovereign",
            ["national"],
            "request",
        )
        assert card.decision.otherwise == "agency"
        assert card.form_schema == {"type": "object"}
        assert card.inquiries == []
        missing = {k: v for k, v in minimal.items() if k != "decision"}
        with pytest.raises(ValidationError):
            PublishedCard.model_validate(missing)

    def test_service_published_requires_a_card(self) -> None:
        with pytest.raises(ValidationError):
            ServicePublished.model_validate({"code": "x", "version": 1, "card": {"code": "x"}})


class TestCommittedDocuments:
    def test_snapshot_is_current(self) -> None:
        """Fails on any contract change until ``python -m panjereh.contracts.snapshot --write``."""
        committed = snapshot.SNAPSHOT_PATH.read_text(encoding="utf-8")
        assert committed == snapshot.render(snapshot.build()), (
            "contracts changed: review, then run python -m panjereh.contracts.snapshot --write"
        )

    def test_asyncapi_document_is_current(self) -> None:
        committed = asyncapi.ASYNCAPI_PATH.read_text(encoding="utf-8")
        assert committed == asyncapi.render(asyncapi.build()), (
            "run python -m panjereh.contracts.asyncapi to regenerate asyncapi.json"
        )

    def test_asyncapi_document_is_valid_asyncapi_3(self) -> None:
        schema = json.loads(ASYNCAPI_SCHEMA.read_text(encoding="utf-8"))
        document = json.loads(asyncapi.ASYNCAPI_PATH.read_text(encoding="utf-8"))
        jsonschema.Draft7Validator(schema).validate(document)

    def test_the_validator_would_catch_a_broken_document(self) -> None:
        schema = json.loads(ASYNCAPI_SCHEMA.read_text(encoding="utf-8"))
        document = asyncapi.build()
        next(iter(document["operations"].values()))["action"] = "publish"  # AsyncAPI 2 wording
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.Draft7Validator(schema).validate(document)

    def test_asyncapi_describes_every_contract_topic(self) -> None:
        document = asyncapi.build()
        addresses = {channel["address"] for channel in document["channels"].values()}
        assert addresses == {
            "agency.{agency}.inquiries",
            "agency.{agency}.replies",
            "agency.{agency}.requests",
            *topics.PLATFORM_TOPICS,
        }

    def test_internal_refs_resolve(self) -> None:
        document = asyncapi.build()
        text = json.dumps(document)
        for ref in set(re.findall(r'"\$ref": "#/([^"]+)"', text)):
            node: Any = document
            for part in ref.split("/"):
                node = node[part]
            assert node, ref


class TestTopics:
    def test_every_platform_topic_gets_a_dead_letter_topic(self) -> None:
        names = topics.with_dead_letters(topics.PLATFORM_TOPICS)
        assert names[: len(topics.PLATFORM_TOPICS)] == list(topics.PLATFORM_TOPICS)
        assert "requests.request.status-changed.dlq" in names
        assert len(names) == 2 * len(topics.PLATFORM_TOPICS)
