"""Readiness waits for the card replica: a submission must not meet an empty one."""

from __future__ import annotations

from typing import Any

import pytest

from panjereh.common.testing.plugin import MigratedDatabase
from panjereh.contracts.samples import published_card
from panjereh.devstack.embedded import free_port
from panjereh.requests.service import replica

pytestmark = pytest.mark.integration


async def test_not_ready_until_the_card_replica_holds_the_catalogs_cards(
    start_platform: Any, migrated_database: MigratedDatabase
) -> None:
    url = await migrated_database("panjereh.requests")
    # the catalog cannot be reached and no catalog event arrived yet: the replica is empty
    unreachable = f"http://127.0.0.1:{free_port()}"
    async with start_platform(url, catalog_url=unreachable) as platform:
        response = await platform.client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["components"]["card_replica"] == "unavailable"
        # the catalog's event brings a card (as the catalog consumer would record it)
        async with platform.database.transaction() as session:
            await replica.record_published(session, card=published_card())
        # the next probe finds it
        response = await platform.client.get("/readyz")
        assert response.json()["components"]["card_replica"] == "ready"
