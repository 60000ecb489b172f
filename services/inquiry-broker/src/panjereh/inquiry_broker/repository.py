"""Named queries of the inquiry broker, in the domain's words."""

from __future__ import annotations

import uuid
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.util import identity_key

from panjereh.common.db import Database, after_commit
from panjereh.inquiry_broker.audit import GENESIS, KEYED, KEYED_FIELDS, entry_mac
from panjereh.inquiry_broker.models import (
    AccessGrant,
    AgencyAnnouncement,
    AuditCheckpoint,
    AuditEntry,
    Inquiry,
    InquiryType,
    LivePurpose,
    PlatformPurpose,
    PublishedCard,
)

#: One advisory lock serialises appends to the audit chain across every replica.
_AUDIT_CHAIN_LOCK = zlib.crc32(b"inquiry_broker.audit_entry")
#: The entries a citizen's data tracker shows: access decisions (not refused agency replies).
_ACCESS_DECISION = AuditEntry.decision.in_(("allowed", "denied"))
#: The channel a committed answer is announced on (payload: the inquiry id).
ANSWERED_CHANNEL = "inquiry_answered"
#: The channel a committed change of a live purpose is announced on (payload: the tracking code).
PURPOSE_CHANNEL = "live_purpose_recorded"
#: ``session.info`` key of the callback that hands an answer to this process's waiters.
_LOCAL_ANSWERS_KEY = "inquiry_broker.local_answers"

#: Given a final inquiry (before commit), what to run once its answer is committed.
LocalAnswers = Callable[[Inquiry], Callable[[], None]]


def deliver_answers_locally(database: Database, prepare: LocalAnswers) -> None:
    """Every answer a unit of work of ``database`` records is also handed, once committed, to
    the callers of this process waiting for it (``prepare`` snapshots it before the commit)."""
    info = dict(database.sessions.kw.get("info") or {})
    info[_LOCAL_ANSWERS_KEY] = prepare
    database.sessions.configure(info=info)


async def send_notification(session: AsyncSession, channel: str, payload: str) -> None:
    """``NOTIFY channel, payload``, delivered when the unit of work commits."""
    await session.execute(select(func.pg_notify(channel, payload)))


class InquiryTypeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def all(self) -> Sequence[InquiryType]:
        return (await self.session.scalars(select(InquiryType).order_by(InquiryType.name))).all()

    async def get(self, name: str) -> InquiryType | None:
        return await self.session.get(InquiryType, name)

    async def provider_agencies(self) -> Sequence[str]:
        """Every agency some type is asked of, each once, in order."""
        query = select(InquiryType.provider_agency).distinct().order_by(InquiryType.provider_agency)
        return (await self.session.scalars(query)).all()


class PlatformPurposeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, name: str) -> PlatformPurpose | None:
        return await self.session.get(PlatformPurpose, name)


class GrantRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def active_for(self, *, purpose: str, inquiry_type: str) -> Sequence[AccessGrant]:
        query = select(AccessGrant).where(
            AccessGrant.purpose == purpose,
            AccessGrant.inquiry_type == inquiry_type,
            AccessGrant.revoked_at.is_(None),
        )
        return (await self.session.scalars(query)).all()


class LivePurposeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, tracking_code: str) -> LivePurpose | None:
        return await self.session.get(LivePurpose, tracking_code, populate_existing=True)

    async def exists(self, tracking_code: str) -> bool:
        found = await self.session.scalar(
            select(LivePurpose.tracking_code).where(LivePurpose.tracking_code == tracking_code)
        )
        return found is not None

    async def open(
        self,
        *,
        tracking_code: str,
        service_code: str,
        service_version: int,
        subject_hash: str,
        opened_at: datetime,
    ) -> None:
        """Open the purpose; a close that arrived first is kept (the request stays decided).

        A second opening of the same tracking code changes nothing: the first one said which
        request, of which subject, the code names.
        """
        statement = insert(LivePurpose).values(
            tracking_code=tracking_code,
            service_code=service_code,
            service_version=service_version,
            subject_hash=subject_hash,
            opened_at=opened_at,
        )
        statement = statement.on_conflict_do_update(
            index_elements=[LivePurpose.tracking_code],
            set_={
                "service_code": statement.excluded.service_code,
                "service_version": statement.excluded.service_version,
                "subject_hash": statement.excluded.subject_hash,
                "opened_at": statement.excluded.opened_at,
            },
            where=LivePurpose.opened_at.is_(None),
        )
        await self.session.execute(statement)

    async def close(self, *, tracking_code: str, service_code: str, closed_at: datetime) -> None:
        """Close the purpose for good, even before it was opened here (the events crossed)."""
        statement = insert(LivePurpose).values(
            tracking_code=tracking_code, service_code=service_code, closed_at=closed_at
        )
        statement = statement.on_conflict_do_update(
            index_elements=[LivePurpose.tracking_code],
            set_={"closed_at": statement.excluded.closed_at},
            where=LivePurpose.closed_at.is_(None),
        )
        await self.session.execute(statement)

    async def announce(self, tracking_code: str) -> None:
        """NOTIFY callers waiting for this purpose on every replica, delivered at commit."""
        await self.session.execute(select(func.pg_notify(PURPOSE_CHANNEL, tracking_code)))


class AgencyAnnouncementRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def announced_within(self, agency: str, period: timedelta) -> bool:
        """Whether ``agency`` was announced in the last ``period`` (by the database's clock)."""
        found = await self.session.scalar(
            select(AgencyAnnouncement.agency).where(
                AgencyAnnouncement.agency == agency,
                AgencyAnnouncement.announced_at > func.now() - period,
            )
        )
        return found is not None

    async def claim(self, agency: str, period: timedelta) -> bool:
        """Take the right to announce ``agency`` now; false when it was announced within ``period``.

        Concurrent claims (any replica) wait on the row's lock for each other: one of them wins.
        """
        statement = insert(AgencyAnnouncement).values(agency=agency, announced_at=func.now())
        claimed = statement.on_conflict_do_update(
            index_elements=[AgencyAnnouncement.agency],
            set_={"announced_at": statement.excluded.announced_at},
            where=AgencyAnnouncement.announced_at <= statement.excluded.announced_at - period,
        ).returning(AgencyAnnouncement.agency)
        return (await self.session.execute(claimed)).first() is not None


class CardRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, service_code: str) -> PublishedCard | None:
        return await self.session.get(PublishedCard, service_code)

    async def save_published(
        self,
        *,
        service_code: str,
        agency: str,
        version: int,
        inquiry_types: list[str],
        legal_basis: str | None,
    ) -> None:
        """Keep the newest version: an older one arriving late changes nothing."""
        values: dict[str, Any] = {
            "service_code": service_code,
            "agency": agency,
            "version": version,
            "inquiry_types": inquiry_types,
            "legal_basis": legal_basis,
            "retired": False,
            "updated_at": func.now(),
        }
        statement = insert(PublishedCard).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[PublishedCard.service_code],
            set_={k: statement.excluded[k] for k in values if k != "service_code"},
            where=PublishedCard.version <= statement.excluded.version,
        )
        await self.session.execute(statement)

    async def retire(self, *, service_code: str, version: int) -> None:
        await self.session.execute(
            update(PublishedCard)
            .where(PublishedCard.service_code == service_code, PublishedCard.version <= version)
            .values(retired=True, updated_at=func.now())
        )


class InquiryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, inquiry: Inquiry) -> None:
        self.session.add(inquiry)
        await self.session.flush()

    async def get(self, inquiry_id: uuid.UUID) -> Inquiry | None:
        return await self.session.get(Inquiry, inquiry_id, populate_existing=True)

    async def get_for_update(self, inquiry_id: uuid.UUID) -> Inquiry | None:
        return await self.session.get(
            Inquiry, inquiry_id, with_for_update=True, populate_existing=True
        )

    async def latest_answer(self, cache_key: str, *, since: datetime) -> Inquiry | None:
        """The freshest answer (found or not found) to the same question since ``since``."""
        query = (
            select(Inquiry)
            .where(
                Inquiry.cache_key == cache_key,
                Inquiry.answered_at >= since,
                Inquiry.status.in_(("answered", "not_found")),
            )
            .order_by(Inquiry.answered_at.desc())
            .limit(1)
        )
        return (await self.session.scalars(query)).first()

    async def overdue(self, *, now: datetime, limit: int = 100) -> Sequence[Inquiry]:
        """Pending inquiries due a resend or past their deadline, locked for this replica."""
        query = (
            select(Inquiry)
            .where(
                Inquiry.status == "pending",
                or_(
                    Inquiry.deadline_at <= now,
                    # HTTP connector attempts are made by the connector dispatcher
                    and_(Inquiry.next_attempt_at <= now, Inquiry.connector_url.is_(None)),
                ),
            )
            .order_by(Inquiry.deadline_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return (await self.session.scalars(query)).all()

    async def due_connector_calls(self, *, now: datetime, limit: int = 50) -> Sequence[Inquiry]:
        """Pending HTTP-connector inquiries due an attempt, locked for this replica."""
        query = (
            select(Inquiry)
            .where(
                Inquiry.status == "pending",
                Inquiry.connector_url.is_not(None),
                Inquiry.next_attempt_at <= now,
                Inquiry.deadline_at > now,
            )
            .order_by(Inquiry.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return (await self.session.scalars(query)).all()

    async def announce_answer(self, inquiry_id: uuid.UUID) -> None:
        """NOTIFY waiting callers on every replica, delivered when this transaction commits;
        this process's own waiters get the answer itself, with no re-read."""
        await send_notification(self.session, ANSWERED_CHANNEL, str(inquiry_id))
        prepare: LocalAnswers | None = self.session.info.get(_LOCAL_ANSWERS_KEY)
        if prepare is not None:
            # the row this unit of work just completed, from the session (no query)
            inquiry = self.session.sync_session.identity_map.get(identity_key(Inquiry, inquiry_id))
            if isinstance(inquiry, Inquiry):
                after_commit(self.session, prepare(inquiry))


class AuditRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock_chain(self) -> None:
        """Serialise with every append (any replica) until this transaction ends."""
        await self.session.execute(select(func.pg_advisory_xact_lock(_AUDIT_CHAIN_LOCK)))

    async def append(self, fields: dict[str, Any], *, key: bytes) -> AuditEntry:
        """Chain ``fields`` after the last entry, MAC'd with ``key``. Holds the chain lock
        until commit."""
        await self.lock_chain()
        last = await self.session.scalar(
            select(AuditEntry.entry_hash).order_by(AuditEntry.seq.desc()).limit(1)
        )
        prev_hash = last or GENESIS
        entry = AuditEntry(
            **{name: fields.get(name) for name in KEYED_FIELDS if name != "chain_version"},
            chain_version=KEYED,
            prev_hash=prev_hash,
            entry_hash=entry_mac(key, prev_hash, fields),
        )
        self.session.add(entry)
        await self.session.flush()
        return entry

    async def walk(self, batch: int = 1000) -> AsyncIterator[dict[str, Any]]:
        """Every entry in chain order, as plain mappings, a batch at a time."""
        after = 0
        columns = [getattr(AuditEntry, name) for name in ("seq", *KEYED_FIELDS)]
        columns += [AuditEntry.prev_hash, AuditEntry.entry_hash]
        while True:
            rows = (
                (
                    await self.session.execute(
                        select(*columns)
                        .where(AuditEntry.seq > after)
                        .order_by(AuditEntry.seq)
                        .limit(batch)
                    )
                )
                .mappings()
                .all()
            )
            if not rows:
                return
            for row in rows:
                yield dict(row)
            after = rows[-1]["seq"]

    async def head(self) -> tuple[int, str] | None:
        """The last entry's sequence number and hash."""
        row = (
            await self.session.execute(
                select(AuditEntry.seq, AuditEntry.entry_hash)
                .order_by(AuditEntry.seq.desc())
                .limit(1)
            )
        ).first()
        return None if row is None else (row.seq, row.entry_hash)

    async def hash_at(self, seq: int) -> str | None:
        """The hash of the entry ``seq``, if there still is one."""
        entry_hash: str | None = await self.session.scalar(
            select(AuditEntry.entry_hash).where(AuditEntry.seq == seq)
        )
        return entry_hash

    async def count_between(self, after: int, up_to: int) -> int:
        """How many entries have ``after < seq <= up_to``."""
        count = await self.session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.seq > after, AuditEntry.seq <= up_to)
        )
        return int(count or 0)

    async def latest_checkpoint(self) -> AuditCheckpoint | None:
        checkpoint: AuditCheckpoint | None = await self.session.scalar(
            select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1)
        )
        return checkpoint

    async def add_checkpoint(self, checkpoint: AuditCheckpoint) -> None:
        self.session.add(checkpoint)
        await self.session.flush()

    async def for_subject(
        self, subject_hash: str, *, offset: int, limit: int
    ) -> tuple[Sequence[tuple[AuditEntry, InquiryType | None]], int]:
        total = await self.session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.subject_hash == subject_hash, _ACCESS_DECISION)
        )
        result = await self.session.execute(
            select(AuditEntry, InquiryType)
            .outerjoin(InquiryType, InquiryType.name == AuditEntry.inquiry_type)
            .where(AuditEntry.subject_hash == subject_hash, _ACCESS_DECISION)
            .order_by(AuditEntry.seq.desc())
            .offset(offset)
            .limit(limit)
        )
        rows = [(entry, inquiry_type) for entry, inquiry_type in result.all()]
        return rows, int(total or 0)
