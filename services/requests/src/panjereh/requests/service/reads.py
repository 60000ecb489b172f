"""What citizens and officers read: one request with its history and evidence, and lists.

Object-level authorization lives here, next to the data: a citizen sees only their own
requests, an officer only their agencies'. Anything else is the same 404 as an unknown
tracking code, so codes cannot be probed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.pagination import Page, Paging
from panjereh.requests.errors import RequestAlreadyDecided, RequestNotFound
from panjereh.requests.models import Request, RequestInquiry
from panjereh.requests.repository import RequestRepository
from panjereh.requests.schemas import (
    Decision,
    DocumentRef,
    InquiryState,
    RequestRead,
    RequestSummary,
    Transition,
    Words,
)
from panjereh.requests.service import transitions
from panjereh.requests.statuses import Actor, Status, is_final


@dataclass(frozen=True)
class Reader:
    """Who reads: a citizen (their ``citizen_id``) and/or the agencies they work for.

    ``auditor``: a platform auditor, who may read any decision's receipt (not the request).
    """

    citizen_id: str | None = None
    agencies: frozenset[str] = frozenset()
    auditor: bool = False

    def may_read(self, request: Request) -> bool:
        return request.citizen_id == self.citizen_id or request.agency in self.agencies


def verify_url(public_base_url: str, document_id: object) -> str:
    """Where a person checks a document: the public page ``/verify/{id}`` (a front end's),
    not the JSON answer machines read at ``/api/v1/verify/{id}``."""
    return f"{public_base_url.rstrip('/')}/verify/{document_id}"


async def readable(session: AsyncSession, *, reader: Reader, tracking_code: str) -> Request:
    """The request, when ``reader`` may see it; :class:`RequestNotFound` otherwise."""
    request = await RequestRepository(session).by_tracking_code(tracking_code)
    if request is None or not reader.may_read(request):
        raise RequestNotFound
    return request


async def get_request(
    session: AsyncSession, *, reader: Reader, tracking_code: str, public_base_url: str
) -> RequestRead:
    request = await readable(session, reader=reader, tracking_code=tracking_code)
    evidence = await RequestRepository(session).inquiries(request.id)
    return await request_read(session, request, evidence=evidence, public_base_url=public_base_url)


async def request_read(
    session: AsyncSession,
    request: Request,
    *,
    evidence: Sequence[RequestInquiry],
    public_base_url: str,
) -> RequestRead:
    """The request as its readers see it: history, inquiry statuses, decision, document."""
    requests = RequestRepository(session)
    history = await requests.history(request.id)
    document = await requests.document(request.id)
    return RequestRead(
        tracking_code=request.tracking_code,
        service_code=request.service_code,
        service_version=request.service_version,
        agency=request.agency,
        status=Status(request.status),
        inputs=request.inputs,
        submitted_at=request.submitted_at,
        due_at=request.due_at,
        overdue=request.overdue,
        history=[
            Transition(
                from_status=Status(row.from_status) if row.from_status else None,
                to_status=Status(row.to_status),
                actor=Actor(row.actor),
                reason=Words.model_validate(row.reason) if row.reason else None,
                at=row.at,
            )
            for row in history
        ],
        inquiries=[
            InquiryState(
                type=row.inquiry_type,
                provider_agency=row.provider_agency,
                status=row.status,  # type: ignore[arg-type]  # constrained by the orchestration
                answered_at=row.answered_at,
            )
            for row in evidence
        ],
        decision=decision_of(request),
        document=None
        if document is None
        else DocumentRef(
            document_id=document.id,
            issued_at=document.issued_at,
            valid_until=document.valid_until,
            verify_url=verify_url(public_base_url, document.id),
        ),
    )


def decision_of(request: Request) -> Decision | None:
    if request.outcome is None or request.decided_at is None or request.decided_by is None:
        return None
    return Decision(
        outcome=request.outcome,  # type: ignore[arg-type]
        rule_id=request.rule_id,
        reason=Words.model_validate(request.decision_reason) if request.decision_reason else None,
        decided_by=request.decided_by,  # type: ignore[arg-type]
        decided_at=request.decided_at,
    )


def summary_of(request: Request) -> RequestSummary:
    return RequestSummary(
        tracking_code=request.tracking_code,
        service_code=request.service_code,
        service_version=request.service_version,
        status=Status(request.status),
        submitted_at=request.submitted_at,
        due_at=request.due_at,
        decided_at=request.decided_at,
        outcome=request.outcome,  # type: ignore[arg-type]
    )


async def my_requests(
    session: AsyncSession, *, citizen_id: str, paging: Paging
) -> Page[RequestSummary]:
    rows, total = await RequestRepository(session).for_citizen(
        citizen_id, offset=paging.offset, limit=paging.limit
    )
    return paging.of([summary_of(row) for row in rows], total)


async def cancel(
    session: AsyncSession, *, citizen_id: str, tracking_code: str, now: datetime
) -> RequestSummary:
    """The owner withdraws a request that is not decided yet."""
    request = await RequestRepository(session).by_tracking_code(tracking_code, for_update=True)
    if request is None or request.citizen_id != citizen_id:
        raise RequestNotFound
    if is_final(request.status):
        raise RequestAlreadyDecided
    await transitions.move(
        session,
        request,
        Status.CANCELLED,
        actor=Actor.CITIZEN,
        actor_subject=citizen_id,
        at=now,
        reason={"fa": "لغو به درخواست متقاضی", "en": "Cancelled by the applicant"},
    )
    return summary_of(request)
