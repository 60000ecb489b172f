"""The inquiry broker's use cases: plain async functions over a session that they never commit.

The boundary (a request's unit of work, a consumer's transaction, the sweeper's) commits. An
inquiry is sent through the outbox in the same transaction that records it and its audit
entry; an answer is recorded, signed, announced (NOTIFY, delivered at commit) and published as
``InquiryAnswered`` in the transaction of the consumer that received the reply.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.auth import Principal
from panjereh.common.errors import IdempotencyKeyReused
from panjereh.common.messaging import outbox
from panjereh.common.messaging.envelope import CloudEvent
from panjereh.contracts.catalog import ServicePublished, ServiceRetired
from panjereh.contracts.inquiry import (
    InquiryAnswered,
    InquiryPurpose,
    InquiryReply,
    InquiryStatus,
    InquiryToAgency,
)
from panjereh.contracts.topics import agency_inquiries
from panjereh.inquiry_broker import audit, policy
from panjereh.inquiry_broker.canonical import canonical_json
from panjereh.inquiry_broker.errors import (
    DeliveryUnsupported,
    InquiryNotFound,
    InquiryNotPermitted,
    InquiryTypeUnknown,
    InvalidParams,
    InvalidSubject,
)
from panjereh.inquiry_broker.identifiers import normalize_national_code, subject_hash
from panjereh.inquiry_broker.models import AuditEntry, Inquiry, InquiryType
from panjereh.inquiry_broker.repository import (
    AuditRepository,
    CardRepository,
    GrantRepository,
    InquiryRepository,
    InquiryTypeRepository,
)
from panjereh.inquiry_broker.schemas import InquiryCreate
from panjereh.inquiry_broker.signing import AnswerSigner, subject_sha256

logger = logging.getLogger(__name__)

#: What ``InquiryAnswered`` says for each final status (its contract knows ok/not_found/error).
_EVENT_STATUS: dict[str, InquiryStatus] = {
    "answered": "ok",
    "not_found": "not_found",
    "failed": "error",
    "timed_out": "error",
}


@dataclass(frozen=True)
class BrokerKeys:
    """The secrets the use cases need: the answer signer and the subject-hash key."""

    signer: AnswerSigner
    subject_hash_key: bytes
    card_acting_services: frozenset[str]


def _now() -> datetime:
    return datetime.now(UTC)


# ------------------------------------------------------------------------------ registry
async def list_inquiry_types(session: AsyncSession) -> list[InquiryType]:
    return list(await InquiryTypeRepository(session).all())


# ------------------------------------------------------------------------------ asking
async def request_inquiry(
    session: AsyncSession,
    *,
    principal: Principal,
    request: InquiryCreate,
    keys: BrokerKeys,
    idempotency_key: str | None = None,
) -> Inquiry:
    """Check the policy, audit the decision, then answer from cache or send to the provider.

    Raises :class:`InquiryNotPermitted` *after* the denial's audit entry is added: the
    boundary commits that entry before rendering the 403. The same ``idempotency_key`` with
    the same request returns the inquiry it created; with another request it is refused.
    """
    request_hash = hashlib.sha256(canonical_json(request.model_dump(mode="json"))).hexdigest()
    if idempotency_key is not None:
        earlier = await InquiryRepository(session).by_idempotency_key(
            principal.subject, idempotency_key
        )
        if earlier is not None:
            if earlier.request_hash != request_hash:
                raise IdempotencyKeyReused
            return earlier
    inquiry_type = await InquiryTypeRepository(session).get(request.type)
    if inquiry_type is None:
        raise InquiryTypeUnknown
    subject = normalize_national_code(request.subject)
    if subject is None:
        raise InvalidSubject
    _validate_params(inquiry_type, request.params)

    card = await CardRepository(session).get(request.purpose.service_code)
    grants = await GrantRepository(session).active_for_type(inquiry_type.name)
    decision = policy.decide(
        roles=principal.roles,
        inquiry_type=inquiry_type.name,
        service_code=request.purpose.service_code,
        tracking_code=request.purpose.tracking_code,
        card=None
        if card is None
        else policy.CardView(
            service_code=card.service_code,
            agency=card.agency,
            inquiry_types=card.inquiry_types,
            legal_basis=card.legal_basis,
            retired=card.retired,
        ),
        grants=[policy.GrantView(g.principal, g.inquiry_type, g.legal_basis) for g in grants],
        card_acting_services=keys.card_acting_services,
    )
    now = _now()
    inquiry_id = uuid.uuid4()
    legal_basis = decision.legal_basis or request.purpose.legal_basis
    await AuditRepository(session).append(
        {
            "id": uuid.uuid4(),
            "recorded_at": now,
            "decision": "allowed" if decision.allowed else "denied",
            "reason": decision.reason.value,
            "inquiry_id": inquiry_id if decision.allowed else None,
            "inquiry_type": inquiry_type.name,
            "provider_agency": inquiry_type.provider_agency,
            "caller": principal.subject,
            "caller_role": decision.acting_as,
            "caller_agency": principal.agency,
            "subject_hash": subject_hash(keys.subject_hash_key, subject),
            "service_code": request.purpose.service_code,
            "tracking_code": request.purpose.tracking_code,
            "legal_basis": legal_basis,
        }
    )
    if not decision.allowed:
        logger.info(
            "inquiry denied",
            extra={"inquiry_type": inquiry_type.name, "reason": decision.reason.value},
        )
        raise InquiryNotPermitted(decision.reason.value)
    if inquiry_type.delivery == "http" and not inquiry_type.connector_url:
        raise DeliveryUnsupported

    inquiry = Inquiry(
        id=inquiry_id,
        type=inquiry_type.name,
        provider_agency=inquiry_type.provider_agency,
        subject=subject,
        subject_hash=subject_hash(keys.subject_hash_key, subject),
        params=request.params,
        cache_key=_cache_key(inquiry_type.name, subject, request.params),
        caller=principal.subject,
        caller_role=decision.acting_as or "",
        caller_agency=principal.agency,
        service_code=request.purpose.service_code,
        tracking_code=request.purpose.tracking_code,
        legal_basis=legal_basis,
        status="pending",
        idempotency_key=idempotency_key,
        request_hash=request_hash if idempotency_key is not None else None,
        attempts=0,
        created_at=now,
        deadline_at=now + timedelta(milliseconds=inquiry_type.timeout_ms),
        connector_url=inquiry_type.connector_url if inquiry_type.delivery == "http" else None,
    )
    cached = None
    if inquiry_type.cache_ttl_seconds > 0:
        cached = await InquiryRepository(session).latest_answer(
            inquiry.cache_key, since=now - timedelta(seconds=inquiry_type.cache_ttl_seconds)
        )
    if cached is not None:
        inquiry.cached_from = cached.id
        _complete(inquiry, status=cached.status, result=cached.result, signer=keys.signer)
        await InquiryRepository(session).add(inquiry)
        await _publish_answer(session, inquiry)
        return inquiry
    if inquiry.connector_url is not None:
        inquiry.next_attempt_at = now  # the connector dispatcher calls it (after commit)
        await InquiryRepository(session).add(inquiry)
        return inquiry
    await InquiryRepository(session).add(inquiry)
    await _send(session, inquiry, inquiry_type, now=now)
    return inquiry


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> Draft202012Validator:
    """Compiled once per distinct schema (the registry changes rarely; requests are many)."""
    return Draft202012Validator(json.loads(schema_json))


def _validator_for(schema: dict[str, Any]) -> Draft202012Validator:
    return _validator(json.dumps(schema, sort_keys=True))


def _validate_params(inquiry_type: InquiryType, params: dict[str, Any]) -> None:
    validator = _validator_for(inquiry_type.input_schema)
    problems = sorted(validator.iter_errors(params), key=lambda e: list(e.absolute_path))
    if problems:
        raise InvalidParams(
            [
                {
                    "field": ".".join(["params", *(str(p) for p in problem.absolute_path)]),
                    "message": problem.message,
                }
                for problem in problems
            ]
        )


def _cache_key(inquiry_type: str, subject: str, params: dict[str, Any]) -> str:
    question = {"type": inquiry_type, "subject": subject, "params": params}
    return hashlib.sha256(canonical_json(question)).hexdigest()


async def _send(
    session: AsyncSession, inquiry: Inquiry, inquiry_type: InquiryType, *, now: datetime
) -> None:
    """Route one attempt to the provider's topic (through the outbox) and plan the next."""
    _plan_attempt(inquiry, inquiry_type, now=now)
    await outbox.add(
        session,
        _message(inquiry),
        key=str(inquiry.id),
        topic=agency_inquiries(inquiry.provider_agency),
    )
    await session.flush()


def _plan_attempt(inquiry: Inquiry, inquiry_type: InquiryType, *, now: datetime) -> timedelta:
    """Count an attempt made now and schedule the next; returns the spacing between them."""
    inquiry.attempts += 1
    inquiry.last_sent_at = now
    spacing = timedelta(milliseconds=inquiry_type.timeout_ms / max(inquiry_type.max_attempts, 1))
    inquiry.next_attempt_at = (
        now + spacing if inquiry.attempts < inquiry_type.max_attempts else None
    )
    return spacing


def _message(inquiry: Inquiry) -> InquiryToAgency:
    return InquiryToAgency(
        inquiry_id=str(inquiry.id),
        type=inquiry.type,
        subject=inquiry.subject,
        params=inquiry.params,
        purpose=InquiryPurpose(
            service_code=inquiry.service_code or "-",
            tracking_code=inquiry.tracking_code,
            legal_basis=inquiry.legal_basis or "-",
        ),
    )


@dataclass(frozen=True)
class ConnectorCall:
    """One attempt to be made on an agency's HTTP connector, outside any transaction."""

    inquiry_id: uuid.UUID
    url: str
    payload: dict[str, Any]
    timeout_seconds: float


async def claim_connector_calls(session: AsyncSession, *, now: datetime) -> list[ConnectorCall]:
    """Take the HTTP-connector attempts that are due (this replica's, SKIP LOCKED)."""
    due = await InquiryRepository(session).due_connector_calls(now=now)
    if not due:
        return []
    types = {t.name: t for t in await InquiryTypeRepository(session).all()}
    calls = []
    for inquiry in due:
        assert inquiry.connector_url is not None
        spacing = _plan_attempt(inquiry, types[inquiry.type], now=now)
        calls.append(
            ConnectorCall(
                inquiry_id=inquiry.id,
                url=inquiry.connector_url,
                payload=_message(inquiry).model_dump(mode="json"),
                timeout_seconds=max(spacing.total_seconds(), 0.1),
            )
        )
    await session.flush()
    return calls


async def get_inquiry(
    session: AsyncSession, *, inquiry_id: uuid.UUID, principal: Principal
) -> Inquiry:
    """The inquiry, for the client that asked it; any other caller is told it does not exist."""
    inquiry = await InquiryRepository(session).get(inquiry_id)
    if inquiry is None or inquiry.caller != principal.subject:
        raise InquiryNotFound
    return inquiry


# ------------------------------------------------------------------------------ answers
def _complete(
    inquiry: Inquiry,
    *,
    status: str,
    result: dict[str, Any] | None,
    signer: AnswerSigner | None,
    error: str | None = None,
) -> None:
    inquiry.status = status
    inquiry.result = result
    inquiry.error = error
    inquiry.answered_at = _now()
    inquiry.next_attempt_at = None
    if signer is not None and status in {"answered", "not_found"}:
        inquiry.signature = signer.sign(answer_payload(inquiry))


def answer_payload(inquiry: Inquiry) -> dict[str, Any]:
    """What the signature covers (see :mod:`panjereh.inquiry_broker.signing`)."""
    assert inquiry.answered_at is not None
    return {
        "inquiry_id": str(inquiry.id),
        "type": inquiry.type,
        "subject_sha256": subject_sha256(inquiry.subject),
        "status": inquiry.status,
        "result": inquiry.result,
        "answered_at": inquiry.answered_at.astimezone(UTC).isoformat(timespec="microseconds"),
    }


async def _publish_answer(session: AsyncSession, inquiry: Inquiry) -> None:
    """``InquiryAnswered`` through the outbox, and a NOTIFY for callers waiting anywhere.

    The event leaves ``result`` out: answers are personal data (names, debts, records) and
    stay off the event bus; the asking client reads the signed answer with
    ``GET /api/v1/inquiries/{id}``.
    """
    await outbox.add(
        session,
        InquiryAnswered(
            inquiry_id=str(inquiry.id),
            type=inquiry.type,
            status=_EVENT_STATUS[inquiry.status],
            result=None,
            tracking_code=inquiry.tracking_code,
            service_code=inquiry.service_code,
        ),
        key=inquiry.tracking_code or str(inquiry.id),
    )
    await InquiryRepository(session).announce_answer(inquiry.id)


async def record_reply(session: AsyncSession, event: CloudEvent, *, signer: AnswerSigner) -> None:
    """An agency's reply (``inquiry.replies``): complete the pending inquiry it answers.

    An ``error`` reply is retried (sent again at once) while attempts and time remain; the
    last one fails the inquiry.

    Replies to unknown, already final or another agency's inquiries change nothing: a late
    reply after a timeout, a duplicate after a resend, or a forged one.
    """
    reply = InquiryReply.parse_data(event.data)
    try:
        inquiry_id = uuid.UUID(reply.inquiry_id)
    except ValueError:
        logger.warning("reply names no inquiry id", extra={"event_id": event.id})
        return
    repository = InquiryRepository(session)
    inquiry = await repository.get_for_update(inquiry_id)
    if inquiry is None or inquiry.status != "pending":
        logger.info(
            "reply ignored",
            extra={"inquiry_id": str(inquiry_id), "known": inquiry is not None},
        )
        return
    if event.source != f"agency/{inquiry.provider_agency}":
        logger.warning(
            "reply from an agency that was not asked",
            extra={"inquiry_id": str(inquiry_id), "source": event.source},
        )
        return
    await _apply_answer(session, inquiry, status=reply.status, result=reply.result, signer=signer)


async def record_connector_answer(
    session: AsyncSession,
    *,
    inquiry_id: uuid.UUID,
    status: str,
    result: dict[str, Any] | None,
    signer: AnswerSigner,
) -> None:
    """What an agency's HTTP connector answered (``error`` also for no usable answer)."""
    inquiry = await InquiryRepository(session).get_for_update(inquiry_id)
    if inquiry is None or inquiry.status != "pending":
        return
    await _apply_answer(session, inquiry, status=status, result=result, signer=signer)


async def _apply_answer(
    session: AsyncSession,
    inquiry: Inquiry,
    *,
    status: str,
    result: dict[str, Any] | None,
    signer: AnswerSigner,
) -> None:
    """Complete a pending inquiry with the provider's answer, or try again after an error."""
    inquiry_type = await InquiryTypeRepository(session).get(inquiry.type)
    if status == "ok":
        result = result or {}
        if inquiry_type is not None and next(
            iter(_validator_for(inquiry_type.output_schema).iter_errors(result)), None
        ):
            _complete(inquiry, status="failed", result=None, signer=None, error="invalid_result")
        else:
            _complete(inquiry, status="answered", result=result, signer=signer)
    elif status == "not_found":
        _complete(inquiry, status="not_found", result=None, signer=signer)
    elif (
        inquiry_type is not None
        and inquiry.attempts < inquiry_type.max_attempts
        and inquiry.deadline_at > _now()
    ):
        # the agency failed this attempt: try again at once, within the same deadline
        if inquiry.connector_url is not None:
            inquiry.next_attempt_at = _now()
            await session.flush()
        else:
            await _send(session, inquiry, inquiry_type, now=_now())
        return
    else:
        _complete(inquiry, status="failed", result=None, signer=None, error="agency_error")
    await session.flush()
    await _publish_answer(session, inquiry)


async def sweep_overdue(session: AsyncSession, *, now: datetime | None = None) -> int:
    """Resend inquiries due another attempt; time out those past their deadline."""
    now = now or _now()
    overdue = await InquiryRepository(session).overdue(now=now)
    if not overdue:
        return 0
    types = {t.name: t for t in await InquiryTypeRepository(session).all()}
    for inquiry in overdue:
        if inquiry.deadline_at <= now:
            _complete(inquiry, status="timed_out", result=None, signer=None, error="timed_out")
            await _publish_answer(session, inquiry)
        else:
            await _send(session, inquiry, types[inquiry.type], now=now)
    await session.flush()
    return len(overdue)


async def time_out_if_overdue(session: AsyncSession, *, inquiry_id: uuid.UUID) -> None:
    """The waiting caller's own check: past its deadline and still pending → timed out."""
    inquiry = await InquiryRepository(session).get_for_update(inquiry_id)
    if inquiry is not None and inquiry.status == "pending" and inquiry.deadline_at <= _now():
        _complete(inquiry, status="timed_out", result=None, signer=None, error="timed_out")
        await session.flush()
        await _publish_answer(session, inquiry)


# ------------------------------------------------------------------------------ card replica
async def record_card_published(session: AsyncSession, event: CloudEvent) -> None:
    published = ServicePublished.parse_data(event.data)
    card = published.card
    agency = card.get("agency")
    if isinstance(agency, dict):
        agency = agency.get("code")
    if not isinstance(agency, str) or not agency:
        logger.warning("published card names no agency", extra={"service_code": published.code})
        return
    await CardRepository(session).save_published(
        service_code=published.code,
        agency=agency,
        version=published.version,
        inquiry_types=_inquiry_types(card.get("inquiries")),
        legal_basis=_legal_basis(card.get("legal_basis")),
    )


async def record_card_retired(session: AsyncSession, event: CloudEvent) -> None:
    retired = ServiceRetired.parse_data(event.data)
    await CardRepository(session).retire(service_code=retired.code, version=retired.version)


def _inquiry_types(inquiries: Any) -> list[str]:
    """The type names a card's ``inquiries`` lists (names, or objects with a ``type``)."""
    names: list[str] = []
    for item in inquiries or []:
        name = item.get("type") if isinstance(item, dict) else item
        if isinstance(name, str) and name:
            names.append(name)
    return names


def _legal_basis(value: Any) -> str | None:
    """The card's legal basis as one line: Persian titles (with references), joined."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, dict):
        title = value.get("title", value)
        text = title.get("fa") if isinstance(title, dict) else title
        if not isinstance(text, str) or not text:
            return None
        reference = value.get("reference")
        return f"{text} ({reference})" if isinstance(reference, str) and reference else text
    if isinstance(value, list):
        parts = [part for part in (_legal_basis(v) for v in value) if part]
        return "؛ ".join(parts) or None
    return None


# ------------------------------------------------------------------------------ audit
async def data_access_for(
    session: AsyncSession, *, national_code: str, keys: BrokerKeys, page: int, page_size: int
) -> tuple[list[tuple[AuditEntry, InquiryType | None]], int]:
    """The audit entries about the citizen with this national code, newest first."""
    hashed = subject_hash(keys.subject_hash_key, national_code)
    rows, total = await AuditRepository(session).for_subject(
        hashed, offset=(page - 1) * page_size, limit=page_size
    )
    return list(rows), total


async def verify_audit_chain(session: AsyncSession) -> tuple[int, audit.BrokenEntry | None]:
    verifier = audit.ChainVerifier()
    async for entry in AuditRepository(session).walk():
        broken = verifier.check(entry)
        if broken is not None:
            return verifier.checked, broken
    return verifier.checked, None
