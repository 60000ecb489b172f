"""The catalog's migrations: 0003 gives the older ``idempotency_record`` the kernel's index."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text

from panjereh.catalog.models import SCHEMA, Base
from panjereh.common.db import Database
from panjereh.common.migrations import downgrade, upgrade
from panjereh.common.testing.plugin import MigratedDatabase

pytestmark = pytest.mark.integration

INDEX = "ix_idempotency_record_created_at"


async def idempotency_indexes(url: str) -> set[str]:
    database = Database(url, pool_size=1)
    try:
        async with database.transaction() as session:
            rows = await session.scalars(
                text(
                    "SELECT indexname FROM pg_indexes "
                    "WHERE schemaname = :schema AND tablename = 'idempotency_record'"
                ),
                {"schema": SCHEMA},
            )
            return set(rows)
    finally:
        await database.dispose()


async def differences(url: str) -> list[Any]:
    """What Alembic would change to make the database match the models (idempotency only)."""

    def compare(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(
            connection,
            opts={
                "include_schemas": True,
                "include_name": lambda name, kind, _: kind != "schema" or name == SCHEMA,
            },
        )
        return compare_metadata(context, Base.metadata)

    database = Database(url, pool_size=1)
    try:
        async with database.engine.connect() as connection:
            found = await connection.run_sync(compare)
    finally:
        await database.dispose()
    return [change for change in found if "idempotency_record" in str(change)]


async def test_the_idempotency_table_matches_the_kernel_and_0003_is_reversible(
    migrated_database: MigratedDatabase,
) -> None:
    url = await migrated_database("panjereh.catalog")
    assert await idempotency_indexes(url) == {"pk_idempotency_record", INDEX}
    assert await differences(url) == []
    await asyncio.to_thread(downgrade, "panjereh.catalog", url, "0002")
    assert await idempotency_indexes(url) == {"pk_idempotency_record"}
    assert [change[0] for change in await differences(url)] == ["add_index"]
    await asyncio.to_thread(upgrade, "panjereh.catalog", url)
    assert await idempotency_indexes(url) == {"pk_idempotency_record", INDEX}
