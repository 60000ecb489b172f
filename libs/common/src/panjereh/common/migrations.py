"""Alembic helpers shared by every service's migration environment.

Each service keeps its migrations inside its package (``panjereh.<service>:migrations``) so
they ship with the wheel and run as a separate command in containers:
``python -m panjereh.<service>.migrate``. Every service's tables, and its Alembic version table,
live in the service's own PostgreSQL schema, so services stay apart even on one database.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

logger = logging.getLogger(__name__)

VERSION_TABLE = "alembic_version"


def alembic_config(package: str, database_url: str) -> Config:
    """Config for ``package``'s migrations (``package:migrations``) against ``database_url``."""
    config = Config()
    config.set_main_option("script_location", f"{package}:migrations")
    # ConfigParser interpolation would choke on '%' in URL-encoded passwords
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(package: str, database_url: str, revision: str = "head") -> None:
    """Bring ``package``'s schema to ``revision``; blocking, call from a thread in async code."""
    command.upgrade(alembic_config(package, database_url), revision)


def main(package: str, database_url: str) -> None:
    """Entry point of ``python -m <package>.migrate [revision]``."""
    revision = sys.argv[1] if len(sys.argv) > 1 else "head"
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    upgrade(package, database_url, revision)


def downgrade(package: str, database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(package, database_url), revision)


def run_env(target_metadata: MetaData) -> None:
    """Body of a service's ``env.py``: migrate online, in the metadata's schema."""
    schema = target_metadata.schema
    if schema is None:
        msg = "service metadata must name its schema"
        raise ValueError(msg)
    url = context.config.get_main_option("sqlalchemy.url")
    if url is None:
        msg = "sqlalchemy.url is not configured"
        raise ValueError(msg)
    if context.is_offline_mode():
        context.configure(
            url=url,
            target_metadata=target_metadata,
            version_table_schema=schema,
            version_table=VERSION_TABLE,
            literal_binds=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(_run_online(url, target_metadata, schema))


async def _run_online(url: str, target_metadata: MetaData, schema: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync, target_metadata, schema)
            await connection.commit()
    finally:
        await engine.dispose()


def _run_sync(connection: Connection, target_metadata: MetaData, schema: str) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table_schema=schema,
        version_table=VERSION_TABLE,
        include_schemas=False,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
