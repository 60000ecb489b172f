"""The demo seed: complete, announced through the outbox, and idempotent."""

from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy import text

from panjereh.catalog.seed import seed
from panjereh.catalog.seed_data import cards
from panjereh.common.db import Database
from panjereh.common.messaging.envelope import CloudEvent
from panjereh.contracts.catalog import ServicePublished

pytestmark = pytest.mark.integration


async def test_a_second_run_changes_nothing(catalog_database: Database) -> None:
    report = await seed(catalog_database, approving_organisation="test-authority")
    assert (report.agencies_added, report.cards_added) == (0, 0)


async def test_every_seeded_card_is_announced_once(catalog_database: Database) -> None:
    async with catalog_database.transaction() as session:
        rows = (
            await session.execute(
                text(
                    "SELECT event_type, count(*) AS n, count(DISTINCT key) AS keys "
                    "FROM catalog.outbox_message GROUP BY event_type"
                )
            )
        ).all()
    assert [(r.event_type, r.n, r.keys) for r in rows] == [("catalog.service.published.v1", 45, 45)]


async def test_every_announced_card_is_a_typed_published_card(catalog_database: Database) -> None:
    """What the catalog actually wrote to its outbox parses as the contract, without loss."""
    async with catalog_database.transaction() as session:
        payloads = (
            await session.scalars(
                text(
                    "SELECT payload FROM catalog.outbox_message "
                    "WHERE event_type = 'catalog.service.published.v1'"
                )
            )
        ).all()
    assert len(payloads) == 45
    for payload in payloads:
        envelope = CloudEvent.model_validate(payload)
        # producer-strict: no unknown top-level field, every card field typed as declared
        event = ServicePublished.model_validate(envelope.data)
        assert event.card.code == event.code == envelope.subject
        assert event.model_dump(mode="json")["card"] == envelope.data["card"]


PERSIAN = re.compile(r"[\u0600-\u06ff]")


async def test_every_seeded_form_field_has_a_persian_title_and_description(
    public_api: httpx.AsyncClient,
) -> None:
    """Front ends label and explain a field from its schema; the seed gives them both."""
    with_fields = [c.code for c in cards() if c.form_schema.get("properties")]
    assert with_fields, "the demo catalog has cards that ask the citizen something"
    for code in with_fields:
        published = (await public_api.get(f"/api/v1/catalog/services/{code}")).json()
        schema = published["form_schema"]
        properties = schema["properties"]
        # the stored schema (JSONB) does not keep the order of its properties: x-order does
        assert sorted(schema["x-order"]) == sorted(properties), code
        for name, field in properties.items():
            for keyword in ("title", "description"):
                assert PERSIAN.search(field.get(keyword, "")), f"{code} {name} {keyword}"
