"""The requests service fills an empty card replica from the catalog's real public API.

Two services meet here, each on its own migrated database: the catalog (seeded with the demo
cards) serves its API in-process; the requests service's bootstrap reads it and keeps every
published card, exactly as a fresh deployment does before any catalog event arrives.
"""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select

from panjereh.catalog.config import Settings as CatalogSettings
from panjereh.catalog.main import create_app as catalog_app
from panjereh.catalog.seed import seed
from panjereh.common.db import Database
from panjereh.common.testing.plugin import MigratedDatabase, running_app
from panjereh.contracts.catalog import PublishedCard
from panjereh.requests import catalog_client
from panjereh.requests.models import CardVersion
from panjereh.requests.service import replica

pytestmark = pytest.mark.integration


async def test_an_empty_replica_is_filled_from_the_catalog_api(
    migrated_database: MigratedDatabase, jwks_url: str
) -> None:
    catalog_url = await migrated_database("panjereh.catalog")
    catalog_db = Database(catalog_url, pool_size=1)
    try:
        await seed(catalog_db, approving_organisation="test-authority")
    finally:
        await catalog_db.dispose()
    requests_db = Database(await migrated_database("panjereh.requests"), pool_size=2)
    settings = CatalogSettings(
        database_url=catalog_url,
        jwks_url=jwks_url,
        kafka_bootstrap_servers="127.0.0.1:1",  # events are not the point: the API is
        consume_agency_activity=False,
    )
    try:
        async with running_app(catalog_app(settings)) as catalog:
            listed = (await catalog.get("/api/v1/catalog/services?page_size=100")).json()
            cards = await catalog_client.published_cards(catalog, str(catalog.base_url))
        assert len(cards) == listed["total"] > 40
        assert all(isinstance(card, PublishedCard) for card in cards)
        async with requests_db.transaction() as session:
            assert await replica.is_empty(session)
            for card in cards:
                await replica.record_published(session, card=card)
            # a second fill (a redelivered event, a restarted bootstrap) changes nothing
            assert not await replica.record_published(session, card=cards[0])
        async with requests_db.transaction() as session:
            stored = await session.scalar(select(func.count()).select_from(CardVersion))
            smart = await session.get(CardVersion, ("11010000001", 1))
        assert stored == len(cards)
        assert smart is not None
        assert smart.card["decision"]["mode"] == "automatic"
        assert [rule["id"] for rule in smart.card["decision"]["rules"]] == ["deceased", "alive"]
    finally:
        await requests_db.dispose()


async def test_the_bootstrap_reports_an_unreachable_catalog() -> None:
    async with httpx.AsyncClient(timeout=1.0) as client:
        with pytest.raises(httpx.TransportError):
            await catalog_client.published_cards(client, "http://127.0.0.1:1")
