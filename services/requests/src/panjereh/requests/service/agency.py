"""The agency's side: its queue of requests, and its officers' (or back-office's) decisions.

Who acts for an agency: an officer (``officer:<agency>``), or the agency's back-office system
(``client:<agency>`` with the scope ``requests:work``). Both see only their own agencies'
requests; another agency's request is the same 404 as an unknown tracking code. A decision goes
through :func:`panjereh.requests.service.decisions.conclude`, like the rules' own, so it leaves
the same receipt, events and (on approval) document.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.idempotency import IdempotencyStore, Outcome, once
from panjereh.common.pagination import Page, Paging
from panjereh.requests.errors import RequestNotFound, RequestNotInReview
from panjereh.requests.keys import DocumentKeys
from panjereh.requests.models import idempotency
from panjereh.requests.repository import CardRepository, RequestRepository
from panjereh.requests.schemas import (
    AgencyDecisionCreate,
    AgencyRequestRead,
    InquiryEvidence,
    QueueItem,
)
from panjereh.requests.service import decisions
from panjereh.requests.service.reads import decision_of, request_read
from panjereh.requests.statuses import Actor, Status

OPERATION = "requests.agency-decision"
_IDEMPOTENCY = IdempotencyStore(idempotency)


@dataclass(frozen=True)
class AgencyStaff:
    """Who acts for which agencies, and in which capacity."""

    subject: str
    #: agencies the caller is an officer of
    officer_of: frozenset[str] = frozenset()
    #: agencies whose back-office system the caller is (client with ``requests:work``)
    system_of: frozenset[str] = frozenset()

    @property
    def agencies(self) -> frozenset[str]:
        return self.officer_of | self.system_of

    def actor_for(self, agency: str) -> Actor:
        return Actor.OFFICER if agency in self.officer_of else Actor.AGENCY_SYSTEM


async def queue(
    session: AsyncSession, *, staff: AgencyStaff, status: Status, paging: Paging
) -> Page[QueueItem]:
    """The caller's agencies' requests in ``status``, the soonest due first."""
    rows, total = await RequestRepository(session).queue(
        sorted(staff.agencies), statuses=[status.value], offset=paging.offset, limit=paging.limit
    )
    items = [
        QueueItem(
            tracking_code=row.tracking_code,
            service_code=row.service_code,
            service_version=row.service_version,
            status=Status(row.status),
            submitted_at=row.submitted_at,
            due_at=row.due_at,
            overdue=row.overdue,
        )
        for row in rows
    ]
    return paging.of(items, total)


async def view(
    session: AsyncSession, *, staff: AgencyStaff, tracking_code: str, public_base_url: str
) -> AgencyRequestRead:
    """One request of the caller's agencies with each inquiry's result (the evidence).

    Only the inquiries the request's card version lists, and of each answer only the
    ``data_items`` that inquiry names (all of it when it names none): what the card entitles
    the agency to. Another agency's request is the same 404 as an unknown tracking code.
    """
    request = await RequestRepository(session).by_tracking_code(tracking_code)
    if request is None or request.agency not in staff.agencies:
        raise RequestNotFound
    evidence = await RequestRepository(session).inquiries(request.id)
    read = await request_read(session, request, evidence=evidence, public_base_url=public_base_url)
    card = await CardRepository(session).get(request.service_code, request.service_version)
    entitled = _entitled_items(card.card if card is not None else {})
    states = {state.type: state for state in read.inquiries}
    return AgencyRequestRead.model_validate(
        {
            **dict(read),
            "inquiries": [
                InquiryEvidence(
                    **dict(states[row.inquiry_type]),
                    result=_narrowed(row.result, entitled.get(row.inquiry_type, _NOT_ENTITLED)),
                )
                for row in evidence
            ],
        }
    )


def _entitled_items(card: Mapping[str, Any]) -> dict[str, frozenset[str] | None]:
    """Inquiry type → the result items the card names (``None``: the whole answer)."""
    entitled: dict[str, frozenset[str] | None] = {}
    for inquiry in card.get("inquiries") or []:
        items = inquiry.get("data_items") or []
        entitled[str(inquiry["type"])] = frozenset(map(str, items)) or None
    return entitled


#: an inquiry the card does not list: none of its answer is shown
_NOT_ENTITLED: frozenset[str] = frozenset()


def _narrowed(result: dict[str, Any] | None, items: frozenset[str] | None) -> dict[str, Any] | None:
    if result is None or items == _NOT_ENTITLED:
        return None
    if items is None:
        return result
    return {name: value for name, value in result.items() if name in items}


async def decide(
    session: AsyncSession,
    *,
    staff: AgencyStaff,
    tracking_code: str,
    body: AgencyDecisionCreate,
    idempotency_key: str | None,
    now: datetime,
    keys: DocumentKeys,
    document_valid_days: int,
) -> Outcome:
    """Decide a request waiting in ``in_review``; a repeated key replays the first answer."""

    async def create() -> Outcome:
        request = await RequestRepository(session).by_tracking_code(tracking_code, for_update=True)
        if request is None or request.agency not in staff.agencies:
            raise RequestNotFound
        if request.status != Status.IN_REVIEW:
            raise RequestNotInReview
        await decisions.conclude(
            session,
            request,
            outcome=body.outcome,
            actor=staff.actor_for(request.agency),
            subject=staff.subject,
            reason=body.reason.model_dump(exclude_none=True),
            at=now,
            keys=keys,
            document_valid_days=document_valid_days,
        )
        decision = decision_of(request)
        assert decision is not None
        return Outcome(200, decision.model_dump(mode="json"))

    return await once(
        session,
        _IDEMPOTENCY,
        actor=staff.subject,
        key=idempotency_key,
        operation=OPERATION,
        request={"tracking_code": tracking_code, **body.model_dump(mode="json")},
        create=create,
    )
