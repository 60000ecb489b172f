"""Fixtures of the catalog's tests: a migrated database, per-test rolled-back sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from panjereh.catalog.seed import seed
from panjereh.common.db import Database
from panjereh.common.testing.plugin import MigratedDatabase
from sqlalchemy.ext.asyncio import AsyncSession


@pytest.fixture(scope="session")
async def catalog_database(migrated_database: MigratedDatabase) -> AsyncIterator[Database]:
    """A migrated catalog database with the demo seed loaded (shared, never changed)."""
    database = Database(await migrated_database("panjereh.catalog"), pool_size=4)
    await seed(database, approving_organisation="test-authority")
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
