"""The catalog's /metrics moves when it works: a published card shows in the outbox metrics."""

from __future__ import annotations

import asyncio
import re
import secrets
import time

import httpx
import pytest

from panjereh.catalog.seed_data import cards
from panjereh.common.testing.tokens import TokenFactory, bearer
from panjereh.contracts import topics

pytestmark = pytest.mark.integration

SERVICES = "/api/v1/catalog/services"


def published(text: str, topic: str) -> float:
    pattern = rf'^panjereh_outbox_published_total\{{topic="{re.escape(topic)}"\}} (\S+)$'
    found = re.search(pattern, text, flags=re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def test_a_published_card_shows_in_the_outbox_metrics(
    api: httpx.AsyncClient, token_factory: TokenFactory
) -> None:
    admin = bearer(token_factory(sub="staff-tax-metrics", roles=["agency-admin:tax"]))
    authority = bearer(token_factory(sub="staff-authority-metrics", roles=["catalog-authority"]))
    topic = topics.CATALOG_SERVICE_PUBLISHED
    before = published((await api.get("/metrics")).text, topic)

    code = f"79{secrets.randbelow(10**9):09d}"
    card = next(c for c in cards() if c.code == "11050000001").model_dump(mode="json")
    created = await api.post(SERVICES, json=card | {"code": code}, headers=admin)
    assert created.status_code == 201
    assert (await api.post(f"{SERVICES}/{code}/submit", headers=admin)).status_code == 200
    assert (await api.post(f"{SERVICES}/{code}/approve", headers=authority)).status_code == 200

    # the outbox relay publishes it to Kafka and counts it by topic
    deadline = time.monotonic() + 20
    after = before
    while after <= before and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        after = published((await api.get("/metrics")).text, topic)
    assert after >= before + 1
    scraped = (await api.get("/metrics")).text
    assert "panjereh_outbox_oldest_pending_age_seconds" in scraped
    assert code not in scraped  # a service code is not a label of the outbox metrics
