"""Every service migrates its own database and reports ready against it."""

from __future__ import annotations

import asyncio
import importlib
import time

import asyncpg
import pytest

from panjereh.common.db import Database
from panjereh.common.migrations import downgrade, upgrade
from panjereh.common.testing.plugin import MigratedDatabase, running_app
from panjereh.contracts.samples import published_card
from panjereh.requests.service import replica

pytestmark = pytest.mark.integration

SERVICES = {
    "panjereh.catalog": "catalog",
    "panjereh.identity": "identity",
    "panjereh.requests": "requests",
    "panjereh.inquiry_broker": "inquiry_broker",
}

#: services whose lifespan already runs Kafka parts (relay/consumers) and checks the broker
WITH_BROKER = {"panjereh.requests"}
#: services whose readiness waits for a replica of the catalog's cards
WITH_CARD_REPLICA = {"panjereh.requests"}


async def hold_one_card(url: str) -> None:
    """Put a published card in the requests service's replica, as the catalog's event would."""
    database = Database(url, pool_size=1)
    try:
        async with database.transaction() as session:
            await replica.record_published(session, card=published_card())
    finally:
        await database.dispose()


def libpq(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@pytest.mark.parametrize(("package", "schema"), SERVICES.items())
class TestServiceBoot:
    async def test_migrations_create_the_kernel_tables_in_the_service_schema(
        self, migrated_database: MigratedDatabase, package: str, schema: str
    ) -> None:
        url = await migrated_database(package)
        connection = await asyncpg.connect(libpq(url))
        try:
            tables = {
                row["table_name"]
                for row in await connection.fetch(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
                    schema,
                )
            }
        finally:
            await connection.close()
        assert {"outbox_message", "inbox_message", "alembic_version"} <= tables

    async def test_migrations_downgrade_to_base_and_back(
        self, migrated_database: MigratedDatabase, package: str, schema: str
    ) -> None:
        url = await migrated_database(package)
        await asyncio.to_thread(downgrade, package, url, "base")
        await asyncio.to_thread(upgrade, package, url)
        connection = await asyncpg.connect(libpq(url))
        try:
            version = await connection.fetchval(
                f'SELECT version_num FROM "{schema}".alembic_version'
            )
        finally:
            await connection.close()
        assert version is not None

    async def test_readyz_reports_its_database_and_broker_ready(
        self,
        migrated_database: MigratedDatabase,
        kafka_bootstrap_servers: str,
        package: str,
        schema: str,
    ) -> None:
        url = await migrated_database(package)
        if package in WITH_CARD_REPLICA:
            await hold_one_card(url)  # no catalog runs here to fill it
        config = importlib.import_module(f"{package}.config")
        main = importlib.import_module(f"{package}.main")
        settings = config.Settings(
            database_url=url, kafka_bootstrap_servers=kafka_bootstrap_servers
        )
        app = main.create_app(settings)
        async with running_app(app) as client:
            live = await client.get("/livez")
            # some readiness checks complete in the background after start-up (the broker's
            # listener is ready once its own probe notification came back): ask until ready
            deadline = time.monotonic() + 15
            ready = await client.get("/readyz")
            while ready.status_code != 200 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                ready = await client.get("/readyz")
        assert live.status_code == 200
        assert ready.status_code == 200, ready.text
        components = ready.json()["components"]
        assert components["database"] == "ready"
        if package in WITH_BROKER:
            assert components["broker"] == "ready"
        if package in WITH_CARD_REPLICA:
            assert components["card_replica"] == "ready"

    async def test_readyz_is_503_when_the_database_is_unreachable(
        self, package: str, schema: str
    ) -> None:
        config = importlib.import_module(f"{package}.config")
        main = importlib.import_module(f"{package}.main")
        unreachable = "postgresql+asyncpg://nobody@127.0.0.1:1/none"
        app = main.create_app(config.Settings(database_url=unreachable))
        async with running_app(app) as client:
            ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["components"]["database"] == "unavailable"
