"""HTTP endpoints of the requests service (docs/api.md, "Requests"): thin, one call each."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from panjereh.common.dependencies import DatabaseDep, DbSession, IdempotencyKey
from panjereh.common.pagination import Page, PageParams
from panjereh.contracts import access
from panjereh.requests import runtime
from panjereh.requests.dependencies import (
    AppEvaluator,
    AppKeys,
    AppSettings,
    CurrentAgencyStaff,
    CurrentCitizen,
    CurrentReader,
    Now,
    WakeWorkers,
)
from panjereh.requests.schemas import (
    AgencyDecisionCreate,
    AgencyRequestRead,
    Decision,
    DocumentPresented,
    DocumentRead,
    QueueItem,
    ReceiptRead,
    ReplayResult,
    RequestCreate,
    RequestCreated,
    RequestRead,
    RequestStats,
    RequestSummary,
    Verification,
)
from panjereh.requests.service import agency, documents, intake, reads, receipts, stats
from panjereh.requests.statuses import Status

router = APIRouter(prefix="/api/v1", tags=["requests"])
agency_router = APIRouter(prefix="/api/v1/agency", tags=["agency"])
verify_router = APIRouter(prefix="/api/v1/verify", tags=["verification"])


@router.post("/requests", status_code=201, response_model=RequestCreated)
async def submit_request(
    *,
    body: RequestCreate,
    citizen: CurrentCitizen,
    session: DbSession,
    idempotency_key: IdempotencyKey,
    now: Now,
    wake: WakeWorkers,
) -> Response:
    """Ask for a service: the inputs its form asks for, checked against the card's schema."""
    outcome = await intake.submit(
        session,
        citizen_id=citizen.subject,
        national_code=access.national_code_of(citizen) or "",
        request=body,
        idempotency_key=idempotency_key,
        now=now,
        wake=wake,
    )
    return JSONResponse(outcome.body, status_code=outcome.status_code, headers=outcome.headers)


@router.get("/requests", response_model=Page[RequestSummary])
async def list_my_requests(
    citizen: CurrentCitizen, session: DbSession, paging: PageParams
) -> Page[RequestSummary]:
    """My requests, newest first."""
    return await reads.my_requests(session, citizen_id=citizen.subject, paging=paging)


# declared before /requests/{tracking_code}, which would otherwise take "stats" for a code
@router.get("/requests/stats", response_model=RequestStats)
async def request_stats(session: DbSession) -> RequestStats:
    """Public KPIs: volumes by status, decisions without a human step, speed, SLA, once-only."""
    return await stats.request_stats(session)


@router.get("/requests/{tracking_code}", response_model=RequestRead)
async def get_request(
    tracking_code: str, reader: CurrentReader, session: DbSession, settings: AppSettings
) -> RequestRead:
    """A request with its history, evidence, decision and document (owner or its officers)."""
    return await reads.get_request(
        session,
        reader=reader,
        tracking_code=tracking_code,
        public_base_url=settings.public_base_url,
    )


@router.post("/requests/{tracking_code}/cancel", response_model=RequestSummary)
async def cancel_request(
    tracking_code: str, citizen: CurrentCitizen, session: DbSession, now: Now
) -> RequestSummary:
    """Withdraw my request while it is not decided."""
    return await reads.cancel(
        session, citizen_id=citizen.subject, tracking_code=tracking_code, now=now
    )


@router.get("/requests/{tracking_code}/document", response_model=DocumentRead)
async def get_document(
    tracking_code: str, citizen: CurrentCitizen, session: DbSession, settings: AppSettings
) -> DocumentRead:
    """The document my approved request issued: its payload and its compact JWS."""
    return await documents.for_owner(
        session,
        citizen_id=citizen.subject,
        tracking_code=tracking_code,
        public_base_url=settings.public_base_url,
    )


@router.get("/requests/{tracking_code}/receipt", response_model=ReceiptRead)
async def get_receipt(tracking_code: str, reader: CurrentReader, session: DbSession) -> ReceiptRead:
    """The signed decision receipt (owner, officers of the card's agency, auditors)."""
    return await receipts.get(session, reader=reader, tracking_code=tracking_code)


@router.post("/requests/{tracking_code}/receipt/replay", response_model=ReplayResult)
async def replay_receipt(
    tracking_code: str,
    reader: CurrentReader,
    database: DatabaseDep,
    evaluator: AppEvaluator,
    keys: AppKeys,
) -> ReplayResult:
    """Re-run the decision from the receipt's card version and the recorded evidence."""
    return await runtime.replay_receipt(
        database, evaluator=evaluator, keys=keys, reader=reader, tracking_code=tracking_code
    )


@agency_router.get("/requests", response_model=Page[QueueItem])
async def agency_queue(
    staff: CurrentAgencyStaff,
    session: DbSession,
    paging: PageParams,
    status: Status = Status.IN_REVIEW,
) -> Page[QueueItem]:
    """My agencies' requests in a status (``in_review`` by default), the soonest due first."""
    return await agency.queue(session, staff=staff, status=status, paging=paging)


@agency_router.get("/requests/{tracking_code}", response_model=AgencyRequestRead)
async def agency_request(
    tracking_code: str, staff: CurrentAgencyStaff, session: DbSession, settings: AppSettings
) -> AgencyRequestRead:
    """A request of my agency with each inquiry's result: the evidence a decision rests on."""
    return await agency.view(
        session,
        staff=staff,
        tracking_code=tracking_code,
        public_base_url=settings.public_base_url,
    )


@agency_router.post("/requests/{tracking_code}/decision", response_model=Decision)
async def decide_request(
    *,
    tracking_code: str,
    body: AgencyDecisionCreate,
    staff: CurrentAgencyStaff,
    session: DbSession,
    idempotency_key: IdempotencyKey,
    now: Now,
    keys: AppKeys,
    settings: AppSettings,
) -> Response:
    """Approve or reject a request of my agency that waits in review, with the reason."""
    outcome = await agency.decide(
        session,
        staff=staff,
        tracking_code=tracking_code,
        body=body,
        idempotency_key=idempotency_key,
        now=now,
        keys=keys,
        document_valid_days=settings.document_valid_days,
    )
    return JSONResponse(outcome.body, status_code=outcome.status_code, headers=outcome.headers)


# declared before /{document_id}, which would otherwise take "keys" for an id
@verify_router.get("/keys")
async def verification_keys(keys: AppKeys) -> dict[str, list[dict[str, str]]]:
    """The public keys (JWKS) that verify documents and decision receipts."""
    return keys.jwks()


@verify_router.get("/{document_id}", response_model=Verification)
async def verify_document(
    *,
    document_id: uuid.UUID,
    session: DbSession,
    keys: AppKeys,
    now: Now,
) -> Verification:
    """Is this document valid? (To check a presented token, POST it: URLs get logged.)"""
    return await documents.verify(session, document_id=document_id, keys=keys, now=now)


@verify_router.post("/{document_id}", response_model=Verification)
async def verify_presented_document(
    document_id: uuid.UUID, body: DocumentPresented, session: DbSession, keys: AppKeys, now: Now
) -> Verification:
    """Is the presented token (compact JWS) this valid document?"""
    return await documents.verify(
        session, document_id=document_id, keys=keys, now=now, presented=body.jws
    )


@verify_router.get(
    "/{document_id}/qr.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "a PNG QR code"}},
)
async def document_qr(
    document_id: uuid.UUID, session: DbSession, settings: AppSettings
) -> Response:
    """A QR code (PNG) of the document's public verification URL."""
    png = await documents.qr_png(
        session, document_id=document_id, public_base_url=settings.public_base_url
    )
    return Response(content=png, media_type="image/png")
