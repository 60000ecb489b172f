"""Units of work sent by the driver (``Database.direct``, ``Database.statement``), on a real
PostgreSQL: the same boundary as ``Database.transaction`` (commit, rollback, errors that keep
changes, callbacks after the commit, the network rule), statements compiled once by
SQLAlchemy, and a pool that never hands out a connection a unit left broken."""

from __future__ import annotations

import asyncio
import enum
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import pytest
from sqlalchemy import (
    BigInteger,
    Column,
    Enum,
    Integer,
    MetaData,
    Table,
    Text,
    bindparam,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from panjereh.common.db import (
    Database,
    DirectUnit,
    KeepChanges,
    ensure_databases,
    in_transaction,
)
from panjereh.common.errors import database_unavailable
from panjereh.common.http import NetworkCallInTransaction, outbound_client
from panjereh.common.testing.plugin import PostgresServer
from panjereh.common.testing.queries import driver_queries

pytestmark = pytest.mark.integration

SCHEMA = "direct"


class Colour(enum.Enum):
    red = "red"
    blue = "blue"


ITEM = Table(
    "item",
    MetaData(schema=SCHEMA),
    Column("id", Integer, primary_key=True),
    Column("body", JSONB),
    Column("colour", Enum(Colour, native_enum=False, length=10)),
    Column("tags", ARRAY(Text)),
    Column("state", Text, default="new"),
)

INSERT_ITEM = (
    insert(ITEM)
    .values(
        id=bindparam("id"),
        body=bindparam("body"),
        colour=bindparam("colour"),
        tags=bindparam("tags"),
        state="new",
    )
    .returning(ITEM.c.id, ITEM.c.body, ITEM.c.colour, ITEM.c.tags)
)
READ_ITEM = select(ITEM.c.id, ITEM.c.body, ITEM.c.colour, ITEM.c.tags, ITEM.c.state).where(
    ITEM.c.id == bindparam("id")
)
#: a value bound in the statement itself ("done"), the other one given per call
FINISH_ITEM = (
    update(ITEM).where(ITEM.c.id == bindparam("item")).values(state="done").returning(ITEM.c.id)
)
BACKEND = select(func.pg_backend_pid().label("pid"))


class Refused(RuntimeError, KeepChanges):
    """A refusal whose own record is kept."""


@pytest.fixture(scope="module")
async def database_url(postgres_server: PostgresServer) -> str:
    name = f"test_direct_{secrets.token_hex(4)}"
    await ensure_databases(postgres_server.admin_url, [name])
    url = postgres_server.url(name)
    database = Database(url, pool_size=1)
    try:
        async with database.engine.begin() as connection:
            await connection.execute(text(f"CREATE SCHEMA {SCHEMA}"))
            await connection.run_sync(ITEM.metadata.create_all)
    finally:
        await database.dispose()
    return url


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url, pool_size=1)
    try:
        yield db
    finally:
        async with db.engine.begin() as connection:
            await connection.execute(delete(ITEM))
        await db.dispose()


@contextmanager
def invalidations(database: Database) -> Iterator[list[BaseException | None]]:
    """The pooled connections closed for good meanwhile, each with the error that did it."""
    seen: list[BaseException | None] = []

    def record(_dbapi_connection: Any, _record: Any, exception: BaseException | None) -> None:
        seen.append(exception)

    event.listen(database.engine.sync_engine, "invalidate", record)
    try:
        yield seen
    finally:
        event.remove(database.engine.sync_engine, "invalidate", record)


async def stored(database: Database, item: int) -> Any:
    async with database.reading() as session:
        return (await session.execute(READ_ITEM, {"id": item})).first()


async def test_a_unit_commits_its_statements_together_and_then_runs_its_callbacks(
    database: Database,
) -> None:
    ran: list[str] = []
    with driver_queries(database) as log:
        async with database.direct() as unit:
            assert in_transaction()
            row = await unit.fetchrow(
                INSERT_ITEM,
                {"id": 1, "body": {"a": [1, 2]}, "colour": Colour.red, "tags": ["x", "y"]},
            )
            assert row is not None
            # what the types convert comes back as SQLAlchemy would give it
            assert (row["id"], row["body"], row["colour"], row["tags"]) == (
                1,
                {"a": [1, 2]},
                Colour.red,
                ["x", "y"],
            )
            finished = await unit.fetch(FINISH_ITEM, {"item": 1})
            assert [r["id"] for r in finished] == [1]
            unit.after_commit(lambda: ran.append("after"))
            assert ran == []
    assert not in_transaction()
    assert ran == ["after"]
    sent = (await log.settled()).statements()
    assert sent[0] == "BEGIN"
    assert sent[-1] == "COMMIT"
    assert len(sent) == 4
    assert log.in_transaction("UPDATE direct.item") == [True]
    kept = await stored(database, 1)
    assert (kept.body, kept.colour, kept.tags, kept.state) == (
        {"a": [1, 2]},
        Colour.red,
        ["x", "y"],
        "done",
    )


async def test_a_unit_that_sends_nothing_costs_no_round_trip(database: Database) -> None:
    with driver_queries(database) as log:
        async with database.direct() as unit:
            unit.after_commit(lambda: None)
    assert (await log.settled()).statements() == []


async def test_an_error_rolls_the_unit_back_and_the_connection_goes_back_to_the_pool(
    database: Database,
) -> None:
    ran: list[str] = []

    async def write_then_fail() -> None:
        async with database.direct() as unit:
            await unit.fetch(
                INSERT_ITEM, {"id": 2, "body": None, "colour": Colour.blue, "tags": []}
            )
            unit.after_commit(lambda: ran.append("after"))
            raise ValueError("undone")

    with invalidations(database) as closed, pytest.raises(ValueError, match="undone"):
        await write_then_fail()
    assert await stored(database, 2) is None
    assert ran == []
    assert closed == []
    assert not in_transaction()


async def test_a_statement_the_server_refuses_rolls_back_and_keeps_the_connection(
    database: Database,
) -> None:
    values = {"id": 3, "body": None, "colour": Colour.red, "tags": []}
    await database.statement(INSERT_ITEM, values)

    async def insert_twice() -> None:
        async with database.direct() as unit:
            await unit.fetch(INSERT_ITEM, {**values, "id": 4})
            await unit.fetch(INSERT_ITEM, values)

    with invalidations(database) as closed:
        with pytest.raises(asyncpg.UniqueViolationError):
            await insert_twice()
        with pytest.raises(asyncpg.UniqueViolationError):
            await database.statement(INSERT_ITEM, values)
    assert closed == []
    assert await stored(database, 4) is None
    # the same connections serve the next units
    async with database.direct() as unit:
        await unit.fetch(INSERT_ITEM, {**values, "id": 5})
    assert await stored(database, 5) is not None


async def test_an_error_that_keeps_changes_commits_first_then_propagates(
    database: Database,
) -> None:
    ran: list[str] = []

    async def refuse() -> None:
        async with database.direct() as unit:
            await unit.fetch(
                INSERT_ITEM, {"id": 6, "body": {"denied": True}, "colour": None, "tags": None}
            )
            unit.after_commit(lambda: ran.append("after"))
            raise Refused("denied")

    with pytest.raises(Refused):
        await refuse()
    assert (await stored(database, 6)).body == {"denied": True}
    assert ran == ["after"]


async def test_a_connection_lost_mid_unit_is_unavailable_and_never_handed_out_again(
    database: Database,
) -> None:
    pid = 0

    async def lose_the_connection() -> None:
        nonlocal pid
        async with database.direct() as unit:
            row = await unit.fetchrow(BACKEND)
            assert row is not None
            pid = row["pid"]
            async with database.reading() as other:
                await other.execute(select(func.pg_terminate_backend(pid)))
            await unit.fetch(READ_ITEM, {"id": 1})

    with invalidations(database) as closed:
        with pytest.raises(Exception) as raised:  # noqa: PT011 - the driver's own error class
            await lose_the_connection()
        assert database_unavailable(raised.value)
        assert len(closed) == 1
    assert not in_transaction()
    # the pool opens a new connection for the next unit
    async with database.direct() as unit:
        row = await unit.fetchrow(BACKEND)
    assert row is not None
    assert row["pid"] != pid


async def test_a_unit_counts_for_the_network_rule(database: Database) -> None:
    async with outbound_client() as client, database.direct():
        with pytest.raises(NetworkCallInTransaction):
            await client.get("http://127.0.0.1:9/")


async def test_one_statement_commits_by_itself_without_begin(database: Database) -> None:
    with driver_queries(database) as log:
        row = await database.statement(
            INSERT_ITEM, {"id": 7, "body": [1], "colour": Colour.blue, "tags": ["t"]}
        )
    assert row is not None
    assert (row["id"], row["body"], row["colour"]) == (7, [1], Colour.blue)
    assert (await log.settled()).in_transaction("INSERT INTO direct.item") == [False]
    assert len(log.statements()) == 1
    assert (await stored(database, 7)).tags == ["t"]
    # a statement that returns no rows returns nothing
    assert await database.statement(delete(ITEM).where(ITEM.c.id == 7)) is None
    assert await stored(database, 7) is None


async def test_statements_sent_alone_before_the_unit_begins_cost_no_begin(
    database: Database,
) -> None:
    """A read and then the unit's one write, each alone: two round trips, no transaction,
    and the write is committed when the block ends (its callbacks run)."""
    await database.statement(INSERT_ITEM, {"id": 20, "body": None, "colour": None, "tags": []})
    ran: list[str] = []
    with driver_queries(database) as log:
        async with database.direct() as unit:
            read = await unit.fetchrow(READ_ITEM, {"id": 20}, alone=True)
            assert read is not None
            assert read["state"] == "new"
            assert not unit.in_transaction
            await unit.fetch(FINISH_ITEM, {"item": 20}, alone=True)
            unit.after_commit(lambda: ran.append("after"))
            assert not unit.in_transaction
    sent = (await log.settled()).statements()
    assert [statement.split()[0] for statement in sent] == ["SELECT", "UPDATE"]
    assert log.in_transaction("direct.item") == [False, False]
    assert ran == ["after"]
    assert (await stored(database, 20)).state == "done"


async def test_alone_changes_nothing_once_the_unit_has_begun(database: Database) -> None:
    """After a statement that began the transaction, one sent alone is part of it: an error
    then rolls both back."""

    async def write_then_fail() -> None:
        async with database.direct() as unit:
            await unit.fetch(INSERT_ITEM, {"id": 21, "body": None, "colour": None, "tags": []})
            assert unit.in_transaction
            await unit.fetch(FINISH_ITEM, {"item": 21}, alone=True)
            raise ValueError("undone")

    with driver_queries(database) as log, pytest.raises(ValueError, match="undone"):
        await write_then_fail()
    assert (await log.settled()).in_transaction("UPDATE direct.item") == [True]
    assert await stored(database, 21) is None


async def test_what_went_alone_stays_committed_when_an_error_ends_the_unit(
    database: Database,
) -> None:
    """A write sent alone committed by itself: an error raised after it rolls back nothing,
    and the unit's callbacks run, as after any commit."""
    ran: list[str] = []

    async def write_then_fail() -> None:
        async with database.direct() as unit:
            await unit.fetch(
                INSERT_ITEM, {"id": 22, "body": None, "colour": None, "tags": []}, alone=True
            )
            unit.after_commit(lambda: ran.append("after"))
            raise ValueError("after the write")

    with pytest.raises(ValueError, match="after the write"):
        await write_then_fail()
    assert await stored(database, 22) is not None
    assert ran == ["after"]


async def test_a_failed_statement_changes_nothing(database: Database) -> None:
    twice = text(f"INSERT INTO {SCHEMA}.item (id, state) VALUES (12, 'half'), (12, 'duplicate')")
    with pytest.raises(asyncpg.UniqueViolationError):
        await database.statement(twice)
    assert await stored(database, 12) is None


async def test_statements_that_do_not_compile_to_one_text_are_refused(
    database: Database,
) -> None:
    expanding = select(ITEM.c.id).where(ITEM.c.id.in_(bindparam("ids", expanding=True)))
    with pytest.raises(TypeError, match="expanding"):
        await database.statement(expanding, {"ids": [1, 2]})
    # "state" takes its default in Python, per execution
    python_default = insert(ITEM).values(id=bindparam("id")).returning(ITEM.c.id)
    with pytest.raises(TypeError, match="Python-side defaults"):
        await database.statement(python_default, {"id": 8})
    with pytest.raises(KeyError, match="'id' is required"):
        await database.statement(READ_ITEM, {})
    assert await stored(database, 8) is None


async def test_an_insert_without_values_takes_its_columns_from_the_parameters(
    database: Database,
) -> None:
    plain = insert(ITEM).returning(ITEM.c.id, ITEM.c.state)
    first = await database.statement(plain, {"id": 9, "state": "given"})
    second = await database.statement(plain, {"id": 10, "state": "other", "tags": ["z"]})
    assert first is not None
    assert second is not None
    assert (first["id"], first["state"], second["id"]) == (9, "given", 10)
    assert (await stored(database, 10)).tags == ["z"]


async def test_a_joined_unit_is_a_savepoint_of_the_outer_transaction(database: Database) -> None:
    ran: list[str] = []
    async with database.engine.connect() as connection:
        outer = await connection.begin()
        joined = Database.joined_to(connection)
        async with joined.direct() as unit:
            row = await unit.fetchrow(
                INSERT_ITEM, {"id": 11, "body": {"k": 1}, "colour": Colour.red, "tags": []}
            )
            assert row is not None
            assert (row["body"], row["colour"]) == ({"k": 1}, Colour.red)
            unit.after_commit(lambda: ran.append("after"))
        assert ran == ["after"]

        async def finish_then_fail() -> None:
            async with joined.direct() as unit:
                await unit.fetch(FINISH_ITEM, {"item": 11})
                raise ValueError("undone")

        with pytest.raises(ValueError, match="undone"):
            await finish_then_fail()
        async with joined.reading() as session:
            seen = (await session.execute(READ_ITEM, {"id": 11})).first()
        assert seen is not None
        assert seen.state == "new"
        await outer.rollback()
    assert await stored(database, 11) is None


ARRAY_IDS = select(func.unnest(bindparam("ids", type_=ARRAY(BigInteger))).label("id"))


async def test_an_array_parameter_stands_in_for_a_list(database: Database) -> None:
    async with database.direct() as unit:
        rows = await unit.fetch(ARRAY_IDS, {"ids": [3, 1, 2]})
    assert [row["id"] for row in rows] == [3, 1, 2]


async def test_a_sessions_statements_sent_by_the_driver_share_its_transaction(
    database: Database,
) -> None:
    ran: list[str] = []
    with driver_queries(database) as log:
        async with database.transaction() as session:
            unit = DirectUnit.of(session)
            assert DirectUnit.of(session) is unit
            # the first statement goes through the session, which begins the transaction
            await unit.fetch(INSERT_ITEM, {"id": 13, "body": None, "colour": None, "tags": []})
            # the session's own statements and the driver's see each other's writes
            await session.execute(update(ITEM).where(ITEM.c.id == 13).values(state="session"))
            row = await unit.fetchrow(READ_ITEM, {"id": 13})
            assert row is not None
            assert row["state"] == "session"
            unit.after_commit(lambda: ran.append("after"))
    assert ran == ["after"]
    assert (await log.settled()).in_transaction("FROM direct.item") == [True]
    assert (await stored(database, 13)).state == "session"

    async def written_then_undone() -> None:
        async with database.transaction() as session:
            unit = DirectUnit.of(session)
            await session.execute(select(1))
            await unit.fetch(INSERT_ITEM, {"id": 14, "body": None, "colour": None, "tags": []})
            raise ValueError("undone")

    with pytest.raises(ValueError, match="undone"):
        await written_then_undone()
    assert await stored(database, 14) is None


async def test_after_a_lost_connection_the_pool_replaces_every_older_one(
    database: Database,
) -> None:
    """The server restarted (or failed over): every pooled connection is gone. The first unit
    meets it; the units after it get new connections instead of meeting it one by one."""
    hold, both_held = asyncio.Event(), asyncio.Event()
    pids: list[int] = []

    async def hold_a_connection() -> None:
        async with database.direct() as unit:
            row = await unit.fetchrow(BACKEND)
            assert row is not None
            pids.append(row["pid"])
            if len(pids) == 2:
                both_held.set()
            await hold.wait()

    holders = [asyncio.create_task(hold_a_connection()) for _ in range(2)]
    await both_held.wait()
    hold.set()
    await asyncio.gather(*holders)
    url = database.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(url)
    try:
        for pid in pids:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()

    async def one_unit(together: asyncio.Barrier | None = None) -> int:
        async with database.direct() as unit:
            row = await unit.fetchrow(BACKEND)
            assert row is not None
            if together is not None:
                await together.wait()  # both connections of the pool drawn at once
            return int(row["pid"])

    with pytest.raises(Exception) as raised:  # noqa: PT011 - the driver's own error class
        await one_unit()
    assert database_unavailable(raised.value)
    together = asyncio.Barrier(2)
    drawn = await asyncio.gather(one_unit(together), one_unit(together))
    assert not set(drawn) & set(pids)
