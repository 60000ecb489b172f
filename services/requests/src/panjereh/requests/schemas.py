"""API shapes of the requests service (docs/api.md, "Requests")."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from panjereh.requests.statuses import Actor, Status


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Words(BaseModel):
    """Human-facing text in both languages (``fa`` required)."""

    fa: str
    en: str | None = None


# ------------------------------------------------------------------------- citizens
class RequestCreate(Strict):
    service_code: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    #: what the card's form asks for; checked against the card version's JSON Schema
    inputs: dict[str, Any] = Field(default_factory=dict)


class RequestCreated(BaseModel):
    tracking_code: str
    status: Status
    service_code: str
    service_version: int
    submitted_at: datetime
    due_at: datetime | None


class RequestSummary(BaseModel):
    tracking_code: str
    service_code: str
    service_version: int
    service_title: Words | None = None
    status: Status
    submitted_at: datetime
    due_at: datetime | None
    decided_at: datetime | None = None
    outcome: Literal["approve", "reject"] | None = None


class Transition(BaseModel):
    from_status: Status | None = Field(serialization_alias="from")
    to_status: Status = Field(serialization_alias="to")
    actor: Actor
    reason: Words | None = None
    at: datetime

    model_config = ConfigDict(populate_by_name=True)


class InquiryState(BaseModel):
    type: str
    provider_agency: str | None = None
    status: Literal["pending", "answered", "not_found", "failed"]
    answered_at: datetime | None = None


class Decision(BaseModel):
    outcome: Literal["approve", "reject"]
    rule_id: str | None = None
    reason: Words | None = None
    #: ``rules`` (no human step), ``officer`` or ``agency-system``
    decided_by: Literal["rules", "officer", "agency-system"]
    decided_at: datetime


class DocumentRef(BaseModel):
    document_id: uuid.UUID
    issued_at: datetime
    valid_until: datetime | None
    verify_url: str


class RequestRead(BaseModel):
    tracking_code: str
    service_code: str
    service_version: int
    agency: str
    status: Status
    inputs: dict[str, Any]
    submitted_at: datetime
    due_at: datetime | None
    overdue: bool
    history: list[Transition]
    inquiries: list[InquiryState]
    decision: Decision | None = None
    document: DocumentRef | None = None


# ------------------------------------------------------------------------- officers
class AgencyDecisionCreate(Strict):
    outcome: Literal["approve", "reject"]
    reason: Words


class InquiryEvidence(InquiryState):
    """An inquiry with what the provider answered: the evidence an officer decides on."""

    #: the answer, narrowed to the ``data_items`` the card's inquiry names when it names any;
    #: ``None`` while pending, when nothing was found, or for an inquiry the card does not list
    result: dict[str, Any] | None = None


class AgencyRequestRead(RequestRead):
    """A request as its agency's staff see it: each inquiry with its result."""

    inquiries: list[InquiryEvidence]  # type: ignore[assignment]  # a richer item, same key


class QueueItem(BaseModel):
    tracking_code: str
    service_code: str
    service_version: int
    status: Status
    submitted_at: datetime
    due_at: datetime | None
    overdue: bool


# ------------------------------------------------------------------------- documents
#: far longer than any document we sign (under 1 KiB): more is not one of ours
MAX_JWS_CHARS = 8192


class DocumentRead(BaseModel):
    document_id: uuid.UUID
    #: what the document says (the signed payload)
    payload: dict[str, Any]
    #: the payload signed as a compact JWS (ES256); keys at ``/api/v1/verify/keys``
    jws: str
    verify_url: str


class DocumentPresented(Strict):
    """A document as its holder presents it (the compact JWS), to be checked."""

    jws: str = Field(min_length=1, max_length=MAX_JWS_CHARS)


class Verification(BaseModel):
    valid: bool
    issued_at: datetime | None = None
    valid_until: datetime | None = None
    service_code: str | None = None
    #: the holder's national code with all but its first and last digits hidden
    holder_masked: str | None = None


# ------------------------------------------------------------------------- receipts
class ReceiptRead(BaseModel):
    tracking_code: str
    #: card code + version, rule id, outcome, hashes of the inputs and of each inquiry result
    payload: dict[str, Any]
    jws: str


class ReplayResult(BaseModel):
    same_outcome: bool
    outcome: Literal["approve", "reject", "agency"] | None
    rule_id: str | None
    #: false when the stored inputs or evidence no longer hash to what the receipt signed
    evidence_intact: bool


# ------------------------------------------------------------------------- statistics
class ServiceUse(BaseModel):
    service_code: str
    requests: int


class RequestStats(BaseModel):
    requests_total: int
    by_status: dict[str, int]
    #: of decided requests, the share decided by rules with no human step
    decided_without_human_share: float
    median_minutes_to_decision: float | None
    #: of decided requests that had a due time, the share decided by it
    sla_met_share: float
    #: inquiries made instead of documents asked of citizens, over both
    once_only_share: float
    #: the most asked-for services (counts only), the most first
    most_used: list[ServiceUse] = Field(default_factory=list)
