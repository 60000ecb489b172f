"""Pytest plugin: real PostgreSQL and Kafka-protocol broker for integration tests.

Servers are the embedded ones ``make run`` uses, started once per test session in a temporary
directory on free ports; set ``PANJEREH_TEST_DATABASE_URL`` (a server URL, e.g.
``postgresql://user:pw@host:5432``) or ``PANJEREH_TEST_KAFKA_BOOTSTRAP_SERVERS`` to use
external ones instead. Each call of ``migrated_database`` gets a fresh database built by the
service's own Alembic migrations, never ``create_all``.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from panjereh.common.db import Database
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
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    external = os.environ.get("PANJEREH_TEST_DATABASE_URL")
    if external:
        base = external.rstrip("/").replace("postgresql+asyncpg://", "postgresql://", 1)
        yield PostgresServer(
            f"{base}/postgres",
            lambda name: f"{base.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}",
        )
        return
    from panjereh.devstack.embedded import EmbeddedPostgres  # noqa: PLC0415

    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data")
    server.start()
    try:
        yield PostgresServer(server.url("postgres", driver="postgresql"), server.url)
    finally:
        server.stop()


@pytest.fixture(scope="session")
async def migrated_database(postgres_server: PostgresServer) -> MigratedDatabase:
    """A factory: ``await migrated_database("panjereh.catalog")`` → URL of a fresh, migrated DB."""
    from panjereh.devstack.embedded import ensure_databases  # noqa: PLC0415

    async def create(package: str) -> str:
        name = f"test_{package.rsplit('.', 1)[-1]}_{secrets.token_hex(4)}"
        await ensure_databases(postgres_server.admin_url, [name])
        url = postgres_server.url(name)
        await asyncio.to_thread(upgrade, package, url)
        return url

    return create


@pytest.fixture(scope="session")
def kafka_bootstrap_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("PANJEREH_TEST_KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    from panjereh.devstack.embedded import EmbeddedKafka, free_port  # noqa: PLC0415

    log_path: Path = tmp_path_factory.mktemp("kafka") / "broker.log"
    broker = EmbeddedKafka(free_port(), log_path=log_path)
    broker.start()
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


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
    token_factory,
    token_signing_key,
)

__all__ = [
    "MigratedDatabase",
    "PostgresServer",
    "jwks_server",
    "jwks_url",
    "kafka_bootstrap_servers",
    "migrated_database",
    "postgres_server",
    "running_app",
    "token_factory",
    "token_signing_key",
]
