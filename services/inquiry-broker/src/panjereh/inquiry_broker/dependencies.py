"""What endpoints receive: the broker's runtime, a unit of work, typed callers and options."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.auth import Principal, require_role
from panjereh.common.db import Database
from panjereh.common.messaging.outbox import OutboxRelay
from panjereh.inquiry_broker import service
from panjereh.inquiry_broker.connectors import ConnectorDispatcher
from panjereh.inquiry_broker.errors import InquiryNotPermitted
from panjereh.inquiry_broker.models import Inquiry
from panjereh.inquiry_broker.repository import InquiryRepository
from panjereh.inquiry_broker.schemas import TERMINAL_STATUSES
from panjereh.inquiry_broker.service import BrokerKeys
from panjereh.inquiry_broker.waiting import AnswerListener


@dataclass
class BrokerRuntime:
    """The resources the lifespan opened, shared by every request of this process."""

    database: Database
    keys: BrokerKeys
    relay: OutboxRelay
    listener: AnswerListener
    connectors: ConnectorDispatcher

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncSession]:
        """Commit on success, roll back on error; a refused inquiry's audit entry is kept."""
        async with self.database.sessions() as session:
            try:
                yield session
            except InquiryNotPermitted:
                # the refusal is a fact the audit log must keep: commit it, then answer 403
                await session.commit()
                raise
            except BaseException:
                await session.rollback()
                raise
            else:
                await session.commit()

    async def wait_for_answer(self, inquiry: Inquiry, *, wait: float) -> Inquiry:
        """The inquiry once final, or as it is after ``wait`` seconds (never past its deadline).

        Whichever replica records the answer, its NOTIFY wakes this one; at the deadline this
        caller times the inquiry out itself rather than waiting for a sweeper.
        """
        if inquiry.status in TERMINAL_STATUSES or wait <= 0:
            return inquiry
        latest = inquiry

        async def is_final() -> bool:
            nonlocal latest
            async with self.database.sessions() as session:
                latest = await InquiryRepository(session).get(inquiry.id) or latest
            return latest.status in TERMINAL_STATUSES

        until_deadline = (inquiry.deadline_at - datetime.now(UTC)).total_seconds()
        await self.listener.wait(
            str(inquiry.id), seconds=max(0.0, min(wait, until_deadline)), is_final=is_final
        )
        if latest.status == "pending" and latest.deadline_at <= datetime.now(UTC):
            async with self.unit_of_work() as session:
                await service.time_out_if_overdue(session, inquiry_id=inquiry.id)
            await is_final()
        return latest


def _runtime(request: Request) -> BrokerRuntime:
    runtime: BrokerRuntime = request.app.state.broker
    return runtime


Runtime = Annotated[BrokerRuntime, Depends(_runtime)]


async def _session(runtime: Runtime) -> AsyncIterator[AsyncSession]:
    async with runtime.unit_of_work() as session:
        yield session


Session = Annotated[AsyncSession, Depends(_session)]
PlatformAdmin = Annotated[Principal, Depends(require_role("platform-admin"))]
WaitSeconds = Annotated[
    float,
    Query(ge=0, le=10, description="seconds to wait for the answer (at most 10)"),
]
IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=200),
]
PageNumber = Annotated[int, Query(ge=1)]
PageSize = Annotated[int, Query(ge=1, le=100)]
