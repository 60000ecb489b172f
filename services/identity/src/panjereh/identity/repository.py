"""Named queries of the identity service, in the domain's words."""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.idempotency import IdempotencyStore
from panjereh.identity.models import (
    Citizen,
    DevSms,
    MachineClient,
    OtpChallenge,
    RateLimitCounter,
    RefreshToken,
    RefreshTokenFamily,
    SmsMessage,
    StaffRole,
    idempotency_records,
)

#: the first answers to keyed creating requests (``Idempotency-Key``)
idempotency = IdempotencyStore(idempotency_records)


async def _advisory_lock(session: AsyncSession, key: str) -> None:
    """A lock on ``key`` (a keyed hash, never personal data) until the transaction ends."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key}
    )


class CitizenRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_national_code(self, national_code: str) -> Citizen | None:
        citizen: Citizen | None = await self.session.scalar(
            select(Citizen).where(Citizen.national_code == national_code)
        )
        return citizen

    async def by_id(self, citizen_id: uuid.UUID) -> Citizen | None:
        return await self.session.get(Citizen, citizen_id)

    async def by_subject(self, subject: str) -> Citizen | None:
        """The citizen an access token's ``sub`` names (``None`` for anything else)."""
        try:
            citizen_id = uuid.UUID(subject)
        except ValueError:
            return None
        return await self.by_id(citizen_id)

    async def lock_registration(self, lookup_key: str) -> None:
        """Serialise first logins of one national code: one of them registers the person."""
        await _advisory_lock(self.session, lookup_key)


class StaffRoleRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def roles_of(self, national_code: str) -> list[str]:
        rows = await self.session.scalars(
            select(StaffRole.role)
            .where(StaffRole.national_code == national_code)
            .order_by(StaffRole.role)
        )
        return list(rows)

    async def replace(self, national_code: str, roles: Sequence[str], granted_by: str) -> None:
        await self.session.execute(
            delete(StaffRole).where(
                StaffRole.national_code == national_code, StaffRole.role.not_in(roles)
            )
        )
        if roles:
            await self.session.execute(
                insert(StaffRole)
                .values(
                    [
                        {"national_code": national_code, "role": role, "granted_by": granted_by}
                        for role in roles
                    ]
                )
                .on_conflict_do_nothing()
            )


class ChallengeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def for_update(self, challenge_id: uuid.UUID) -> OtpChallenge | None:
        challenge: OtpChallenge | None = await self.session.scalar(
            select(OtpChallenge).where(OtpChallenge.id == challenge_id).with_for_update()
        )
        return challenge

    async def lock_mobile(self, lookup_key: str) -> None:
        """Serialise challenge creation per mobile until this transaction ends."""
        await _advisory_lock(self.session, lookup_key)

    async def give_back(self, challenge_id: uuid.UUID, *, consumed_at: datetime) -> bool:
        """Undo the consumption made at ``consumed_at``; whether there was one to undo."""
        result = await self.session.execute(
            update(OtpChallenge)
            .where(OtpChallenge.id == challenge_id, OtpChallenge.consumed_at == consumed_at)
            .values(consumed_at=None)
        )
        return bool(getattr(result, "rowcount", 0))

    async def latest_sent_to(self, mobile: str) -> datetime | None:
        latest: datetime | None = await self.session.scalar(
            select(func.max(OtpChallenge.created_at)).where(OtpChallenge.mobile == mobile)
        )
        return latest


class RefreshTokenRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_hash_for_update(self, token_hash: str) -> RefreshToken | None:
        token: RefreshToken | None = await self.session.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == token_hash).with_for_update()
        )
        return token

    async def issued_with(self, access_token_id: str) -> RefreshToken | None:
        token: RefreshToken | None = await self.session.scalar(
            select(RefreshToken).where(RefreshToken.access_token_id == access_token_id)
        )
        return token

    async def family_for_update(self, family_id: uuid.UUID) -> RefreshTokenFamily | None:
        family: RefreshTokenFamily | None = await self.session.scalar(
            select(RefreshTokenFamily).where(RefreshTokenFamily.id == family_id).with_for_update()
        )
        return family

    async def ended_since(
        self, since: datetime, *, limit: int
    ) -> Sequence[tuple[uuid.UUID, datetime]]:
        """Sessions (families) ended at or after ``since``, oldest first: id and when."""
        rows = await self.session.execute(
            select(RefreshTokenFamily.id, RefreshTokenFamily.revoked_at)
            .where(RefreshTokenFamily.revoked_at >= since)
            .order_by(RefreshTokenFamily.revoked_at)
            .limit(limit)
        )
        return [
            (family_id, revoked_at)
            for family_id, revoked_at in rows.all()
            if revoked_at is not None  # the filter above; the column itself is nullable
        ]

    async def revoke_family(self, family_id: uuid.UUID, *, reason: str, now: datetime) -> None:
        await self.session.execute(
            update(RefreshTokenFamily)
            .where(RefreshTokenFamily.id == family_id, RefreshTokenFamily.revoked_at.is_(None))
            .values(revoked_at=now, revoke_reason=reason)
        )


class ClientRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, client_id: str) -> MachineClient | None:
        return await self.session.get(MachineClient, client_id)

    async def all(self) -> list[MachineClient]:
        return list(
            await self.session.scalars(select(MachineClient).order_by(MachineClient.client_id))
        )

    async def for_update(self, client_id: str) -> MachineClient | None:
        client: MachineClient | None = await self.session.scalar(
            select(MachineClient).where(MachineClient.client_id == client_id).with_for_update()
        )
        return client


class SmsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def due_for_update(self, now: datetime, limit: int) -> list[SmsMessage]:
        """Pending messages whose time has come; rows another dispatcher holds are skipped."""
        rows = await self.session.scalars(
            select(SmsMessage)
            .where(SmsMessage.status == "pending", SmsMessage.next_attempt_at <= now)
            .order_by(SmsMessage.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(rows)

    async def for_update(self, message_id: uuid.UUID) -> SmsMessage | None:
        message: SmsMessage | None = await self.session.scalar(
            select(SmsMessage).where(SmsMessage.id == message_id).with_for_update()
        )
        return message

    async def dev_outbox(self, mobile: str, limit: int = 50) -> list[DevSms]:
        rows = await self.session.scalars(
            select(DevSms).where(DevSms.mobile == mobile).order_by(DevSms.id.desc()).limit(limit)
        )
        return list(rows)


class RateLimitRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def hit(self, bucket: str, *, window_seconds: int, now: datetime) -> tuple[int, float]:
        """Count one hit in ``bucket``'s current fixed window: (hits so far, seconds left)."""
        window_start, window_end = _window(window_seconds, now)
        statement = (
            insert(RateLimitCounter)
            .values(bucket=bucket, window_start=window_start, hits=1, expires_at=window_end)
            .on_conflict_do_update(
                index_elements=[RateLimitCounter.bucket, RateLimitCounter.window_start],
                set_={"hits": RateLimitCounter.hits + 1},
            )
            .returning(RateLimitCounter.hits)
        )
        hits = int((await self.session.execute(statement)).scalar_one())
        return hits, (window_end - now).total_seconds()

    async def hits(self, bucket: str, *, window_seconds: int, now: datetime) -> tuple[int, float]:
        """``bucket``'s hits in its current fixed window, counting none: (hits, seconds left)."""
        window_start, window_end = _window(window_seconds, now)
        hits = await self.session.scalar(
            select(RateLimitCounter.hits).where(
                RateLimitCounter.bucket == bucket, RateLimitCounter.window_start == window_start
            )
        )
        return int(hits or 0), (window_end - now).total_seconds()

    async def hits_of(
        self, buckets: Sequence[str], *, window_seconds: int, now: datetime
    ) -> tuple[list[int], float]:
        """:meth:`hits` of several buckets in one query: (hits of each, in order; seconds left)."""
        window_start, window_end = _window(window_seconds, now)
        rows = await self.session.execute(
            select(RateLimitCounter.bucket, RateLimitCounter.hits).where(
                RateLimitCounter.bucket.in_(buckets), RateLimitCounter.window_start == window_start
            )
        )
        found = {str(row.bucket): int(row.hits) for row in rows}
        return [found.get(bucket, 0) for bucket in buckets], (window_end - now).total_seconds()

    async def forget(self, buckets: Sequence[str]) -> None:
        """Drop every window of ``buckets`` (their counts start again from zero)."""
        await self.session.execute(
            delete(RateLimitCounter).where(RateLimitCounter.bucket.in_(buckets))
        )


def _window(window_seconds: int, now: datetime) -> tuple[datetime, datetime]:
    """The fixed window (aligned to the epoch) that ``now`` falls in: (start, end)."""
    epoch = now.timestamp()
    start_epoch = math.floor(epoch / window_seconds) * window_seconds
    window_start = now - timedelta(seconds=epoch - start_epoch)
    return window_start, window_start + timedelta(seconds=window_seconds)


class HousekeepingRepository:
    """Deletes rows whose purpose is over (no personal data kept longer than needed)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def prune(self, *, now: datetime, keep: timedelta) -> None:
        cutoff = now - keep
        await self.session.execute(delete(OtpChallenge).where(OtpChallenge.expires_at < cutoff))
        await self.session.execute(
            delete(RateLimitCounter).where(RateLimitCounter.expires_at < now)
        )
        await self.session.execute(delete(DevSms).where(DevSms.sent_at < cutoff))
        await self.session.execute(
            delete(SmsMessage).where(SmsMessage.status != "pending", SmsMessage.created_at < cutoff)
        )
        await self.session.execute(
            delete(RefreshTokenFamily).where(RefreshTokenFamily.expires_at < cutoff)
        )
