"""ORM tables of the catalog, in its own ``catalog`` schema.

A service card is an aggregate of:

- ``service_card``: the card's identity (code, owning agency) and lifecycle status;
- ``service_card_draft``: the one editable draft (content + review state);
- ``service_card_version``: each approved version, immutable forever (a database trigger
  refuses ``UPDATE`` and ``DELETE``);
- ``card_transition``: every workflow step with its actor and time;
- ``service_listing``: the search read model, one row per published card (the latest version),
  with Persian-normalised search columns, a full-text vector and trigram indexes.

The kernel's tables sit beside them: the outbox and inbox, and ``idempotency_record``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    SmallInteger,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from panjereh.common.db import service_metadata
from panjereh.common.idempotency import idempotency_table
from panjereh.common.messaging.tables import messaging_tables

SCHEMA = "catalog"


class Base(DeclarativeBase):
    metadata = service_metadata(SCHEMA)


messaging = messaging_tables(Base.metadata)
#: The first answers to keyed creating POSTs (the kernel's shape; see migration 0003).
idempotency = idempotency_table(Base.metadata)


class Agency(Base):
    __tablename__ = "agency"

    code: Mapped[str] = mapped_column(Text, primary_key=True)
    name_fa: Mapped[str] = mapped_column(Text)
    name_en: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    parent_code: Mapped[str | None] = mapped_column(ForeignKey("agency.code"))
    spatial: Mapped[str] = mapped_column(Text, server_default="national")
    contact: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ServiceCard(Base):
    __tablename__ = "service_card"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    code: Mapped[str] = mapped_column(Text, unique=True)
    agency_code: Mapped[str] = mapped_column(ForeignKey("agency.code"), index=True)
    #: ``unpublished`` until the first approval, then ``published``; ``retired`` when withdrawn
    status: Mapped[str] = mapped_column(Text)
    latest_version: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    created_by: Mapped[str] = mapped_column(Text)
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ServiceCardDraft(Base):
    __tablename__ = "service_card_draft"

    card_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("service_card.id"), primary_key=True)
    #: ``editing`` → ``submitted`` → ``approved`` | ``rejected``; editing again reopens it
    state: Mapped[str] = mapped_column(Text)
    content: Mapped[dict[str, Any]] = mapped_column(JSONB)
    rejection_reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_by: Mapped[str] = mapped_column(Text)
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ServiceCardVersion(Base):
    __tablename__ = "service_card_version"
    __table_args__ = (UniqueConstraint("card_id", "version"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    card_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("service_card.id"))
    version: Mapped[int] = mapped_column(Integer)
    content: Mapped[dict[str, Any]] = mapped_column(JSONB)
    approved_by: Mapped[str] = mapped_column(Text)
    approving_organisation: Mapped[str] = mapped_column(Text)
    approved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    submitted_by: Mapped[str] = mapped_column(Text)


class CardTransition(Base):
    __tablename__ = "card_transition"
    __table_args__ = (Index("ix_card_transition_card_id_at", "card_id", "at"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    card_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("service_card.id"))
    action: Mapped[str] = mapped_column(Text)
    from_state: Mapped[str | None] = mapped_column(Text)
    to_state: Mapped[str] = mapped_column(Text)
    version: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ServiceListing(Base):
    """The search read model: the latest published version of every live card."""

    __tablename__ = "service_listing"
    __table_args__ = (
        Index("ix_service_listing_search_vector", "search_vector", postgresql_using="gin"),
    )

    card_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("service_card.id"), primary_key=True)
    code: Mapped[str] = mapped_column(Text, unique=True)
    version: Mapped[int] = mapped_column(Integer)
    agency_code: Mapped[str] = mapped_column(Text, index=True)
    category: Mapped[str] = mapped_column(Text, index=True)
    #: Multi-valued facets as bit sets over fixed vocabularies (see ``repository.FacetBits``):
    #: counting and filtering them is integer arithmetic, not array unnesting.
    life_events_mask: Mapped[int] = mapped_column(Integer)
    channels_mask: Mapped[int] = mapped_column(Integer)
    audience_mask: Mapped[int] = mapped_column(Integer)
    maturity: Mapped[int] = mapped_column(SmallInteger, index=True)
    documents_required: Mapped[int] = mapped_column(Integer)
    in_person_visits: Mapped[int] = mapped_column(Integer)
    summary: Mapped[dict[str, Any]] = mapped_column(JSONB)
    #: Weighted words: title (A) > keywords (B) > description (C). Built by the application
    #: from words it already normalised, so it depends on no text-search parser or locale.
    search_vector: Mapped[str] = mapped_column(TSVECTOR)
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SearchWord(Base):
    """Every normalised word the listing ever indexed: the lexicon for typo correction.

    A misspelt query word is matched against these short words by trigram similarity, then
    searched as the words it is close to; stale words only ever find nothing.
    """

    __tablename__ = "search_word"
    __table_args__ = (
        Index(
            "ix_search_word_word_trgm",
            "word",
            postgresql_using="gin",
            postgresql_ops={"word": "gin_trgm_ops"},
        ),
    )

    word: Mapped[str] = mapped_column(Text, primary_key=True)
