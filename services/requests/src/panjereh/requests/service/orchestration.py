"""The orchestration's units of work: claim due steps, then record what came of them.

A request is driven by ``next_step_at``. The worker (``panjereh.requests.orchestrator``) runs
three kinds of short transactions, none of them open while it calls out:

1. :func:`claim_due` locks due requests (``FOR UPDATE SKIP LOCKED``: replicas share the
   work), pushes ``next_step_at`` forward by the lease and returns what each step needs. A
   replica that dies mid-step leaves the lease behind; when it runs out, another replica
   claims the request again. Nothing is lost and, because every recording re-checks, nothing
   is done twice.
2. The worker asks the broker or evaluates the rules, with no transaction open.
3. :func:`advance_submitted`, :func:`record_inquiries` and :func:`record_ruling` re-lock the
   request, check it is still where the step found it (the citizen may have cancelled, another
   replica may have got there first), and record the outcome: evidence, the next move through
   the machine, the next due time.

Statuses: ``submitted`` → ``awaiting_inquiries`` (the card has inquiries) or ``deciding``
(automatic) or ``in_review`` (agency mode); ``awaiting_inquiries`` → once every inquiry is
final: ``deciding`` / ``in_review`` when all were answered, else ``in_review`` (the card hands
failures to its agency) or ``failed`` with a reason naming the inquiry; ``deciding`` →
``approved`` / ``rejected`` (a rule matched, or none and the card rejects otherwise) or
``in_review`` (none matched and the card hands over, or the rules could not be evaluated).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.messaging import outbox
from panjereh.contracts import topics
from panjereh.contracts.catalog import CardDecision, PublishedCard
from panjereh.contracts.requests import AgencyWorkItem
from panjereh.requests.broker_client import BrokerReply
from panjereh.requests.keys import DocumentKeys
from panjereh.requests.models import Request, RequestInquiry
from panjereh.requests.repository import CardRepository, RequestRepository
from panjereh.requests.service import decisions, receipts, rulings, transitions
from panjereh.requests.statuses import Actor, Status

#: the statuses the orchestration moves on by itself
PROCESSABLE = (Status.SUBMITTED, Status.AWAITING_INQUIRIES, Status.DECIDING)
#: the longest wait between two tries of one inquiry
MAX_RETRY_SECONDS = 60.0
PENDING = "pending"


@dataclass(frozen=True)
class PendingInquiry:
    type: str
    #: set once the broker took the inquiry: read it rather than asking again
    broker_inquiry_id: uuid.UUID | None


@dataclass(frozen=True)
class Claim:
    """One claimed step: what the worker needs to do it with no transaction open."""

    request_id: uuid.UUID
    tracking_code: str
    status: Status
    service_code: str
    #: the moment the claim runs out (another replica may then take the request)
    leased_until: datetime
    #: the inquiries' subject: personal data, never logged
    subject: str = field(repr=False)
    legal_basis: str = ""
    pending: tuple[PendingInquiry, ...] = ()
    #: for ``deciding``: the rules and their variables (None: the card version is unknown)
    evaluation: rulings.Evaluation | None = None


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    base_seconds: float

    def after(self, attempts: int, *, asked_to_wait: float | None = None) -> timedelta:
        """Wait before try ``attempts + 1``: doubling from the base, capped."""
        seconds = min(self.base_seconds * 2 ** max(attempts - 1, 0), MAX_RETRY_SECONDS)
        return timedelta(seconds=max(seconds, min(asked_to_wait or 0.0, MAX_RETRY_SECONDS)))


def legal_basis_line(card: PublishedCard) -> str:
    """The card's legal basis as one line (the broker records it with every inquiry)."""
    parts = [
        f"{law.title.fa} ({law.reference})" if law.reference else law.title.fa
        for law in card.legal_basis
        if law.title.fa
    ]
    return ("؛ ".join(parts) or card.title.fa)[:2000]


async def claim_due(
    session: AsyncSession,
    *,
    now: datetime,
    limit: int,
    lease_seconds: float,
    exclude: Collection[uuid.UUID] = (),
) -> list[Claim]:
    """Lock up to ``limit`` due requests (not those in ``exclude``: this replica's own, in
    flight) and lease them for ``lease_seconds``."""
    requests = RequestRepository(session)
    rows = await requests.due_for_step(
        statuses=[status.value for status in PROCESSABLE], now=now, limit=limit, exclude=exclude
    )
    if not rows:
        return []
    leased_until = now + timedelta(seconds=lease_seconds)
    for row in rows:
        row.next_step_at = leased_until
        row.step_attempts += 1
    evidence: dict[uuid.UUID, list[RequestInquiry]] = {}
    for inquiry in await requests.inquiries_of([row.id for row in rows]):
        evidence.setdefault(inquiry.request_id, []).append(inquiry)
    cards = await _cards(session, rows)
    return [
        _claim(
            row,
            evidence.get(row.id, []),
            cards.get((row.service_code, row.service_version)),
            leased_until=leased_until,
        )
        for row in rows
    ]


async def _cards(
    session: AsyncSession, rows: Sequence[Request]
) -> dict[tuple[str, int], PublishedCard]:
    found: dict[tuple[str, int], PublishedCard] = {}
    replica = CardRepository(session)
    for key in {(row.service_code, row.service_version) for row in rows}:
        version = await replica.get(*key)
        if version is not None:
            found[key] = PublishedCard.model_validate(version.card)
    return found


def _claim(
    row: Request,
    evidence: Sequence[RequestInquiry],
    card: PublishedCard | None,
    *,
    leased_until: datetime,
) -> Claim:
    status = Status(row.status)
    evaluation = None
    if status is Status.DECIDING and card is not None:
        evaluation = rulings.Evaluation(
            decision=card.decision,
            variables=rulings.variables(
                inputs=row.inputs,
                results={i.inquiry_type: i.result for i in evidence if i.status == "answered"},
                national_code=row.national_code,
            ),
        )
    return Claim(
        request_id=row.id,
        tracking_code=row.tracking_code,
        status=status,
        service_code=row.service_code,
        leased_until=leased_until,
        subject=row.national_code,
        legal_basis=legal_basis_line(card) if card else row.service_code,
        pending=tuple(
            PendingInquiry(i.inquiry_type, i.broker_inquiry_id)
            for i in evidence
            if i.status == PENDING
        ),
        evaluation=evaluation,
    )


async def advance_submitted(session: AsyncSession, *, request_id: uuid.UUID, now: datetime) -> bool:
    """``submitted`` → where the card sends it; whether its next step is due at once."""
    requests = RequestRepository(session)
    request = await requests.lock(request_id)
    if request is None or request.status != Status.SUBMITTED:
        return False
    if await requests.inquiries(request.id):
        await transitions.move(
            session, request, Status.AWAITING_INQUIRIES, actor=Actor.SYSTEM, at=now
        )
        request.next_step_at = now
        return True
    if request.decision_mode == "agency":
        await send_to_review(session, request, actor=Actor.SYSTEM, at=now, reason=None)
        return False
    await transitions.move(session, request, Status.DECIDING, actor=Actor.SYSTEM, at=now)
    request.next_step_at = now
    return True


async def record_inquiries(
    session: AsyncSession,
    *,
    request_id: uuid.UUID,
    replies: Mapping[str, BrokerReply],
    now: datetime,
    retry: RetryPolicy,
    leased_until: datetime,
) -> datetime | None:
    """Record the broker's replies (type → reply); route the request once all are final.

    Returns when the request's next step is due (``now``: at once), or ``None`` when it has
    none (decided, in review, or moved on elsewhere).
    """
    requests = RequestRepository(session)
    request = await requests.lock(request_id)
    if request is None or request.status != Status.AWAITING_INQUIRIES:
        return None
    evidence = list(await requests.inquiries(request.id))
    retry_at: list[datetime] = []
    for row in evidence:
        reply = replies.get(row.inquiry_type)
        if reply is None or row.status != PENDING:
            continue  # not asked in this step, or another replica recorded it first
        later = _apply(row, reply, now=now, retry=retry)
        if later is not None:
            retry_at.append(later)
    if all(row.status != PENDING for row in evidence):
        await _route(session, request, evidence, now=now)
    else:
        due = min(retry_at, default=now + retry.after(1))
        woken = request.next_step_at is not None and request.next_step_at < leased_until
        # an answered-inquiry event made it due during the step: keep the earlier time
        request.next_step_at = (
            min(due, request.next_step_at) if woken and request.next_step_at else due
        )
    return request.next_step_at


def _apply(
    row: RequestInquiry, reply: BrokerReply, *, now: datetime, retry: RetryPolicy
) -> datetime | None:
    """Record one reply on its evidence row; when to try again, if the row is still pending."""
    if reply.kind == "final":
        row.broker_inquiry_id = reply.inquiry_id
        row.answered_at = now
        if reply.status in receipts.ANSWERED:
            row.status = str(reply.status)
            row.result = reply.result
            row.result_sha256 = receipts.digest(reply.result)
            row.signature = reply.signature
            row.error = None
        else:
            row.status = "failed"
            row.error = reply.error or reply.status
        return None
    if reply.kind == "pending":
        row.broker_inquiry_id = reply.inquiry_id
        return now + timedelta(seconds=retry.base_seconds)
    if reply.kind == "refused":
        row.status = "failed"
        row.error = reply.error
        return None
    row.attempts += 1
    row.error = reply.error
    if reply.forget_inquiry:
        row.broker_inquiry_id = None
    if row.attempts >= retry.max_attempts:
        row.status = "failed"
        return None
    return now + retry.after(row.attempts, asked_to_wait=reply.retry_after)


async def _route(
    session: AsyncSession, request: Request, evidence: Sequence[RequestInquiry], *, now: datetime
) -> None:
    """Every inquiry is final: decide where the request goes next."""
    missing = [row for row in evidence if row.status in ("not_found", "failed")]
    if not missing:
        if request.decision_mode == "agency":
            await send_to_review(session, request, actor=Actor.SYSTEM, at=now, reason=None)
            return
        await transitions.move(session, request, Status.DECIDING, actor=Actor.SYSTEM, at=now)
        request.next_step_at = now
        return
    reason = _missing_evidence_reason(missing)
    decision = await _decision(session, request)
    if request.decision_mode == "agency" or decision is None or decision.otherwise == "agency":
        await send_to_review(session, request, actor=Actor.SYSTEM, at=now, reason=reason)
        return
    await transitions.move(
        session, request, Status.FAILED, actor=Actor.SYSTEM, at=now, reason=reason
    )


async def _decision(session: AsyncSession, request: Request) -> CardDecision | None:
    version = await CardRepository(session).get(request.service_code, request.service_version)
    return PublishedCard.model_validate(version.card).decision if version else None


def _missing_evidence_reason(missing: Sequence[RequestInquiry]) -> dict[str, str]:
    fa, en = [], []
    for row in missing:
        if row.status == "not_found":
            fa.append(f"استعلام «{row.inquiry_type}» سابقه‌ای از متقاضی نیافت")
            en.append(f"the inquiry {row.inquiry_type} found no record of the applicant")
        else:
            fa.append(f"استعلام «{row.inquiry_type}» پاسخی نداد")
            en.append(f"the inquiry {row.inquiry_type} could not be answered")
    return {
        "fa": "درخواست بدون استعلام‌های لازم قابل بررسی نیست: " + "؛ ".join(fa),
        "en": "The request cannot be decided without its inquiries: " + "; ".join(en),
    }


async def record_ruling(
    session: AsyncSession,
    *,
    request_id: uuid.UUID,
    ruling: rulings.Ruling,
    at: datetime,
    keys: DocumentKeys,
    document_valid_days: int,
) -> None:
    """Decide by the rules' ruling, or hand the request to its agency."""
    request = await RequestRepository(session).lock(request_id)
    if request is None or request.status != Status.DECIDING:
        return
    if ruling.outcome == "agency":
        # the rules did not decide: an evaluation failure is the system's doing, a card
        # that hands unmatched requests over is the rules' own answer
        actor = Actor.SYSTEM if ruling.error else Actor.RULES
        await send_to_review(session, request, actor=actor, at=at, reason=ruling.reason)
        return
    await decisions.conclude(
        session,
        request,
        outcome=ruling.outcome,
        actor=Actor.RULES,
        rule_id=ruling.rule_id,
        reason=ruling.reason,
        at=at,
        keys=keys,
        document_valid_days=document_valid_days,
    )


async def send_to_review(
    session: AsyncSession,
    request: Request,
    *,
    actor: Actor,
    at: datetime,
    reason: dict[str, str] | None,
) -> None:
    """``in_review``: the agency's officers decide; a work item goes to the agency's topic."""
    await transitions.move(session, request, Status.IN_REVIEW, actor=actor, at=at, reason=reason)
    request.next_step_at = None
    await outbox.add(
        session,
        AgencyWorkItem(
            tracking_code=request.tracking_code,
            service_code=request.service_code,
            service_version=request.service_version,
            agency=request.agency,
            status="in_review",
            submitted_at=request.submitted_at,
            due_at=request.due_at,
            inputs=request.inputs,
        ),
        key=request.tracking_code,
        topic=topics.agency_requests(request.agency),
    )


async def wake_for_answer(
    session: AsyncSession, *, tracking_code: str | None, now: datetime
) -> bool:
    """The broker has an answer for a request waiting on inquiries: make its step due now."""
    if not tracking_code:
        return False
    return await RequestRepository(session).wake(
        tracking_code, status=Status.AWAITING_INQUIRIES.value, now=now
    )
