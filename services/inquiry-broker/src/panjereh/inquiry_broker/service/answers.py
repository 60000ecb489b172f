"""Answers: what agencies replied (on Kafka or a connector), and inquiries that ran out of time.

Whichever way an inquiry ends, :func:`complete` records the final status (signing ``answered``
and ``not_found``) and :func:`publish` announces it: ``InquiryAnswered`` through the outbox
(when a request waits on it) and a NOTIFY that wakes callers waiting on any replica, both
delivered when the transaction commits. An answer from the agency also tells the catalog the
agency is connected (:mod:`.activity`, throttled).
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from panjereh.common.db import Unit
from panjereh.common.messaging import outbox
from panjereh.common.messaging.consumer import InboxClaim
from panjereh.common.messaging.envelope import CloudEvent
from panjereh.contracts.inquiry import InquiryAnswered, InquiryReply, InquiryStatus
from panjereh.contracts.topics import agency_replies
from panjereh.inquiry_broker import validation
from panjereh.inquiry_broker.metrics import INQUIRIES_FINISHED, INQUIRY_LATENCY, REPLIES_REFUSED
from panjereh.inquiry_broker.models import Inquiry, InquiryType
from panjereh.inquiry_broker.repository import (
    Answering,
    InquiryRepository,
    driver,
    is_platform_purpose,
)
from panjereh.inquiry_broker.service import activity, audit, delivery
from panjereh.inquiry_broker.signing import AnswerSigner, subject_sha256

logger = logging.getLogger(__name__)

#: What ``InquiryAnswered`` says for each final status (its contract knows ok/not_found/error).
_EVENT_STATUS: dict[str, InquiryStatus] = {
    "answered": "ok",
    "not_found": "not_found",
    "failed": "error",
    "timed_out": "error",
}
#: The final statuses an answer is signed for: the provider vouched for them.
_SIGNED = frozenset({"answered", "not_found"})


def complete(
    inquiry: Inquiry,
    *,
    status: str,
    result: dict[str, Any] | None,
    signer: AnswerSigner | None,
    error: str | None = None,
) -> None:
    """Make ``inquiry`` final with ``status``; signed when the provider answered."""
    _finish(inquiry, status=status, result=result, signer=signer, error=error)
    _count_finished(inquiry)


def _finish(
    inquiry: Inquiry,
    *,
    status: str,
    result: dict[str, Any] | None,
    signer: AnswerSigner | None,
    error: str | None = None,
) -> None:
    """:func:`complete` without counting it (for an answer that may not be written)."""
    inquiry.status = status
    inquiry.result = result
    inquiry.error = error
    inquiry.answered_at = datetime.now(UTC)
    inquiry.next_attempt_at = None
    if signer is not None and status in _SIGNED:
        inquiry.signature = signer.sign(answer_payload(inquiry))


def _count_finished(inquiry: Inquiry) -> None:
    assert inquiry.answered_at is not None
    INQUIRIES_FINISHED.labels(inquiry.type, inquiry.provider_agency, inquiry.status).inc()
    if inquiry.created_at is not None:
        INQUIRY_LATENCY.labels(inquiry.type, inquiry.provider_agency).observe(
            max(0.0, (inquiry.answered_at - inquiry.created_at).total_seconds())
        )


def answer_payload(inquiry: Inquiry) -> dict[str, Any]:
    """What the signature covers (see :mod:`panjereh.inquiry_broker.signing`)."""
    assert inquiry.answered_at is not None  # only a completed inquiry is signed
    return {
        "inquiry_id": str(inquiry.id),
        "type": inquiry.type,
        "subject_sha256": subject_sha256(inquiry.subject),
        "status": inquiry.status,
        "result": inquiry.result,
        "answered_at": inquiry.answered_at.astimezone(UTC).isoformat(timespec="microseconds"),
    }


async def publish(session: Unit, inquiry: Inquiry) -> None:
    """``InquiryAnswered`` through the outbox (when a request waits on it), and a NOTIFY for
    callers waiting anywhere."""
    await _answered_event(session, inquiry)
    await InquiryRepository(session).announce_answer(inquiry)


async def _answered_event(session: Unit, inquiry: Inquiry) -> None:
    """``InquiryAnswered`` through the outbox, for an inquiry a request waits on
    (:func:`_answered_row`)."""
    event = await _answered_row(session, inquiry)
    if event is not None:
        await driver(session).fetch(outbox.insert_statement(event.table), event.values)


async def _answered_row(session: Unit, inquiry: Inquiry) -> outbox.Row | None:
    """The outbox row of ``InquiryAnswered``, for an inquiry a request waits on; not
    inserted here.

    Its one consumer is the requests service, which wakes the request with that tracking
    code. An inquiry no request stands behind (no tracking code, or one of the platform's own
    purposes: identity's login and registration checks, whose tracking code is only the
    challenge's reference) is announced to its waiting caller by the NOTIFY alone, with no
    event nobody would use: an outbox row, a publish and a consumed record fewer per check.
    Platform purposes exist only by migration; which one an inquiry served is one primary-key
    read (at most once a minute).

    The event leaves ``result`` out: answers are personal data (names, debts, records) and
    stay off the event bus; the asking client reads the signed answer with
    ``GET /api/v1/inquiries/{id}``.
    """
    if inquiry.tracking_code is None or (
        inquiry.service_code is not None
        and await is_platform_purpose(session, inquiry.service_code)
    ):
        return None
    return outbox.row(
        session,
        InquiryAnswered(
            inquiry_id=str(inquiry.id),
            type=inquiry.type,
            status=_EVENT_STATUS[inquiry.status],
            result=None,
            tracking_code=inquiry.tracking_code,
            service_code=inquiry.service_code,
        ),
        key=inquiry.tracking_code,
    )


async def record_reply(
    session: Unit,
    event: CloudEvent,
    *,
    topic: str,
    signer: AnswerSigner,
    chain_key: bytes | None = None,
    claim: InboxClaim | None = None,
) -> None:
    """An agency's reply, on ``topic``: complete the pending inquiry it answers.

    ``claim``: the reply's inbox row, claimed by the statement that writes the answer
    (:func:`_record_unchanged`: a read and that write, no transaction) or, when that wrote
    nothing, by the read that locks the inquiry (one round trip for both); a duplicate then
    changes nothing.

    Only the replies topic of the agency the inquiry was sent to counts: Kafka ACLs let that
    agency alone write it, while the CloudEvent ``source`` is whatever the sender wrote. A
    reply from any other topic is refused (not recorded, signed or cached), appended to the
    audit chain as a refusal, logged with the inquiry id and the topic, and counted.

    An ``error`` reply is retried (sent again at once) while attempts and time remain; the
    last one fails the inquiry. Replies to unknown or already final inquiries change nothing:
    a late reply after a timeout, or a duplicate after a resend.
    """
    reply = InquiryReply.parse_data(event.data)
    try:
        inquiry_id = uuid.UUID(reply.inquiry_id)
    except ValueError:
        logger.warning("reply names no inquiry id", extra={"event_id": event.id, "topic": topic})
        return
    if claim is not None and await _record_unchanged(
        session, inquiry_id, reply, event=event, topic=topic, signer=signer, claim=claim
    ):
        return
    answering = await _for_answer(session, inquiry_id, claim=claim)
    if claim is not None and not claim.taken:
        return  # a duplicate: the consumer says so
    if answering is None:
        logger.info("reply to an unknown inquiry ignored", extra={"inquiry_id": str(inquiry_id)})
        return
    inquiry = answering.inquiry
    refusal = _refusal(inquiry, event=event, topic=topic)
    if refusal is not None:
        await _refuse(
            session, inquiry, event=event, topic=topic, reason=refusal, chain_key=chain_key
        )
        return
    if inquiry.status != "pending":
        logger.info("reply to a final inquiry ignored", extra={"inquiry_id": str(inquiry_id)})
        return
    await _apply(session, answering, status=reply.status, result=reply.result, signer=signer)


def _refusal(inquiry: Inquiry, *, event: CloudEvent, topic: str) -> str | None:
    """Why a reply to ``inquiry`` is not its asked agency's (``None``: it is)."""
    if topic != agency_replies(inquiry.provider_agency):
        return "wrong_topic"
    if event.source != f"agency/{inquiry.provider_agency}":
        # the asked agency's own topic, in another agency's name: a misconfigured agency
        return "wrong_source"
    return None


async def _record_unchanged(
    session: Unit,
    inquiry_id: uuid.UUID,
    reply: InquiryReply,
    *,
    event: CloudEvent,
    topic: str,
    signer: AnswerSigner,
    claim: InboxClaim,
) -> bool:
    """The usual reply, recorded in two statements and no transaction: whether it was.

    The usual reply is the asked agency's answer (``ok`` or ``not_found``), on its own topic,
    to a pending inquiry, from an agency announced active lately. The inquiry is read without
    a lock, and its answer, the reply's inbox row, the NOTIFY and the ``InquiryAnswered`` row
    are written by one statement that writes nothing unless the inquiry is still pending at
    the attempt read and the reply was not handled yet (:meth:`~InquiryRepository.
    answer_unchanged`). Anything else (an error to retry, a refusal to audit, an agency to
    announce, an inquiry that changed in between: a resend, a timeout, the same reply on
    another replica) returns ``False`` having written nothing, for :func:`record_reply`'s
    locked unit of work. What the caller sees is the same either way; the answer is written
    once, since both ways write it only to a pending inquiry.
    """
    repository = InquiryRepository(session)
    answering = await repository.peek_for_answer(inquiry_id, announce_every=activity.ANNOUNCE_EVERY)
    if (
        answering is None
        or not answering.agency_announced
        or reply.status not in ("ok", "not_found")
    ):
        return False
    inquiry, inquiry_type = answering.inquiry, answering.inquiry_type
    if inquiry.status != "pending" or _refusal(inquiry, event=event, topic=topic) is not None:
        return False
    read_attempts = inquiry.attempts
    _finish_answered(inquiry, inquiry_type, status=reply.status, result=reply.result, signer=signer)
    written = await repository.answer_unchanged(
        inquiry,
        read_attempts=read_attempts,
        claim=claim,
        event=await _answered_row(session, inquiry),
    )
    if written:
        _count_finished(inquiry)
    return written


async def _for_answer(
    session: Unit, inquiry_id: uuid.UUID, *, claim: InboxClaim | None = None
) -> Answering | None:
    """The inquiry, locked, with its type and its agency's last announcement (one read)."""
    return await InquiryRepository(session).for_answer(
        inquiry_id, announce_every=activity.ANNOUNCE_EVERY, claim=claim
    )


async def _refuse(
    session: Unit,
    inquiry: Inquiry,
    *,
    event: CloudEvent,
    topic: str,
    reason: str,
    chain_key: bytes | None,
) -> None:
    """A reply not from the agency that was asked: audited, logged and counted; the inquiry
    is left as it was (nothing recorded, signed or cached)."""
    await audit.record_refused_reply(
        session,
        at=datetime.now(UTC),
        inquiry_id=inquiry.id,
        inquiry_type=inquiry.type,
        asked_agency=inquiry.provider_agency,
        topic_agency=_agency_of_topic(topic),
        claimed_agency=_agency_of_source(event.source),
        reason=reason,
        chain_key=chain_key,
    )
    REPLIES_REFUSED.labels(topic, reason).inc()
    logger.warning(
        "reply refused: not from the agency that was asked",
        extra={
            "inquiry_id": str(inquiry.id),
            "topic": topic,
            "provider_agency": inquiry.provider_agency,
            "reason": reason,
        },
    )


def _agency_of_topic(topic: str) -> str | None:
    """``agency.<code>.replies`` → ``<code>``: who Kafka let write it."""
    prefix, _, rest = topic.partition(".")
    code = rest.rpartition(".")[0]
    if prefix == "agency" and code and topic == agency_replies(code):
        return code
    return None


def _agency_of_source(source: str) -> str | None:
    """``agency/<code>`` → ``<code>``: whom the sender claimed to be (its own words)."""
    kind, _, code = source.partition("/")
    return code if kind == "agency" and code else source or None


async def record_connector_answer(
    session: Unit,
    *,
    inquiry_id: uuid.UUID,
    status: str,
    result: dict[str, Any] | None,
    signer: AnswerSigner,
) -> None:
    """What an agency's HTTP connector answered (``error`` also for no usable answer)."""
    answering = await _for_answer(session, inquiry_id)
    if answering is None or answering.inquiry.status != "pending":
        return
    await _apply(session, answering, status=status, result=result, signer=signer)


def _finish_answered(
    inquiry: Inquiry,
    inquiry_type: InquiryType | None,
    *,
    status: str,
    result: dict[str, Any] | None,
    signer: AnswerSigner,
) -> None:
    """Make ``inquiry`` final with what its agency answered (``ok`` or ``not_found``), not
    counted yet: ``ok`` with a result its type's output schema refuses is ``failed``."""
    if status == "not_found":
        _finish(inquiry, status="not_found", result=None, signer=signer)
        return
    result = result or {}
    if inquiry_type is not None and validation.breaks(inquiry_type.output_schema, result):
        _finish(inquiry, status="failed", result=None, signer=None, error="invalid_result")
    else:
        _finish(inquiry, status="answered", result=result, signer=signer)


async def _apply(
    session: Unit,
    answering: Answering,
    *,
    status: str,
    result: dict[str, Any] | None,
    signer: AnswerSigner,
) -> None:
    """Complete a pending inquiry with the provider's answer, or try again after an error."""
    inquiry, inquiry_type = answering.inquiry, answering.inquiry_type
    repository = InquiryRepository(session)
    now = datetime.now(UTC)
    if status in ("ok", "not_found"):
        # the asked agency answered: it is connected. Not for ``error``, which is also what an
        # unreachable HTTP connector amounts to (see connectors.py)
        await activity.agency_answered(
            session,
            agency=inquiry.provider_agency,
            at=now,
            announced_recently=answering.agency_announced,
        )
    if status in ("ok", "not_found"):
        _finish_answered(inquiry, inquiry_type, status=status, result=result, signer=signer)
        _count_finished(inquiry)
    elif (
        inquiry_type is not None
        and inquiry.attempts < inquiry_type.max_attempts
        and inquiry.deadline_at > now
    ):
        # the agency failed this attempt: try again at once, within the same deadline
        if inquiry.connector_url is not None:
            inquiry.next_attempt_at = now
        else:
            await delivery.send(session, inquiry, inquiry_type, now=now)
        await repository.save_progress(inquiry)
        return
    else:
        complete(inquiry, status="failed", result=None, signer=None, error="agency_error")
    # the answer and its NOTIFY in one statement, then the event (what publish does)
    await repository.save_answer(inquiry)
    await _answered_event(session, inquiry)
