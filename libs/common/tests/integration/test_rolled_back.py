"""The test plugin's rolled-back database: code commits, the test's end undoes it."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from panjereh.common.db import Database
from panjereh.common.testing.plugin import MigratedDatabase, rolled_back

pytestmark = pytest.mark.integration


async def test_commits_inside_are_visible_inside_and_gone_afterwards(
    migrated_database: MigratedDatabase,
) -> None:
    url = await migrated_database("panjereh.catalog")
    insert = text(
        "INSERT INTO catalog.inbox_message (consumer, event_id, topic) VALUES ('t', 'e1', 'x')"
    )
    count = text("SELECT count(*) FROM catalog.inbox_message")
    async with rolled_back(url) as database:
        async with database.transaction() as session:
            await session.execute(insert)
        async with database.transaction() as session:
            assert (await session.execute(count)).scalar_one() == 1
    async with rolled_back(url) as database, database.transaction() as session:
        assert (await session.execute(count)).scalar_one() == 0


async def test_a_failed_unit_of_work_rolls_back_only_itself(
    migrated_database: MigratedDatabase,
) -> None:
    url = await migrated_database("panjereh.catalog")
    insert = "INSERT INTO catalog.inbox_message (consumer, event_id, topic) VALUES ('t', :e, 'x')"
    async with rolled_back(url) as database:
        async with database.transaction() as session:
            await session.execute(text(insert), {"e": "kept"})
        with pytest.raises(RuntimeError, match="handler failed"):
            await insert_then_fail(database, insert)
        async with database.transaction() as session:
            rows = await session.execute(text("SELECT event_id FROM catalog.inbox_message"))
            assert [row.event_id for row in rows] == ["kept"]


async def insert_then_fail(database: Database, insert: str) -> None:
    async with database.transaction() as session:
        await session.execute(text(insert), {"e": "dropped"})
        msg = "handler failed"
        raise RuntimeError(msg)
