"""ORM tables of the inquiry broker service, in its own ``inquiry_broker`` schema."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    SmallInteger,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from panjereh.common.db import service_metadata
from panjereh.common.idempotency import idempotency_table
from panjereh.common.messaging.tables import messaging_tables

SCHEMA = "inquiry_broker"


class Base(DeclarativeBase):
    metadata = service_metadata(SCHEMA)


messaging = messaging_tables(Base.metadata)
#: The first answer to each ``Idempotency-Key`` a caller sent (the kernel's table, migration 0004).
idempotency_record = idempotency_table(Base.metadata)


class InquiryType(Base):
    """An entry of the registry: what can be asked, of whom, and how it is delivered."""

    __tablename__ = "inquiry_type"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    provider_agency: Mapped[str] = mapped_column(Text)
    title: Mapped[dict[str, str]] = mapped_column(JSONB)
    subject_kind: Mapped[str] = mapped_column(Text)
    input_schema: Mapped[dict[str, Any]] = mapped_column(JSONB)
    output_schema: Mapped[dict[str, Any]] = mapped_column(JSONB)
    delivery: Mapped[str] = mapped_column(Text)
    connector_url: Mapped[str | None] = mapped_column(Text)
    timeout_ms: Mapped[int] = mapped_column(Integer)
    max_attempts: Mapped[int] = mapped_column(Integer)
    cache_ttl_seconds: Mapped[int] = mapped_column(Integer)
    personal_data_class: Mapped[str] = mapped_column(Text)


class PlatformPurpose(Base):
    """A named purpose of the platform itself (``identity.login``), reserved to its owner.

    No citizen's request stands behind these inquiries, so they are bound to a name instead of
    a tracking code; only the owning client may state the name (migration 0005).
    """

    __tablename__ = "platform_purpose"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    #: The only principal that may ask under this purpose (``service:identity``).
    owner: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class AccessGrant(Base):
    """An explicit permission, with its legal basis, to ask a type for one platform purpose."""

    __tablename__ = "access_grant"
    __table_args__ = (UniqueConstraint("principal", "purpose", "inquiry_type"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    principal: Mapped[str] = mapped_column(Text)
    #: The platform purpose the grant is for: it applies to no other.
    purpose: Mapped[str] = mapped_column(ForeignKey(f"{SCHEMA}.platform_purpose.name"))
    inquiry_type: Mapped[str] = mapped_column(Text)
    legal_basis: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PublishedCard(Base):
    """Replica of the catalog's published service cards: what the access policy reads."""

    __tablename__ = "published_card"

    service_code: Mapped[str] = mapped_column(Text, primary_key=True)
    agency: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer)
    inquiry_types: Mapped[list[str]] = mapped_column(ARRAY(Text))
    legal_basis: Mapped[str | None] = mapped_column(Text)
    retired: Mapped[bool] = mapped_column(server_default=text("false"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class LivePurpose(Base):
    """A citizen's request the broker may ask inquiries for, until it is decided.

    Kept from the requests service's ``requests.request.submitted`` (opens) and
    ``requests.request.status-changed`` (a final status closes) by an idempotent consumer. The
    two topics are not ordered with each other: a close that arrives first leaves a row with
    ``closed_at`` and no subject yet, and the late open fills the subject in but never reopens.
    """

    __tablename__ = "live_purpose"
    __table_args__ = (
        # the submitted event brings the subject and the opening together
        CheckConstraint("(opened_at IS NULL) = (subject_hash IS NULL)", name="opened_with_subject"),
    )

    tracking_code: Mapped[str] = mapped_column(Text, primary_key=True)
    service_code: Mapped[str] = mapped_column(Text)
    service_version: Mapped[int | None] = mapped_column(Integer)
    #: HMAC of the subject's national code (the audit log's key): never the code itself.
    subject_hash: Mapped[str | None] = mapped_column(Text)
    opened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AgencyAnnouncement(Base):
    """When the broker last announced an agency as active (``AgencyActive``): the throttle.

    In the database, not in memory, so every replica shares it and a restart does not flood
    the catalog with announcements.
    """

    __tablename__ = "agency_announcement"

    agency: Mapped[str] = mapped_column(Text, primary_key=True)
    announced_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Inquiry(Base):
    """One question asked of a provider agency, and its answer."""

    __tablename__ = "inquiry"
    __table_args__ = (
        Index(
            "ix_inquiry_pending_deadline",
            "deadline_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index(
            "ix_inquiry_pending_next_attempt",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_inquiry_cache_key_answered_at", "cache_key", "answered_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    type: Mapped[str] = mapped_column(Text)
    provider_agency: Mapped[str] = mapped_column(Text)
    #: Set for types delivered to an HTTP connector instead of the agency's Kafka topic.
    connector_url: Mapped[str | None] = mapped_column(Text)
    #: Needed to (re)send the inquiry to the provider; never logged nor put in events.
    subject: Mapped[str] = mapped_column(Text)
    subject_hash: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSONB)
    cache_key: Mapped[str] = mapped_column(Text)
    caller: Mapped[str] = mapped_column(Text)
    caller_role: Mapped[str] = mapped_column(Text)
    caller_agency: Mapped[str | None] = mapped_column(Text)
    service_code: Mapped[str | None] = mapped_column(Text)
    tracking_code: Mapped[str | None] = mapped_column(Text)
    legal_basis: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)
    signature: Mapped[str | None] = mapped_column(Text)
    cached_from: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: When to resend if no answer came yet (``None``: no attempt left before the deadline).
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deadline_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditEntry(Base):
    """One access decision (or a refused agency reply), chained to the previous entry by its
    MAC (append-only; see :mod:`panjereh.inquiry_broker.audit`)."""

    __tablename__ = "audit_entry"

    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    decision: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    inquiry_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    inquiry_type: Mapped[str] = mapped_column(Text)
    provider_agency: Mapped[str | None] = mapped_column(Text)
    caller: Mapped[str] = mapped_column(Text)
    caller_role: Mapped[str | None] = mapped_column(Text)
    caller_agency: Mapped[str | None] = mapped_column(Text)
    #: Keyed hash (HMAC) of the subject's national code: the citizen's tracker finds its
    #: entries without the audit table holding national codes.
    subject_hash: Mapped[str] = mapped_column(Text, index=True)
    service_code: Mapped[str | None] = mapped_column(Text)
    tracking_code: Mapped[str | None] = mapped_column(Text)
    legal_basis: Mapped[str | None] = mapped_column(Text)
    #: A refused reply's claimed sender (its CloudEvent ``source`` agency), whoever sent it.
    claimed_agency: Mapped[str | None] = mapped_column(Text)
    #: Which rule ``entry_hash`` follows: 1 unkeyed (entries before migration 0007), 2 keyed.
    chain_version: Mapped[int] = mapped_column(SmallInteger, server_default=text("1"))
    prev_hash: Mapped[str] = mapped_column(Text)
    entry_hash: Mapped[str] = mapped_column(Text)


class AuditCheckpoint(Base):
    """A signed statement of the audit chain's head, also published on ``audit.checkpoints``.

    Kept here for ``/audit/verify`` and the endpoint auditors poll; what makes it worth
    anything is the copies outside the database (append-only like the log itself).
    """

    __tablename__ = "audit_checkpoint"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    head_seq: Mapped[int] = mapped_column(BigInteger)
    head_hash: Mapped[str] = mapped_column(Text)
    #: how many entries the chain holds up to and including ``head_seq``
    entries: Mapped[int] = mapped_column(BigInteger)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: the compact JWS (ES256, the broker's answer-signing key) of the four fields above
    jws: Mapped[str] = mapped_column(Text)
