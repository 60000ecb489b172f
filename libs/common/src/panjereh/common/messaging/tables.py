"""The outbox and inbox tables, added to each service's own metadata (and schema).

Outbox: a row per event written in the business transaction; the relay publishes rows in id
order and marks them sent after the broker acknowledged. Inbox: a row per processed event id
and consumer, written in the same transaction as the handler's effects, so a redelivered event
is a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID


@dataclass(frozen=True)
class MessagingTables:
    outbox: Table
    inbox: Table


def messaging_tables(metadata: MetaData) -> MessagingTables:
    """Declare ``outbox_message`` and ``inbox_message`` on a service's metadata."""
    outbox = Table(
        "outbox_message",
        metadata,
        Column("id", BigInteger, Identity(always=True), primary_key=True),
        Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
        Column("topic", Text, nullable=False),
        Column("key", Text, nullable=False),
        Column("event_type", Text, nullable=False),
        Column("payload", JSONB, nullable=False),
        Column("headers", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("sent_at", DateTime(timezone=True)),
        Column("attempts", Integer, nullable=False, server_default=text("0")),
        Column("last_error", Text),
        Index(
            "ix_outbox_message_unsent",
            "id",
            postgresql_where=text("sent_at IS NULL"),
        ),
    )
    inbox = Table(
        "inbox_message",
        metadata,
        Column("consumer", Text, nullable=False),
        Column("event_id", Text, nullable=False),
        Column("topic", Text, nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("consumer", "event_id"),
    )
    return MessagingTables(outbox=outbox, inbox=inbox)
