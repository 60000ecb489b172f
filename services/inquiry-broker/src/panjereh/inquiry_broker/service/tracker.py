"""The citizen's data tracker: who asked what about me, when and why (refusals included).

The audit log holds no national codes, only their keyed hash; the citizen's entries are found
by hashing the national code of their own token, so no one can look up anyone else's.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.pagination import Page, Paging
from panjereh.inquiry_broker.identifiers import subject_hash
from panjereh.inquiry_broker.models import AuditEntry, InquiryType
from panjereh.inquiry_broker.repository import AuditRepository
from panjereh.inquiry_broker.schemas import CallerRead, DataAccessRead, PurposeRead


async def data_access_for(
    session: AsyncSession, *, national_code: str, subject_hash_key: bytes, paging: Paging
) -> Page[DataAccessRead]:
    """The audit entries about the citizen with this national code, newest first."""
    rows, total = await AuditRepository(session).for_subject(
        subject_hash(subject_hash_key, national_code), offset=paging.offset, limit=paging.limit
    )
    return paging.of([_read(entry, inquiry_type) for entry, inquiry_type in rows], total)


def _read(entry: AuditEntry, inquiry_type: InquiryType | None) -> DataAccessRead:
    return DataAccessRead(
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
