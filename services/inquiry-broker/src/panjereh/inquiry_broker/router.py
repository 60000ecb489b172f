"""HTTP endpoints of the inquiry broker (thin: one use case each)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Response

from panjereh.common.dependencies import DbSession, IdempotencyKey
from panjereh.common.pagination import Page, PageParams
from panjereh.inquiry_broker.dependencies import (
    AuditChainKey,
    CitizensNationalCode,
    InquiringClient,
    PlatformAdmin,
    Runtime,
    WaitSeconds,
)
from panjereh.inquiry_broker.schemas import (
    AuditVerification,
    AuditVerifyRequest,
    CheckpointRead,
    DataAccessRead,
    InquiryCreate,
    InquiryRead,
    InquiryTypeRead,
)
from panjereh.inquiry_broker.service import audit, registry, tracker

router = APIRouter(prefix="/api/v1", tags=["inquiries"])

# The caller is declared before the session everywhere: verifying a token may fetch the
# signing keys over the network, which must not happen inside the request's transaction.


@router.get("/inquiry-types")
async def list_inquiry_types(_caller: InquiringClient, session: DbSession) -> Page[InquiryTypeRead]:
    """The registry of inquiry types: provider, schemas, delivery, timeout and cache TTL."""
    return await registry.list_inquiry_types(session)


@router.get("/inquiry-types/keys")
async def answer_signing_keys(runtime: Runtime) -> dict[str, Any]:
    """The public keys (JWKS) that verify signed answers."""
    return runtime.keys.signer.jwks()


@router.post(
    "/inquiries",
    responses={202: {"model": InquiryRead, "description": "accepted, not answered yet"}},
)
async def create_inquiry(
    *,
    body: InquiryCreate,
    caller: InquiringClient,
    runtime: Runtime,
    response: Response,
    idempotency_key: IdempotencyKey,
    wait: WaitSeconds = 0,
) -> InquiryRead:
    """Ask a provider agency about a subject for a stated purpose; optionally wait for it."""
    reply = await runtime.ask(
        principal=caller, request=body, idempotency_key=idempotency_key, wait=wait
    )
    response.status_code = reply.status_code
    response.headers.update(reply.headers)
    return reply.inquiry


@router.get("/inquiries/{inquiry_id}")
async def read_inquiry(
    inquiry_id: uuid.UUID, caller: InquiringClient, runtime: Runtime, wait: WaitSeconds = 0
) -> InquiryRead:
    """An inquiry's status and answer, for the client that asked it."""
    return await runtime.read(inquiry_id=inquiry_id, principal=caller, wait=wait)


@router.get("/me/data-access")
async def my_data_access(
    national_code: CitizensNationalCode, runtime: Runtime, paging: PageParams, session: DbSession
) -> Page[DataAccessRead]:
    """Who asked what about me, when and why (refused attempts included)."""
    return await tracker.data_access_for(
        session,
        national_code=national_code,
        subject_hash_key=runtime.keys.subject_hash_key,
        paging=paging,
    )


@router.get("/audit/verify")
async def verify_audit_log(
    _admin: PlatformAdmin, runtime: Runtime, chain_key: AuditChainKey, session: DbSession
) -> AuditVerification:
    """Walk the audit log's chain; name the first entry that does not match, and compare the
    chain with the last stored checkpoint."""
    return await audit.verify_chain(session, jwks=runtime.keys.signer.jwks(), chain_key=chain_key)


@router.post("/audit/verify")
async def verify_audit_log_against(
    body: AuditVerifyRequest,
    _admin: PlatformAdmin,
    runtime: Runtime,
    chain_key: AuditChainKey,
    session: DbSession,
) -> AuditVerification:
    """The same walk, compared with a checkpoint the auditor kept (422 if not the broker's)."""
    return await audit.verify_chain(
        session, jwks=runtime.keys.signer.jwks(), supplied=body.checkpoint, chain_key=chain_key
    )


@router.get("/audit/checkpoints/latest")
async def latest_audit_checkpoint(session: DbSession) -> CheckpointRead:
    """The last signed checkpoint of the audit log's head (public: hashes and a count only)."""
    return await audit.latest_checkpoint(session)
