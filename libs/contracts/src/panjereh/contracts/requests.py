"""Events and agency work items the requests service publishes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import Field

from panjereh.contracts import topics
from panjereh.contracts.events import Event

RequestStatus = Literal[
    "submitted",
    "awaiting_inquiries",
    "deciding",
    "in_review",
    "approved",
    "rejected",
    "cancelled",
    "failed",
]


class RequestStatusChanged(Event):
    """A request moved from one status to another (``from`` is a Python keyword: aliased)."""

    event_type: ClassVar[str] = "requests.request.status-changed.v1"
    topic: ClassVar[str] = topics.REQUESTS_STATUS_CHANGED

    tracking_code: str = Field(min_length=1)
    service_code: str = Field(min_length=1)
    from_status: RequestStatus | None = Field(alias="from")
    to_status: RequestStatus = Field(alias="to")
    at: datetime
    #: The requesting citizen's opaque id (the ``sub`` of their access token), so identity can
    #: notify them by SMS; never a national code or a mobile. Optional: additive to v1.
    citizen_id: str | None = None


class RequestSubmitted(Event):
    """A citizen asked for a service: the live purpose the broker binds inquiries to.

    Carries the subject (a national code), so its topic's ACL admits the broker alone.
    """

    event_type: ClassVar[str] = "requests.request.submitted.v1"
    topic: ClassVar[str] = topics.REQUESTS_SUBMITTED

    tracking_code: str = Field(min_length=1)
    service_code: str = Field(min_length=1)
    service_version: int = Field(ge=1)
    subject: str = Field(min_length=1, repr=False)
    at: datetime


class RequestDecided(Event):
    """A request was decided: by the card's rules (no human step) or by the agency."""

    event_type: ClassVar[str] = "requests.request.decided.v1"
    topic: ClassVar[str] = topics.REQUESTS_DECIDED

    tracking_code: str = Field(min_length=1)
    service_code: str = Field(min_length=1)
    outcome: Literal["approve", "reject"]
    decided_by: Literal["rules", "officer", "agency-system"]
    rule_id: str | None = None
    at: datetime


class RequestEscalated(Event):
    """A request passed its due time undecided: sent to the owning agency's work topic."""

    event_type: ClassVar[str] = "requests.request.escalated.v1"
    topic: ClassVar[str] = topics.agency_requests("{agency}")

    tracking_code: str = Field(min_length=1)
    service_code: str = Field(min_length=1)
    agency: str = Field(min_length=1)
    status: RequestStatus
    due_at: datetime
    at: datetime


class AgencyWorkItem(Event):
    """A request of an agency-mode card waiting for the owning agency's officers.

    Sent on ``agency.<agency>.requests``: the producer passes the resolved topic.
    """

    event_type: ClassVar[str] = "requests.request.work-item.v1"
    topic: ClassVar[str] = topics.agency_requests("{agency}")

    tracking_code: str = Field(min_length=1)
    service_code: str = Field(min_length=1)
    service_version: int = Field(ge=1)
    agency: str = Field(min_length=1)
    status: RequestStatus
    submitted_at: datetime
    due_at: datetime | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
