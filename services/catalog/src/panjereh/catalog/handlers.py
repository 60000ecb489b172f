"""Kafka event handlers: each runs inside the idempotent consumer's unit of work."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.catalog.service import agencies
from panjereh.common.messaging.envelope import CloudEvent
from panjereh.contracts.inquiry import AgencyActive

logger = logging.getLogger(__name__)

#: The consumer group (and inbox name) of the agencies' activity.
AGENCY_ACTIVITY_GROUP = "catalog.agency-activity"


async def on_agency_active(session: AsyncSession, event: CloudEvent) -> None:
    """The inquiry broker heard from an agency: it counts as connected from that moment."""
    active = AgencyActive.parse_data(event.data)
    if not await agencies.note_agency_activity(session, code=active.agency, seen_at=active.at):
        # an agency the broker knows and the catalog does not (not registered yet): nothing to
        # mark, and retrying will not register it
        logger.info("activity of an unregistered agency ignored", extra={"agency": active.agency})
