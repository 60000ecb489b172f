"""Pruning: rows whose purpose is over do not linger (personal data kept only as needed)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from sqlalchemy import insert, select

from panjereh.identity.models import OtpChallenge, RateLimitCounter, idempotency_records
from panjereh.identity.service import housekeeping

pytestmark = pytest.mark.integration


async def test_prunes_old_challenges_and_expired_counters_only(app: FastAPI) -> None:
    now = datetime.now(UTC)
    old, fresh = uuid.uuid4(), uuid.uuid4()
    async with app.state.database.transaction() as session:
        for challenge_id, age in ((old, timedelta(days=8)), (fresh, timedelta(minutes=1))):
            session.add(
                OtpChallenge(
                    id=challenge_id,
                    national_code="0499370899",
                    mobile="09120000001",
                    code_hash="x",
                    failed_attempts=0,
                    created_at=now - age,
                    expires_at=now - age + timedelta(minutes=2),
                )
            )
        session.add(
            RateLimitCounter(
                bucket=f"old-{old}",
                window_start=now - timedelta(hours=2),
                hits=3,
                expires_at=now - timedelta(hours=1),
            )
        )
    async with app.state.database.transaction() as session:
        await housekeeping.prune(session, now=now)
    async with app.state.database.transaction() as session:
        assert await session.get(OtpChallenge, old) is None
        assert await session.get(OtpChallenge, fresh) is not None
        assert await session.get(RateLimitCounter, (f"old-{old}", now - timedelta(hours=2))) is None


async def test_forgets_idempotency_keys_after_a_day(app: FastAPI) -> None:
    now = datetime.now(UTC)
    actor = f"admin-{uuid.uuid4()}"
    async with app.state.database.transaction() as session:
        for key, age in (("old", timedelta(hours=25)), ("fresh", timedelta(hours=23))):
            await session.execute(
                insert(idempotency_records).values(
                    actor=actor,
                    key=key,
                    operation="identity.create_client",
                    request_hash="h",
                    status_code=201,
                    response={},
                    created_at=now - age,
                )
            )
    async with app.state.database.transaction() as session:
        await housekeeping.prune(session, now=now)
    async with app.state.database.transaction() as session:
        kept = await session.scalars(
            select(idempotency_records.c.key).where(idempotency_records.c.actor == actor)
        )
        assert list(kept) == ["fresh"]
