"""Pytest plugin: migrated databases, rolled-back units of work, in-process apps, tokens.

Domain-free and server-agnostic: ``migrated_database`` builds a fresh database with a
service's own Alembic migrations (never ``create_all``) on the server the ``postgres_server``
fixture provides. The platform's plugin (``panjereh.devstack.pytest_plugin``) provides that
fixture (the embedded server ``make run`` uses, or ``PANJEREH_TEST_DATABASE_URL``), the broker
and the platform-aware ``token_factory``.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import httpx
import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from panjereh.common.db import Database, ensure_databases
from panjereh.common.migrations import upgrade

if TYPE_CHECKING:
    from fastapi import FastAPI

MigratedDatabase = Callable[[str], Awaitable[str]]


class PostgresServer:
    """Where test databases are created: ``url(name)`` is an asyncpg URL for database ``name``."""

    def __init__(self, admin_url: str, url_for: Callable[[str], str]) -> None:
        self.admin_url = admin_url
        self.url = url_for


@pytest.fixture(scope="session")
async def migrated_database(postgres_server: PostgresServer) -> MigratedDatabase:
    """A factory: ``await migrated_database("panjereh.catalog")`` → URL of a fresh, migrated DB."""

    async def create(package: str) -> str:
        name = f"test_{package.rsplit('.', 1)[-1]}_{secrets.token_hex(4)}"
        await ensure_databases(postgres_server.admin_url, [name])
        url = postgres_server.url(name)
        await asyncio.to_thread(upgrade, package, url)
        return url

    return create


@asynccontextmanager
async def rolled_back(database_url: str) -> AsyncIterator[Database]:
    """A :class:`Database` inside one transaction that is rolled back at the end.

    Code under test opens units of work as usual (they become savepoints); nothing it writes
    outlives the block, so tests sharing one migrated database never see each other's rows.
    """
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            outer = await connection.begin()
            try:
                yield Database.joined_to(connection)
            finally:
                await outer.rollback()
    finally:
        await engine.dispose()


@asynccontextmanager
async def running_app(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app``'s lifespan and give an ASGI client talking to it in-process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


# Token fixtures live with their helpers; importing them here registers them with pytest.
from panjereh.common.testing.tokens import (  # noqa: E402
    jwks_server,
    jwks_url,
    token_signing_key,
)

__all__ = [
    "MigratedDatabase",
    "PostgresServer",
    "jwks_server",
    "jwks_url",
    "migrated_database",
    "rolled_back",
    "running_app",
    "token_signing_key",
]
