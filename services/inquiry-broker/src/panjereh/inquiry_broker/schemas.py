"""API DTOs of the inquiry broker."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from panjereh.inquiry_broker.models import Inquiry

InquiryStatus = Literal["pending", "answered", "not_found", "failed", "timed_out"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"answered", "not_found", "failed", "timed_out"})


class InquiryTypeRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    type: str = Field(validation_alias="name")
    provider_agency: str
    title: dict[str, str]
    subject_kind: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    delivery: str
    topic: str | None = None
    connector_url: str | None
    timeout_ms: int
    max_attempts: int
    cache_ttl_seconds: int
    personal_data_class: str


class PurposeIn(BaseModel):
    """Why the data is needed: the service, the request and the law."""

    model_config = ConfigDict(extra="forbid")

    service_code: str = Field(min_length=1, max_length=100)
    tracking_code: str | None = Field(default=None, min_length=1, max_length=100)
    legal_basis: str | None = Field(default=None, max_length=2000)


class InquiryCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=200)
    subject: str = Field(min_length=1, max_length=32, description="the subject's national code")
    params: dict[str, Any] = Field(default_factory=dict)
    purpose: PurposeIn


class InquiryRead(BaseModel):
    inquiry_id: uuid.UUID
    type: str
    status: InquiryStatus
    result: dict[str, Any] | None = None
    error: str | None = None
    signature: str | None = Field(
        default=None, description="compact JWS (ES256) over the answer; keys at .../keys"
    )
    cached: bool = False
    created_at: datetime
    answered_at: datetime | None = None

    @classmethod
    def of(cls, inquiry: Inquiry) -> InquiryRead:
        return cls(
            inquiry_id=inquiry.id,
            type=inquiry.type,
            status=inquiry.status,  # type: ignore[arg-type]
            result=inquiry.result,
            error=inquiry.error,
            signature=inquiry.signature,
            cached=inquiry.cached_from is not None,
            created_at=inquiry.created_at,
            answered_at=inquiry.answered_at,
        )


class CallerRead(BaseModel):
    principal: str | None
    agency: str | None


class PurposeRead(BaseModel):
    service_code: str | None
    tracking_code: str | None
    legal_basis: str | None


class DataAccessRead(BaseModel):
    """One access (or refused attempt) to the citizen's data."""

    at: datetime
    inquiry_type: str
    title: dict[str, str] | None
    provider_agency: str | None
    caller: CallerRead
    purpose: PurposeRead
    decision: Literal["allowed", "denied"]


class BrokenEntryRead(BaseModel):
    seq: int
    id: uuid.UUID
    recorded_at: datetime
    problem: Literal["content_changed", "chain_broken", "unkeyed_after_keyed"]


class CheckpointRead(BaseModel):
    """A signed statement of the audit chain's head; ``jws`` is what to keep and verify."""

    seq: int
    head: str
    count: int
    issued_at: datetime
    jws: str


class CheckpointCheckRead(BaseModel):
    """The checkpoint the chain was compared with, and what did not match (``None``: all)."""

    seq: int
    head: str
    count: int
    issued_at: datetime
    source: Literal["stored", "supplied"]
    problem: Literal["truncated", "head_changed", "count_changed"] | None


class AuditVerification(BaseModel):
    valid: bool
    checked: int
    first_broken: BrokenEntryRead | None
    #: ``None`` when no checkpoint was supplied and none is stored (or none verifies)
    checkpoint: CheckpointCheckRead | None = None


class AuditVerifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: a checkpoint's compact JWS, as published on ``audit.checkpoints`` or by
    #: ``GET /api/v1/audit/checkpoints/latest``
    checkpoint: str = Field(min_length=1, max_length=4096)
