"""Fixtures of the catalog's tests: migrated, seeded databases and per-test rolled-back sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.catalog.config import Settings
from panjereh.catalog.main import create_app
from panjereh.catalog.seed import seed
from panjereh.common.db import Database
from panjereh.common.testing.kafka import create_topics
from panjereh.common.testing.plugin import MigratedDatabase, running_app
from panjereh.contracts.topics import PLATFORM_TOPICS


async def _seeded(migrated_database: MigratedDatabase) -> str:
    url = await migrated_database("panjereh.catalog")
    database = Database(url, pool_size=1)
    try:
        await seed(database, approving_organisation="test-authority")
    finally:
        await database.dispose()
    return url


@pytest.fixture(scope="session")
async def seeded_catalog_url(migrated_database: MigratedDatabase) -> str:
    """A migrated catalog database with the demo seed: shared, so never changed for good."""
    return await _seeded(migrated_database)


@pytest.fixture(scope="session")
async def catalog_database(seeded_catalog_url: str) -> AsyncIterator[Database]:
    database = Database(seeded_catalog_url, pool_size=4)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def session(catalog_database: Database) -> AsyncIterator[AsyncSession]:
    """A session whose every change is rolled back when the test ends."""
    async with catalog_database.engine.connect() as connection:
        transaction = await connection.begin()
        session = AsyncSession(
            bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
        )
        try:
            yield session
        finally:
            await session.close()
            await transaction.rollback()


@pytest.fixture(scope="session")
async def platform_topics(kafka_bootstrap_servers: str) -> str:
    """The real (embedded) broker with the platform's topics; its bootstrap servers."""
    await create_topics(kafka_bootstrap_servers, PLATFORM_TOPICS)
    return kafka_bootstrap_servers


def app_settings(database_url: str, *, jwks_url: str, kafka: str) -> Settings:
    return Settings(
        database_url=database_url,
        jwks_url=jwks_url,
        kafka_bootstrap_servers=kafka,
        kafka_idempotence=False,  # the embedded broker refuses idempotent producers
        # activity is consumed only where a test says so (test_agency_activity.py, on a broker
        # of its own): an app sharing the session's broker must not take its partitions
        consume_agency_activity=False,
    )


@pytest.fixture(scope="session")
async def public_api(
    seeded_catalog_url: str, jwks_url: str, platform_topics: str
) -> AsyncIterator[httpx.AsyncClient]:
    """The catalog app, for reads only, over the shared seeded database."""
    app = create_app(app_settings(seeded_catalog_url, jwks_url=jwks_url, kafka=platform_topics))
    async with running_app(app) as client:
        yield client


@pytest.fixture
async def own_catalog_url(migrated_database: MigratedDatabase) -> str:
    """A seeded catalog database of the test's own."""
    return await _seeded(migrated_database)


@pytest.fixture(scope="session")
async def api_catalog_url(migrated_database: MigratedDatabase) -> str:
    """A seeded catalog database of its own for tests that change it through the API."""
    return await _seeded(migrated_database)


@pytest.fixture(scope="session")
async def api(
    api_catalog_url: str, jwks_url: str, platform_topics: str
) -> AsyncIterator[httpx.AsyncClient]:
    """The catalog app (auth against the test JWKS, outbox relay to the real broker)."""
    app = create_app(app_settings(api_catalog_url, jwks_url=jwks_url, kafka=platform_topics))
    async with running_app(app) as client:
        yield client
