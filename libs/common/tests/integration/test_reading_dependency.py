"""``DbReading``: an endpoint's read-only unit (``Database.reading``), on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from panjereh.common.db import Database, WriteInReadingUnit, ensure_databases
from panjereh.common.dependencies import DbReading
from panjereh.common.testing.plugin import PostgresServer

pytestmark = pytest.mark.integration

#: the start of the current transaction: the same for every statement of a transaction
TRANSACTION_START = text("SELECT transaction_timestamp()")


@pytest.fixture(scope="module")
async def database(postgres_server: PostgresServer) -> AsyncIterator[Database]:
    name = f"test_reading_dep_{secrets.token_hex(4)}"
    await ensure_databases(postgres_server.admin_url, [name])
    db = Database(postgres_server.url(name), pool_size=1)
    try:
        yield db
    finally:
        await db.dispose()


@pytest.fixture
async def client(database: Database) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.state.database = database

    @app.get("/one-transaction")
    async def one_transaction(session: DbReading) -> bool:
        first = await session.scalar(TRANSACTION_START)
        await asyncio.sleep(0.005)
        return bool(first == await session.scalar(TRANSACTION_START))

    @app.post("/write")
    async def write(session: DbReading) -> None:
        await session.execute(text("SELECT pg_advisory_xact_lock(7)"))

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def test_an_endpoints_reads_run_without_a_transaction(client: httpx.AsyncClient) -> None:
    response = await client.get("/one-transaction")
    assert response.status_code == 200
    assert response.json() is False


async def test_a_write_in_a_reading_endpoint_is_refused(client: httpx.AsyncClient) -> None:
    with pytest.raises(WriteInReadingUnit):
        await client.post("/write")
