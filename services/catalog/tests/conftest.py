"""Fixtures of the catalog's tests: migrated, seeded databases and per-test rolled-back sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from panjereh.catalog.config import Settings
from panjereh.catalog.main import create_app
from panjereh.catalog.seed import seed
from panjereh.common.db import Database
from panjereh.common.testing.plugin import MigratedDatabase, running_app
from sqlalchemy.ext.asyncio import AsyncSession


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
async def public_api(seeded_catalog_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The catalog app (read-only use) over the shared seeded database."""
    app = create_app(Settings(database_url=seeded_catalog_url))
    async with running_app(app) as client:
        yield client
