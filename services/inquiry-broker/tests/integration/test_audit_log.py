"""The audit log on a real, migrated PostgreSQL: the chain, tampering, append-only role."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from panjereh.common.db import Database, DirectUnit
from panjereh.common.migrations import downgrade, upgrade
from panjereh.common.testing.plugin import MigratedDatabase
from panjereh.inquiry_broker.audit import ChainVerifier
from panjereh.inquiry_broker.repository import AuditRepository

pytestmark = pytest.mark.integration

PACKAGE = "panjereh.inquiry_broker"
KEY = b"k7f3a9c1eB2d4F6h8J0kL3m5N7p9Q1r"


def libpq(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def fields(n: int) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "recorded_at": datetime.now(UTC),
        "decision": "allowed",
        "reason": "card",
        "inquiry_id": uuid.uuid4(),
        "inquiry_type": "tax.clearance",
        "provider_agency": "tax",
        "caller": "requests",
        "caller_role": "service:requests",
        "caller_agency": None,
        "subject_hash": "cd" * 32,
        "service_code": "S-1",
        "tracking_code": f"T-{n}",
        "legal_basis": "قانون مالیات‌های مستقیم",
    }


async def verify(database: Database) -> tuple[int, Any]:
    async with database.transaction() as session:
        verifier = ChainVerifier(KEY)
        async for entry in AuditRepository(session).walk(batch=2):
            broken = verifier.check(entry)
            if broken is not None:
                return verifier.checked, broken
        return verifier.checked, None


async def test_concurrent_appends_chain_and_a_changed_row_is_named(
    migrated_database: MigratedDatabase,
) -> None:
    url = await migrated_database(PACKAGE)
    database = Database(url)
    try:

        async def append(n: int) -> None:
            async with database.transaction() as session:
                await AuditRepository(session).append(fields(n), key=KEY)

        # concurrent writers (as from two replicas) still form one unbroken chain
        await asyncio.gather(*(append(n) for n in range(8)))
        assert await verify(database) == (8, None)

        connection = await asyncpg.connect(libpq(url))
        try:
            target = await connection.fetchrow(
                "SELECT seq, id FROM inquiry_broker.audit_entry ORDER BY seq OFFSET 4 LIMIT 1"
            )
            await connection.execute(
                "UPDATE inquiry_broker.audit_entry SET tracking_code = 'forged' WHERE seq = $1",
                target["seq"],
            )
        finally:
            await connection.close()
        checked, broken = await verify(database)
    finally:
        await database.dispose()
    assert broken is not None
    assert (broken.seq, broken.id, broken.problem) == (
        target["seq"],
        target["id"],
        "content_changed",
    )
    assert checked == 5


async def test_appends_taking_turns_across_replicas_chain_after_the_tables_head(
    migrated_database: MigratedDatabase,
) -> None:
    """Each replica remembers the head it appended last; the table's head always wins."""
    url = await migrated_database(PACKAGE)
    replicas = [Database(url), Database(url)]

    async def append(database: Database, n: int) -> None:
        async with database.transaction() as session:
            await AuditRepository(session).append(fields(n), key=KEY)

    try:
        for n in range(6):
            await append(replicas[n % 2], n)
        assert await verify(replicas[0]) == (6, None)
        # the last entry (the second replica's) disappears: its next append must chain after
        # the entry now last, not after the one it remembers
        connection = await asyncpg.connect(libpq(url))
        try:
            await connection.execute(
                "DELETE FROM inquiry_broker.audit_entry WHERE seq = "
                "(SELECT max(seq) FROM inquiry_broker.audit_entry)"
            )
        finally:
            await connection.close()
        await append(replicas[1], 6)
        await append(replicas[1], 7)
        assert await verify(replicas[0]) == (7, None)
        # a rolled-back append leaves nothing for the next one to chain after
        async with replicas[0].sessions() as session:
            await AuditRepository(session).append(fields(8), key=KEY)
            await session.rollback()
        await append(replicas[0], 9)
        assert await verify(replicas[1]) == (8, None)
    finally:
        for database in replicas:
            await database.dispose()


@pytest.mark.parametrize("unit", ["alone", "in a transaction"])
async def test_queued_appends_of_one_process_each_insert_once(
    migrated_database: MigratedDatabase, monkeypatch: pytest.MonkeyPatch, unit: str
) -> None:
    """The head an append guesses is its process's last append, known before that one
    commits: appends waiting for the chain's lock in one process each send one statement,
    never a second one after a stale guess. Alone: each append is its unit's only statement
    (sent without a transaction, the ask's common case); in a transaction: its lock is held
    until the commit, which the next append's statement waits for."""
    url = await migrated_database(PACKAGE)
    database = Database(url)
    sent: list[bool] = []
    fetchrow = DirectUnit.fetchrow

    async def counted(self: DirectUnit, statement: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(kwargs.get("alone", False))
        return await fetchrow(self, statement, *args, **kwargs)

    monkeypatch.setattr(DirectUnit, "fetchrow", counted)

    async def append(n: int) -> None:
        if unit == "alone":
            async with database.direct() as direct:
                await AuditRepository(direct).append(fields(n), key=KEY)
                assert not direct.in_transaction
        else:
            async with database.transaction() as session:
                await AuditRepository(session).append(fields(n), key=KEY)

    try:
        await asyncio.gather(*(append(n) for n in range(8)))
        assert await verify(database) == (8, None)
        assert sent == [True] * 8  # each append's first statement, and no other
    finally:
        await database.dispose()


async def test_an_append_sent_alone_after_another_replicas_chains_after_it(
    migrated_database: MigratedDatabase,
) -> None:
    """An append sent alone whose guess is stale (another replica appended) writes nothing,
    then chains after the head it found, in a transaction that holds the lock from then on:
    what it writes with its entry (here a whole new inquiry would be) is written once."""
    url = await migrated_database(PACKAGE)
    replicas = [Database(url), Database(url)]

    async def append(database: Database, n: int) -> bool:
        async with database.direct() as direct:
            await AuditRepository(direct).append(fields(n), key=KEY)
            return direct.in_transaction

    try:
        assert await append(replicas[0], 0) is False  # one statement, no transaction
        assert await append(replicas[1], 1) is True  # guessed the genesis: sent again
        assert await append(replicas[0], 2) is True  # guessed its own entry 0: sent again
        assert await append(replicas[0], 3) is False  # its guess (entry 2) is the head
        assert await verify(replicas[1]) == (4, None)
    finally:
        for database in replicas:
            await database.dispose()


async def test_the_service_role_cannot_change_or_delete_audit_entries(
    migrated_database: MigratedDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = await migrated_database(PACKAGE)
    role = f"broker_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(libpq(url))
    try:
        await admin.execute(f'CREATE ROLE "{role}" LOGIN')
    finally:
        await admin.close()
    monkeypatch.setenv("PANJEREH_INQUIRY_BROKER_AUDIT_APPEND_ONLY_ROLE", role)
    await asyncio.to_thread(downgrade, PACKAGE, url, "0002")
    await asyncio.to_thread(upgrade, PACKAGE, url)

    # the embedded server trusts local connections: log in as the service role
    service_url = url.replace("postgres@", f"{role}@", 1)
    database = Database(service_url)
    try:
        async with database.transaction() as session:
            await AuditRepository(session).append(fields(1), key=KEY)
    finally:
        await database.dispose()
    connection = await asyncpg.connect(libpq(service_url))
    try:
        assert await connection.fetchval("SELECT count(*) FROM inquiry_broker.audit_entry") == 1
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute("UPDATE inquiry_broker.audit_entry SET reason = 'x'")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute("DELETE FROM inquiry_broker.audit_entry")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute("TRUNCATE inquiry_broker.audit_entry")
        # the signed checkpoints are append-only for it too (migration 0007)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute("DELETE FROM inquiry_broker.audit_checkpoint")
    finally:
        await connection.close()
