"""Database plumbing: engine, sessions, and the transaction boundary.

Service code receives an :class:`~sqlalchemy.ext.asyncio.AsyncSession` and only ``add``s and
``flush``es; the boundary that opened the session (a request dependency, a consumer's unit of
work) commits or rolls back. That is what makes "change state + write the outbox row" atomic.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from panjereh.common.telemetry import instrument_engine

#: Constraint names derived from a convention so migrations are stable and reviewable.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def service_metadata(schema: str) -> MetaData:
    """Metadata for one service: its own PostgreSQL schema and the naming convention."""
    return MetaData(schema=schema, naming_convention=NAMING_CONVENTION)


class Database:
    """Owns one engine and its session factory; created in a lifespan, disposed at shutdown."""

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.engine: AsyncEngine = create_async_engine(
            url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, echo=echo
        )
        instrument_engine(self.engine)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

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
        return database

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A unit of work: commits when the block ends normally, rolls back on any error."""
        async with self.sessions() as session, session.begin():
            yield session

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
