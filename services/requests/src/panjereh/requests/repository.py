"""Named queries over the requests service's tables."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.requests.models import (
    CardVersion,
    DecisionReceipt,
    Document,
    Request,
    RequestInquiry,
    RequestTransition,
)


class CardRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def latest(self, service_code: str) -> CardVersion | None:
        """The newest published version of a service (retired or not)."""
        return (
            await self.session.scalars(
                select(CardVersion)
                .where(CardVersion.service_code == service_code)
                .order_by(CardVersion.version.desc())
                .limit(1)
            )
        ).first()

    async def get(self, service_code: str, version: int) -> CardVersion | None:
        return await self.session.get(CardVersion, (service_code, version))

    async def count(self) -> int:
        return int(await self.session.scalar(select(func.count()).select_from(CardVersion)) or 0)

    async def retire(self, service_code: str, *, up_to_version: int, at: datetime) -> None:
        await self.session.execute(
            update(CardVersion)
            .where(
                CardVersion.service_code == service_code,
                CardVersion.version <= up_to_version,
                CardVersion.retired_at.is_(None),
            )
            .values(retired_at=at)
        )


class RequestRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_tracking_code(
        self, tracking_code: str, *, for_update: bool = False
    ) -> Request | None:
        query = select(Request).where(Request.tracking_code == tracking_code)
        if for_update:
            query = query.with_for_update()
        return (await self.session.scalars(query)).first()

    async def due_for_step(
        self,
        *,
        statuses: Sequence[str],
        now: datetime,
        limit: int,
        exclude: Collection[uuid.UUID] = (),
    ) -> Sequence[Request]:
        """Requests whose next orchestration step is due, locked; rows another replica holds
        are skipped, not waited for."""
        query = (
            select(Request)
            .where(Request.status.in_(statuses), Request.next_step_at <= now)
            .order_by(Request.next_step_at, Request.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        if exclude:
            query = query.where(Request.id.not_in(list(exclude)))
        return (await self.session.scalars(query)).all()

    async def past_due(
        self, *, now: datetime, open_statuses: Sequence[str], limit: int
    ) -> Sequence[Request]:
        """Open requests past their due time and not yet marked overdue, locked (SKIP LOCKED)."""
        return (
            await self.session.scalars(
                select(Request)
                .where(
                    Request.status.in_(open_statuses),
                    Request.due_at < now,
                    Request.overdue.is_(False),
                )
                .order_by(Request.due_at, Request.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()

    async def wake(self, tracking_code: str, *, status: str, now: datetime) -> bool:
        """Make a request in ``status`` due now (unless it already is); whether one was."""
        found = await self.session.execute(
            update(Request)
            .where(
                Request.tracking_code == tracking_code,
                Request.status == status,
                (Request.next_step_at.is_(None)) | (Request.next_step_at > now),
            )
            .values(next_step_at=now)
            .returning(Request.id)
        )
        return found.first() is not None

    async def lock(self, request_id: uuid.UUID) -> Request | None:
        return (
            await self.session.scalars(
                select(Request).where(Request.id == request_id).with_for_update()
            )
        ).first()

    async def tracking_code_taken(self, tracking_code: str) -> bool:
        found = await self.session.scalar(
            select(Request.id).where(Request.tracking_code == tracking_code)
        )
        return found is not None

    async def for_citizen(
        self, citizen_id: str, *, offset: int, limit: int
    ) -> tuple[Sequence[Request], int]:
        total = await self.session.scalar(
            select(func.count()).select_from(Request).where(Request.citizen_id == citizen_id)
        )
        rows = await self.session.scalars(
            select(Request)
            .where(Request.citizen_id == citizen_id)
            .order_by(Request.submitted_at.desc(), Request.id)
            .offset(offset)
            .limit(limit)
        )
        return rows.all(), int(total or 0)

    async def queue(
        self, agencies: Sequence[str], *, statuses: Sequence[str], offset: int, limit: int
    ) -> tuple[Sequence[Request], int]:
        where = (Request.agency.in_(agencies), Request.status.in_(statuses))
        total = await self.session.scalar(select(func.count()).select_from(Request).where(*where))
        rows = await self.session.scalars(
            select(Request)
            .where(*where)
            .order_by(Request.due_at.asc().nulls_last(), Request.submitted_at)
            .offset(offset)
            .limit(limit)
        )
        return rows.all(), int(total or 0)

    async def history(self, request_id: uuid.UUID) -> Sequence[RequestTransition]:
        return (
            await self.session.scalars(
                select(RequestTransition)
                .where(RequestTransition.request_id == request_id)
                .order_by(RequestTransition.id)
            )
        ).all()

    async def inquiries(self, request_id: uuid.UUID) -> Sequence[RequestInquiry]:
        return (
            await self.session.scalars(
                select(RequestInquiry)
                .where(RequestInquiry.request_id == request_id)
                .order_by(RequestInquiry.inquiry_type)
            )
        ).all()

    async def inquiries_of(self, request_ids: Collection[uuid.UUID]) -> Sequence[RequestInquiry]:
        if not request_ids:
            return []
        return (
            await self.session.scalars(
                select(RequestInquiry)
                .where(RequestInquiry.request_id.in_(list(request_ids)))
                .order_by(RequestInquiry.request_id, RequestInquiry.inquiry_type)
            )
        ).all()

    async def document(self, request_id: uuid.UUID) -> Document | None:
        return (
            await self.session.scalars(select(Document).where(Document.request_id == request_id))
        ).first()

    async def receipt(self, request_id: uuid.UUID) -> DecisionReceipt | None:
        return await self.session.get(DecisionReceipt, request_id)


class DocumentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, document_id: uuid.UUID) -> Document | None:
        return await self.session.get(Document, document_id)


class StatsRepository:
    """The public KPIs, computed by PostgreSQL over the whole table (no rows come back)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_status(self) -> dict[str, int]:
        rows = await self.session.execute(
            select(Request.status, func.count()).group_by(Request.status)
        )
        return {str(status): int(count) for status, count in rows.all()}

    async def most_used(self, limit: int) -> list[tuple[str, int]]:
        """``(service_code, requests)`` of the most asked-for services, then by code."""
        requests = func.count().label("requests")
        rows = await self.session.execute(
            select(Request.service_code, requests)
            .group_by(Request.service_code)
            .order_by(requests.desc(), Request.service_code)
            .limit(limit)
        )
        return [(str(code), int(count)) for code, count in rows.all()]

    async def decisions(self) -> DecisionFigures:
        decided = Request.decided_at.is_not(None)
        with_due = decided & Request.due_at.is_not(None)
        minutes = func.extract("epoch", Request.decided_at - Request.submitted_at) / 60
        row = (
            await self.session.execute(
                select(
                    func.count().filter(decided),
                    func.count().filter(decided & (Request.decided_by == "rules")),
                    func.percentile_cont(0.5).within_group(minutes).filter(decided),
                    func.count().filter(with_due),
                    func.count().filter(with_due & (Request.decided_at <= Request.due_at)),
                    func.coalesce(func.sum(Request.inquiries_made), 0),
                    func.coalesce(func.sum(Request.documents_asked), 0),
                )
            )
        ).one()
        return DecisionFigures(
            decided=int(row[0]),
            decided_by_rules=int(row[1]),
            median_minutes=None if row[2] is None else float(row[2]),
            decided_with_due=int(row[3]),
            decided_in_time=int(row[4]),
            inquiries_made=int(row[5]),
            documents_asked=int(row[6]),
        )


@dataclass(frozen=True)
class DecisionFigures:
    """Sums over every request: how many were decided, how, how fast, and how in time."""

    decided: int
    decided_by_rules: int
    #: median of (decided_at - submitted_at) in minutes, over decided requests
    median_minutes: float | None
    decided_with_due: int
    decided_in_time: int
    inquiries_made: int
    documents_asked: int
