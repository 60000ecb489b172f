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

A hot path whose unit of work is a few Core statements (the outbox relay's claim and mark, one
statement committed by itself, a broker answer) takes :meth:`Database.direct`: the same unit
of work, sent by the database driver itself on a pooled connection, without the ORM session.
Each statement is compiled by SQLAlchemy once (:class:`DriverStatement`); what the session
adds around it (its state machine, a greenlet switch per call, the execution context, the
result's wrapping) costs about as much client CPU again as the driver's own work, and on these
paths it bought nothing.
"""

from __future__ import annotations

import contextvars
import functools
import re
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol, cast

import asyncpg
from sqlalchemy import MetaData, event, func, select, text
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert, Update
from sqlalchemy.sql.elements import ClauseElement

from panjereh.common.errors import database_unavailable
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


def after_commit(unit: AsyncSession | DirectUnit, callback: AfterCommit) -> None:
    """Run ``callback`` once ``unit`` (a session's unit of work, or a
    :class:`DirectUnit`) has committed (never on rollback).

    For waking a worker whose work the transaction just queued (an SMS, an outbox row): the
    worker then sees the committed rows at once instead of at its next poll.
    """
    if isinstance(unit, DirectUnit):
        unit.after_commit(callback)
    else:
        unit.info.setdefault(_AFTER_COMMIT, []).append(callback)


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


class RowByName(Protocol):
    """A row of :meth:`Database.direct` or :meth:`Database.statement`, read by column name:
    ``row["id"]`` (the driver's record, or a mapping where a type converts values)."""

    def __getitem__(self, key: str, /) -> Any: ...


#: when a parameter was not given and its bind has no value: SQLAlchemy's own marker
_MISSING = object()


class DriverStatement:
    """A Core statement compiled once by SQLAlchemy into what the driver sends: its SQL with
    ``$n`` placeholders, its parameters in that order (with their values bound in the
    statement, and the types' conversions), and the conversions of its result columns.

    Only what compiles to one fixed SQL text qualifies: a statement with expanding
    parameters (``IN`` lists rendered per call), or an ``INSERT``/``UPDATE`` whose columns
    take Python-side defaults (computed per execution by SQLAlchemy), is refused with
    ``TypeError`` at its first use; write it with an array parameter or explicit values.
    An ``INSERT`` without ``values()`` is compiled for the parameter names it is given, as
    SQLAlchemy compiles it.
    """

    __slots__ = ("columns", "converters", "parameters", "sql")

    def __init__(
        self, statement: Executable, dialect: Dialect, column_keys: Sequence[str] | None
    ) -> None:
        if not isinstance(statement, ClauseElement):
            msg = f"not a Core statement: {statement!r}"
            raise TypeError(msg)
        compiled = statement.compile(dialect=dialect, column_keys=column_keys)
        if not isinstance(compiled, SQLCompiler):
            msg = f"not a SQL statement: {statement!r}"
            raise TypeError(msg)
        if compiled.post_compile_params or compiled.literal_execute_params:
            msg = (
                "a statement with expanding parameters (an IN list) cannot be sent as is; "
                f"compare with any_() of an array instead: {compiled}"
            )
            raise TypeError(msg)
        if getattr(compiled, "insert_prefetch", ()) or getattr(compiled, "update_prefetch", ()):
            msg = (
                f"a statement whose columns take Python-side defaults needs them given: {compiled}"
            )
            raise TypeError(msg)
        binds = {name: bind for bind, name in compiled.bind_names.items()}
        parameters: list[tuple[str, Any, Callable[[Any], Any] | None]] = []
        for name in compiled.positiontup or ():
            bind = binds[name]
            if bind.callable is not None:
                msg = f"a parameter computed per execution ({name}) cannot be sent as is"
                raise TypeError(msg)
            default = _MISSING if bind.required else bind.value
            convert = bind.type.dialect_impl(dialect).bind_processor(dialect)
            parameters.append((bind.key, default, convert))
        self.sql: str = compiled.string
        self.parameters = tuple(parameters)
        columns = list(getattr(statement, "exported_columns", ()))
        self.columns = tuple(column.key for column in columns)
        converters = [
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
        ]
        #: positions whose values a type converts (JSON and UUIDs come from the driver's codecs)
        self.converters = tuple(
            (position, convert) for position, convert in enumerate(converters) if convert
        )

    def arguments(self, values: Mapping[str, Any] | None) -> list[Any]:
        """The driver's positional arguments for ``values`` (parameter name → value)."""
        given = values or {}
        arguments = []
        for name, default, convert in self.parameters:
            value = given.get(name, default)
            if value is _MISSING:
                msg = f"parameter {name!r} is required by: {self.sql.split(None, 1)[0]} ..."
                raise KeyError(msg)
            arguments.append(convert(value) if convert is not None else value)
        return arguments

    def row(self, record: Any) -> RowByName:
        """``record`` as read by column name, its values converted where a type says so."""
        if not self.converters:
            return record  # type: ignore[no-any-return]
        values = dict(record.items())
        keys = list(values)
        for position, convert in self.converters:
            values[keys[position]] = convert(values[keys[position]])
        return values


_COMPILED: weakref.WeakKeyDictionary[Executable, dict[tuple[str, ...] | None, DriverStatement]] = (
    weakref.WeakKeyDictionary()
)


def driver_statement(
    statement: Executable, dialect: Dialect, values: Mapping[str, Any] | None = None
) -> DriverStatement:
    """``statement`` compiled for the driver, once per statement; an ``INSERT`` or
    ``UPDATE`` once per set of parameter names, as SQLAlchemy compiles them (its columns may
    come from the parameters)."""
    by_keys = _COMPILED.get(statement)
    if by_keys is None:
        by_keys = _COMPILED[statement] = {}
    keys = tuple(sorted(values)) if values and isinstance(statement, Insert | Update) else None
    compiled = by_keys.get(keys)
    if compiled is None:
        compiled = by_keys[keys] = DriverStatement(statement, dialect, keys)
    return compiled


class DirectUnit:
    """A unit of work of :meth:`Database.direct`: statements sent by the driver on one pooled
    connection, in one transaction begun at the first statement.

    Rows are read by column name (``row["id"]``). Errors are the driver's (``asyncpg``'s):
    a broken connection or a server going away is what
    :func:`panjereh.common.errors.database_unavailable` recognises, as for any unit of work.
    :attr:`info` is what a session's ``info`` is to a session: what the service bound to its
    units of work (its outbox table, the relay's wake-up; see
    :func:`panjereh.common.messaging.outbox.bind`).

    :meth:`of` sends statements the same way inside a session's unit of work: for code shared
    by a hot unit of its own and a unit that also needs the ORM.

    A statement sent with ``alone=True`` before the unit has begun its transaction is sent
    without one: it commits by itself, and costs neither ``BEGIN`` nor ``COMMIT``. For a read
    that takes no lock (under READ COMMITTED each statement of a transaction sees its own
    snapshot anyway), and for a write that is atomic by itself and that nothing the unit
    writes later must commit with. A unit whose statements all went alone is done: no
    ``COMMIT`` follows, and its after-commit callbacks run even if an error ends the block
    after them (what went alone is committed). Once the unit has begun, ``alone`` changes
    nothing; in a session's unit of work (:meth:`of`) neither.
    """

    __slots__ = (
        "_alone",
        "_begun",
        "_callbacks",
        "_connection",
        "_dialect",
        "_failure",
        "_session",
        "_through_session",
        "engine",
        "info",
    )

    def __init__(
        self,
        engine: Engine,
        connection: Any = None,
        *,
        info: dict[str, Any] | None = None,
        session: AsyncSession | None = None,
        through_session: bool = False,
    ) -> None:
        #: the database this unit works on (as SQLAlchemy's engine names it)
        self.engine = engine
        self._dialect = engine.dialect
        self._connection = connection
        self._session = session
        #: every statement through SQLAlchemy (a test's joined connection, shared by tasks)
        self._through_session = through_session
        self._begun = False
        #: a statement sent alone has committed (see the class docstring)
        self._alone = False
        #: the error of a round trip that may have left the connection unusable
        self._failure: BaseException | None = None
        self._callbacks: list[AfterCommit] = []
        self.info: dict[str, Any] = {} if info is None else info

    @classmethod
    def of(cls, session: AsyncSession) -> DirectUnit:
        """Statements sent by the driver in ``session``'s unit of work (its transaction, its
        connection, its after-commit callbacks and ``info``).

        Changes the session holds unflushed are flushed before each statement, as the
        session's autoflush would. Until the session has begun its transaction on the
        server, a statement goes through the session (which sends ``BEGIN`` with it).
        """
        unit = session.info.get(_DIRECT_UNIT)
        if unit is None:
            bind = session.bind
            if bind is None:
                msg = "the session is bound to no engine or connection"
                raise TypeError(msg)
            unit = cls(
                session.sync_session.get_bind().engine,
                session=session,
                info=session.info,
                # a session joined to a test's connection shares it with other tasks: the
                # session serialises their statements, the driver would refuse them
                through_session=isinstance(bind, AsyncConnection),
            )
            session.info[_DIRECT_UNIT] = unit
        return cast("DirectUnit", unit)

    async def fetch(
        self,
        statement: Executable,
        values: Mapping[str, Any] | None = None,
        *,
        alone: bool = False,
    ) -> list[RowByName]:
        """Every row ``statement`` returns (``alone``: see the class docstring)."""
        prepared = driver_statement(statement, self._dialect, values)
        arguments = prepared.arguments(values)
        if self._session is not None:
            if self._session.new or self._session.dirty or self._session.deleted:
                await self._session.flush()
            if self._connection is None or not self._connection.is_in_transaction():
                # not begun on the server yet (or a later transaction of the same session):
                # through the session, which sends BEGIN first
                connection = await self._session.connection()
                if not self._through_session:
                    raw = await connection.get_raw_connection()
                    self._connection = raw.driver_connection
                result = await connection.exec_driver_sql(prepared.sql, tuple(arguments))
                if not result.returns_rows:
                    return []
                return [prepared.row(row._mapping) for row in result]
            return [
                prepared.row(record)
                for record in await self._connection.fetch(prepared.sql, *arguments)
            ]
        sent_alone = alone and not self._begun
        try:
            if not self._begun and not alone:
                await self._connection.execute("BEGIN")
                self._begun = True
            records = await self._connection.fetch(prepared.sql, *arguments)
        except BaseException as exc:
            if self._failure is None and not _connection_survives(exc):
                self._failure = exc
            raise
        if sent_alone:
            self._alone = True
        return [prepared.row(record) for record in records]

    async def fetchrow(
        self,
        statement: Executable,
        values: Mapping[str, Any] | None = None,
        *,
        alone: bool = False,
    ) -> RowByName | None:
        """The first row ``statement`` returns, if any (``alone``: see the class docstring)."""
        rows = await self.fetch(statement, values, alone=alone)
        return rows[0] if rows else None

    @property
    def in_transaction(self) -> bool:
        """Whether this unit's next statement runs in a transaction that is still open (a
        session's unit of work always: it begins one with its first statement)."""
        return self._session is not None or self._begun

    def after_commit(self, callback: AfterCommit) -> None:
        """Run ``callback`` once this unit has committed (never on rollback)."""
        if self._session is not None:
            after_commit(self._session, callback)
        else:
            self._callbacks.append(callback)

    async def _end(self, *, commit: bool) -> None:
        if self._begun:
            self._begun = False
            await self._connection.execute("COMMIT" if commit else "ROLLBACK")


#: ``session.info`` key of the session's :class:`DirectUnit` (:meth:`DirectUnit.of`)
_DIRECT_UNIT = "panjereh.direct_unit"

#: A unit of work as service code receives it: a session, or statements sent by the driver.
Unit = AsyncSession | DirectUnit


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
            if committed:  # a KeepChanges error propagates after them
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

    @asynccontextmanager
    async def direct(self) -> AsyncIterator[DirectUnit]:
        """A unit of work of Core statements sent by the driver (:class:`DirectUnit`).

        The same boundary as :meth:`transaction`: commits when the block ends normally, rolls
        back on any error, commits first for a :class:`KeepChanges` error, runs its
        :meth:`~DirectUnit.after_commit` callbacks after the commit, and counts for
        :func:`in_transaction`. ``BEGIN`` goes with the first statement; a block that sends
        none costs no round trip. A connection that failed mid-unit is closed, never handed
        out again. Joined to a test's transaction (:meth:`joined_to`), the unit is a savepoint
        of it, sent through SQLAlchemy like every other unit of that test.
        """
        depth = _open_transactions.get()
        token = _open_transactions.set(depth + 1)
        engine = self.engine.sync_engine
        committed = False
        try:
            if self._single is None:
                async with self.transaction() as session:
                    yield DirectUnit(
                        engine, session=session, info=session.info, through_session=True
                    )
                return
            raw = await self.engine.raw_connection()
            unit = DirectUnit(
                engine, connection=raw.driver_connection, info=dict(self._unit_info())
            )
            failure: BaseException | None = None
            try:
                try:
                    yield unit
                except BaseException as exc:
                    keep = isinstance(exc, KeepChanges)
                    try:
                        await unit._end(commit=keep)
                    except BaseException as ending:
                        failure = ending
                        committed = unit._alone
                        if keep:
                            raise  # the changes were not kept after all: that is the outcome
                        # the rollback failed too (a lost connection): the error that ended
                        # the unit is the one to report
                    else:
                        # what went alone committed whatever ended the block
                        committed = keep or unit._alone
                    raise
                try:
                    await unit._end(commit=True)
                except BaseException as ending:
                    failure = ending
                    committed = unit._alone
                    raise
                committed = True
            finally:
                failure = unit._failure or failure
                if failure is not None:
                    # a statement, or its end, failed in a way that may leave the connection
                    # broken or mid-protocol: the pool never hands it out again
                    self._discard(raw, failure)
                raw.close()
        finally:
            _restore(token, depth)
            if committed:  # a KeepChanges error propagates after them
                await _run_after_commit(unit._callbacks)

    def _discard(self, raw: PoolProxiedConnection, failure: BaseException) -> None:
        """Close ``raw`` for good after ``failure``; after a lost connection, also every
        connection the pool opened before now, at its next checkout.

        The second is what SQLAlchemy does when a statement of a session meets a lost
        connection (its pool's own invalidation, called the same way): after a restart or a
        failover the pool's other connections are gone too, and each would otherwise fail
        the request that draws it before the pool learns of it.
        """
        if database_unavailable(failure):
            self.engine.sync_engine.pool._invalidate(raw, failure)
        if raw.is_valid:
            raw.invalidate(failure)

    def _unit_info(self) -> dict[str, Any]:
        """What the service bound to its sessions' ``info`` (copied into each direct unit)."""
        info: dict[str, Any] = self.sessions.kw.get("info") or {}
        return info

    async def statement(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> RowByName | None:
        """A unit of work that is one statement, sent without ``BEGIN`` and ``COMMIT``.

        One ``INSERT``, ``UPDATE`` or data-modifying ``WITH`` is atomic by itself: in
        autocommit PostgreSQL commits it before it answers, all of it or nothing. In a
        transaction it would cost two more round trips, and each row it locks would stay
        locked until the client has read the answer and sent ``COMMIT``: on a busy event loop
        that wait is longer than the statement. Several statements that must commit together
        stay in :meth:`transaction`. Sent by the driver as :meth:`direct` sends statements;
        returns the first row, if the statement returns rows.
        """
        if self._single is None:
            async with self.direct() as unit:
                return await unit.fetchrow(statement, parameters)
        depth = _open_transactions.get()
        token = _open_transactions.set(depth + 1)
        try:
            prepared = driver_statement(statement, self.engine.dialect, parameters)
            arguments = prepared.arguments(parameters)
            raw = await self.engine.raw_connection()
            try:
                driver: Any = raw.driver_connection
                record = await driver.fetchrow(prepared.sql, *arguments)
            except BaseException as exc:
                if not _connection_survives(exc):
                    self._discard(raw, exc)
                raise
            finally:
                raw.close()
        finally:
            _restore(token, depth)
        return None if record is None else prepared.row(record)

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


#: errors the server reports about a connection rather than a statement (SQLSTATE classes 08
#: and 57P0x): the connection is gone or going
_CONNECTION_ERRORS = (
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
)


def _connection_survives(exc: BaseException) -> bool:
    """Whether a connection whose statement raised ``exc`` may go back to the pool: only
    after an error the server reported about the statement (the protocol is in step, and
    the failed statement's transaction is over), never after a lost connection, a timeout
    or a cancellation in the middle of a round trip."""
    return isinstance(exc, asyncpg.PostgresError) and not isinstance(exc, _CONNECTION_ERRORS)


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
