"""Live purposes: the citizens' requests the broker may ask inquiries for, until they are decided.

Kept from the requests service's events by an idempotent consumer (see
:mod:`panjereh.inquiry_broker.handlers`):

- ``requests.request.submitted`` opens the purpose: tracking code, service, card version and
  the subject, stored as the audit log's HMAC (never the national code itself);
- ``requests.request.status-changed`` to a final status (approved, rejected, cancelled,
  failed) closes it for good.

The two topics are not ordered with each other: a close may arrive before the open. It is
recorded on its own, and the late open fills in the subject without reopening. Each change
NOTIFYs (at commit) the callers that wait for a tracking code the broker has not heard of yet
(:meth:`panjereh.inquiry_broker.runtime.BrokerRuntime.ask`).
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.auth import Principal
from panjereh.common.messaging.envelope import CloudEvent
from panjereh.contracts.identifiers import InvalidIdentifier, normalize_national_code
from panjereh.contracts.requests import RequestStatus, RequestStatusChanged, RequestSubmitted
from panjereh.inquiry_broker.identifiers import subject_hash
from panjereh.inquiry_broker.repository import LivePurposeRepository, PlatformPurposeRepository
from panjereh.inquiry_broker.schemas import PurposeIn

logger = logging.getLogger(__name__)

#: A request in one of these is decided: nothing may be asked for it any more.
FINAL_STATUSES: frozenset[RequestStatus] = frozenset(
    {"approved", "rejected", "cancelled", "failed"}
)


async def record_request_submitted(
    session: AsyncSession, event: CloudEvent, *, subject_hash_key: bytes
) -> None:
    submitted = RequestSubmitted.parse_data(event.data)
    try:
        subject = normalize_national_code(submitted.subject)
    except InvalidIdentifier:
        # nothing can ever be asked about it (an inquiry's subject must be valid): no purpose
        logger.warning(
            "submitted request names an invalid subject; ignored",
            extra={"tracking_code": submitted.tracking_code, "event_id": event.id},
        )
        return
    purposes = LivePurposeRepository(session)
    await purposes.open(
        tracking_code=submitted.tracking_code,
        service_code=submitted.service_code,
        service_version=submitted.service_version,
        subject_hash=subject_hash(subject_hash_key, subject),
        opened_at=submitted.at,
    )
    await purposes.announce(submitted.tracking_code)


async def record_status_changed(session: AsyncSession, event: CloudEvent) -> None:
    changed = RequestStatusChanged.parse_data(event.data)
    if changed.to_status not in FINAL_STATUSES:
        return  # still undecided: the purpose stays as it is (open, or not heard of yet)
    purposes = LivePurposeRepository(session)
    await purposes.close(
        tracking_code=changed.tracking_code,
        service_code=changed.service_code,
        closed_at=changed.at,
    )
    await purposes.announce(changed.tracking_code)


def may_wait_for(
    principal: Principal, purpose: PurposeIn, *, card_acting_services: frozenset[str]
) -> bool:
    """Whether this caller's unknown tracking code is worth waiting for.

    Only a service acting for every card (``service:requests``) asks right after committing
    the request it asks for, before the broker may have consumed its ``submitted`` event. An
    agency client asks about requests it learned of from the platform, which the broker has
    long heard of: its unknown tracking code is refused at once.
    """
    return purpose.tracking_code is not None and bool(principal.roles & card_acting_services)


async def awaits_opening(session: AsyncSession, *, purpose: PurposeIn) -> bool:
    """Whether ``purpose`` names a request the broker has not heard of (yet)."""
    if purpose.tracking_code is None:
        return False
    if await PlatformPurposeRepository(session).get(purpose.service_code) is not None:
        return False  # platform purposes are not requests
    return not await LivePurposeRepository(session).exists(purpose.tracking_code)
