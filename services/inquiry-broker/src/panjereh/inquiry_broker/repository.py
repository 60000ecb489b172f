"""Named queries of the inquiry broker, in the domain's words."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
import weakref
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    DateTime,
    Engine,
    Interval,
    Select,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    exists,
    func,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy import (
    cast as sql_cast,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Insert

from panjereh.common.db import Database, DirectUnit, RowByName, Unit, after_commit
from panjereh.common.messaging import outbox
from panjereh.common.messaging.consumer import InboxClaim
from panjereh.inquiry_broker import policy
from panjereh.inquiry_broker.audit import GENESIS, KEYED, KEYED_FIELDS, entry_mac
from panjereh.inquiry_broker.models import (
    SCHEMA,
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
_LOCK_CHAIN = select(func.pg_advisory_xact_lock(_AUDIT_CHAIN_LOCK))
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


_NOTIFY = select(func.pg_notify(bindparam("channel", type_=Text), bindparam("payload", type_=Text)))


def driver(unit: Unit) -> DirectUnit:
    """``unit``'s statements sent by the driver: the hot paths' Core statements (built once,
    at module level: a statement built per call would be compiled per call)."""
    return unit if isinstance(unit, DirectUnit) else DirectUnit.of(unit)


def orm(unit: Unit) -> AsyncSession:
    """``unit`` as the session an ORM query needs."""
    if isinstance(unit, DirectUnit):
        msg = "this query loads ORM objects: it needs a session's unit of work"
        raise TypeError(msg)
    return unit


async def send_notification(unit: Unit, channel: str, payload: str) -> None:
    """``NOTIFY channel, payload``, delivered when the unit of work commits."""
    await driver(unit).fetch(_NOTIFY, {"channel": channel, "payload": payload})


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


@dataclass(frozen=True)
class CachedAnswer:
    """A recent answer to the same question, which a new inquiry may reuse."""

    id: uuid.UUID
    status: str
    result: dict[str, Any] | None


@dataclass(frozen=True)
class PolicyInputs:
    """What the access policy decides one inquiry on, as the broker knows it now.

    ``grants`` are the unrevoked grants of this type for the platform purpose; ``card`` and
    ``live_purpose`` are read only for a purpose that is not a platform purpose. ``cached``
    is read with them and is no input of the policy: the freshest answer to the same
    question within the type's cache TTL, which an inquiry the policy allows reuses.
    """

    inquiry_type: InquiryType
    platform_purpose: policy.PlatformPurposeView | None
    grants: tuple[policy.GrantView, ...]
    card: policy.CardView | None
    live_purpose: policy.LivePurposeView | None
    cached: CachedAnswer | None = None


#: The freshest answer (found or not found) to the question ``cache_key`` names, within the
#: type's cache TTL before ``now``; none for a type that caches nothing.
_CACHED = (
    select(
        Inquiry.id.label("cached_id"),
        Inquiry.status.label("cached_status"),
        Inquiry.result.label("cached_result"),
    )
    .where(
        InquiryType.cache_ttl_seconds > 0,
        Inquiry.cache_key == bindparam("cache_key", type_=Text),
        Inquiry.answered_at
        >= bindparam("now", type_=DateTime(timezone=True))
        - func.make_interval(0, 0, 0, 0, 0, 0, InquiryType.cache_ttl_seconds),
        # an array, not IN: one SQL text for the driver (an IN list is rendered per call)
        Inquiry.status == any_(literal(["answered", "not_found"], type_=ARRAY(Text))),
    )
    .order_by(Inquiry.answered_at.desc())
    .limit(1)
    .lateral("cached")
)


#: The prefix of the registered type's columns in :data:`_POLICY_INPUTS`.
_REGISTERED = "registered__"
#: The type, the platform purpose and its grants of the type, the card, the live purpose and
#: the cached answer, in one statement (one row per grant; at least one row when the type is
#: registered).
_POLICY_INPUTS = (
    select(
        *(
            column.label(_REGISTERED + column.key)
            for column in cast(Table, InquiryType.__table__).c
        ),
        PlatformPurpose.name.label("purpose_name"),
        PlatformPurpose.owner.label("purpose_owner"),
        AccessGrant.principal.label("grant_principal"),
        AccessGrant.legal_basis.label("grant_legal_basis"),
        PublishedCard.service_code.label("card_service_code"),
        PublishedCard.agency.label("card_agency"),
        PublishedCard.inquiry_types.label("card_inquiry_types"),
        PublishedCard.legal_basis.label("card_legal_basis"),
        PublishedCard.retired.label("card_retired"),
        LivePurpose.service_code.label("live_service_code"),
        LivePurpose.subject_hash.label("live_subject_hash"),
        LivePurpose.closed_at.label("live_closed_at"),
        _CACHED.c.cached_id,
        _CACHED.c.cached_status,
        _CACHED.c.cached_result,
    )
    .select_from(InquiryType)
    .outerjoin(PlatformPurpose, PlatformPurpose.name == bindparam("service_code"))
    .outerjoin(
        AccessGrant,
        and_(
            AccessGrant.purpose == PlatformPurpose.name,
            AccessGrant.inquiry_type == InquiryType.name,
            AccessGrant.revoked_at.is_(None),
        ),
    )
    .outerjoin(
        PublishedCard,
        and_(
            PlatformPurpose.name.is_(None), PublishedCard.service_code == bindparam("service_code")
        ),
    )
    .outerjoin(
        LivePurpose,
        and_(
            PlatformPurpose.name.is_(None), LivePurpose.tracking_code == bindparam("tracking_code")
        ),
    )
    .outerjoin(_CACHED, true())
    .where(InquiryType.name == bindparam("inquiry_type"))
)


class PolicyInputRepository:
    def __init__(self, unit: Unit) -> None:
        self.unit = driver(unit)

    async def read(
        self,
        *,
        inquiry_type: str,
        service_code: str,
        tracking_code: str | None,
        cache_key: str | None,
        now: datetime,
    ) -> PolicyInputs | None:
        """Everything the policy needs for one inquiry, and the cached answer to
        ``cache_key`` (``None``: none is wanted), in one round trip; ``None`` when the type is
        not registered. A purpose without a tracking code names no live purpose.

        A read that locks nothing: sent alone when the unit of work has not begun a
        transaction (no ``BEGIN`` for it; under READ COMMITTED it sees what it would see as a
        transaction's statement)."""
        rows = await self.unit.fetch(
            _POLICY_INPUTS,
            {
                "inquiry_type": inquiry_type,
                "service_code": service_code,
                "tracking_code": tracking_code,
                "cache_key": cache_key,
                "now": now,
            },
            alone=True,
        )
        if not rows:
            return None
        first = rows[0]
        registered = InquiryType(
            **{
                column.key: first[_REGISTERED + column.key]
                for column in cast(Table, InquiryType.__table__).c
            }
        )
        cached = None
        if first["cached_id"] is not None:
            cached = CachedAnswer(
                id=first["cached_id"], status=first["cached_status"], result=first["cached_result"]
            )
        if first["purpose_name"] is not None:
            return PolicyInputs(
                inquiry_type=registered,
                platform_purpose=policy.PlatformPurposeView(
                    name=first["purpose_name"], owner=first["purpose_owner"]
                ),
                grants=tuple(
                    policy.GrantView(
                        row["grant_principal"],
                        first["purpose_name"],
                        registered.name,
                        row["grant_legal_basis"],
                    )
                    for row in rows
                    if row["grant_principal"] is not None
                ),
                card=None,
                live_purpose=None,
                cached=cached,
            )
        card = None
        if first["card_service_code"] is not None:
            card = policy.CardView(
                service_code=first["card_service_code"],
                agency=first["card_agency"],
                inquiry_types=first["card_inquiry_types"],
                legal_basis=first["card_legal_basis"],
                retired=first["card_retired"],
            )
        live = None
        if first["live_service_code"] is not None:
            live = policy.LivePurposeView(
                service_code=first["live_service_code"],
                subject_hash=first["live_subject_hash"],
                closed_at=first["live_closed_at"],
            )
        return PolicyInputs(
            inquiry_type=registered,
            platform_purpose=None,
            grants=(),
            card=card,
            live_purpose=live,
            cached=cached,
        )


class PlatformPurposeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, name: str) -> PlatformPurpose | None:
        return await self.session.get(PlatformPurpose, name)


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


_ANNOUNCED_WITHIN = select(AgencyAnnouncement.agency).where(
    AgencyAnnouncement.agency == bindparam("agency", type_=Text),
    AgencyAnnouncement.announced_at > func.now() - bindparam("period", type_=Interval()),
)
_NEW_ANNOUNCEMENT = insert(AgencyAnnouncement).values(
    agency=bindparam("agency", type_=Text), announced_at=func.now()
)
_CLAIM_ANNOUNCEMENT = _NEW_ANNOUNCEMENT.on_conflict_do_update(
    index_elements=[AgencyAnnouncement.agency],
    set_={"announced_at": _NEW_ANNOUNCEMENT.excluded.announced_at},
    where=AgencyAnnouncement.announced_at
    <= _NEW_ANNOUNCEMENT.excluded.announced_at - bindparam("period", type_=Interval()),
).returning(AgencyAnnouncement.agency)


_PLATFORM_PURPOSE = select(PlatformPurpose.name).where(
    PlatformPurpose.name == bindparam("name", type_=Text)
)
#: How long this process trusts what it read about a name being a platform purpose.
PLATFORM_PURPOSE_TTL_SECONDS = 60.0


class _PlatformPurposes:
    """Which service codes name a platform purpose, per database, as last read.

    Platform purposes are made by migrations only (0005 and later), so what was read stays
    true until a deployment changes it; the answer is still read again after
    :data:`PLATFORM_PURPOSE_TTL_SECONDS`. It decides no access (the policy reads purposes in
    the statement that decides): only whether an answer gets an ``InquiryAnswered`` event,
    which for a platform purpose nobody consumes.
    """

    def __init__(self) -> None:
        self._known: weakref.WeakKeyDictionary[Engine, dict[str, tuple[bool, float]]] = (
            weakref.WeakKeyDictionary()
        )

    async def named(self, unit: Unit, name: str) -> bool:
        direct = driver(unit)
        known = self._known.setdefault(direct.engine, {})
        now = time.monotonic()
        cached = known.get(name)
        if cached is not None and cached[1] > now:
            return cached[0]
        found = await direct.fetchrow(_PLATFORM_PURPOSE, {"name": name}) is not None
        known[name] = (found, now + PLATFORM_PURPOSE_TTL_SECONDS)
        return found


_platform_purposes = _PlatformPurposes()


async def is_platform_purpose(unit: Unit, name: str) -> bool:
    """Whether ``name`` is one of the platform's own purposes (read at most once a minute)."""
    return await _platform_purposes.named(unit, name)


class AgencyAnnouncementRepository:
    def __init__(self, unit: Unit) -> None:
        self.unit = driver(unit)

    async def announced_within(self, agency: str, period: timedelta) -> bool:
        """Whether ``agency`` was announced in the last ``period`` (by the database's clock)."""
        found = await self.unit.fetchrow(_ANNOUNCED_WITHIN, {"agency": agency, "period": period})
        return found is not None

    async def claim(self, agency: str, period: timedelta) -> bool:
        """Take the right to announce ``agency`` now; false when it was announced within ``period``.

        Concurrent claims (any replica) wait on the row's lock for each other: one of them wins.
        """
        claimed = await self.unit.fetchrow(
            _CLAIM_ANNOUNCEMENT, {"agency": agency, "period": period}
        )
        return claimed is not None


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


_INQUIRY = cast(Table, Inquiry.__table__)
_TYPE = cast(Table, InquiryType.__table__)
_ANNOUNCEMENT = cast(Table, AgencyAnnouncement.__table__)
#: Every column of an inquiry (the mapped attributes have the columns' names).
_INQUIRY_COLUMNS = tuple(column.key for column in _INQUIRY.c)
#: What an attempt or an answer changes on a stored inquiry.
_PROGRESS_COLUMNS = (
    "status",
    "result",
    "error",
    "signature",
    "answered_at",
    "next_attempt_at",
    "attempts",
    "last_sent_at",
)


def _bound(table: Table, names: Sequence[str]) -> dict[str, Any]:
    return {name: bindparam(name, type_=table.c[name].type) for name in names}


#: The statements of an inquiry's hot path, built (and compiled) once.
_INSERT_INQUIRY = insert(_INQUIRY).values(_bound(_INQUIRY, _INQUIRY_COLUMNS))
_SAVE_PROGRESS = (
    update(_INQUIRY)
    .where(_INQUIRY.c.id == bindparam("inquiry_id", type_=_INQUIRY.c.id.type))
    .values(_bound(_INQUIRY, _PROGRESS_COLUMNS))
)
_SAVED = _SAVE_PROGRESS.returning(_INQUIRY.c.id).cte("saved")
_BY_ID = select(_INQUIRY).where(_INQUIRY.c.id == bindparam("inquiry_id", type_=_INQUIRY.c.id.type))
#: :data:`_SAVE_PROGRESS` and, for the row it wrote, the NOTIFY of its answer.
_SAVE_ANSWER = select(func.pg_notify(ANSWERED_CHANNEL, sql_cast(_SAVED.c.id, Text))).select_from(
    _SAVED
)
#: The prefix of a new inquiry's parameters in :func:`_append_statement` (a column's own name
#: is reserved for an INSERT's own values, and the outbox row's take theirs).
_NEW_INQUIRY = "new_"


@dataclass(frozen=True)
class PendingWrites:
    """A new inquiry and the outbox row of its first attempt, left to the statement that
    appends the decision allowing it to the audit chain (:meth:`AuditRepository.append`): the
    three are written by that one statement, or none of them."""

    #: the outbox table the attempt goes to
    outbox_table: Table
    #: the inquiry's values (prefixed) and the outbox row's
    params: dict[str, Any]


_TYPE_PREFIX = "type__"
#: An inquiry with what recording its answer needs (see :class:`Answering`), unlocked
#: (:meth:`InquiryRepository.peek_for_answer`)
_PEEK_ANSWERING = (
    select(
        _INQUIRY,
        *(column.label(_TYPE_PREFIX + column.key) for column in _TYPE.c),
        exists()
        .where(
            _ANNOUNCEMENT.c.agency == _INQUIRY.c.provider_agency,
            _ANNOUNCEMENT.c.announced_at
            > func.now() - bindparam("announce_every", type_=Interval()),
        )
        .label("agency_announced"),
    )
    .select_from(_INQUIRY.outerjoin(_TYPE, _TYPE.c.name == _INQUIRY.c.type))
    .where(_INQUIRY.c.id == bindparam("inquiry_id", type_=_INQUIRY.c.id.type))
)
#: :data:`_PEEK_ANSWERING`, the inquiry locked until commit (:meth:`InquiryRepository.for_answer`)
_ANSWERING = _PEEK_ANSWERING.with_for_update(of=_INQUIRY)


_CLAIMED = "claimed_event"
_ANSWERING_CLAIMED: weakref.WeakKeyDictionary[Insert, Select[Any]] = weakref.WeakKeyDictionary()


def _answering_claimed(claim: Insert) -> Select[Any]:
    """:data:`_ANSWERING` that first claims a reply's inbox row (``claim``, a CTE whose
    ``RETURNING`` says whether it inserted), built once per consumer's claim."""
    statement = _ANSWERING_CLAIMED.get(claim)
    if statement is None:
        claimed = claim.cte("claimed")
        statement = _ANSWERING.add_columns(
            select(claimed.c.event_id).scalar_subquery().label(_CLAIMED)
        ).add_cte(claimed)
        _ANSWERING_CLAIMED[claim] = statement
    return statement


#: The prefix of the reply's inbox row's parameters in :func:`_answer_unchanged` (an outbox
#: row's take their columns' names, and both have an ``event_id``).
_CLAIM = "claim_"
_CLAIM_COLUMNS = ("consumer", "event_id", "topic")
#: :func:`_answer_unchanged` per (inbox table, outbox table or ``None``); a service has a few
_ANSWERS_UNCHANGED: dict[tuple[Table, Table | None], Select[Any]] = {}


def _answer_unchanged(inbox: Table, outbox_table: Table | None) -> Select[Any]:
    """One statement that writes a final answer on an inquiry only if it is as it was read
    (still ``pending``, at the attempt read) and the reply's inbox row is not there yet; and,
    only for the row it wrote, claims that inbox row, announces the answer (NOTIFY) and, with
    ``outbox_table``, adds the ``InquiryAnswered`` row. It answers one row when it wrote, none
    when it wrote nothing at all. Built once per pair of tables."""
    built = _ANSWERS_UNCHANGED.get((inbox, outbox_table))
    if built is not None:
        return built
    claim = {name: bindparam(_CLAIM + name, type_=inbox.c[name].type) for name in _CLAIM_COLUMNS}
    saved = (
        update(_INQUIRY)
        .where(
            _INQUIRY.c.id == bindparam("inquiry_id", type_=_INQUIRY.c.id.type),
            _INQUIRY.c.status == "pending",
            _INQUIRY.c.attempts == bindparam("read_attempts", type_=_INQUIRY.c.attempts.type),
            ~exists().where(
                inbox.c.consumer == claim["consumer"], inbox.c.event_id == claim["event_id"]
            ),
        )
        .values(_bound(_INQUIRY, _PROGRESS_COLUMNS))
        .returning(_INQUIRY.c.id)
        .cte("saved")
    )
    claimed = (
        insert(inbox)
        .from_select(list(claim), select(*claim.values()).select_from(saved))
        .on_conflict_do_nothing()
        .returning(inbox.c.event_id)
        .cte("claimed")
    )
    statement: Select[Any] = select(
        func.pg_notify(ANSWERED_CHANNEL, sql_cast(saved.c.id, Text)).label("notified"),
        select(claimed.c.event_id).scalar_subquery().label(_CLAIMED),
    ).select_from(saved)
    if outbox_table is not None:
        added = outbox_table.insert().from_select(
            list(outbox.ADDED_COLUMNS),
            select(
                *(bindparam(name, type_=outbox_table.c[name].type) for name in outbox.ADDED_COLUMNS)
            ).select_from(saved),
        )
        statement = statement.add_cte(added.cte("announced"))
    _ANSWERS_UNCHANGED[(inbox, outbox_table)] = statement
    return statement


@dataclass(frozen=True)
class Answering:
    """An inquiry read for recording its answer (locked, or read for a write that checks it
    did not change since), with what recording it needs.

    ``inquiry`` is not attached to the session: what changes on it is written with
    :meth:`InquiryRepository.save_progress` (an attempt) or :meth:`~InquiryRepository.save_answer`
    (an answer).
    """

    inquiry: Inquiry
    #: its registered type (``None`` if it left the registry since)
    inquiry_type: InquiryType | None
    #: its agency was announced active within the period asked about
    agency_announced: bool


def _answering(row: RowByName) -> Answering:
    """An :class:`Answering` from a row of :data:`_ANSWERING`."""
    inquiry = Inquiry(**{name: row[name] for name in _INQUIRY_COLUMNS})
    inquiry_type = None
    if row[_TYPE_PREFIX + "name"] is not None:
        inquiry_type = InquiryType(
            **{column.key: row[_TYPE_PREFIX + column.key] for column in _TYPE.c}
        )
    return Answering(
        inquiry=inquiry, inquiry_type=inquiry_type, agency_announced=row["agency_announced"]
    )


class InquiryRepository:
    """Inquiries: the hot path's statements sent by the driver, whichever unit of work runs
    them; the ORM loads (``get``, the sweeper's and the dispatcher's claims) need a session."""

    def __init__(self, unit: Unit) -> None:
        self.unit = unit

    async def add(self, inquiry: Inquiry) -> None:
        """Insert ``inquiry`` (one prepared statement; the object stays out of the session)."""
        await driver(self.unit).fetch(
            _INSERT_INQUIRY, {name: getattr(inquiry, name) for name in _INQUIRY_COLUMNS}
        )

    def adding_and_sending(self, inquiry: Inquiry, attempt: outbox.Row) -> PendingWrites:
        """The writes that insert ``inquiry`` and the outbox row of its first attempt, left to
        the statement that appends the decision allowing it to the audit chain (the unit of
        work's next statement, :meth:`AuditRepository.append`): nothing is sent to the
        database here."""
        return PendingWrites(
            outbox_table=attempt.table,
            params={
                **{_NEW_INQUIRY + name: getattr(inquiry, name) for name in _INQUIRY_COLUMNS},
                **attempt.values,
            },
        )

    async def save_progress(self, inquiry: Inquiry) -> None:
        """Write what an attempt or an answer changed on ``inquiry`` (read by
        :meth:`for_answer`)."""
        values = {name: getattr(inquiry, name) for name in _PROGRESS_COLUMNS}
        await driver(self.unit).fetch(_SAVE_PROGRESS, {"inquiry_id": inquiry.id, **values})

    async def save_answer(self, inquiry: Inquiry) -> None:
        """:meth:`save_progress` for an inquiry made final, announced in the same statement
        (as :meth:`announce_answer` does)."""
        values = {name: getattr(inquiry, name) for name in _PROGRESS_COLUMNS}
        await driver(self.unit).fetch(_SAVE_ANSWER, {"inquiry_id": inquiry.id, **values})
        self._deliver_locally(inquiry)

    async def get(self, inquiry_id: uuid.UUID) -> Inquiry | None:
        """The inquiry as stored now (not attached to any session)."""
        row = await driver(self.unit).fetchrow(_BY_ID, {"inquiry_id": inquiry_id})
        if row is None:
            return None
        return Inquiry(**{name: row[name] for name in _INQUIRY_COLUMNS})

    async def for_answer(
        self,
        inquiry_id: uuid.UUID,
        *,
        announce_every: timedelta,
        claim: InboxClaim | None = None,
    ) -> Answering | None:
        """The inquiry, locked until commit, with its type and whether its agency was
        announced within ``announce_every`` (by the database's clock), in one statement.

        With ``claim``, the same statement claims the reply's inbox row first and sets
        ``claim.taken``; ``None`` then also for a duplicate. A reply to an unknown inquiry
        changes nothing either way: its claim counts as taken.
        """
        params: dict[str, Any] = {"inquiry_id": inquiry_id, "announce_every": announce_every}
        statement = _ANSWERING
        if claim is not None:
            statement = _answering_claimed(claim.statement)
            params.update(claim.values)
        row = await driver(self.unit).fetchrow(statement, params)
        if claim is not None:
            claim.taken = row is None or row[_CLAIMED] is not None
            if not claim.taken:
                return None
        return None if row is None else _answering(row)

    async def peek_for_answer(
        self, inquiry_id: uuid.UUID, *, announce_every: timedelta
    ) -> Answering | None:
        """:meth:`for_answer` without the lock, sent alone (no transaction): for a reply
        recorded by :meth:`answer_unchanged`, which writes only if nothing changed since."""
        row = await driver(self.unit).fetchrow(
            _PEEK_ANSWERING,
            {"inquiry_id": inquiry_id, "announce_every": announce_every},
            alone=True,
        )
        return None if row is None else _answering(row)

    async def answer_unchanged(
        self,
        inquiry: Inquiry,
        *,
        read_attempts: int,
        claim: InboxClaim,
        event: outbox.Row | None = None,
    ) -> bool:
        """Write ``inquiry``'s final answer in one statement, sent alone, if the stored
        inquiry is still ``pending`` at ``read_attempts`` and ``claim``'s record was not
        handled yet; with it, claim the record (``claim.taken``), NOTIFY the answer and add
        ``event`` (its ``InquiryAnswered`` outbox row). False, with nothing written, when
        anything changed since it was read: the caller then records the reply the locked way.
        """
        values: dict[str, Any] = {
            "inquiry_id": inquiry.id,
            "read_attempts": read_attempts,
            **{name: getattr(inquiry, name) for name in _PROGRESS_COLUMNS},
            **{_CLAIM + name: claim.values[name] for name in _CLAIM_COLUMNS},
        }
        if event is not None:
            values.update(event.values)
        statement = _answer_unchanged(
            cast(Table, claim.statement.table), None if event is None else event.table
        )
        if await driver(self.unit).fetchrow(statement, values, alone=True) is None:
            return False
        claim.taken = True
        self._deliver_locally(inquiry)
        return True

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
        return (await orm(self.unit).scalars(query)).all()

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
        return (await orm(self.unit).scalars(query)).all()

    async def announce_answer(self, inquiry: Inquiry) -> None:
        """NOTIFY waiting callers on every replica, delivered when this transaction commits;
        this process's own waiters get the answer itself (``inquiry``, as this unit of work
        completed it), with no re-read."""
        await send_notification(self.unit, ANSWERED_CHANNEL, str(inquiry.id))
        self._deliver_locally(inquiry)

    def _deliver_locally(self, inquiry: Inquiry) -> None:
        prepare: LocalAnswers | None = self.unit.info.get(_LOCAL_ANSWERS_KEY)
        if prepare is not None:
            after_commit(self.unit, prepare(inquiry))


#: The columns an append writes (``seq`` is the table's own).
_ENTRY_COLUMNS = (*KEYED_FIELDS, "prev_hash", "entry_hash")
_AUDIT_TABLE = cast(Table, AuditEntry.__table__)
#: The prefix of an entry's parameters (the outbox row's take their columns' names).
_ENTRY = "entry_"
#: :func:`_append_statement` per outbox table (``None``: an entry alone); a service has one
_APPEND_STATEMENTS: dict[Table | None, Select[Any]] = {}


def _entry_params(values: dict[str, Any], prev_hash: str, entry_hash: str) -> dict[str, Any]:
    entry = {**values, "prev_hash": prev_hash, "entry_hash": entry_hash}
    return {_ENTRY + name: value for name, value in entry.items()}


def _append_statement(outbox_table: Table | None) -> Select[Any]:
    """One statement that takes the chain's lock, reads the head once it holds it, and, when
    the head is the one the entry's MAC was made after (its ``prev_hash``; ``GENESIS`` for an
    empty chain), inserts the entry, and with ``outbox_table`` also a new inquiry and the
    outbox row of its first attempt. Otherwise it writes nothing. Either way it answers the
    head it found (``head_hash``) and the entry's ``seq`` (``appended_seq``, ``NULL`` when
    nothing was written). Built once per outbox table.

    Under READ COMMITTED a statement's snapshot is taken before it waits for the lock: a plain
    subquery would miss an append committed meanwhile, and the entry would chain beside it.
    ``audit_chain_head()`` (migration 0008), a VOLATILE function, reads the head with a
    snapshot of its own, taken after the lock; both are materialised, so each runs once.

    Sent alone (no transaction, :meth:`~panjereh.common.db.DirectUnit.fetch`), the statement
    commits by itself and the lock is held for the statement only: no client round trip
    happens under it. In a transaction the lock is held until that transaction ends, as any
    append's.

    With a new inquiry, the statement's transaction commits without waiting for its WAL to
    reach the disk (``synchronous_commit`` off, for it only). Nothing it writes is released
    to anyone before a commit that does wait: the inquiry's answer (or time-out) is recorded
    by a synchronous commit, which flushes the WAL in order, this transaction's records
    included, before any caller is handed the answer; and a caller told "pending" (202) is
    told so only after :meth:`~panjereh.common.db.Database.flush_wal`. A server crash in
    between loses an inquiry nobody was told of, with its audit entry and outbox row
    together: at most its agency was asked a question whose answer no one reads. One disk
    flush fewer on each inquiry's way, where this machine's slowest round trips waited
    (pg_stat_activity: ``WalSync`` at ``COMMIT``).
    """
    known = _APPEND_STATEMENTS.get(outbox_table)
    if known is not None:
        return known
    lock: list[Any] = [func.pg_advisory_xact_lock(_AUDIT_CHAIN_LOCK).label("locked")]
    if outbox_table is not None:
        lock.append(func.set_config("synchronous_commit", "off", True).label("no_flush_wait"))
    chain_locked = select(*lock).cte("chain_locked").prefix_with("MATERIALIZED")
    locked_head = (
        select(getattr(func, SCHEMA).audit_chain_head(type_=Text()).label("entry_hash"))
        .select_from(chain_locked)
        .cte("locked_head")
        .prefix_with("MATERIALIZED")
    )
    head_hash = select(locked_head.c.entry_hash).scalar_subquery()
    prev_hash = bindparam(_ENTRY + "prev_hash", type_=_AUDIT_TABLE.c.prev_hash.type)
    guess_right = func.coalesce(head_hash, GENESIS) == prev_hash

    def insert_if_right(table: Table, params: dict[str, str]) -> Insert:
        values = [bindparam(param, type_=table.c[column].type) for column, param in params.items()]
        return insert(table).from_select(list(params), select(*values).where(guess_right))

    appended = (
        insert_if_right(_AUDIT_TABLE, {name: _ENTRY + name for name in _ENTRY_COLUMNS})
        .returning(_AUDIT_TABLE.c.seq)
        .cte("appended")
    )
    statement: Select[Any] = select(
        head_hash.label("head_hash"),
        select(appended.c.seq).scalar_subquery().label("appended_seq"),
    )
    if outbox_table is not None:
        statement = statement.add_cte(
            insert_if_right(_INQUIRY, {name: _NEW_INQUIRY + name for name in _INQUIRY_COLUMNS}).cte(
                "new_inquiry"
            ),
            insert_if_right(outbox_table, {name: name for name in outbox.ADDED_COLUMNS}).cte(
                "first_attempt"
            ),
        )
    _APPEND_STATEMENTS[outbox_table] = statement
    return statement


class _ChainHeads:
    """The chain's head (seq, MAC) as this process last appended it, per database.

    Only a guess: an append checks it against the table under the chain lock in the same
    statement that inserts, and falls back to the head it finds there (another replica
    appended meanwhile, a transaction rolled back, an entry was removed). It saves reading
    the head before every append of a process that appends alone.

    The appends of one process take turns (:meth:`turn`): each guesses the entry the one
    before it inserted, sends its statement and passes the turn on once that statement has
    answered. Guessing all at once, they would all guess the same head, and all but one would
    find another head under the lock and be sent again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._heads: weakref.WeakKeyDictionary[Engine, tuple[int, str]] = (
            weakref.WeakKeyDictionary()
        )
        self._turns: weakref.WeakKeyDictionary[
            Engine, tuple[asyncio.AbstractEventLoop, asyncio.Lock]
        ] = weakref.WeakKeyDictionary()

    def turn(self, engine: Engine) -> asyncio.Lock:
        """The turn of this process's appends to ``engine``'s chain (per event loop)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            known = self._turns.get(engine)
            if known is None or known[0] is not loop:
                known = (loop, asyncio.Lock())
                self._turns[engine] = known
        return known[1]

    def guess(self, engine: Engine) -> str:
        with self._lock:
            head = self._heads.get(engine)
        return GENESIS if head is None else head[1]

    def appended(self, engine: Engine, seq: int, entry_hash: str) -> None:
        with self._lock:
            known = self._heads.get(engine)
            if known is None or known[0] < seq:
                self._heads[engine] = (seq, entry_hash)


_chain_heads = _ChainHeads()
#: ``info`` key: the transaction of a unit of work that holds the audit chain's lock.
_HOLDS_CHAIN_LOCK = "inquiry_broker.holds_audit_chain_lock"


def _transaction_of(unit: Unit) -> object:
    """What identifies ``unit``'s current transaction (a session's outlives its units)."""
    if isinstance(unit, DirectUnit):
        return unit
    return unit.sync_session.get_transaction()


class AuditRepository:
    """The audit chain: appends sent by the driver, whichever unit of work makes them; the
    reads (walk, checkpoints, a citizen's tracker) through a session."""

    def __init__(self, unit: Unit) -> None:
        self.unit = unit

    @property
    def session(self) -> AsyncSession:
        return orm(self.unit)

    async def lock_chain(self) -> None:
        """Serialise with every append (any replica) until this transaction ends."""
        await driver(self.unit).fetch(_LOCK_CHAIN)
        self.unit.info[_HOLDS_CHAIN_LOCK] = _transaction_of(self.unit)

    async def append(
        self, fields: dict[str, Any], *, key: bytes, along: PendingWrites | None = None
    ) -> AuditEntry:
        """Chain ``fields`` after the last entry, MAC'd with ``key``; with ``along``, the writes
        left to the same statement (:class:`PendingWrites`).

        One statement (:func:`_append_statement`) when this process made the last append: it
        takes the chain's lock and inserts after the head this process remembers. Sent alone
        when the unit of work has not begun a transaction (the unit's last write: it commits by
        itself, and the lock is held for the statement only), in the unit's transaction
        otherwise (held until it ends). When the head is another (another replica appended,
        a transaction rolled back), nothing was written, and the statement is sent again
        after the head it found, in a transaction holding the lock from then on: twice more
        at most. The MAC is computed here: the key never reaches the database.
        """
        unit = driver(self.unit)
        engine = unit.engine
        values: dict[str, Any] = {name: fields.get(name) for name in KEYED_FIELDS}
        values["chain_version"] = KEYED
        statement = _append_statement(None if along is None else along.outbox_table)
        params = {} if along is None else along.params
        held = self.unit.info.get(_HOLDS_CHAIN_LOCK)
        if held is not None and held is _transaction_of(self.unit):
            # this transaction holds the lock: waiting for the turn could wait for an append
            # whose statement waits for this very lock
            turn: asyncio.Lock | contextlib.nullcontext[None] = contextlib.nullcontext()
        else:
            turn = _chain_heads.turn(engine)
        async with turn:
            prev_hash = _chain_heads.guess(engine)
            for attempt in range(3):
                entry_hash = entry_mac(key, prev_hash, fields)
                row = await unit.fetchrow(
                    statement,
                    {**params, **_entry_params(values, prev_hash, entry_hash)},
                    alone=attempt == 0,
                )
                assert row is not None  # a SELECT of two scalar subqueries answers one row
                seq: int | None = row["appended_seq"]
                if seq is not None:
                    break
                prev_hash = row["head_hash"] or GENESIS
            else:  # pragma: no cover - the third statement runs under this transaction's lock
                msg = "the audit chain's head moved under its lock"
                raise RuntimeError(msg)
            # this entry is the head the next append guesses, from now on rather than from
            # the commit: the next append's statement holds the lock only once this entry's
            # transaction ended, and reads the head after it (the real one if it rolled back)
            _chain_heads.appended(engine, seq, entry_hash)
        if unit.in_transaction:
            self.unit.info[_HOLDS_CHAIN_LOCK] = _transaction_of(self.unit)
        return AuditEntry(seq=seq, prev_hash=prev_hash, entry_hash=entry_hash, **values)

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
