"""Overdue inquiries: resent while attempts remain, timed out at their deadline.

Run by a worker on every replica; ``FOR UPDATE SKIP LOCKED`` gives each overdue inquiry to one
of them. HTTP-connector attempts are the connector dispatcher's, not the sweeper's.

An inquiry that went out on Kafka is timed out only once its agency has read it ("not
delivered" is not "not answered"; see :mod:`panjereh.inquiry_broker.backlog`). A sweep first
does everything else and names the agencies whose expired inquiries it left; the caller looks
at their topics (outside any transaction) and sweeps again with what it saw. An inquiry its
agency has not read waits, looked at again every ``recheck``, for at most
``undelivered_max_wait`` past its deadline (then ``timed_out``, error ``undelivered``); one
whose agency read it is timed out unless the broker has not consumed that agency's replies
yet, which it waits for during ``reply_grace``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.inquiry_broker.backlog import AgencyBacklog
from panjereh.inquiry_broker.models import Inquiry, InquiryType
from panjereh.inquiry_broker.repository import InquiryRepository, InquiryTypeRepository
from panjereh.inquiry_broker.service import answers, delivery

#: How many overdue inquiries one sweep takes; a full batch means more may be waiting.
SWEEP_BATCH = 100


@dataclass(frozen=True)
class Patience:
    """How long an expired Kafka inquiry waits for Kafka's side of the story."""

    #: while its agency has not read it: at most this long past its deadline
    undelivered_max_wait: timedelta
    #: while the broker has not consumed its agency's replies: at most this long from when
    #: that was first seen
    reply_grace: timedelta
    #: how soon an inquiry left waiting is looked at again
    recheck: timedelta


@dataclass(frozen=True)
class Swept:
    """What one sweep did."""

    resent: int
    timed_out: int
    #: the batch was full: sweep again at once rather than after the interval
    more: bool
    #: expired inquiries left waiting for what Kafka says (looked at again after ``recheck``)
    postponed: int = 0
    #: agencies whose expired Kafka inquiries were left as they are: look at their topics,
    #: then sweep again with what was seen
    to_look_at: frozenset[str] = frozenset()


async def sweep_overdue(
    session: AsyncSession,
    *,
    now: datetime | None = None,
    limit: int = SWEEP_BATCH,
    patience: Patience | None = None,
    backlogs: Mapping[str, AgencyBacklog] | None = None,
) -> Swept:
    """Resend inquiries due another attempt; time out those past their deadline.

    Without ``patience`` every expired inquiry is timed out. With it, an expired Kafka
    inquiry is decided with its agency's entry in ``backlogs``; one without an entry is left
    as it is and its agency named in ``to_look_at``.
    """
    now = now or datetime.now(UTC)
    overdue = await InquiryRepository(session).overdue(now=now, limit=limit)
    if not overdue:
        return Swept(resent=0, timed_out=0, more=False)
    types = {t.name: t for t in await InquiryTypeRepository(session).all()}
    resent = timed_out = postponed = 0
    to_look_at: set[str] = set()
    for inquiry in overdue:
        if inquiry.deadline_at > now:
            await delivery.send(session, inquiry, types[inquiry.type], now=now)
            resent += 1
            continue
        error = "timed_out"
        if patience is not None and inquiry.connector_url is None:
            backlog = (backlogs or {}).get(inquiry.provider_agency)
            if backlog is None:
                to_look_at.add(inquiry.provider_agency)
                continue
            verdict = _verdict(inquiry, types.get(inquiry.type), backlog, patience, now=now)
            if verdict is None:
                # looked at again after ``recheck`` (and a waiting caller keeps waiting)
                inquiry.deadline_at = now + patience.recheck
                postponed += 1
                continue
            error = verdict
        answers.complete(inquiry, status="timed_out", result=None, signer=None, error=error)
        await answers.publish(session, inquiry)
        timed_out += 1
    await session.flush()
    return Swept(
        resent=resent,
        timed_out=timed_out,
        more=len(overdue) >= limit and resent + timed_out + postponed > 0,
        postponed=postponed,
        to_look_at=frozenset(to_look_at),
    )


def _verdict(
    inquiry: Inquiry,
    inquiry_type: InquiryType | None,
    backlog: AgencyBacklog,
    patience: Patience,
    *,
    now: datetime,
) -> str | None:
    """Why an expired Kafka inquiry ends now (its ``error``), or ``None``: it waits."""
    timeout = timedelta(milliseconds=inquiry_type.timeout_ms) if inquiry_type else timedelta()
    deadline = inquiry.created_at + timeout  # as first set: waiting moves ``deadline_at``
    if backlog.unread(inquiry.id):
        return None if now < deadline + patience.undelivered_max_wait else "undelivered"
    since = backlog.replies_pending_since
    if since is not None and now < since + patience.reply_grace:
        return None
    return "timed_out"
