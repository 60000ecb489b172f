"""The audit log of access decisions: every permission and refusal, hash-chained.

The chain itself (what an entry's hash covers, how a broken link is found) is
:mod:`panjereh.inquiry_broker.audit`; these are the use cases that write and check it.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.inquiry_broker.audit import ChainVerifier
from panjereh.inquiry_broker.models import InquiryType
from panjereh.inquiry_broker.policy import Decision
from panjereh.inquiry_broker.repository import AuditRepository
from panjereh.inquiry_broker.schemas import AuditVerification, BrokenEntryRead, PurposeIn


async def record_decision(
    session: AsyncSession,
    *,
    decision: Decision,
    at: datetime,
    inquiry_id: uuid.UUID,
    inquiry_type: InquiryType,
    caller: str,
    caller_agency: str | None,
    subject_hash: str,
    purpose: PurposeIn,
    legal_basis: str | None,
) -> None:
    """Append the policy's decision on one request to the chain (refusals too).

    ``inquiry_id`` is the id the inquiry gets if allowed; a refusal's entry names none.
    """
    await AuditRepository(session).append(
        {
            "id": uuid.uuid4(),
            "recorded_at": at,
            "decision": "allowed" if decision.allowed else "denied",
            "reason": decision.reason.value,
            "inquiry_id": inquiry_id if decision.allowed else None,
            "inquiry_type": inquiry_type.name,
            "provider_agency": inquiry_type.provider_agency,
            "caller": caller,
            "caller_role": decision.acting_as,
            "caller_agency": caller_agency,
            "subject_hash": subject_hash,
            "service_code": purpose.service_code,
            "tracking_code": purpose.tracking_code,
            "legal_basis": legal_basis,
        }
    )


async def verify_chain(session: AsyncSession) -> AuditVerification:
    """Walk the chain in order (streamed); name the first entry that does not match."""
    verifier = ChainVerifier()
    async for entry in AuditRepository(session).walk():
        broken = verifier.check(entry)
        if broken is not None:
            return AuditVerification(
                valid=False,
                checked=verifier.checked,
                first_broken=BrokenEntryRead(
                    seq=broken.seq,
                    id=broken.id,
                    recorded_at=broken.recorded_at,
                    problem=broken.problem,
                ),
            )
    return AuditVerification(valid=True, checked=verifier.checked, first_broken=None)
