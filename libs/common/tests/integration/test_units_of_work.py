"""The one transaction boundary, the no-network-inside-a-transaction rule and Idempotency-Key,
on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import asyncpg
import httpx
import pytest
from alembic.migration import MigrationContext
from alembic.operations import Operations
from fastapi import APIRouter, FastAPI
from sqlalchemy import Column, Integer, MetaData, Table, Text, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from panjereh.common.app import create_service_app
from panjereh.common.db import Database, KeepChanges, after_commit, ensure_databases, in_transaction
from panjereh.common.dependencies import DatabaseDep, DbSession, IdempotencyKey
from panjereh.common.errors import Forbidden, IdempotencyKeyReused, database_unavailable
from panjereh.common.http import NetworkCallInTransaction, outbound_client
from panjereh.common.idempotency import (
    IdempotencyStore,
    Outcome,
    idempotency_table,
    once,
)
from panjereh.common.lifespan import Resources
from panjereh.common.messaging.migration_ops import create_idempotency_table_v1
from panjereh.common.settings import ServiceSettings
from panjereh.common.testing.plugin import PostgresServer, running_app

pytestmark = pytest.mark.integration

SCHEMA = "kernel"


def _metadata() -> tuple[MetaData, Table, Table]:
    metadata = MetaData(schema=SCHEMA)
    note = Table("note", metadata, Column("id", Integer, primary_key=True), Column("body", Text))
    return metadata, note, idempotency_table(metadata)


METADATA, NOTE, IDEMPOTENCY = _metadata()


@pytest.fixture(scope="module")
async def database_url(postgres_server: PostgresServer) -> str:
    """A fresh database whose idempotency table is made by the kernel's migration op."""
    name = f"test_kernel_{secrets.token_hex(4)}"
    await ensure_databases(postgres_server.admin_url, [name])
    url = postgres_server.url(name)
    database = Database(url, pool_size=2)
    try:
        async with database.engine.begin() as connection:
            await connection.execute(text(f"CREATE SCHEMA {SCHEMA}"))
            await connection.execute(
                text(f"CREATE TABLE {SCHEMA}.note (id int PRIMARY KEY, body text)")
            )

            def migrate(sync_connection: Any) -> None:
                with Operations.context(MigrationContext.configure(sync_connection)):
                    create_idempotency_table_v1(SCHEMA)

            await connection.run_sync(migrate)
    finally:
        await database.dispose()
    return url


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url, pool_size=8)
    try:
        yield db
    finally:
        async with db.transaction() as session:
            await session.execute(NOTE.delete())
            await session.execute(IDEMPOTENCY.delete())
        await db.dispose()


async def notes(database: Database) -> list[str]:
    async with database.transaction() as session:
        return list((await session.scalars(select(NOTE.c.body).order_by(NOTE.c.id))).all())


class Refused(Forbidden, KeepChanges):
    """A refusal whose own record is a fact to keep."""


async def write_then_fail(
    database: Database, error: BaseException, *, body: str = "", callback: Any = None
) -> None:
    """A unit of work that writes a note (and registers ``callback``), then raises ``error``."""
    async with database.transaction() as session:
        if body:
            await session.execute(insert(NOTE).values(id=1, body=body))
        if callback is not None:
            after_commit(session, callback)
        raise error


class TestTransactionBoundary:
    async def test_a_block_that_ends_normally_commits(self, database: Database) -> None:
        async with database.transaction() as session:
            await session.execute(insert(NOTE).values(id=1, body="kept"))
        assert await notes(database) == ["kept"]

    async def test_an_error_rolls_everything_back(self, database: Database) -> None:
        with pytest.raises(RuntimeError):
            await write_then_fail(database, RuntimeError(), body="lost")
        assert await notes(database) == []

    async def test_a_keep_changes_error_commits_then_propagates(self, database: Database) -> None:
        with pytest.raises(Refused):
            await write_then_fail(database, Refused(), body="audit of the refusal")
        assert await notes(database) == ["audit of the refusal"]

    async def test_after_commit_callbacks_run_after_a_commit_only(self, database: Database) -> None:
        calls: list[str] = []

        async def async_callback() -> None:
            calls.append("async")

        async with database.transaction() as session:
            after_commit(session, lambda: calls.append("sync"))
            after_commit(session, async_callback)
            assert calls == []  # not before the commit
        assert calls == ["sync", "async"]

        with pytest.raises(RuntimeError):
            await write_then_fail(
                database, RuntimeError(), callback=lambda: calls.append("rolled back")
            )
        assert calls == ["sync", "async"]

    async def test_in_transaction_is_true_only_inside_a_unit_of_work(
        self, database: Database
    ) -> None:
        assert not in_transaction()
        async with database.transaction():
            assert in_transaction()
            async with database.transaction():
                assert in_transaction()
            assert in_transaction()
        assert not in_transaction()

    async def test_the_flag_belongs_to_the_task_that_opened_the_transaction(
        self, database: Database
    ) -> None:
        seen: list[bool] = []
        started = asyncio.Event()
        release = asyncio.Event()

        async def holder() -> None:
            async with database.transaction():
                started.set()
                await release.wait()

        task = asyncio.create_task(holder())
        await started.wait()
        seen.append(in_transaction())  # another task holds one; this one does not
        release.set()
        await task
        assert seen == [False]


async def drop_connections(admin_url: str, database_url: str) -> int:
    """What a restart does to the pool: the server ends every connection to the database."""
    name = make_url(database_url).database
    admin = await asyncpg.connect(admin_url)
    try:
        dropped: int = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
    finally:
        await admin.close()
    await asyncio.sleep(0.2)  # the client sees the connections close
    return dropped


class TestDroppedConnections:
    async def test_one_unit_of_work_meets_the_drop_as_unavailable_and_the_pool_renews(
        self, database: Database, database_url: str, postgres_server: PostgresServer
    ) -> None:
        async def read() -> int:
            async with database.transaction() as session:
                value = await session.scalar(text("SELECT 1"))
                await asyncio.sleep(0.05)  # both connections are out at once, then pooled
                return int(value or 0)

        assert await asyncio.gather(read(), read()) == [1, 1]
        assert await drop_connections(postgres_server.admin_url, database_url) >= 2
        # no ping before each unit of work: the first one on a dropped connection fails, as
        # an outage (503 database_unavailable for a request), never as a bug
        with pytest.raises(DBAPIError) as failed:
            await read()
        assert database_unavailable(failed.value), repr(failed.value)
        # the drop invalidated the whole pool: the other dropped connection is never handed
        # out again, every unit of work after it gets a new one
        assert await asyncio.gather(read(), read(), read()) == [1, 1, 1]


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture(scope="module")
def outside_system() -> Iterator[str]:
    """A real HTTP server on loopback standing for another system (an agency, an SMS API)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host!s}:{port}/"
    finally:
        server.shutdown()
        server.server_close()


class TestNoNetworkInsideATransaction:
    async def test_an_outbound_call_outside_a_transaction_goes_through(
        self, outside_system: str
    ) -> None:
        async with outbound_client() as client:
            assert (await client.get(outside_system)).text == "ok"

    async def test_an_outbound_call_inside_a_transaction_is_refused_before_it_leaves(
        self, database: Database, outside_system: str
    ) -> None:
        async with outbound_client() as client, database.transaction() as session:
            await session.execute(insert(NOTE).values(id=1, body="locked row"))
            call = client.get(outside_system)
            with pytest.raises(NetworkCallInTransaction):
                await call

    async def test_the_callers_own_hooks_still_run(self, outside_system: str) -> None:
        seen: list[str] = []

        async def hook(request: httpx.Request) -> None:
            seen.append(request.method)

        async with outbound_client(event_hooks={"request": [hook]}) as client:
            await client.get(outside_system)
        assert seen == ["GET"]

    async def test_an_endpoint_on_the_request_session_cannot_call_out(
        self, database_url: str, outside_system: str
    ) -> None:
        """The request dependency's unit of work is open during the endpoint: a call fails;
        an endpoint that takes the database and calls between its units of work succeeds."""
        router = APIRouter()

        @router.get("/inside")
        async def inside(session: DbSession) -> dict[str, Any]:
            async with outbound_client() as client:
                try:
                    await client.get(outside_system)
                except NetworkCallInTransaction:
                    return {"refused": True, "in_transaction": in_transaction()}
            return {"refused": False}

        @router.get("/outside")
        async def outside(database: DatabaseDep) -> dict[str, Any]:
            async with database.transaction() as session:
                claimed = (await session.execute(text("SELECT 1"))).scalar_one()
            async with outbound_client() as client:
                answer = (await client.get(outside_system)).text
            return {"claimed": claimed, "answer": answer}

        async def setup(app: FastAPI, resources: Resources) -> None:
            resources.database(ServiceSettings(database_url=database_url))

        app = create_service_app(
            title="guard", settings=ServiceSettings(), setup=setup, routers=[router]
        )
        async with running_app(app) as client:
            assert (await client.get("/inside")).json() == {"refused": True, "in_transaction": True}
            assert (await client.get("/outside")).json() == {"claimed": 1, "answer": "ok"}


class TestIdempotency:
    @staticmethod
    def creator(database: Database, counter: list[int], body: str) -> Any:
        async def create() -> Outcome:
            counter.append(1)
            note_id = len(counter)
            return Outcome(201, {"id": note_id, "body": body})

        return create

    async def test_the_same_key_and_body_replays_the_first_answer(self, database: Database) -> None:
        store = IdempotencyStore(IDEMPOTENCY)
        created: list[int] = []
        answers = []
        for _ in range(2):
            async with database.transaction() as session:
                answers.append(
                    await once(
                        session,
                        store,
                        actor="alice",
                        key="k-1",
                        operation="notes.create",
                        request={"body": "hi"},
                        create=self.creator(database, created, "hi"),
                    )
                )
        assert len(created) == 1
        assert answers[0].body == answers[1].body == {"id": 1, "body": "hi"}
        assert (answers[0].replayed, answers[1].replayed) == (False, True)
        assert answers[1].headers == {"Idempotent-Replayed": "true"}

    async def test_another_body_under_the_same_key_is_refused(self, database: Database) -> None:
        store = IdempotencyStore(IDEMPOTENCY)
        created: list[int] = []
        async with database.transaction() as session:
            await once(
                session, store, actor="alice", key="k-2", operation="notes.create",
                request={"body": "one"}, create=self.creator(database, created, "one"),
            )  # fmt: skip

        async def second() -> None:
            async with database.transaction() as session:
                await once(
                    session, store, actor="alice", key="k-2", operation="notes.create",
                    request={"body": "two"}, create=self.creator(database, created, "two"),
                )  # fmt: skip

        with pytest.raises(IdempotencyKeyReused):
            await second()
        assert len(created) == 1

    async def test_keys_belong_to_their_caller(self, database: Database) -> None:
        store = IdempotencyStore(IDEMPOTENCY)
        created: list[int] = []
        for actor in ("alice", "bob"):
            async with database.transaction() as session:
                outcome = await once(
                    session, store, actor=actor, key="shared", operation="notes.create",
                    request={"body": "x"}, create=self.creator(database, created, "x"),
                )  # fmt: skip
                assert not outcome.replayed
        assert len(created) == 2

    async def test_concurrent_duplicates_create_once_and_never_fail(
        self, database: Database
    ) -> None:
        """Ten transactions race on one key: the first creates, nine wait and replay."""
        store = IdempotencyStore(IDEMPOTENCY)
        created: list[int] = []

        async def attempt() -> Outcome:
            async with database.transaction() as session:

                async def create() -> Outcome:
                    created.append(1)
                    await asyncio.sleep(0.05)  # widen the race window
                    await session.execute(insert(NOTE).values(id=len(created), body="raced"))
                    return Outcome(201, {"id": len(created)})

                return await once(
                    session, store, actor="alice", key="race", operation="notes.create",
                    request={"body": "raced"}, create=create,
                )  # fmt: skip

        outcomes = await asyncio.gather(*(attempt() for _ in range(10)))
        assert len(created) == 1
        assert await notes(database) == ["raced"]
        assert sorted(o.replayed for o in outcomes) == [False] + [True] * 9
        assert {o.body["id"] for o in outcomes} == {1}

    async def test_a_failed_first_attempt_leaves_the_key_free(self, database: Database) -> None:
        store = IdempotencyStore(IDEMPOTENCY)

        async def failing() -> Outcome:
            raise RuntimeError

        async def first_attempt() -> None:
            async with database.transaction() as session:
                await once(
                    session, store, actor="alice", key="retry", operation="notes.create",
                    request={}, create=failing,
                )  # fmt: skip

        with pytest.raises(RuntimeError):
            await first_attempt()
        created: list[int] = []
        async with database.transaction() as session:
            outcome = await once(
                session, store, actor="alice", key="retry", operation="notes.create",
                request={}, create=self.creator(database, created, "second"),
            )  # fmt: skip
        assert not outcome.replayed
        assert created == [1]

    @pytest.mark.parametrize("key", ["", "x" * 201, "ключ", "tab\there"])
    async def test_a_malformed_header_is_422(self, key: str) -> None:
        router = APIRouter()

        @router.post("/things")
        async def make(idempotency_key: IdempotencyKey) -> dict[str, Any]:
            return {"key": idempotency_key}

        app = create_service_app(title="keys", settings=ServiceSettings(), routers=[router])
        async with running_app(app) as client:
            ok = await client.post("/things", headers={"Idempotency-Key": "abc-123"})
            assert ok.json() == {"key": "abc-123"}
            response = await client.post(
                "/things", headers={"Idempotency-Key": key.encode("utf-8")}
            )
        assert response.status_code == 422
        body = response.json()
        assert body["code"] == "invalid_idempotency_key"
        assert body["errors"][0]["field"] == "Idempotency-Key"
