"""SMS to citizens about their requests (consumed ``requests.request.status-changed``)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.identity.config import Settings
from panjereh.identity.repository import CitizenRepository
from panjereh.identity.sms import SmsQueue

logger = logging.getLogger(__name__)

#: How a request status reads in an SMS (CONTRACT.md, "Requests" statuses)
STATUS_TEXTS = {
    "submitted": "ثبت شد",
    "awaiting_inquiries": "در انتظار استعلام",
    "deciding": "در حال تصمیم‌گیری",
    "in_review": "در حال بررسی کارشناس",
    "approved": "تأیید شد",
    "rejected": "رد شد",
    "cancelled": "لغو شد",
    "failed": "ناموفق ماند",
}
#: the statuses worth an SMS: taken, waiting for a person, decided or ended. The machine's
#: own steps (asking agencies, applying the rules) take seconds and are visible in the
#: tracker; an SMS for each would be noise, and a cost per request at national scale.
NOTIFIED_STATUSES = frozenset(
    {"submitted", "in_review", "approved", "rejected", "cancelled", "failed"}
)
#: a status SMS that could not be delivered in a day is no longer news
STATUS_SMS_VALIDITY = timedelta(days=1)


async def notify_status_change(
    session: AsyncSession,
    *,
    citizen_id: str | None,
    tracking_code: str,
    to_status: str,
    sms: SmsQueue,
    settings: Settings,
    now: datetime,
) -> bool:
    """Queue the citizen's Persian SMS about a request's new status; whether one was queued.

    Called inside the consumer's unit of work, whose inbox row makes it once per event.
    """
    if to_status not in NOTIFIED_STATUSES:
        return False
    if citizen_id is None:
        logger.warning(
            "status change names no citizen; no SMS", extra={"tracking_code": tracking_code}
        )
        return False
    citizen = await CitizenRepository(session).by_subject(citizen_id)
    if citizen is None:
        logger.warning(
            "status change for an unknown citizen", extra={"tracking_code": tracking_code}
        )
        return False
    sms.enqueue(
        session,
        mobile=citizen.mobile,
        template=settings.sms_status_template,
        tokens=[tracking_code, STATUS_TEXTS.get(to_status, to_status)],
        now=now,
        valid_for=STATUS_SMS_VALIDITY,
    )
    await session.flush()
    return True
