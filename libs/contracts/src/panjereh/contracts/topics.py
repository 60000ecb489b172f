"""Kafka topic names from docs/api.md (agency-facing and internal)."""

from __future__ import annotations

CATALOG_SERVICE_PUBLISHED = "catalog.service.published"
CATALOG_SERVICE_RETIRED = "catalog.service.retired"
REQUESTS_STATUS_CHANGED = "requests.request.status-changed"
REQUESTS_SUBMITTED = "requests.request.submitted"
REQUESTS_DECIDED = "requests.request.decided"
IDENTITY_CITIZEN_REGISTERED = "identity.citizen.registered"
INQUIRY_ANSWERED = "inquiry.inquiry.answered"
#: broker -> catalog: an agency answered recently (its connection status)
INQUIRY_AGENCY_ACTIVE = "inquiry.agency.active"
#: broker -> auditors: signed checkpoints of the audit log's head
AUDIT_CHECKPOINTS = "audit.checkpoints"

PLATFORM_TOPICS: tuple[str, ...] = (
    CATALOG_SERVICE_PUBLISHED,
    CATALOG_SERVICE_RETIRED,
    REQUESTS_STATUS_CHANGED,
    REQUESTS_SUBMITTED,
    REQUESTS_DECIDED,
    IDENTITY_CITIZEN_REGISTERED,
    INQUIRY_ANSWERED,
    INQUIRY_AGENCY_ACTIVE,
    AUDIT_CHECKPOINTS,
)


def agency_inquiries(agency: str) -> str:
    """Where the broker sends inquiries for ``agency`` to answer."""
    return f"agency.{agency}.inquiries"


def agency_replies(agency: str) -> str:
    """Where ``agency``, and only it (Kafka ACL), answers its inquiries for the broker.

    The topic names the sender: the broker accepts a reply only on the replies topic of the
    agency the inquiry was sent to, whatever ``source`` the CloudEvent claims.
    """
    return f"agency.{agency}.replies"


def agency_requests(agency: str) -> str:
    """Where the requests service sends work items of ``agency``'s agency-mode cards."""
    return f"agency.{agency}.requests"


def dead_letter(topic: str) -> str:
    """Where a consumer parks a record it could not handle after its retries."""
    return f"{topic}.dlq"


def with_dead_letters(names: tuple[str, ...] | list[str]) -> list[str]:
    """``names`` followed by each one's dead-letter topic: what a deployment must create."""
    return [*names, *(dead_letter(name) for name in names)]
