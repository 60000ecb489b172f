"""HTTP endpoints of the inquiry broker (thin: one use case each)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Response

from panjereh.common.auth import CurrentCitizen, CurrentClient
from panjereh.contracts.topics import agency_inquiries
from panjereh.inquiry_broker import service
from panjereh.inquiry_broker.dependencies import (
    IdempotencyKey,
    PageNumber,
    PageSize,
    PlatformAdmin,
    Runtime,
    Session,
    WaitSeconds,
)
from panjereh.inquiry_broker.schemas import (
    TERMINAL_STATUSES,
    AuditVerification,
    BrokenEntryRead,
    CallerRead,
    DataAccessRead,
    InquiryCreate,
    InquiryRead,
    InquiryTypeRead,
    Page,
    PurposeRead,
)

router = APIRouter(prefix="/api/v1", tags=["inquiries"])


@router.get("/inquiry-types")
async def list_inquiry_types(session: Session, _caller: CurrentClient) -> Page[InquiryTypeRead]:
    """The registry of inquiry types: provider, schemas, delivery, timeout and cache TTL."""
    types = await service.list_inquiry_types(session)
    items = [
        InquiryTypeRead.model_validate(t).model_copy(
            update={"topic": agency_inquiries(t.provider_agency) if t.delivery == "kafka" else None}
        )
        for t in types
    ]
    return Page(items=items, total=len(items), page=1, page_size=max(len(items), 1))


@router.get("/inquiry-types/keys")
async def answer_signing_keys(runtime: Runtime) -> dict[str, Any]:
    """The public keys (JWKS) that verify signed answers."""
    return {"keys": [runtime.keys.signer.jwk]}


@router.post(
    "/inquiries",
    responses={202: {"model": InquiryRead, "description": "accepted, not answered yet"}},
)
async def create_inquiry(
    *,
    body: InquiryCreate,
    caller: CurrentClient,
    runtime: Runtime,
    response: Response,
    idempotency_key: IdempotencyKey = None,
    wait: WaitSeconds = 0,
) -> InquiryRead:
    """Ask a provider agency about a subject for a stated purpose; optionally wait for it."""
    async with runtime.unit_of_work() as session:
        inquiry = await service.request_inquiry(
            session,
            principal=caller,
            request=body,
            keys=runtime.keys,
            idempotency_key=idempotency_key,
        )
    # committed: publish (or call the connector) now rather than at the next poll
    if inquiry.connector_url is not None:
        runtime.connectors.wake()
    else:
        runtime.relay.wake()
    inquiry = await runtime.wait_for_answer(inquiry, wait=wait)
    response.status_code = 200 if inquiry.status in TERMINAL_STATUSES else 202
    return InquiryRead.of(inquiry)


@router.get("/inquiries/{inquiry_id}")
async def read_inquiry(
    inquiry_id: uuid.UUID,
    caller: CurrentClient,
    runtime: Runtime,
    session: Session,
    wait: WaitSeconds = 0,
) -> InquiryRead:
    """An inquiry's status and answer, for the client that asked it."""
    inquiry = await service.get_inquiry(session, inquiry_id=inquiry_id, principal=caller)
    return InquiryRead.of(await runtime.wait_for_answer(inquiry, wait=wait))


@router.get("/me/data-access")
async def my_data_access(
    citizen: CurrentCitizen,
    session: Session,
    runtime: Runtime,
    page: PageNumber = 1,
    page_size: PageSize = 20,
) -> Page[DataAccessRead]:
    """Who asked what about me, when and why (refused attempts included)."""
    assert citizen.national_code is not None  # a citizen token always carries it
    rows, total = await service.data_access_for(
        session,
        national_code=citizen.national_code,
        keys=runtime.keys,
        page=page,
        page_size=page_size,
    )
    items = [
        DataAccessRead(
            at=entry.recorded_at,
            inquiry_type=entry.inquiry_type,
            title=inquiry_type.title if inquiry_type else None,
            provider_agency=entry.provider_agency,
            caller=CallerRead(principal=entry.caller_role, agency=entry.caller_agency),
            purpose=PurposeRead(
                service_code=entry.service_code,
                tracking_code=entry.tracking_code,
                legal_basis=entry.legal_basis,
            ),
            decision="allowed" if entry.decision == "allowed" else "denied",
        )
        for entry, inquiry_type in rows
    ]
    return Page(items=items, total=total, page=page, page_size=page_size)


@router.get("/audit/verify")
async def verify_audit_log(_admin: PlatformAdmin, session: Session) -> AuditVerification:
    """Walk the audit log's hash chain; name the first entry that does not match."""
    checked, broken = await service.verify_audit_chain(session)
    return AuditVerification(
        valid=broken is None,
        checked=checked,
        first_broken=None
        if broken is None
        else BrokenEntryRead(
            seq=broken.seq,
            id=broken.id,
            recorded_at=broken.recorded_at,
            problem=broken.problem,  # type: ignore[arg-type]
        ),
    )
