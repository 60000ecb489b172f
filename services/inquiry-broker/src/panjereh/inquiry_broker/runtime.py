"""The broker's process-wide resources, and the two request flows that span several units of
work: (wait for the purpose,) ask, then wait; read then wait.

A caller may wait up to 10 s for an answer (``?wait=``). No transaction is open while it
waits: each flow reads (or asks) in one short unit of work, waits on the answer listener with
no pooled connection held, and re-reads in other short ones. A wait that held its transaction
would pin one pooled connection per waiting caller ("idle in transaction"), and a few hundred
patient callers would starve the pool. That is why these flows live here, at the boundary,
and not in :mod:`panjereh.inquiry_broker.service`, whose functions never commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from panjereh.common.auth import Principal
from panjereh.common.db import Database, after_commit
from panjereh.common.idempotency import REPLAYED_HEADER
from panjereh.common.messaging.outbox import OutboxRelay
from panjereh.inquiry_broker.connectors import ConnectorDispatcher
from panjereh.inquiry_broker.schemas import InquiryCreate, InquiryRead
from panjereh.inquiry_broker.service import asking, purposes
from panjereh.inquiry_broker.service.asking import BrokerKeys, InquiryState
from panjereh.inquiry_broker.waiting import AnswerListener

#: How often a caller waiting for its purpose re-reads it when no NOTIFY woke it (a safety
#: net: the wait is at most 2 s, so a lost notification must not cost all of it).
PURPOSE_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class Reply:
    """``POST /api/v1/inquiries``'s answer: 200 when final, 202 while pending."""

    inquiry: InquiryRead
    status_code: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BrokerRuntime:
    """What the service's setup opened, shared by every request of this process."""

    database: Database
    keys: BrokerKeys
    relay: OutboxRelay
    listener: AnswerListener
    connectors: ConnectorDispatcher
    #: how long a card-acting service's inquiry waits for an unknown tracking code
    purpose_wait_seconds: float = 2.0
    #: told after an inquiry went out through the outbox: its reply is due soon
    expect_replies: Callable[[], None] | None = None

    async def ask(
        self,
        *,
        principal: Principal,
        request: InquiryCreate,
        idempotency_key: str | None,
        wait: float,
    ) -> Reply:
        """Ask (one unit of work), then wait up to ``wait`` seconds for the answer.

        A card-acting service's inquiry for a request the broker has not heard of yet first
        waits (briefly, holding nothing) for the request's ``submitted`` event.
        """
        if purposes.may_wait_for(
            principal, request.purpose, card_acting_services=self.keys.card_acting_services
        ):
            await self.wait_for_purpose(request)
        # a few Core statements, sent by the driver (Database.direct)
        async with self.database.direct() as unit:
            asked = await asking.ask(
                unit,
                principal=principal,
                request=request,
                keys=self.keys,
                idempotency_key=idempotency_key,
            )
            # publish (or call the connector) right after the commit, not at the next poll
            if asked.queued_for == "outbox":
                after_commit(unit, self.relay.wake)
                if self.expect_replies is not None:
                    after_commit(unit, self.expect_replies)
            elif asked.queued_for == "connector":
                after_commit(unit, self.connectors.wake)
        # a new inquiry was pending at the commit just made: no need to look again first
        state = await self.wait_for_answer(
            asked.state, caller=principal.subject, wait=wait, fresh=not asked.replayed
        )
        if not state.final:
            # "accepted, pending" is a promise: a new inquiry sent through the outbox was
            # committed without waiting for the disk (an answer's commit waits, so a final
            # state needs nothing more; see the repository's _append_statement)
            await self.database.flush_wal()
        return Reply(
            inquiry=state.answer,
            status_code=200 if state.final else 202,
            headers={REPLAYED_HEADER: "true"} if asked.replayed else {},
        )

    async def wait_for_purpose(self, request: InquiryCreate) -> None:
        """Wait up to ``purpose_wait_seconds`` until the tracking code names a known request.

        The requests service commits a request, then asks its inquiries at once; its
        ``submitted`` event reaches the broker through the outbox and Kafka a moment later.
        Refusing in that window would fail a legitimate request, so the caller waits, woken
        by the purposes consumer's NOTIFY (any replica's), re-reading in short units of work.
        The policy still decides afterwards: a request that never arrives is refused as
        ``purpose_unknown``, at most ``purpose_wait_seconds`` late.
        """
        tracking_code = request.purpose.tracking_code
        if tracking_code is None or self.purpose_wait_seconds <= 0:
            return

        async def is_known() -> bool:
            async with self.database.transaction() as session:
                return not await purposes.awaits_opening(session, purpose=request.purpose)

        await self.listener.wait_for_purpose(
            tracking_code,
            seconds=self.purpose_wait_seconds,
            is_known=is_known,
            poll_interval=PURPOSE_POLL_SECONDS,
        )

    async def read(
        self, *, inquiry_id: uuid.UUID, principal: Principal, wait: float
    ) -> InquiryRead:
        """The caller's own inquiry, once final or as it is after ``wait`` seconds."""
        state = await self._current(inquiry_id, caller=principal.subject)
        return (await self.wait_for_answer(state, caller=principal.subject, wait=wait)).answer

    async def wait_for_answer(
        self, state: InquiryState, *, caller: str, wait: float, fresh: bool = False
    ) -> InquiryState:
        """The inquiry once final, or as it is after ``wait`` seconds.

        Whichever replica records the answer, its NOTIFY wakes this one (which then reads it);
        when this process records it, the answer itself is handed over (no read). ``fresh``:
        ``state`` was read pending in a unit of work just committed, with no yield since, so
        the first look is skipped. The deadline is the sweeper's to enforce, and a time-out is
        an answer like any other (its NOTIFY wakes this caller): only the sweeper knows whether
        the agency has read the inquiry, or whether its reply waits on Kafka, and then the
        inquiry is not timed out at its deadline (:mod:`panjereh.inquiry_broker.backlog`).
        """
        if state.final or wait <= 0:
            return state
        inquiry_id = state.answer.inquiry_id
        latest = state

        async def is_final() -> bool:
            nonlocal latest
            latest = await self._current(inquiry_id, caller=caller)
            return latest.final

        def accept(delivered: object) -> bool:
            # what this process's consumer just committed for this very inquiry (its caller
            # was checked when it was asked or first read)
            nonlocal latest
            if isinstance(delivered, InquiryState):
                latest = delivered
            return latest.final

        await self.listener.wait(
            str(inquiry_id),
            seconds=wait,
            is_final=is_final,
            accept=accept,
            look_first=not fresh,
        )
        return latest

    async def _current(self, inquiry_id: uuid.UUID, *, caller: str) -> InquiryState:
        # a short unit of work of its own: nothing stays open between two looks
        async with self.database.direct() as unit:
            return await asking.inquiry_of(unit, inquiry_id=inquiry_id, caller=caller)
