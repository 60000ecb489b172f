"""Units of work without ``BEGIN`` and ``COMMIT``, on a real PostgreSQL: the read-only unit
(``Database.reading``, nothing but plain reads let through); the unit that is one statement
(``Database.statement``) is tested with the driver's units (``test_direct_units.py``), and
here as a savepoint of a test's transaction."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, Text, delete, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped

from panjereh.common.db import Database, WriteInReadingUnit, ensure_databases, in_transaction
from panjereh.common.http import NetworkCallInTransaction, outbound_client
from panjereh.common.testing.plugin import PostgresServer

pytestmark = pytest.mark.integration

SCHEMA = "reading"
NOTE = Table(
    "note",
    MetaData(schema=SCHEMA),
    Column("id", Integer, primary_key=True),
    Column("body", Text),
)


class _Base(DeclarativeBase):
    pass


class Note(_Base):
    __table__ = NOTE
    id: Mapped[int]
    body: Mapped[str | None]


#: the start of the current transaction: the same for every statement of a transaction
TRANSACTION_START = text("SELECT transaction_timestamp()")


async def one_transaction(session: AsyncSession) -> bool:
    """Whether two statements of ``session``, a few milliseconds apart, share a transaction."""
    first = await session.scalar(TRANSACTION_START)
    await asyncio.sleep(0.005)
    return bool(first == await session.scalar(TRANSACTION_START))


@pytest.fixture(scope="module")
async def database_url(postgres_server: PostgresServer) -> str:
    name = f"test_reading_{secrets.token_hex(4)}"
    await ensure_databases(postgres_server.admin_url, [name])
    url = postgres_server.url(name)
    database = Database(url, pool_size=1)
    try:
        async with database.engine.begin() as connection:
            await connection.execute(text(f"CREATE SCHEMA {SCHEMA}"))
            await connection.execute(
                text(f"CREATE TABLE {SCHEMA}.note (id int PRIMARY KEY, body text)")
            )
            await connection.execute(text(f"CREATE SEQUENCE {SCHEMA}.numbers"))
            await connection.execute(insert(NOTE).values(id=1, body="kept"))
    finally:
        await database.dispose()
    return url


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    # one pooled connection: every unit below runs on the connection the last one returned
    db = Database(database_url, pool_size=1)
    try:
        yield db
    finally:
        await db.dispose()


async def test_a_reading_unit_sends_no_begin_and_a_transaction_still_does(
    database: Database,
) -> None:
    async with database.reading() as session:
        assert not await one_transaction(session)
        assert await session.scalar(select(NOTE.c.body).where(NOTE.c.id == 1)) == "kept"
        assert await session.get(Note, 1) is not None
    # the connection went back to the pool as it came: units of work are transactions again
    async with database.transaction() as session:
        assert await one_transaction(session)

    async def write_then_fail() -> None:
        async with database.transaction() as session:
            await session.execute(insert(NOTE).values(id=2, body="undone"))
            raise RuntimeError("undone")

    with pytest.raises(RuntimeError, match="undone"):
        await write_then_fail()
    async with database.reading() as session:
        assert await session.scalar(select(NOTE.c.id).where(NOTE.c.id == 2)) is None


@pytest.mark.parametrize(
    "statement",
    [
        f"INSERT INTO {SCHEMA}.note (id, body) VALUES (3, 'no')",
        f"UPDATE {SCHEMA}.note SET body = 'no' WHERE id = 1",
        f"DELETE FROM {SCHEMA}.note WHERE id = 1",
        f"WITH gone AS (DELETE FROM {SCHEMA}.note WHERE id = 1 RETURNING id) SELECT * FROM gone",
        f"SELECT body FROM {SCHEMA}.note WHERE id = 1 FOR UPDATE",
        f"SELECT body FROM {SCHEMA}.note WHERE id = 1 FOR NO KEY UPDATE",
        f"SELECT body FROM {SCHEMA}.note WHERE id = 1 FOR SHARE",
        "SELECT pg_advisory_xact_lock(42)",
        f"SELECT nextval('{SCHEMA}.numbers')",
        "SELECT pg_notify('anyone', 'x')",
        "SET statement_timeout = 0",
    ],
)
async def test_anything_but_a_plain_read_is_refused_before_it_reaches_the_server(
    database: Database, statement: str
) -> None:
    with pytest.raises(WriteInReadingUnit, match=r"Database\.transaction\(\)"):
        async with database.reading() as session:
            await session.execute(text(statement))
    async with database.reading() as session:
        assert await session.scalar(select(NOTE.c.body).where(NOTE.c.id == 1)) == "kept"
        assert await session.scalar(select(NOTE.c.id).where(NOTE.c.id == 3)) is None
        # the sequence was never stepped
        assert await session.scalar(text(f"SELECT last_value FROM {SCHEMA}.numbers")) == 1
        assert await session.scalar(text(f"SELECT is_called FROM {SCHEMA}.numbers")) is False


async def test_an_orm_change_is_refused_when_it_would_be_flushed(database: Database) -> None:

    async def add_and_flush() -> None:
        async with database.reading() as session:
            session.add(Note(id=4, body="no"))
            await session.flush()

    with pytest.raises(WriteInReadingUnit):
        await add_and_flush()
    async with database.reading() as session:
        assert await session.get(Note, 4) is None


async def test_a_reading_unit_counts_as_a_unit_of_work_for_the_network_rule(
    database: Database,
) -> None:
    assert not in_transaction()
    async with outbound_client() as client, database.reading():
        assert in_transaction()
        with pytest.raises(NetworkCallInTransaction):
            await client.get("http://127.0.0.1:9/")
    assert not in_transaction()


async def test_a_joined_database_reads_the_outer_transaction_and_still_refuses_writes(
    database: Database,
) -> None:
    async with database.engine.connect() as connection:
        outer = await connection.begin()
        joined = Database.joined_to(connection)
        async with joined.transaction() as session:
            await session.execute(insert(NOTE).values(id=5, body="uncommitted"))
        async with joined.reading() as session:
            assert await session.scalar(select(NOTE.c.body).where(NOTE.c.id == 5)) == (
                "uncommitted"
            )
        with pytest.raises(WriteInReadingUnit):
            async with joined.reading() as session:
                await session.execute(insert(NOTE).values(id=6, body="no"))
        # after the refusal, the joined units of work write as before
        async with joined.transaction() as session:
            await session.execute(insert(NOTE).values(id=7, body="written"))
        async with joined.reading() as session:
            ids = (await session.scalars(select(NOTE.c.id).order_by(NOTE.c.id))).all()
        assert ids == [1, 5, 7]
        # one statement is a savepoint of the test's transaction too: undone with it
        await joined.statement(insert(NOTE).values(id=11, body="joined"))
        async with joined.reading() as session:
            assert await session.scalar(select(NOTE.c.body).where(NOTE.c.id == 11)) == "joined"
        await outer.rollback()
    async with database.reading() as session:
        left = (await session.scalars(select(NOTE.c.id).where(NOTE.c.id >= 5))).all()
    assert left == []


WAL_POSITIONS = text("SELECT pg_current_wal_insert_lsn() AS written, pg_current_wal_flush_lsn()")


async def test_flush_wal_makes_a_commit_that_did_not_wait_for_the_disk_durable(
    database: Database,
) -> None:
    """``synchronous_commit`` off: the commit returns before its WAL is flushed; flush_wal
    returns only once it is (and everything before it)."""
    for attempt in range(20):
        async with database.transaction() as session:
            await session.execute(text("SELECT set_config('synchronous_commit', 'off', true)"))
            await session.execute(insert(NOTE).values(id=100 + attempt, body="quick"))
        async with database.reading() as session:
            written, flushed = (await session.execute(WAL_POSITIONS)).one()
        if flushed < written:
            break  # caught before the WAL writer's own flush: the case to show
    else:
        pytest.fail("every commit was flushed at once: nothing to show")
    await database.flush_wal()
    async with database.reading() as session:
        flushed_now = await session.scalar(text("SELECT pg_current_wal_flush_lsn()"))
    assert flushed_now >= written
    async with database.engine.begin() as connection:
        await connection.execute(delete(NOTE).where(NOTE.c.id >= 100))
