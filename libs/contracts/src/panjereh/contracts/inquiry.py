"""Messages the inquiry broker exchanges with agencies, and its events for other services."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from panjereh.contracts import topics
from panjereh.contracts.events import Event

InquiryStatus = Literal["ok", "not_found", "error"]


class InquiryPurpose(BaseModel):
    """Why the data is asked for: every inquiry is tied to a service, a request and a law."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service_code: str = Field(min_length=1)
    tracking_code: str | None = None
    legal_basis: str = Field(min_length=1)


class InquiryToAgency(Event):
    """An inquiry for the provider agency to answer (on ``agency.<agency>.inquiries``)."""

    event_type: ClassVar[str] = "inquiry.inquiry.requested.v1"
    topic: ClassVar[str] = topics.agency_inquiries("{agency}")

    inquiry_id: str = Field(min_length=1)
    type: str = Field(min_length=1)
    subject: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    purpose: InquiryPurpose


class InquiryReply(Event):
    """An agency's answer to an inquiry (on its own ``agency.<agency>.replies``)."""

    event_type: ClassVar[str] = "agency.inquiry.replied.v1"
    topic: ClassVar[str] = topics.agency_replies("{agency}")

    inquiry_id: str = Field(min_length=1)
    status: InquiryStatus
    result: dict[str, Any] | None = None


class InquiryAnswered(Event):
    """The broker has a final answer for an inquiry a request is waiting on."""

    event_type: ClassVar[str] = "inquiry.inquiry.answered.v1"
    topic: ClassVar[str] = topics.INQUIRY_ANSWERED

    inquiry_id: str = Field(min_length=1)
    type: str = Field(min_length=1)
    status: InquiryStatus
    result: dict[str, Any] | None = None
    tracking_code: str | None = None
    service_code: str | None = None


class AgencyActive(Event):
    """An agency answered an inquiry: it is connected (the catalog's connection status).

    Announced at most once per agency per minute, however many answers it gives. Names the
    agency and the time only: nothing about the inquiry, its subject or its answer.
    """

    event_type: ClassVar[str] = "inquiry.agency.active.v1"
    topic: ClassVar[str] = topics.INQUIRY_AGENCY_ACTIVE

    agency: str = Field(min_length=1)
    at: datetime


class AuditCheckpointed(Event):
    """The broker signed the head of its audit log: auditors keep these to check it later.

    ``jws`` is a compact JWS (ES256, ``typ`` ``audit-checkpoint+jws``, verified with the
    broker's JWKS ``GET /api/v1/inquiry-types/keys``) over ``{log, seq, head, count,
    issued_at}``; the other fields repeat what it signs. Hashes and counts only: nothing
    about any inquiry, caller or subject.
    """

    event_type: ClassVar[str] = "inquiry.audit.checkpointed.v1"
    topic: ClassVar[str] = topics.AUDIT_CHECKPOINTS

    log: str = Field(min_length=1)
    seq: int = Field(ge=1)
    head: str = Field(min_length=64, max_length=64)
    count: int = Field(ge=1)
    issued_at: datetime
    jws: str = Field(min_length=1)
