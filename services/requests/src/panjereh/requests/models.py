"""ORM tables of the requests service, in its own ``requests`` schema.

- ``card_version``: the replica of published service cards, one row per (code, version),
  fed by ``catalog.service.published`` / ``catalog.service.retired`` (and bootstrapped from
  the catalog's API when empty). A request is processed by the version it was submitted
  under, whatever is published later.
- ``request``: the aggregate: who asked for which card version with which inputs, where it
  stands, when it is due, how it was decided. ``next_step_at`` drives the orchestration: a
  worker claims due requests (``FOR UPDATE SKIP LOCKED``), works outside any transaction and
  records the outcome, so a restart resumes from the database, never from memory.
- ``request_transition``: one row per status change (from, to, actor, reason, time).
- ``request_inquiry``: the evidence: one row per inquiry type the card uses, with the broker's
  inquiry id, the signed answer and its hash.
- ``document`` and ``decision_receipt``: what an approval issues, and what every decision
  leaves behind, both signed (ES256).

The kernel's outbox, inbox and ``idempotency_record`` sit beside them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from panjereh.common.db import service_metadata
from panjereh.common.idempotency import idempotency_table
from panjereh.common.messaging.tables import messaging_tables

SCHEMA = "requests"


class Base(DeclarativeBase):
    metadata = service_metadata(SCHEMA)


messaging = messaging_tables(Base.metadata)
idempotency = idempotency_table(Base.metadata)


class CardVersion(Base):
    """One published version of a service card, as the catalog published it."""

    __tablename__ = "card_version"

    service_code: Mapped[str] = mapped_column(Text, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    agency: Mapped[str] = mapped_column(Text)
    #: the ``PublishedCard`` JSON
    card: Mapped[dict[str, Any]] = mapped_column(JSONB)
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: set when the catalog retired this version (or the service); no new requests then
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Request(Base):
    __tablename__ = "request"
    __table_args__ = (
        CheckConstraint(
            "status IN ('submitted', 'awaiting_inquiries', 'deciding', 'in_review', "
            "'approved', 'rejected', 'cancelled', 'failed')",
            name="status",
        ),
        Index("ix_request_citizen", "citizen_id", text("submitted_at DESC")),
        Index("ix_request_agency_status", "agency", "status", "submitted_at"),
        Index(
            "ix_request_due_step",
            "next_step_at",
            postgresql_where=text("next_step_at IS NOT NULL"),
        ),
        Index(
            "ix_request_open_due",
            "due_at",
            postgresql_where=text(
                "status NOT IN ('approved', 'rejected', 'cancelled', 'failed') AND NOT overdue"
            ),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    tracking_code: Mapped[str] = mapped_column(Text, unique=True)
    service_code: Mapped[str] = mapped_column(Text)
    service_version: Mapped[int] = mapped_column(Integer)
    agency: Mapped[str] = mapped_column(Text)
    #: the citizen's opaque id (``sub`` of their token)
    citizen_id: Mapped[str] = mapped_column(Text)
    #: the subject of the card's inquiries and the holder of the document. Personal data:
    #: never logged, never in an event except ``requests.request.submitted`` (broker only).
    national_code: Mapped[str] = mapped_column(Text)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(Text)
    decision_mode: Mapped[str] = mapped_column(Text)
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: when the orchestration should next look at this request (None: nothing to do)
    next_step_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    step_attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str | None] = mapped_column(Text)
    rule_id: Mapped[str | None] = mapped_column(Text)
    #: ``{"fa": ..., "en": ...}``: why it was decided (the rule's reason, the officer's words)
    decision_reason: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    #: ``rules``, ``officer`` or ``agency-system``
    decided_by: Mapped[str | None] = mapped_column(Text)
    decided_by_subject: Mapped[str | None] = mapped_column(Text)
    #: documents the card still asks the citizen for, and inquiries made instead of asking
    documents_asked: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    inquiries_made: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    overdue: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    escalated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RequestTransition(Base):
    __tablename__ = "request_transition"
    __table_args__ = (Index("ix_request_transition_request", "request_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    request_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("request.id", ondelete="CASCADE"))
    from_status: Mapped[str | None] = mapped_column(Text)
    to_status: Mapped[str] = mapped_column(Text)
    #: ``citizen``, ``rules``, ``officer``, ``agency-system`` or ``system``
    actor: Mapped[str] = mapped_column(Text)
    actor_subject: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RequestInquiry(Base):
    """One piece of evidence: an inquiry the card uses, asked through the broker."""

    __tablename__ = "request_inquiry"

    request_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("request.id", ondelete="CASCADE"), primary_key=True
    )
    inquiry_type: Mapped[str] = mapped_column(Text, primary_key=True)
    provider_agency: Mapped[str | None] = mapped_column(Text)
    #: ``pending`` (not asked or not answered yet), ``answered``, ``not_found``, ``failed``
    status: Mapped[str] = mapped_column(Text, server_default=text("'pending'"))
    broker_inquiry_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    #: SHA-256 of the canonical JSON of ``result``: what the decision receipt signs
    result_sha256: Mapped[str | None] = mapped_column(Text)
    #: the broker's signed answer (compact JWS), kept as evidence
    signature: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Document(Base):
    """What an approval issues: signed, verifiable by anyone with its id."""

    __tablename__ = "document"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    request_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("request.id", ondelete="CASCADE"), unique=True
    )
    service_code: Mapped[str] = mapped_column(Text)
    holder_masked: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    jws: Mapped[str] = mapped_column(Text)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    valid_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DecisionReceipt(Base):
    """What every decision leaves behind: the evidence's hashes, the rule, signed."""

    __tablename__ = "decision_receipt"

    request_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("request.id", ondelete="CASCADE"), primary_key=True
    )
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    jws: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SigningKey(Base):
    """Dev/test only: the key that signs documents and receipts when none is configured."""

    __tablename__ = "signing_key"

    kid: Mapped[str] = mapped_column(Text, primary_key=True)
    private_key_pem: Mapped[str] = mapped_column(Text)
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
