"""``Idempotency-Key`` for every creating POST (CONTRACT.md, "Conventions").

The same key with the same body answers what the first request answered; with another body
(or another operation) it is 409 ``idempotency_key_reused``. Keys belong to the caller: two
callers may use the same key without meeting.

Races: the first step takes a transaction-scoped advisory lock on (caller, key). A concurrent
duplicate waits on that lock until the first transaction ends, then finds its record and
replays it; it never inserts a second row, so it never surfaces as an ``IntegrityError``.

Each service declares the table on its metadata (:func:`idempotency_table`) and creates it
with :func:`panjereh.common.messaging.migration_ops.create_idempotency_table_v1`; endpoints
take the header through :data:`panjereh.common.dependencies.IdempotencyKey` and run the
creation through :func:`once`. This module is framework-free, so service modules may use it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import (
    Column,
    DateTime,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    bindparam,
    delete,
    func,
    insert,
    literal,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.db import DirectUnit, Unit
from panjereh.common.errors import IdempotencyKeyReused

MAX_KEY_LENGTH = 200
REPLAYED_HEADER = "Idempotent-Replayed"


def idempotency_table(metadata: MetaData) -> Table:
    """Declare ``idempotency_record`` on a service's metadata."""
    return Table(
        "idempotency_record",
        metadata,
        Column("actor", Text, nullable=False),
        Column("key", Text, nullable=False),
        Column("operation", Text, nullable=False),
        Column("request_hash", Text, nullable=False),
        Column("status_code", SmallInteger, nullable=False),
        Column("response", JSONB, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("actor", "key"),
        Index("ix_idempotency_record_created_at", "created_at"),
    )


def fingerprint(operation: str, body: Any) -> str:
    """A stable hash of what was asked: the operation and the body's JSON form."""
    if isinstance(body, BaseModel):
        body = body.model_dump(mode="json")
    canonical = json.dumps(
        {"operation": operation, "body": body},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Outcome:
    """What a creating POST answers: fresh, or replayed for a repeated key."""

    status_code: int
    body: dict[str, Any]
    replayed: bool = False
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.replayed:
            self.headers.setdefault(REPLAYED_HEADER, "true")


class IdempotencyStore:
    """The first answers to keyed requests, in one service's ``idempotency_record`` table.

    ``claim`` and ``remember`` take a session's unit of work or a
    :class:`~panjereh.common.db.DirectUnit` (the same statements, built once per table).
    """

    def __init__(self, table: Table) -> None:
        self.table = table
        self._lock = select(
            func.pg_advisory_xact_lock(
                func.hashtextextended(bindparam("lock_key", type_=Text), literal(0))
            )
        )
        self._first = select(
            table.c.operation, table.c.request_hash, table.c.status_code, table.c.response
        ).where(
            table.c.actor == bindparam("actor", type_=Text),
            table.c.key == bindparam("key", type_=Text),
        )
        self._remember = insert(table).values(
            {
                name: bindparam(name, type_=table.c[name].type)
                for name in ("actor", "key", "operation", "request_hash", "status_code")
            }
            | {"response": bindparam("response", type_=table.c.response.type)}
        )

    async def claim(
        self, session: Unit, *, actor: str, key: str, operation: str, request_hash: str
    ) -> Outcome | None:
        """The stored answer for (actor, key), or ``None``: then this transaction owns the key.

        Raises :class:`IdempotencyKeyReused` when the key was used for something else. Two
        statements: the lookup's snapshot is taken after the key's lock is held, so it sees
        the answer of a concurrent first request that committed while this one waited.
        """
        lock = {"lock_key": f"{actor}\n{key}"}
        who = {"actor": actor, "key": key}
        if isinstance(session, DirectUnit):
            await session.fetch(self._lock, lock)
            row = await session.fetchrow(self._first, who)
        else:
            await session.execute(self._lock, lock)
            found = (await session.execute(self._first, who)).one_or_none()
            row = None if found is None else found._mapping
        if row is None:
            return None
        if row["operation"] != operation or row["request_hash"] != request_hash:
            raise IdempotencyKeyReused
        return Outcome(status_code=row["status_code"], body=dict(row["response"]), replayed=True)

    async def remember(
        self,
        session: Unit,
        *,
        actor: str,
        key: str,
        operation: str,
        request_hash: str,
        outcome: Outcome,
    ) -> None:
        values = {
            "actor": actor,
            "key": key,
            "operation": operation,
            "request_hash": request_hash,
            "status_code": outcome.status_code,
            "response": outcome.body,
        }
        if isinstance(session, DirectUnit):
            await session.fetch(self._remember, values)
        else:
            await session.execute(self._remember, values)

    async def prune(self, session: AsyncSession, *, before: datetime) -> int:
        """Forget keys first used before ``before``; how many were forgotten."""
        result = await session.execute(delete(self.table).where(self.table.c.created_at < before))
        return int(getattr(result, "rowcount", 0) or 0)


async def once(
    session: AsyncSession,
    store: IdempotencyStore,
    *,
    actor: str,
    key: str | None,
    operation: str,
    request: Any,
    create: Callable[[], Awaitable[Outcome]],
) -> Outcome:
    """Run ``create`` at most once per (actor, key); without a key, just run it.

    ``create`` runs in ``session``'s transaction, so its effects and the remembered answer
    commit (or roll back) together.
    """
    if key is None:
        return await create()
    request_hash = fingerprint(operation, request)
    earlier = await store.claim(
        session, actor=actor, key=key, operation=operation, request_hash=request_hash
    )
    if earlier is not None:
        return earlier
    outcome = await create()
    await store.remember(
        session,
        actor=actor,
        key=key,
        operation=operation,
        request_hash=request_hash,
        outcome=outcome,
    )
    return outcome
