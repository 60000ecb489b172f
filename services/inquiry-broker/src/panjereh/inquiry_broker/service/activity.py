"""Agencies heard from: ``AgencyActive`` for the catalog's connection status, throttled.

An agency that answers (on Kafka or its HTTP connector) is connected. The broker says so on
``inquiry.agency.active``, through the outbox in the transaction that records the answer, at
most once per agency per :data:`ANNOUNCE_EVERY`: the time of the last announcement is kept in
the database, shared by every replica and surviving restarts, so a busy agency costs one event
a minute rather than one per answer.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from panjereh.common.db import Unit
from panjereh.common.messaging import outbox
from panjereh.contracts.inquiry import AgencyActive
from panjereh.inquiry_broker.repository import AgencyAnnouncementRepository

ANNOUNCE_EVERY = timedelta(minutes=1)


async def agency_answered(
    session: Unit, *, agency: str, at: datetime, announced_recently: bool | None = None
) -> bool:
    """Announce ``agency`` as active unless it was within the last minute; whether it was.

    ``announced_recently``: what a read of this transaction already said about the last
    minute (``None``: read it here).
    """
    announcements = AgencyAnnouncementRepository(session)
    # a plain read first: the announcement row is locked (until commit) only once a minute,
    # not by every answer of a busy agency
    if announced_recently is None:
        announced_recently = await announcements.announced_within(agency, ANNOUNCE_EVERY)
    if announced_recently:
        return False
    if not await announcements.claim(agency, ANNOUNCE_EVERY):
        return False  # another transaction announced it meanwhile
    await outbox.add(session, AgencyActive(agency=agency, at=at), key=agency)
    return True
