"""A client asks a provider agency about a subject, and reads back what it asked.

:func:`ask` is ``POST /api/v1/inquiries``, in the caller's unit of work:

1. an ``Idempotency-Key`` seen before replays the first request's inquiry, as it is now;
2. the type must be registered, the subject a valid national code, ``params`` must fit the
   type's input schema (422 otherwise, nothing recorded);
3. the access policy decides, on the purpose as the broker knows it now (the platform purpose
   and its grants, or the published card and the live request the tracking code names), and
   its decision is audited either way; a refusal raises
   :class:`~panjereh.inquiry_broker.errors.InquiryNotPermitted`, whose audit entry the unit
   of work commits before the 403;
4. an allowed inquiry is stored and answered from the cache, scheduled for the provider's
   HTTP connector, or sent through the outbox.

An allowed inquiry's audit entry is the unit of work's last statement (after the idempotency
record): appending takes the chain's lock, which every replica's appends wait for. An inquiry
sent through the outbox is inserted, with its outbox row, by the statement that appends its
entry: the three are written together or not at all. Without an idempotency key that
statement is the unit's only write, read after the policy's inputs (a read that needs no
transaction): it is sent without one and commits by itself, so the chain's lock is held for
that statement only and no client round trip happens under it (two round trips in all, no
``BEGIN``, no ``COMMIT``). Its commit does not wait for the disk, because nothing it wrote
reaches anyone before a commit that does (the answer's, or the flush before a 202: see the
repository's ``_append_statement``).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from panjereh.common.auth import Principal
from panjereh.common.db import Unit
from panjereh.common.fields import field_error
from panjereh.common.idempotency import IdempotencyStore, Outcome
from panjereh.contracts import access
from panjereh.contracts.identifiers import InvalidIdentifier, normalize_national_code
from panjereh.inquiry_broker import policy, validation
from panjereh.inquiry_broker.canonical import canonical_json
from panjereh.inquiry_broker.errors import (
    DeliveryUnsupported,
    InquiryNotFound,
    InquiryNotPermitted,
    InquiryTypeUnknown,
    InvalidParams,
    InvalidSubject,
)
from panjereh.inquiry_broker.identifiers import subject_hash
from panjereh.inquiry_broker.metrics import INQUIRY_DENIALS
from panjereh.inquiry_broker.models import Inquiry, InquiryType, idempotency_record
from panjereh.inquiry_broker.repository import (
    CachedAnswer,
    InquiryRepository,
    PendingWrites,
    PolicyInputRepository,
    PolicyInputs,
)
from panjereh.inquiry_broker.schemas import TERMINAL_STATUSES, InquiryCreate, InquiryRead
from panjereh.inquiry_broker.service import answers, audit, delivery
from panjereh.inquiry_broker.signing import AnswerSigner

logger = logging.getLogger(__name__)

#: What ``Idempotency-Key``s of ``POST /api/v1/inquiries`` are remembered under.
OPERATION = "inquiry.ask"
_IDEMPOTENCY = IdempotencyStore(idempotency_record)

#: Which worker has work once the asking transaction commits: the outbox relay (the inquiry,
#: or a cached answer's event, to publish) or the connector dispatcher (a call to make).
Queue = Literal["outbox", "connector"]


@dataclass(frozen=True)
class BrokerKeys:
    """The secrets and trust settings the use cases need."""

    signer: AnswerSigner
    subject_hash_key: bytes
    #: principals (``service:requests``) that may act for any published card's purpose
    card_acting_services: frozenset[str]


@dataclass(frozen=True)
class InquiryState:
    """An inquiry as its asker sees it, and the deadline no caller waits past."""

    answer: InquiryRead
    deadline_at: datetime

    @property
    def final(self) -> bool:
        return self.answer.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class Asked:
    """What asking did."""

    state: InquiryState
    #: who has work once this commits (``None``: nothing new was queued)
    queued_for: Queue | None
    #: the key was used before: ``state`` is the first request's inquiry, as it is now
    replayed: bool = False


async def ask(
    unit: Unit,
    *,
    principal: Principal,
    request: InquiryCreate,
    keys: BrokerKeys,
    idempotency_key: str | None = None,
) -> Asked:
    """Ask once per ``idempotency_key``: a repeat replays, another body is 409.

    Concurrent repeats wait for the first one's transaction (an advisory lock on the key) and
    then replay it: never two inquiries, never a unique-key violation.
    """
    if idempotency_key is None:
        allowed = await _ask(unit, principal=principal, request=request, keys=keys)
        await allowed.audit()
        return allowed.asked
    session = unit
    request_hash = _request_hash(request)
    earlier = await _IDEMPOTENCY.claim(
        session,
        actor=principal.subject,
        key=idempotency_key,
        operation=OPERATION,
        request_hash=request_hash,
    )
    if earlier is not None:
        # the first answer may have been "pending": answer with what is known now
        inquiry_id = uuid.UUID(str(earlier.body["inquiry_id"]))
        state = await inquiry_of(session, inquiry_id=inquiry_id, caller=principal.subject)
        return Asked(state=state, queued_for=None, replayed=True)
    allowed = await _ask(session, principal=principal, request=request, keys=keys)
    asked = allowed.asked
    await _IDEMPOTENCY.remember(
        session,
        actor=principal.subject,
        key=idempotency_key,
        operation=OPERATION,
        request_hash=request_hash,
        outcome=Outcome(
            status_code=200 if asked.state.final else 202,
            body={"inquiry_id": str(asked.state.answer.inquiry_id)},
        ),
    )
    await allowed.audit()
    return asked


async def inquiry_of(session: Unit, *, inquiry_id: uuid.UUID, caller: str) -> InquiryState:
    """The inquiry, for the client that asked it; any other caller is told it does not exist."""
    inquiry = await InquiryRepository(session).get(inquiry_id)
    if inquiry is None or inquiry.caller != caller:
        raise InquiryNotFound
    return state_of(inquiry)


@dataclass(frozen=True)
class _Allowed:
    """An allowed inquiry, stored and queued, whose decision is not in the audit chain yet."""

    asked: Asked
    #: appends the decision (takes the chain's lock: the unit of work's last statement)
    audit: Callable[[], Awaitable[None]]


async def _ask(
    session: Unit, *, principal: Principal, request: InquiryCreate, keys: BrokerKeys
) -> _Allowed:
    now = datetime.now(UTC)
    inputs = await _policy_inputs(session, request, now=now)
    inquiry_type = inputs.inquiry_type
    subject = _valid_subject(request.subject)
    _check_params(inquiry_type, request.params)
    hashed_subject = subject_hash(keys.subject_hash_key, subject)
    decision = _decide(
        principal=principal,
        request=request,
        inputs=inputs,
        subject_hash=hashed_subject,
        card_acting_services=keys.card_acting_services,
    )
    inquiry_id = uuid.uuid4()
    legal_basis = decision.legal_basis or request.purpose.legal_basis
    record_decision = functools.partial(
        audit.record_decision,
        session,
        decision=decision,
        at=now,
        inquiry_id=inquiry_id,
        inquiry_type=inquiry_type,
        caller=principal.subject,
        caller_agency=access.agency_of(principal),
        subject_hash=hashed_subject,
        purpose=request.purpose,
        legal_basis=legal_basis,
    )
    if not decision.allowed:
        await record_decision()
        logger.info(
            "inquiry denied",
            extra={"inquiry_type": inquiry_type.name, "reason": decision.reason.value},
        )
        INQUIRY_DENIALS.labels(decision.reason.value).inc()
        raise InquiryNotPermitted(decision.reason.value)
    if inquiry_type.delivery == "http" and not inquiry_type.connector_url:
        raise DeliveryUnsupported
    inquiry = Inquiry(
        id=inquiry_id,
        type=inquiry_type.name,
        provider_agency=inquiry_type.provider_agency,
        subject=subject,
        subject_hash=hashed_subject,
        params=request.params,
        cache_key=_cache_key(inquiry_type.name, subject, request.params),
        caller=principal.subject,
        caller_role=decision.acting_as or "",
        caller_agency=access.agency_of(principal),
        service_code=request.purpose.service_code,
        tracking_code=request.purpose.tracking_code,
        legal_basis=legal_basis,
        status="pending",
        attempts=0,
        created_at=now,
        deadline_at=now + timedelta(milliseconds=inquiry_type.timeout_ms),
        connector_url=inquiry_type.connector_url if inquiry_type.delivery == "http" else None,
    )
    queued_for, pending = await _answer_or_send(
        session, inquiry, inquiry_type, cached=inputs.cached, signer=keys.signer, now=now
    )
    return _Allowed(
        asked=Asked(state=state_of(inquiry), queued_for=queued_for),
        audit=functools.partial(record_decision, along=pending),
    )


async def _policy_inputs(session: Unit, request: InquiryCreate, *, now: datetime) -> PolicyInputs:
    """The registered type, what the policy decides on and the cached answer to the same
    question, in one read; 404 for an unknown type.

    The cached answer is only read here: an inquiry reuses it once the policy allowed it and
    its decision is audited, like any other (an invalid subject asks for none).
    """
    try:
        subject: str | None = normalize_national_code(request.subject)
    except InvalidIdentifier:
        subject = None  # refused after the type is known to exist (_valid_subject)
    inputs = await PolicyInputRepository(session).read(
        inquiry_type=request.type,
        service_code=request.purpose.service_code,
        tracking_code=request.purpose.tracking_code,
        cache_key=None if subject is None else _cache_key(request.type, subject, request.params),
        now=now,
    )
    if inputs is None:
        raise InquiryTypeUnknown
    return inputs


def _valid_subject(raw: str) -> str:
    """The subject's 10-digit national code; 422 ``invalid_subject`` naming what is wrong."""
    try:
        return normalize_national_code(raw)
    except InvalidIdentifier as exc:
        problem = field_error("subject", exc.code, fa=exc.messages["fa"], en=exc.messages["en"])
        raise InvalidSubject(errors=[problem]) from exc


def _check_params(inquiry_type: InquiryType, params: dict[str, Any]) -> None:
    errors = validation.params_errors(inquiry_type.input_schema, params)
    if errors:
        raise InvalidParams(errors)


def _decide(
    *,
    principal: Principal,
    request: InquiryCreate,
    inputs: PolicyInputs,
    subject_hash: str,
    card_acting_services: frozenset[str],
) -> policy.Decision:
    """The access policy's decision, on the purposes, grants and cards as they are now."""
    purpose = request.purpose
    return policy.decide(
        roles=principal.roles,
        inquiry_type=inputs.inquiry_type.name,
        service_code=purpose.service_code,
        tracking_code=purpose.tracking_code,
        subject_hash=subject_hash,
        platform_purpose=inputs.platform_purpose,
        grants=inputs.grants,
        card=inputs.card,
        live_purpose=inputs.live_purpose,
        card_acting_services=card_acting_services,
    )


async def _answer_or_send(
    session: Unit,
    inquiry: Inquiry,
    inquiry_type: InquiryType,
    *,
    cached: CachedAnswer | None,
    signer: AnswerSigner,
    now: datetime,
) -> tuple[Queue, PendingWrites | None]:
    """Store ``inquiry`` answered from ``cached``, scheduled for its connector, or sent.

    An inquiry sent through the outbox is stored with its outbox row by the statement that
    appends its decision to the audit chain (returned, for that append): the unit of work's
    next statement, and one round trip fewer.
    """
    repository = InquiryRepository(session)
    if cached is not None:
        # still a new inquiry: its own id, audit entry, signature and InquiryAnswered event
        inquiry.cached_from = cached.id
        answers.complete(inquiry, status=cached.status, result=cached.result, signer=signer)
        await repository.add(inquiry)
        await answers.publish(session, inquiry)
        return "outbox", None
    if inquiry.connector_url is not None:
        inquiry.next_attempt_at = now  # the connector dispatcher calls it once this commits
        await repository.add(inquiry)
        return "connector", None
    delivery.plan_attempt(inquiry, inquiry_type, now=now)
    return "outbox", repository.adding_and_sending(inquiry, delivery.attempt(session, inquiry))


def state_of(inquiry: Inquiry) -> InquiryState:
    """What the asker sees of ``inquiry`` now."""
    return InquiryState(answer=InquiryRead.of(inquiry), deadline_at=inquiry.deadline_at)


def _request_hash(request: InquiryCreate) -> str:
    # the same hash the inquiry table kept (migration 0004 carried those keys over): a retry
    # that spans the upgrade still replays instead of being refused as another body
    return hashlib.sha256(canonical_json(request.model_dump(mode="json"))).hexdigest()


def _cache_key(inquiry_type: str, subject: str, params: dict[str, Any]) -> str:
    question = {"type": inquiry_type, "subject": subject, "params": params}
    return hashlib.sha256(canonical_json(question)).hexdigest()
