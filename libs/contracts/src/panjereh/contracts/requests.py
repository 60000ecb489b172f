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
