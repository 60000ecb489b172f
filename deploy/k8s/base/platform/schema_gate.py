"""Hold a service's pod until its database schema is what the pod's image was built for.

``python schema_gate.py <package> <database-url-variable>`` runs as the first (init) container of
every service pod, from the service's own image and with the service's own credentials. It
reads the service's Alembic version table and exits 0 once the schema is at the image's head
(or at a revision this image does not know: a newer release migrated it, and migrations are
additive first, so this older image keeps working). Until then it says why, waits and reads
again; after ``PANJEREH_SCHEMA_GATE_TIMEOUT`` seconds (default 900) it exits 1 and the kubelet
starts it again. The migration Job itself runs before the Deployments (Argo CD sync waves);
this gate makes the ordering hold for any way of applying the manifests, and for pods that
start later (scale-out, node loss) while a migration runs.

It only reads: it never migrates (concurrent pods would race, and the services' login roles
may not own the schema).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from panjereh.common.migrations import VERSION_TABLE, alembic_config

logger = logging.getLogger("panjereh.schema_gate")

RETRY_SECONDS = 5.0
DEFAULT_TIMEOUT_SECONDS = 900.0


@dataclass(frozen=True)
class Plan:
    """What one service's pod waits for."""

    package: str
    schema: str
    database_url: str
    #: the revisions this image's migrations end at
    heads: frozenset[str]
    #: every revision this image's migrations know
    known: frozenset[str]


def plan(argv: Sequence[str], environ: Mapping[str, str]) -> Plan:
    """The plan from the command line and the environment (nothing is connected to)."""
    if len(argv) != 2:
        msg = "usage: schema_gate.py <package> <database-url-variable>"
        raise SystemExit(msg)
    package, variable = argv
    database_url = environ.get(variable)
    if not database_url:
        msg = f"{variable} is not set"
        raise SystemExit(msg)
    script = ScriptDirectory.from_config(alembic_config(package, database_url))
    schema = importlib.import_module(f"{package}.models").Base.metadata.schema
    if not schema:
        msg = f"{package}'s tables name no schema"
        raise SystemExit(msg)
    return Plan(
        package=package,
        schema=schema,
        database_url=database_url,
        heads=frozenset(script.get_heads()),
        known=frozenset(revision.revision for revision in script.walk_revisions()),
    )


def verdict(plan: Plan, current: frozenset[str]) -> str | None:
    """``None`` when the pod may start, otherwise why it may not yet."""
    if not current:
        return "the schema is not migrated yet"
    if current == plan.heads:
        return None
    if current - plan.known:
        return None  # a newer release migrated it (additive first): this image still works
    return f"the schema is at {sorted(current)}; this image needs {sorted(plan.heads)}"


async def current_revisions(plan: Plan) -> frozenset[str]:
    """The revisions recorded in the service's version table (none before the first run)."""
    engine = create_async_engine(plan.database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                # the schema is the package's own constant, never input
                text(f'SELECT version_num FROM "{plan.schema}"."{VERSION_TABLE}"')  # noqa: S608
            )
            return frozenset(str(row[0]) for row in rows)
    except ProgrammingError:
        return frozenset()  # no version table (or schema) yet
    finally:
        await engine.dispose()


async def wait(plan: Plan, *, give_up_after: float, retry: float = RETRY_SECONDS) -> bool:
    deadline = time.monotonic() + give_up_after
    while True:
        try:
            reason = verdict(plan, await current_revisions(plan))
        except (DBAPIError, OSError) as exc:
            reason = f"the database cannot be read ({type(exc).__name__})"
        if reason is None:
            logger.info("schema of %s is ready", plan.package)
            return True
        if time.monotonic() >= deadline:
            logger.error("gave up waiting for the schema of %s: %s", plan.package, reason)
            return False
        logger.info("waiting for the schema of %s: %s", plan.package, reason)
        await asyncio.sleep(retry)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    gate = plan(sys.argv[1:] if argv is None else argv, os.environ)
    timeout = float(os.environ.get("PANJEREH_SCHEMA_GATE_TIMEOUT", DEFAULT_TIMEOUT_SECONDS))
    return 0 if asyncio.run(wait(gate, give_up_after=timeout)) else 1


if __name__ == "__main__":
    sys.exit(main())
