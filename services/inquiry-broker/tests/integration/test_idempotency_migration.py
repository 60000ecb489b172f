"""Migration 0004 moves ``Idempotency-Key``s to the kernel's table without forgetting any.

A key a caller used before the upgrade must still replay its inquiry after it (a retry may
span a deploy), and a downgrade must put the keys back on their inquiries.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from panjereh.common.auth import Principal
from panjereh.common.db import Database
from panjereh.common.errors import IdempotencyKeyReused
from panjereh.common.migrations import downgrade, upgrade
from panjereh.common.testing.plugin import MigratedDatabase
from panjereh.inquiry_broker.canonical import canonical_json
from panjereh.inquiry_broker.schemas import InquiryCreate
from panjereh.inquiry_broker.service import asking
from panjereh.inquiry_broker.signing import AnswerSigner

pytestmark = pytest.mark.integration

PACKAGE = "panjereh.inquiry_broker"
CALLER = "client-requests"
KEY = "req-before-the-upgrade"
REQUEST = InquiryCreate.model_validate(
    {
        "type": "tax.clearance",
        "subject": "0499370899",
        "params": {},
        "purpose": {"service_code": "tax-clearance-certificate", "tracking_code": "7400000001"},
    }
)
KEYS = asking.BrokerKeys(
    signer=AnswerSigner.generate(),
    subject_hash_key=b"test-key",
    card_acting_services=frozenset({"service:requests"}),
)
PRINCIPAL = Principal(subject=CALLER, roles=frozenset({"service:requests"}))


def libpq(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def hash_before_0004(request: InquiryCreate) -> str:
    """How the broker hashed a keyed request when the key lived on the inquiry."""
    return hashlib.sha256(canonical_json(request.model_dump(mode="json"))).hexdigest()


async def insert_keyed_inquiry(connection: asyncpg.Connection, inquiry_id: uuid.UUID) -> None:
    now = datetime.now(UTC)
    await connection.execute(
        """INSERT INTO inquiry_broker.inquiry (id, type, provider_agency, subject, subject_hash,
        params, cache_key, caller, caller_role, status, idempotency_key, request_hash,
        created_at, deadline_at)
        VALUES ($1, 'tax.clearance', 'tax', '0499370899', 'h', '{}', 'c', $2,
        'service:requests', 'pending', $3, $4, $5, $6)""",
        inquiry_id,
        CALLER,
        KEY,
        hash_before_0004(REQUEST),
        now,
        now + timedelta(seconds=5),
    )


async def test_keys_are_carried_over_and_back(migrated_database: MigratedDatabase) -> None:
    url = await migrated_database(PACKAGE)
    await asyncio.to_thread(downgrade, PACKAGE, url, "0003")
    inquiry_id = uuid.uuid4()
    connection = await asyncpg.connect(libpq(url))
    try:
        await insert_keyed_inquiry(connection, inquiry_id)
        await asyncio.to_thread(upgrade, PACKAGE, url)
        record = await connection.fetchrow(
            "SELECT actor, key, operation, status_code, response ->> 'inquiry_id' AS inquiry_id "
            "FROM inquiry_broker.idempotency_record"
        )
        assert dict(record) == {
            "actor": CALLER,
            "key": KEY,
            "operation": asking.OPERATION,
            "status_code": 202,
            "inquiry_id": str(inquiry_id),
        }

        database = Database(url)
        try:
            async with database.transaction() as session:
                asked = await asking.ask(
                    session, principal=PRINCIPAL, request=REQUEST, keys=KEYS, idempotency_key=KEY
                )
            assert asked.replayed
            assert asked.state.answer.inquiry_id == inquiry_id
            another = REQUEST.model_copy(update={"subject": "0790419904"})
            with pytest.raises(IdempotencyKeyReused):
                async with database.transaction() as session:
                    await asking.ask(
                        session,
                        principal=PRINCIPAL,
                        request=another,
                        keys=KEYS,
                        idempotency_key=KEY,
                    )
        finally:
            await database.dispose()

        await asyncio.to_thread(downgrade, PACKAGE, url, "0003")
        restored = await connection.fetchrow(
            "SELECT idempotency_key, request_hash FROM inquiry_broker.inquiry WHERE id = $1",
            inquiry_id,
        )
        assert tuple(restored) == (KEY, hash_before_0004(REQUEST))
        assert await connection.fetchval(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = 'inquiry_broker' "
            "AND indexname = 'uq_inquiry_caller_idempotency_key'"
        )
    finally:
        await connection.close()
