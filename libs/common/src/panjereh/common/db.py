"""Database plumbing: engine, sessions, and the one transaction boundary.

Service code receives an :class:`~sqlalchemy.ext.asyncio.AsyncSession` and only ``add``s and
``flush``es; the boundary that opened the session (:meth:`Database.transaction`, used by the
request dependency, the consumers' and workers' units of work) commits or rolls back. That is
what makes "change state + write the outbox row" atomic.

Two rules of the boundary:

* **Errors roll back, unless they keep changes.** An error class that also derives from
  :class:`KeepChanges` is a refusal whose own record is a fact (an audit entry of a denied
  inquiry, a counted wrong OTP try): the unit of work commits, then the error propagates.
* **No network while a transaction is open.** :func:`in_transaction` says whether the current
  task holds one; the kernel's HTTP client (:mod:`panjereh.common.http`) refuses to send
  while it does. Claim → call outside → record: never call out while holding locks.

A read that changes nothing and needs no snapshot shared between statements (one ``SELECT``,
or several whose answers need not agree with each other) takes :meth:`Database.reading`
instead: its statements run without ``BEGIN`` and ``COMMIT``, two round trips fewer, and it
refuses anything but a plain read.
"""

from __future__ import annotations

import contextvars
import functools
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import MetaData, Row, event, func, select, text
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.sql.base import Executable

from panjereh.common.metrics import POOLS
from panjereh.common.telemetry import instrument_engine

#: Constraint names derived from a convention so migrations are stable and reviewable.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: How many units of work the current task has open (0 outside any).
_open_transactions: contextvars.ContextVar[int] = contextvars.ContextVar(
    "panjereh_open_transactions", default=0
)
_AFTER_COMMIT = "panjereh.after_commit"
#: True inside :meth:`Database.reading` (read by the guard of a test's joined database only)
_reading: contextvars.ContextVar[bool] = contextvars.ContextVar("panjereh_reading", default=False)

AfterCommit = Callable[[], Awaitable[None] | None]


class KeepChanges:
    """Mix into an error class whose unit of work must commit before the error propagates.

    ``class InquiryNotPermitted(Forbidden, KeepChanges)``: the denial's audit entry is kept
    and the caller still gets the 403. Explicit in the type, so a reader sees it where the
    error is declared.
    """


def in_transaction() -> bool:
    """True while the current task is inside a unit of work of :meth:`Database.transaction`."""
    return _open_transactions.get() > 0


def after_commit(session: AsyncSession, callback: AfterCommit) -> None:
    """Run ``callback`` once ``session``'s unit of work has committed (never on rollback).

    For waking a worker whose work the transaction just queued (an SMS, an outbox row): the
    worker then sees the committed rows at once instead of at its next poll.
    """
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)


class WriteInReadingUnit(RuntimeError):
    """A statement that is not a plain read was sent in a :meth:`Database.reading` unit.

    A programming error: the statement belongs in :meth:`Database.transaction`, where it is
    committed or rolled back with the rest of its unit of work.
    """


#: what a plain read starts with, and what no plain read contains (as a whole word): a
#: data-modifying statement or CTE, a row lock, an advisory lock, a sequence step, a notice
_READ_START = re.compile(r"\s*(SELECT|WITH|VALUES|TABLE|SHOW)\b", re.IGNORECASE)
_NOT_A_READ = re.compile(
    r"\b(INSERT|UPDATE|DELETE|MERGE|TRUNCATE|FOR\s+(NO\s+KEY\s+)?UPDATE|FOR\s+(KEY\s+)?SHARE"
    r"|pg_advisory\w*|nextval|setval|pg_notify|set_config)\b",
    re.IGNORECASE,
)


@functools.lru_cache(maxsize=1024)
def _is_plain_read(statement: str) -> bool:
    # statements come from SQLAlchemy's compiled cache: the same few strings again and again
    return bool(_READ_START.match(statement)) and not _NOT_A_READ.search(statement)


def _refuse_writes(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
    if not _is_plain_read(statement):
        raise WriteInReadingUnit(
            "only plain reads run in Database.reading(); this statement needs "
            f"Database.transaction(): {statement.split(None, 1)[0]} ..."
        )


_SAVEPOINT = re.compile(r"\s*(SAVEPOINT|RELEASE SAVEPOINT|ROLLBACK TO SAVEPOINT)\b", re.I)


def _guard_reading_unit(connection: Any, cursor: Any, statement: str, *_: Any) -> None:
    """The guard of :func:`_refuse_writes` on a test's connection shared by every unit."""
    if _reading.get() and not _SAVEPOINT.match(statement):
        _refuse_writes(connection, cursor, statement)


def service_metadata(schema: str) -> MetaData:
    """Metadata for one service: its own PostgreSQL schema and the naming convention."""
    return MetaData(schema=schema, naming_convention=NAMING_CONVENTION)


#: A pooled connection older than this is closed and replaced at its next checkout: the pool
#: never hands out one that a firewall, a proxy or the server may have dropped while idle.
POOL_RECYCLE_SECONDS = 300


def _connections_kept(pool_size: int) -> int:
    """How many connections a pool of ``pool_size`` holds at most (the pool and what used to
    be its overflow: the connection budgets in docs/capacity.md count both)."""
    return 2 * pool_size


class Database:
    """Owns one engine and its session factory; created in a lifespan, disposed at shutdown.

    Connections are not pinged at checkout (asyncpg's ping is a transaction of its own, one
    more round trip for every unit of work). A connection the server dropped (a restart, a
    failover) fails the first statement sent on it; SQLAlchemy then sees the disconnect and
    invalidates the whole pool, so every other connection of that moment is replaced at its
    next checkout, and the request that met it is answered 503 ``database_unavailable`` with
    ``Retry-After`` (:mod:`panjereh.common.errors`); workers retry after their backoff.
    ``trace_statements`` adds a span per SQL statement (off unless a setting asks for it).
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        echo: bool = False,
        trace_statements: bool = False,
    ) -> None:
        self.engine: AsyncEngine = create_async_engine(
            url,
            # Up to twice ``pool_size`` connections, and every one opened stays open (until
            # POOL_RECYCLE_SECONDS): an overflow connection closed at check-in is opened again
            # at the next burst, and a new connection costs PostgreSQL more than a login's
            # statements (a backend process, its catalog caches, asyncpg's type introspection,
            # every statement prepared and planned again).
            pool_size=_connections_kept(pool_size),
            max_overflow=0,
            # the connection returned last is handed out first: at low concurrency a few warm
            # connections (statements prepared, generic plans chosen) do all the work
            pool_use_lifo=True,
            pool_pre_ping=False,
            pool_recycle=POOL_RECYCLE_SECONDS,
            echo=echo,
            # bound values (national codes, mobiles) never appear in error messages and so
            # never in the logs that quote them
            hide_parameters=True,
        )
        if trace_statements:
            instrument_engine(self.engine)
        POOLS.watch(self.engine)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # the same pool, its connections switched to autocommit while they are checked out
        # for a read (asyncpg then sends no BEGIN; the switch itself is no round trip)
        reads = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        event.listen(reads.sync_engine, "before_cursor_execute", _refuse_writes)
        self._reads = async_sessionmaker(reads, expire_on_commit=False, autoflush=False)
        self._single: AsyncEngine | None = self.engine.execution_options(
            isolation_level="AUTOCOMMIT"
        )

    @classmethod
    def joined_to(cls, connection: AsyncConnection) -> Database:
        """A Database whose units of work run as savepoints inside ``connection``'s transaction.

        For tests: everything the code under test commits is undone when the test rolls the
        outer transaction back, and the code still sees its own commits meanwhile.
        """
        database = cls.__new__(cls)
        database.engine = connection.engine
        database.sessions = async_sessionmaker(
            bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
        )
        # reads see what the test's transaction holds; the guard against writes stays
        event.listen(connection.sync_connection, "before_cursor_execute", _guard_reading_unit)
        database._reads = database.sessions
        # one statement is a savepoint of the test's transaction like any unit of work
        database._single = None
        return database

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A unit of work: commits when the block ends normally, rolls back on any error.

        An error that is a :class:`KeepChanges` commits first, then propagates. Callbacks
        registered with :func:`after_commit` run after a successful commit.
        """
        depth = _open_transactions.get()
        token = _open_transactions.set(depth + 1)
        committed = False
        try:
            async with self.sessions() as session:
                try:
                    yield session
                except BaseException as exc:
                    if isinstance(exc, KeepChanges):
                        await session.commit()
                        committed = True
                    else:
                        await session.rollback()
                    raise
                else:
                    await session.commit()
                    committed = True
                finally:
                    callbacks: list[AfterCommit] = session.info.pop(_AFTER_COMMIT, [])
        finally:
            _restore(token, depth)
        if committed:
            await _run_after_commit(callbacks)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A read-only unit: its statements run without ``BEGIN``/``COMMIT``, each on its own.

        Under READ COMMITTED a transaction gives reads nothing but one snapshot per statement,
        which autocommit gives too; what it costs is two round trips. Use it for a read whose
        statements need not see one snapshot together. Anything but a plain read (a write, a
        row or advisory lock, a sequence step, a flush of ORM changes) raises
        :class:`WriteInReadingUnit` before it reaches the server. It counts as a unit of work
        for :func:`in_transaction`: it holds a pooled connection, so no network call inside.
        """
        depth = _open_transactions.get()
        token = _open_transactions.set(depth + 1)
        reading = _reading.set(True)
        try:
            async with self._reads() as session:
                yield session
        finally:
            try:
                _reading.reset(reading)
            except ValueError:
                _reading.set(False)
            _restore(token, depth)

    async def statement(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> Row[Any] | None:
        """A unit of work that is one statement, sent without ``BEGIN`` and ``COMMIT``.

        One ``INSERT``, ``UPDATE`` or data-modifying ``WITH`` is atomic by itself: in
        autocommit PostgreSQL commits it before it answers, all of it or nothing. In a
        transaction it would cost two more round trips, and each row it locks would stay
        locked until the client has read the answer and sent ``COMMIT``: on a busy event loop
        that wait is longer than the statement. Several statements that must commit together
        stay in :meth:`transaction`. Returns the first row, if the statement returns rows.
        """
        if self._single is None:
            async with self.transaction() as session:
                joined = await session.connection()
                result = await joined.execute(statement, parameters)
                return result.first() if result.returns_rows else None
        async with self._single.connect() as connection:
            result = await connection.execute(statement, parameters)
            return result.first() if result.returns_rows else None

    async def flush_wal(self) -> None:
        """Return once every transaction committed so far (by this process or any other) is
        durable, as a commit with ``synchronous_commit`` on would be.

        For a unit of work that committed with ``synchronous_commit`` off, before anything
        that must not be lost is told it was accepted: one statement, a transaction of its
        own that writes a WAL record (a transactional logical message, read by no one) and
        commits with ``synchronous_commit`` on. WAL is flushed in order, so that commit, and
        the standbys' confirmation where synchronous replication is configured, covers every
        earlier commit. A later synchronous commit of any unit of work does the same.
        """
        await self.statement(_FLUSH_WAL)

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


#: :meth:`Database.flush_wal`'s statement (``synchronous_commit`` on for its transaction,
#: whatever the role's or database's default)
_FLUSH_WAL = select(
    func.set_config("synchronous_commit", "on", True),
    func.pg_logical_emit_message(True, "panjereh.flush_wal", ""),
)


def _restore(token: contextvars.Token[int], depth: int) -> None:
    try:
        _open_transactions.reset(token)
    except ValueError:
        # the block was left in another context than it was entered in (a dependency torn
        # down by the framework elsewhere): restore the count rather than the token
        _open_transactions.set(depth)


async def _run_after_commit(callbacks: Sequence[AfterCommit]) -> None:
    for callback in callbacks:
        outcome: Any = callback()
        if outcome is not None:
            await outcome


async def ensure_databases(admin_url: str, names: Sequence[str]) -> None:
    """Create each database in ``names`` that does not exist yet (``admin_url`` is libpq-style).

    Used by the local stack and the test plugin; names come from the platform's own code.
    """
    connection = await asyncpg.connect(admin_url)
    try:
        existing = {
            row["datname"] for row in await connection.fetch("SELECT datname FROM pg_database")
        }
        for name in names:
            if name not in existing:
                # identifiers cannot be bound as parameters
                await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
