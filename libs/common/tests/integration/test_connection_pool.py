"""The connection pool under bursts, on a real PostgreSQL: the connections it opens stay open.

A new connection costs the server a backend process, its catalog caches, asyncpg's type
introspection and every statement prepared and planned again: under a login load the pool's
overflow connections, closed at check-in and opened again at the next burst, cost PostgreSQL
more CPU than the logins' own statements.
"""

from __future__ import annotations

import asyncio
import secrets

import pytest
from sqlalchemy import text

from panjereh.common.db import Database, ensure_databases
from panjereh.common.testing.plugin import PostgresServer

pytestmark = pytest.mark.integration

POOL_SIZE = 2


async def burst(database: Database, size: int) -> list[int]:
    """``size`` units of work holding a connection at the same moment; their backends' pids."""
    together = asyncio.Barrier(size)

    async def unit() -> int:
        async with database.transaction() as session:
            pid = int(await session.scalar(text("SELECT pg_backend_pid()")) or 0)
            await together.wait()
            return pid

    return list(await asyncio.gather(*(unit() for _ in range(size))))


async def test_a_burst_past_the_pool_size_reuses_its_connections_at_the_next_burst(
    postgres_server: PostgresServer,
) -> None:
    name = f"test_pool_{secrets.token_hex(4)}"
    await ensure_databases(postgres_server.admin_url, [name])
    database = Database(postgres_server.url(name), pool_size=POOL_SIZE)
    try:
        first = await burst(database, 2 * POOL_SIZE)
        second = await burst(database, 2 * POOL_SIZE)
        # as many connections at once as before (the pool and its overflow)...
        assert len(set(first)) == 2 * POOL_SIZE
        # ...and the second burst runs on the same ones: no backend started again
        assert set(second) == set(first)
    finally:
        await database.dispose()
