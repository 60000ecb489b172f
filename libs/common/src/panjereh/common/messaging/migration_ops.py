"""Frozen migration steps for the kernel tables, called from each service's migrations.

Each function is a released schema version: never edit one, add ``..._v2`` instead, so that
services' past migrations keep meaning what they meant.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql


def create_messaging_tables_v1(schema: str) -> None:
    op.create_table(
        "outbox_message",
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), nullable=False),
        sa.Column("event_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("payload", postgresql.JSONB, nullable=False),
        sa.Column(
            "headers", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("last_error", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_outbox_message"),
        sa.UniqueConstraint("event_id", name="uq_outbox_message_event_id"),
        schema=schema,
    )
    op.create_index(
        "ix_outbox_message_unsent",
        "outbox_message",
        ["id"],
        schema=schema,
        postgresql_where=sa.text("sent_at IS NULL"),
    )
    op.create_table(
        "inbox_message",
        sa.Column("consumer", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column(
            "processed_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.PrimaryKeyConstraint("consumer", "event_id", name="pk_inbox_message"),
        schema=schema,
    )


def drop_messaging_tables_v1(schema: str) -> None:
    op.drop_table("inbox_message", schema=schema)
    op.drop_index("ix_outbox_message_unsent", table_name="outbox_message", schema=schema)
    op.drop_table("outbox_message", schema=schema)


def create_idempotency_table_v1(schema: str) -> None:
    """``idempotency_record`` (see :mod:`panjereh.common.idempotency`)."""
    op.create_table(
        "idempotency_record",
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("operation", sa.Text, nullable=False),
        sa.Column("request_hash", sa.Text, nullable=False),
        sa.Column("status_code", sa.SmallInteger, nullable=False),
        sa.Column("response", postgresql.JSONB, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("actor", "key", name="pk_idempotency_record"),
        schema=schema,
    )
    create_idempotency_index_v1(schema)


def create_idempotency_index_v1(schema: str) -> None:
    """The index pruning uses; alone for a service that made the table before the kernel did."""
    op.create_index(
        "ix_idempotency_record_created_at", "idempotency_record", ["created_at"], schema=schema
    )


def drop_idempotency_index_v1(schema: str) -> None:
    op.drop_index(
        "ix_idempotency_record_created_at", table_name="idempotency_record", schema=schema
    )


def drop_idempotency_table_v1(schema: str) -> None:
    drop_idempotency_index_v1(schema)
    op.drop_table("idempotency_record", schema=schema)
