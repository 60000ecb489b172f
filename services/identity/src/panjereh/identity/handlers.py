"""Kafka event handlers: each runs inside the idempotent consumer's unit of work."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.messaging.consumer import Handler
from panjereh.common.messaging.envelope import CloudEvent
from panjereh.contracts.requests import RequestStatusChanged
from panjereh.identity import service
from panjereh.identity.config import Settings
from panjereh.identity.crypto import Keys

CONSUMER_NAME = "identity-notifications"


def on_request_status_changed(*, keys: Keys, settings: Settings) -> Handler:
    """Queue the citizen's SMS; the inbox row in the same transaction makes it once per event."""

    async def handle(session: AsyncSession, event: CloudEvent) -> None:
        change = RequestStatusChanged.parse_data(event.data)
        await service.notify_status_change(
            session,
            citizen_id=change.citizen_id,
            tracking_code=change.tracking_code,
            to_status=change.to_status,
            keys=keys,
            settings=settings,
            now=datetime.now(UTC),
        )

    return handle
