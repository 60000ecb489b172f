"""Named queries of the identity service, in the domain's words."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Row, bindparam, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.db import Database, DirectUnit, RowByName
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

if TYPE_CHECKING:
    from panjereh.identity.sms import QueuedMessage

#: the first answers to keyed creating requests (``Idempotency-Key``)
idempotency = IdempotencyStore(idempotency_records)


#: a lock on ``key`` (a keyed hash, never personal data) until the transaction ends
_ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")


class CitizenRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_id(self, citizen_id: uuid.UUID) -> Citizen | None:
        return await self.session.get(Citizen, citizen_id)

    async def by_subject(self, subject: str) -> Citizen | None:
        """The citizen an access token's ``sub`` names (``None`` for anything else)."""
        try:
            citizen_id = uuid.UUID(subject)
        except ValueError:
            return None
        return await self.by_id(citizen_id)


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


#: a code checked: the day's wrong codes of the mobile and the person are read and, for the
#: right code (``spend``) while neither is at its cap, the challenge is spent and those failure
#: counters are dropped. The same statement runs for a right and a wrong code, so a refusal at
#: the cap takes the same path whichever code was sent
_CONSUME = text(
    """
    WITH failed AS (
        SELECT coalesce(max(hits) FILTER (WHERE bucket = :failed_mobile), 0) AS by_mobile,
               coalesce(max(hits) FILTER (WHERE bucket = :failed_person), 0) AS by_person
        FROM identity.rate_limit_counter
        WHERE bucket IN (:failed_mobile, :failed_person) AND window_start = :failed_start
    ), allowed AS (
        SELECT by_mobile < :failures_per_mobile AND by_person < :failures_per_person
               AND CAST(:spend AS boolean) AS yes
        FROM failed
    ), forgotten AS (
        DELETE FROM identity.rate_limit_counter
        WHERE bucket IN (:failed_mobile, :failed_person) AND (SELECT yes FROM allowed)
    ), consumed AS (
        UPDATE identity.otp_challenge SET consumed_at = :now
        WHERE id = :challenge_id AND (SELECT yes FROM allowed)
    )
    SELECT by_mobile, by_person FROM failed
    """
)


#: a right code spent in one statement, under the mobile's lock, when the challenge is still
#: as it was read (unspent, unexpired, the same wrong codes so far) and the day's wrong codes
#: (read after the lock: ``otp_send_state``, migration 0005) are below both caps; then both
#: failure counters are dropped, as :data:`_CONSUME` does
_SPEND_IF_UNCHANGED = text(
    """
    WITH locked AS MATERIALIZED (
        SELECT pg_advisory_xact_lock(hashtextextended(:mobile_lock, 0))
    ), state AS MATERIALIZED (
        SELECT identity.otp_send_state(
            CAST(:mobile AS text), CAST(:failed_mobile AS text), CAST(:failed_person AS text),
            CAST(:failed_start AS timestamptz)
        ) AS s
        FROM locked
    ), failed AS (
        SELECT (s).failed_by_mobile AS by_mobile, (s).failed_by_person AS by_person FROM state
    ), consumed AS (
        UPDATE identity.otp_challenge SET consumed_at = :now
        WHERE id = :challenge_id AND consumed_at IS NULL AND expires_at > :now
          AND failed_attempts = :read_failed
          AND (SELECT by_mobile < :failures_per_mobile AND by_person < :failures_per_person
               FROM failed)
        RETURNING id
    ), forgotten AS (
        DELETE FROM identity.rate_limit_counter
        WHERE bucket IN (:failed_mobile, :failed_person) AND EXISTS (SELECT FROM consumed)
    )
    SELECT by_mobile, by_person, EXISTS (SELECT FROM consumed) AS spent FROM failed
    """
)


#: a challenge with the id of the citizen of its national code (``NULL`` before the person's
#: first login)
_CHALLENGE_READ_WITH_CITIZEN = (
    select(
        OtpChallenge.national_code,
        OtpChallenge.mobile,
        OtpChallenge.code_hash,
        OtpChallenge.failed_attempts,
        OtpChallenge.expires_at,
        OtpChallenge.consumed_at,
        Citizen.id.label("citizen_id"),
    )
    .select_from(OtpChallenge)
    .outerjoin(Citizen, Citizen.national_code == OtpChallenge.national_code)
    .where(OtpChallenge.id == bindparam("challenge_id"))
)
#: :data:`_CHALLENGE_READ_WITH_CITIZEN`, locked; only the challenge's row is locked
_CHALLENGE_WITH_CITIZEN = _CHALLENGE_READ_WITH_CITIZEN.with_for_update(of=OtpChallenge)

#: one more wrong code tried against a (locked) challenge; how many it has had now
_COUNT_WRONG_CODE = (
    update(OtpChallenge)
    .where(OtpChallenge.id == bindparam("challenge_id"))
    .values(failed_attempts=OtpChallenge.failed_attempts + 1)
    .returning(OtpChallenge.failed_attempts)
)

#: a consumption undone, if it is still the one made at ``claimed_at``
_GIVE_BACK = (
    update(OtpChallenge)
    .where(
        OtpChallenge.id == bindparam("challenge_id"),
        OtpChallenge.consumed_at == bindparam("claimed_at"),
    )
    .values(consumed_at=None)
    .returning(OtpChallenge.id)
)


@dataclass(frozen=True)
class LockedChallenge:
    """A challenge as its row stands under the lock, and the citizen of its national code."""

    national_code: str = field(repr=False)
    mobile: str = field(repr=False)
    code_hash: str = field(repr=False)
    failed_attempts: int
    expires_at: datetime
    consumed_at: datetime | None
    #: ``None`` until the person's first login
    citizen_id: uuid.UUID | None


def _challenge(row: RowByName) -> LockedChallenge:
    return LockedChallenge(
        national_code=row["national_code"],
        mobile=row["mobile"],
        code_hash=row["code_hash"],
        failed_attempts=int(row["failed_attempts"]),
        expires_at=row["expires_at"],
        consumed_at=row["consumed_at"],
        citizen_id=row["citizen_id"],
    )


class ChallengeRepository:
    """Challenges, in units of work sent by the driver (every one of them is a login's)."""

    def __init__(self, unit: DirectUnit) -> None:
        self.unit = unit

    async def with_citizen_for_update(self, challenge_id: uuid.UUID) -> LockedChallenge | None:
        """The challenge, locked, with the citizen of its national code if there is one."""
        row = await self.unit.fetchrow(_CHALLENGE_WITH_CITIZEN, {"challenge_id": challenge_id})
        return None if row is None else _challenge(row)

    async def with_citizen(self, challenge_id: uuid.UUID) -> LockedChallenge | None:
        """:meth:`with_citizen_for_update` without the lock, sent alone (no transaction): for
        a right code spent by :meth:`spend_if_unchanged`, which checks the challenge again."""
        row = await self.unit.fetchrow(
            _CHALLENGE_READ_WITH_CITIZEN, {"challenge_id": challenge_id}, alone=True
        )
        return None if row is None else _challenge(row)

    async def spend_if_unchanged(
        self,
        challenge_id: uuid.UUID,
        *,
        read_failed: int,
        mobile_lock: str,
        mobile: str,
        now: datetime,
        failed_mobile: Window,
        failed_person: Window,
        failure_caps: tuple[int, int],
    ) -> tuple[int, int, bool]:
        """Under the mobile's lock, the day's failure counts (mobile, person) as they are once
        it is held, and whether the challenge was spent: only below both caps and only if it
        is still unspent, unexpired and at ``read_failed`` wrong codes (then both counters are
        dropped). One statement, sent alone when the unit has sent nothing in a transaction."""
        row = await self.unit.fetchrow(
            _SPEND_IF_UNCHANGED,
            {
                "mobile_lock": mobile_lock,
                "mobile": mobile,
                "challenge_id": challenge_id,
                "read_failed": read_failed,
                "now": now,
                "failed_mobile": failed_mobile.bucket,
                "failed_person": failed_person.bucket,
                "failed_start": failed_mobile.start,
                "failures_per_mobile": failure_caps[0],
                "failures_per_person": failure_caps[1],
            },
            alone=True,
        )
        if row is None:  # pragma: no cover - the statement always answers one row
            msg = "spending a right code answered nothing"
            raise RuntimeError(msg)
        return int(row["by_mobile"]), int(row["by_person"]), bool(row["spent"])

    async def check_failures_and_consume(
        self,
        challenge_id: uuid.UUID,
        *,
        spend: bool,
        now: datetime,
        failed_mobile: Window,
        failed_person: Window,
        failure_caps: tuple[int, int],
    ) -> tuple[int, int]:
        """The failure counts (mobile, person) in the current window; with ``spend`` and
        neither at its cap, the (locked) challenge is spent and both counters dropped."""
        row = await self.unit.fetchrow(
            _CONSUME,
            {
                "challenge_id": challenge_id,
                "spend": spend,
                "now": now,
                "failed_mobile": failed_mobile.bucket,
                "failed_person": failed_person.bucket,
                "failed_start": failed_mobile.start,
                "failures_per_mobile": failure_caps[0],
                "failures_per_person": failure_caps[1],
            },
        )
        if row is None:  # pragma: no cover - the statement always answers one row
            msg = "checking a code against the failure caps answered nothing"
            raise RuntimeError(msg)
        return int(row["by_mobile"]), int(row["by_person"])

    async def count_wrong_code(self, challenge_id: uuid.UUID) -> int:
        """One more wrong code against the (locked) challenge; its wrong codes so far."""
        row = await self.unit.fetchrow(_COUNT_WRONG_CODE, {"challenge_id": challenge_id})
        if row is None:  # pragma: no cover - the challenge is locked by this unit of work
            msg = "a locked challenge could not be counted against"
            raise RuntimeError(msg)
        return int(row["failed_attempts"])

    async def lock_mobile(self, lookup_key: str) -> None:
        """Serialise challenge creation per mobile until this transaction ends."""
        await self.unit.fetch(_ADVISORY_LOCK, {"key": lookup_key})


async def give_back(database: Database, challenge_id: uuid.UUID, *, consumed_at: datetime) -> bool:
    """Undo the consumption made at ``consumed_at`` (one statement, its own unit of work);
    whether there was one to undo."""
    given_back = await database.statement(
        _GIVE_BACK, {"challenge_id": challenge_id, "claimed_at": consumed_at}
    )
    return given_back is not None


#: A returning citizen signed in: the mobile they just proved theirs and the time of the login
#: recorded, a login session (refresh-token family) and its first refresh token inserted; with
#: the person's staff roles for the access token. One round trip.
_SIGN_IN = text(
    """
    WITH signed_in AS (
        UPDATE identity.citizen SET mobile = :mobile, last_login_at = :now
        WHERE id = :citizen_id
    ), family AS (
        INSERT INTO identity.refresh_token_family (id, citizen_id, created_at, expires_at)
        VALUES (:family_id, :citizen_id, :now, :family_expires_at)
        RETURNING id
    ), token AS (
        INSERT INTO identity.refresh_token
            (id, family_id, token_hash, access_token_id, created_at, expires_at)
        SELECT CAST(:token_id AS uuid), family.id, CAST(:token_hash AS text),
               CAST(:access_token_id AS text), CAST(:now AS timestamptz),
               CAST(:token_expires_at AS timestamptz)
        FROM family
    )
    SELECT role FROM identity.staff_role WHERE national_code = :national_code ORDER BY role
    """
)

#: the id of the citizen registered under a national code
_CITIZEN_ID = select(Citizen.id).where(Citizen.national_code == bindparam("national_code"))


#: A first login: the citizen inserted unless their national code is registered, and only when
#: it was, its ``identity.citizen.registered`` outbox row, the login session (family) and its
#: first refresh token; with the person's staff roles for the access token. One round trip.
_REGISTER_AND_START_SESSION = text(
    """
    WITH citizen AS (
        INSERT INTO identity.citizen
            (id, national_code, mobile, first_name, last_name, birth_date, registered_at,
             last_login_at)
        VALUES (:citizen_id, :national_code, :mobile, :first_name, :last_name, :birth_date,
                :now, :now)
        ON CONFLICT (national_code) DO NOTHING
        RETURNING id
    ), registered AS (
        INSERT INTO identity.outbox_message (event_id, topic, key, event_type, payload, headers)
        SELECT CAST(:outbox_event_id AS uuid), CAST(:outbox_topic AS text),
               CAST(:outbox_key AS text), CAST(:outbox_event_type AS text),
               CAST(:outbox_payload AS jsonb), CAST(:outbox_headers AS jsonb)
        FROM citizen
    ), family AS (
        INSERT INTO identity.refresh_token_family (id, citizen_id, created_at, expires_at)
        SELECT CAST(:family_id AS uuid), citizen.id, CAST(:now AS timestamptz),
               CAST(:family_expires_at AS timestamptz)
        FROM citizen
        RETURNING id
    ), token AS (
        INSERT INTO identity.refresh_token
            (id, family_id, token_hash, access_token_id, created_at, expires_at)
        SELECT CAST(:token_id AS uuid), family.id, CAST(:token_hash AS text),
               CAST(:access_token_id AS text), CAST(:now AS timestamptz),
               CAST(:token_expires_at AS timestamptz)
        FROM family
    )
    SELECT (SELECT id FROM citizen) AS citizen_id,
           ARRAY(SELECT role FROM identity.staff_role WHERE national_code = :national_code
                 ORDER BY role) AS roles
    """
).bindparams(
    bindparam("outbox_payload", type_=JSONB),
    bindparam("outbox_headers", type_=JSONB),
)


@dataclass(frozen=True)
class NewSession:
    """The columns of a login session to start and its first refresh token."""

    family_id: uuid.UUID
    family_expires_at: datetime
    token_id: uuid.UUID
    token_hash: str
    access_token_id: str
    token_expires_at: datetime

    def parameters(self) -> dict[str, object]:
        return {
            "family_id": self.family_id,
            "family_expires_at": self.family_expires_at,
            "token_id": self.token_id,
            "token_hash": self.token_hash,
            "access_token_id": self.access_token_id,
            "token_expires_at": self.token_expires_at,
        }


class SignInRepository:
    """A login's citizen and its new session, in a unit of work sent by the driver."""

    def __init__(self, unit: DirectUnit) -> None:
        self.unit = unit

    async def register_and_start_session(
        self,
        citizen: Mapping[str, object],
        *,
        registered: Mapping[str, object],
        session: NewSession,
        now: datetime,
    ) -> list[str] | None:
        """Insert ``citizen`` unless its national code is registered; when inserted, also the
        outbox row ``registered`` (:func:`panjereh.common.messaging.outbox.row`'s values) and
        ``session``. The person's staff roles, or ``None`` when the citizen existed (nothing
        was written: the caller signs the existing citizen in).

        A first login racing this one for the same person waits here until the other's unit
        of work ends; then exactly one of them has inserted the row.

        Sent alone when the unit has begun no transaction (the first login's only write: it
        commits by itself, no ``BEGIN`` or ``COMMIT``); when it wrote nothing, what the caller
        does next begins one.
        """
        row = await self.unit.fetchrow(
            _REGISTER_AND_START_SESSION,
            {
                "citizen_id": citizen["id"],
                "national_code": citizen["national_code"],
                "mobile": citizen["mobile"],
                "first_name": citizen["first_name"],
                "last_name": citizen["last_name"],
                "birth_date": citizen["birth_date"],
                "now": now,
                **{f"outbox_{name}": value for name, value in registered.items()},
                **session.parameters(),
            },
            alone=True,
        )
        if row is None:  # pragma: no cover - the statement always answers one row
            msg = "registering a citizen answered nothing"
            raise RuntimeError(msg)
        if row["citizen_id"] is None:
            return None
        return [str(role) for role in row["roles"]]

    async def citizen_id(self, national_code: str) -> uuid.UUID | None:
        """The id of the citizen registered under ``national_code``, if there is one."""
        row = await self.unit.fetchrow(_CITIZEN_ID, {"national_code": national_code})
        if row is None:
            return None
        citizen_id: uuid.UUID = row["id"]
        return citizen_id

    async def sign_in(
        self,
        *,
        citizen_id: uuid.UUID,
        national_code: str,
        mobile: str,
        session: NewSession,
        now: datetime,
    ) -> list[str]:
        """Record the login of a registered citizen (from ``mobile``) and insert ``session``;
        the staff roles of ``national_code``. One statement: in the unit's transaction when it
        has one (the code spent the locked way commits with it), else alone."""
        rows = await self.unit.fetch(
            _SIGN_IN,
            {
                "citizen_id": citizen_id,
                "national_code": national_code,
                "mobile": mobile,
                "now": now,
                **session.parameters(),
            },
            alone=True,
        )
        return [str(row["role"]) for row in rows]


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

    async def claim(
        self, message_id: uuid.UUID, *, attempt: int, lease_until: datetime
    ) -> int | None:
        """Claim a pending, unexpired message whose last try was ``attempt`` (nobody claimed
        it since): the try is counted and leased; the new attempt number, or ``None``."""
        claimed = await self.session.scalar(
            update(SmsMessage)
            .where(
                SmsMessage.id == message_id,
                SmsMessage.status == "pending",
                SmsMessage.attempts == attempt,
                SmsMessage.expires_at > func.now(),
            )
            .values(attempts=SmsMessage.attempts + 1, next_attempt_at=lease_until)
            .returning(SmsMessage.attempts)
        )
        return None if claimed is None else int(claimed)

    async def dev_outbox(self, mobile: str) -> Sequence[Row[str, str, list[str], str, datetime]]:
        """The newest messages the console gateway stored for ``mobile`` (at most 50)."""
        return (await self.session.execute(_DEV_OUTBOX, {"mobile": mobile})).all()


#: the dev outbox of a mobile, newest first (built once: compiled once)
_DEV_OUTBOX = (
    select(DevSms.mobile, DevSms.template, DevSms.tokens, DevSms.text, DevSms.sent_at)
    .where(DevSms.mobile == bindparam("mobile"))
    .order_by(DevSms.id.desc())
    .limit(50)
)

#: a pending message settled as sent, its tokens erased; its id when it was pending.
#: Committed without waiting for the WAL flush (``synchronous_commit`` off, for this
#: statement's own commit), as the outbox relay's mark is: the provider has the message
#: already, and a mark that a database crash loses a fraction of a second later only makes a
#: later pass send the message again, as a dispatcher stopped between the provider's answer and
#: the mark always could. One fsync less per SMS.
_MARK_SENT = (
    update(SmsMessage)
    .where(
        SmsMessage.id == bindparam("message_id"),
        SmsMessage.status == "pending",
        func.set_config("synchronous_commit", "off", True).is_not(None),
    )
    .values(
        status="sent",
        sent_at=bindparam("sent_now"),
        provider_message_id=bindparam("provider_id"),
        sealed_tokens=None,
    )
    .returning(SmsMessage.id)
)


async def mark_sent(
    database: Database,
    message_id: uuid.UUID,
    *,
    provider_message_id: str | None,
    now: datetime,
) -> bool:
    """Settle a pending message as sent (one statement, its own unit of work); whether it was
    pending."""
    sent = await database.statement(
        _MARK_SENT,
        {"message_id": message_id, "sent_now": now, "provider_id": provider_message_id},
    )
    return sent is not None


#: An OTP request counted per client address, then (if the address is within its limit) per
#: mobile, with the last code sent to the mobile: one round trip, the refusals in that order.
#: Committed without waiting for the WAL flush (``synchronous_commit`` off for this statement's
#: own commit): every request from one address updates the same row, and its lock would
#: otherwise be held across an fsync, so one busy address (a carrier's NAT) would queue on the
#: disk. The count is visible to the next request at once either way. A request that goes on
#: to send a code loses nothing: that code's commit waits for the WAL flush, which carries this
#: earlier record with it. Only the count of a request refused after it (the ownership check)
#: could be lost, by a database crash within a fraction of a second.
_COUNT_OTP_REQUEST = text(
    """
    WITH by_address AS (
        INSERT INTO identity.rate_limit_counter AS c (bucket, window_start, hits, expires_at)
        VALUES (:address, :address_start, 1, :address_end)
        ON CONFLICT (bucket, window_start) DO UPDATE SET hits = c.hits + 1
        RETURNING hits
    ), by_mobile AS (
        INSERT INTO identity.rate_limit_counter AS c (bucket, window_start, hits, expires_at)
        SELECT CAST(:mobile_bucket AS text), CAST(:mobile_start AS timestamptz), 1,
               CAST(:mobile_end AS timestamptz)
        FROM by_address WHERE by_address.hits <= :address_limit
        ON CONFLICT (bucket, window_start) DO UPDATE SET hits = c.hits + 1
        RETURNING hits
    )
    SELECT (SELECT hits FROM by_address) AS by_address,
           (SELECT hits FROM by_mobile) AS by_mobile,
           (SELECT max(created_at) FROM identity.otp_challenge WHERE mobile = :mobile) AS latest,
           set_config('synchronous_commit', 'off', true) AS commit_mode
    """
)

#: A code about to be sent: the mobile's lock is taken, then (``otp_send_state``, migration
#: 0005: with a snapshot taken after the lock, so a code another request stored meanwhile is
#: seen) the last code sent to the mobile (cooldown) and the day's wrong codes of the mobile
#: and the person are read; only when all of them allow it is the code
#: counted per mobile, then (within the mobile's cap) per national code; and only when it was
#: counted within both daily caps are the challenge and the SMS that carries its code stored
#: (the code itself only sealed in the SMS). One round trip for the whole decision.
_SEND_CODE = text(
    """
    WITH locked AS MATERIALIZED (
        SELECT pg_advisory_xact_lock(hashtextextended(:mobile_lock, 0))
    ), state AS MATERIALIZED (
        SELECT identity.otp_send_state(
            CAST(:mobile AS text), CAST(:failed_mobile AS text), CAST(:failed_person AS text),
            CAST(:failed_start AS timestamptz)
        ) AS s
        FROM locked
    ), latest AS (
        SELECT (s).latest AS at FROM state
    ), failed AS (
        SELECT (s).failed_by_mobile AS by_mobile, (s).failed_by_person AS by_person FROM state
    ), by_mobile AS (
        INSERT INTO identity.rate_limit_counter AS c (bucket, window_start, hits, expires_at)
        SELECT CAST(:sent_mobile AS text), CAST(:sent_start AS timestamptz), 1,
               CAST(:sent_end AS timestamptz)
        FROM latest, failed
        WHERE (latest.at IS NULL OR latest.at <= :resend_from)
          AND failed.by_mobile < :failures_per_mobile
          AND failed.by_person < :failures_per_person
        ON CONFLICT (bucket, window_start) DO UPDATE SET hits = c.hits + 1
        RETURNING hits
    ), by_person AS (
        INSERT INTO identity.rate_limit_counter AS c (bucket, window_start, hits, expires_at)
        SELECT CAST(:sent_person AS text), CAST(:sent_start AS timestamptz), 1,
               CAST(:sent_end AS timestamptz)
        FROM by_mobile WHERE by_mobile.hits <= :codes_per_mobile
        ON CONFLICT (bucket, window_start) DO UPDATE SET hits = c.hits + 1
        RETURNING hits
    ), challenge AS (
        INSERT INTO identity.otp_challenge
            (id, national_code, mobile, code_hash, failed_attempts, created_at, expires_at)
        SELECT CAST(:challenge_id AS uuid), CAST(:national_code AS text),
               CAST(:mobile AS text), CAST(:code_hash AS text), 0,
               CAST(:created_at AS timestamptz), CAST(:expires_at AS timestamptz)
        FROM by_person WHERE by_person.hits <= :codes_per_person
        RETURNING id
    ), message AS (
        INSERT INTO identity.sms_message
            (id, mobile, template, sealed_tokens, status, attempts, created_at, next_attempt_at,
             expires_at)
        SELECT CAST(:sms_id AS uuid), CAST(:sms_mobile AS text), CAST(:sms_template AS text),
               CAST(:sms_sealed_tokens AS bytea), CAST(:sms_status AS text),
               CAST(:sms_attempts AS integer), CAST(:sms_created_at AS timestamptz),
               CAST(:sms_next_attempt_at AS timestamptz), CAST(:sms_expires_at AS timestamptz)
        FROM challenge
    )
    SELECT latest.at AS latest, failed.by_mobile AS failed_by_mobile,
           failed.by_person AS failed_by_person,
           (SELECT hits FROM by_mobile) AS sent_to_mobile,
           (SELECT hits FROM by_person) AS sent_to_person,
           EXISTS (SELECT FROM challenge) AS stored
    FROM latest, failed
    """
)


@dataclass(frozen=True)
class RequestCount:
    """What counting an OTP request found; ``by_mobile`` is ``None`` when it was not counted."""

    by_address: int
    by_mobile: int | None
    latest_sent: datetime | None


@dataclass(frozen=True)
class CodeSentCount:
    """What checking a code to send found; the sent counts are ``None`` when not counted."""

    latest_sent: datetime | None
    failed_by_mobile: int
    failed_by_person: int
    sent_to_mobile: int | None
    sent_to_person: int | None
    #: whether the challenge and the SMS carrying its code were stored
    stored: bool


@dataclass(frozen=True)
class NewChallenge:
    """The columns of a challenge to store (its mobile is the one counted)."""

    id: uuid.UUID
    national_code: str
    code_hash: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class Window:
    """A bucket's fixed window: its counter key, start and end."""

    bucket: str
    start: datetime
    end: datetime

    @classmethod
    def of(cls, bucket: str, *, window_seconds: int, now: datetime) -> Window:
        start, end = _window(window_seconds, now)
        return cls(bucket=bucket, start=start, end=end)


async def count_otp_request(
    database: Database,
    *,
    address: Window,
    address_limit: int,
    mobile: Window,
    plain_mobile: str,
) -> RequestCount:
    """One hit per address, then per mobile unless the address is over ``address_limit``.

    A unit of work of its own, committed by the statement itself: the per-address row (every
    request from one address updates it) is locked only while the statement runs.
    """
    row = await database.statement(
        _COUNT_OTP_REQUEST,
        {
            "address": address.bucket,
            "address_start": address.start,
            "address_end": address.end,
            "address_limit": address_limit,
            "mobile_bucket": mobile.bucket,
            "mobile_start": mobile.start,
            "mobile_end": mobile.end,
            "mobile": plain_mobile,
        },
    )
    if row is None:  # pragma: no cover - the statement always answers one row
        msg = "counting an OTP request answered nothing"
        raise RuntimeError(msg)
    return RequestCount(
        by_address=int(row["by_address"]),
        by_mobile=None if row["by_mobile"] is None else int(row["by_mobile"]),
        latest_sent=row["latest"],
    )


#: one hit in a counter's fixed window
_HIT = (
    insert(RateLimitCounter)
    .values(
        bucket=bindparam("counter_bucket"),
        window_start=bindparam("counter_start"),
        hits=1,
        expires_at=bindparam("counter_end"),
    )
    .on_conflict_do_update(
        index_elements=[RateLimitCounter.bucket, RateLimitCounter.window_start],
        set_={"hits": RateLimitCounter.hits + 1},
    )
    .returning(RateLimitCounter.hits)
)


class RateLimitRepository:
    """A login's counters, in units of work sent by the driver."""

    def __init__(self, unit: DirectUnit) -> None:
        self.unit = unit

    async def send_code(
        self,
        *,
        mobile_lock: str,
        plain_mobile: str,
        resend_from: datetime,
        failed_mobile: Window,
        failed_person: Window,
        failure_caps: tuple[int, int],
        sent_mobile: Window,
        sent_person: Window,
        daily_caps: tuple[int, int],
        challenge: NewChallenge,
        message: QueuedMessage,
    ) -> CodeSentCount:
        """Under the mobile's lock (``mobile_lock``, its lookup key: the lock
        :meth:`ChallengeRepository.lock_mobile` takes), the cooldown and failure counts as
        they are once it is held; the code counted when they allow it (per mobile, then per
        person, ``daily_caps`` in that order); the challenge and its SMS stored when it was
        counted within both caps (``stored``).

        Sent alone when the unit of work has sent nothing yet: the statement commits by
        itself and the lock is held for it only (no client round trip under it); in a
        transaction, until that transaction ends."""
        row = await self.unit.fetchrow(
            _SEND_CODE,
            {
                "mobile_lock": mobile_lock,
                "mobile": plain_mobile,
                "resend_from": resend_from,
                "failed_mobile": failed_mobile.bucket,
                "failed_person": failed_person.bucket,
                "failed_start": failed_mobile.start,
                "failures_per_mobile": failure_caps[0],
                "failures_per_person": failure_caps[1],
                "sent_mobile": sent_mobile.bucket,
                "sent_person": sent_person.bucket,
                "sent_start": sent_mobile.start,
                "sent_end": sent_mobile.end,
                "codes_per_mobile": daily_caps[0],
                "codes_per_person": daily_caps[1],
                "challenge_id": challenge.id,
                "national_code": challenge.national_code,
                "code_hash": challenge.code_hash,
                "created_at": challenge.created_at,
                "expires_at": challenge.expires_at,
                **{f"sms_{name}": value for name, value in message.items()},
            },
            alone=True,
        )
        if row is None:  # pragma: no cover - the statement always answers one row
            msg = "checking a code to send answered nothing"
            raise RuntimeError(msg)
        return CodeSentCount(
            latest_sent=row["latest"],
            failed_by_mobile=int(row["failed_by_mobile"]),
            failed_by_person=int(row["failed_by_person"]),
            sent_to_mobile=None if row["sent_to_mobile"] is None else int(row["sent_to_mobile"]),
            sent_to_person=None if row["sent_to_person"] is None else int(row["sent_to_person"]),
            stored=bool(row["stored"]),
        )

    async def hit(self, bucket: str, *, window_seconds: int, now: datetime) -> tuple[int, float]:
        """Count one hit in ``bucket``'s current fixed window: (hits so far, seconds left)."""
        window_start, window_end = _window(window_seconds, now)
        row = await self.unit.fetchrow(
            _HIT,
            {"counter_bucket": bucket, "counter_start": window_start, "counter_end": window_end},
        )
        if row is None:  # pragma: no cover - an upsert … RETURNING answers its row
            msg = "a counter hit answered nothing"
            raise RuntimeError(msg)
        return int(row["hits"]), (window_end - now).total_seconds()


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
