"""Kafka event handlers: each runs inside the idempotent consumer's unit of work."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.messaging.consumer import Handler
from panjereh.common.messaging.envelope import CloudEvent
from panjereh.contracts.requests import RequestStatusChanged
from panjereh.identity.config import Settings
from panjereh.identity.service import notifications
from panjereh.identity.sms import SmsQueue

CONSUMER_NAME = "identity-notifications"


def on_request_status_changed(*, sms: SmsQueue, settings: Settings) -> Handler:
    """Queue the citizen's SMS; the inbox row in the same transaction makes it once per event.

    The SMS dispatcher is woken once the consumer's unit of work commits.
    """

    async def handle(session: AsyncSession, event: CloudEvent) -> None:
        change = RequestStatusChanged.parse_data(event.data)
        await notifications.notify_status_change(
            session,
            citizen_id=change.citizen_id,
            tracking_code=change.tracking_code,
            to_status=change.to_status,
            sms=sms,
            settings=settings,
            now=datetime.now(UTC),
        )

    return handle
