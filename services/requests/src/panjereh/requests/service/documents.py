"""Documents: what an approval issues, signed, and how anyone verifies one.

A document is a compact JWS (ES256, ``typ: panjereh-document+jws``) over
``{document_id, service_code, service_version, tracking_code, holder: {national_code},
issued_at, valid_until, decision: {outcome, rule_id, decided_by}}``. The holder keeps it; a
verifier who scans its QR code (the public verify URL) learns only whether it is valid, when
it was issued and until when, for which service, and a masked holder (first and last digit of
the national code), never more.

What the verify endpoint reports is read from the *signed* payload, not from the stored row's
columns, so a row edited in the database reports ``valid: false`` rather than the edit.
"""

from __future__ import annotations

import io
import uuid
from datetime import datetime, timedelta
from typing import Any

import segno
from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.jwk import InvalidJws, b64url, b64url_decode, canonical_json
from panjereh.requests.errors import DocumentNotFound, RequestNotFound
from panjereh.requests.keys import DocumentKeys
from panjereh.requests.models import Document, Request
from panjereh.requests.repository import DocumentRepository, RequestRepository
from panjereh.requests.schemas import DocumentRead, Verification
from panjereh.requests.service.reads import verify_url

DOCUMENT_TYP = "panjereh-document+jws"
#: QR rendering: medium error correction survives a creased printout; 5 px per module
QR_ERROR = "m"
QR_SCALE = 5


def mask(national_code: str) -> str:
    """``0013542419`` → ``0********9``: enough to match a card in hand, too little to find one."""
    if len(national_code) < 3:
        return "*" * len(national_code)
    return national_code[0] + "*" * (len(national_code) - 2) + national_code[-1]


async def issue(
    session: AsyncSession,
    request: Request,
    *,
    keys: DocumentKeys,
    at: datetime,
    valid_days: int,
) -> Document:
    """Sign and keep the document of an approved request (its decision is set on the row)."""
    document_id = uuid.uuid4()
    valid_until = at + timedelta(days=valid_days)
    payload = {
        "document_id": str(document_id),
        "service_code": request.service_code,
        "service_version": request.service_version,
        "tracking_code": request.tracking_code,
        "holder": {"national_code": request.national_code},
        "issued_at": at.isoformat(),
        "valid_until": valid_until.isoformat(),
        "decision": {
            "outcome": request.outcome,
            "rule_id": request.rule_id,
            "decided_by": request.decided_by,
        },
    }
    document = Document(
        id=document_id,
        request_id=request.id,
        service_code=request.service_code,
        holder_masked=mask(request.national_code),
        payload=payload,
        jws=keys.sign(payload, typ=DOCUMENT_TYP),
        issued_at=at,
        valid_until=valid_until,
    )
    session.add(document)
    return document


async def for_owner(
    session: AsyncSession, *, citizen_id: str, tracking_code: str, public_base_url: str
) -> DocumentRead:
    """The holder's own document; anyone else gets the same 404 as for an unknown request."""
    requests = RequestRepository(session)
    request = await requests.by_tracking_code(tracking_code)
    if request is None or request.citizen_id != citizen_id:
        raise RequestNotFound
    document = await requests.document(request.id)
    if document is None:
        raise DocumentNotFound
    return DocumentRead(
        document_id=document.id,
        payload=document.payload,
        jws=document.jws,
        verify_url=verify_url(public_base_url, document.id),
    )


async def verify(
    session: AsyncSession,
    *,
    document_id: uuid.UUID,
    keys: DocumentKeys,
    now: datetime,
    presented: str | None = None,
) -> Verification:
    """Is document ``document_id`` valid, and (when given) is ``presented`` that document?

    Valid means: signed by one of our keys as a document, byte for byte as we sign (so no
    byte of it can change unnoticed), about this document id, the same as the document we
    issued, and not expired.
    """
    document = await DocumentRepository(session).get(document_id)
    if document is None:
        raise DocumentNotFound
    payload = signed_document(presented if presented is not None else document.jws, keys)
    if (
        payload is None
        or payload.get("document_id") != str(document_id)
        or payload != document.payload
    ):
        return Verification(valid=False)
    issued_at = datetime.fromisoformat(str(payload["issued_at"]))
    valid_until = datetime.fromisoformat(str(payload["valid_until"]))
    holder = payload.get("holder") or {}
    return Verification(
        valid=now < valid_until,
        issued_at=issued_at,
        valid_until=valid_until,
        service_code=str(payload["service_code"]),
        holder_masked=mask(str(holder.get("national_code", ""))),
    )


def signed_document(token: str, keys: DocumentKeys) -> dict[str, Any] | None:
    """The payload of ``token`` when it is a document we signed, exactly as we encode it."""
    try:
        header, payload = keys.verify(token)
        signature = b64url(b64url_decode(token.rsplit(".", 1)[-1]))
    except (InvalidJws, ValueError):
        return None
    if header.get("typ") != DOCUMENT_TYP:
        return None  # a receipt is signed by the same key: it is not a document
    # base64url leaves spare bits in a last character that decoders ignore; re-encoding
    # canonically catches such a change too, so any changed byte fails
    canonical = ".".join(
        (b64url(canonical_json(header)), b64url(canonical_json(payload)), signature)
    )
    return payload if canonical == token else None


async def qr_png(session: AsyncSession, *, document_id: uuid.UUID, public_base_url: str) -> bytes:
    """A PNG QR code of the document's public verify URL (only for a document we issued)."""
    if await DocumentRepository(session).get(document_id) is None:
        raise DocumentNotFound
    buffer = io.BytesIO()
    segno.make(verify_url(public_base_url, document_id), error=QR_ERROR).save(
        buffer, kind="png", scale=QR_SCALE
    )
    return buffer.getvalue()
