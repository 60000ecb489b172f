"""Requests, their history and evidence, documents, receipts, the card replica, idempotency.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from panjereh.common.messaging.migration_ops import (
    create_idempotency_table_v1,
    drop_idempotency_table_v1,
)
from panjereh.requests.models import SCHEMA

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = "status NOT IN ('approved', 'rejected', 'cancelled', 'failed') AND NOT overdue"


def _at(name: str, *, nullable: bool = True, default: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        nullable=nullable,
        server_default=sa.func.now() if default else None,
    )


def upgrade() -> None:
    create_idempotency_table_v1(SCHEMA)
    op.create_table(
        "card_version",
        sa.Column("service_code", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("agency", sa.Text, nullable=False),
        sa.Column("card", postgresql.JSONB, nullable=False),
        _at("published_at", nullable=False),
        _at("retired_at"),
        sa.PrimaryKeyConstraint("service_code", "version", name="pk_card_version"),
        schema=SCHEMA,
    )
    op.create_table(
        "request",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("tracking_code", sa.Text, nullable=False),
        sa.Column("service_code", sa.Text, nullable=False),
        sa.Column("service_version", sa.Integer, nullable=False),
        sa.Column("agency", sa.Text, nullable=False),
        sa.Column("citizen_id", sa.Text, nullable=False),
        sa.Column("national_code", sa.Text, nullable=False),
        sa.Column("inputs", postgresql.JSONB, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("decision_mode", sa.Text, nullable=False),
        _at("submitted_at", nullable=False),
        _at("due_at"),
        _at("next_step_at"),
        sa.Column("step_attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        _at("decided_at"),
        sa.Column("outcome", sa.Text),
        sa.Column("rule_id", sa.Text),
        sa.Column("decision_reason", postgresql.JSONB),
        sa.Column("decided_by", sa.Text),
        sa.Column("decided_by_subject", sa.Text),
        sa.Column("documents_asked", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("inquiries_made", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("overdue", sa.Boolean, nullable=False, server_default=sa.text("false")),
        _at("escalated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_request"),
        sa.UniqueConstraint("tracking_code", name="uq_request_tracking_code"),
        sa.CheckConstraint(
            "status IN ('submitted', 'awaiting_inquiries', 'deciding', 'in_review', "
            "'approved', 'rejected', 'cancelled', 'failed')",
            name="status",
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_request_citizen",
        "request",
        ["citizen_id", sa.text("submitted_at DESC")],
        schema=SCHEMA,
    )
    op.create_index(
        "ix_request_agency_status",
        "request",
        ["agency", "status", "submitted_at"],
        schema=SCHEMA,
    )
    op.create_index(
        "ix_request_due_step",
        "request",
        ["next_step_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("next_step_at IS NOT NULL"),
    )
    op.create_index(
        "ix_request_open_due", "request", ["due_at"], schema=SCHEMA, postgresql_where=sa.text(OPEN)
    )
    op.create_table(
        "request_transition",
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), nullable=False),
        sa.Column("request_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("from_status", sa.Text),
        sa.Column("to_status", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("actor_subject", sa.Text),
        sa.Column("reason", postgresql.JSONB),
        _at("at", nullable=False, default=True),
        sa.PrimaryKeyConstraint("id", name="pk_request_transition"),
        sa.ForeignKeyConstraint(
            ["request_id"],
            [f"{SCHEMA}.request.id"],
            name="fk_request_transition_request_id_request",
            ondelete="CASCADE",
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_request_transition_request", "request_transition", ["request_id", "id"], schema=SCHEMA
    )
    op.create_table(
        "request_inquiry",
        sa.Column("request_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("inquiry_type", sa.Text, nullable=False),
        sa.Column("provider_agency", sa.Text),
        sa.Column("status", sa.Text, nullable=False, server_default=sa.text("'pending'")),
        sa.Column("broker_inquiry_id", postgresql.UUID(as_uuid=True)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("result", postgresql.JSONB),
        sa.Column("result_sha256", sa.Text),
        sa.Column("signature", sa.Text),
        sa.Column("error", sa.Text),
        _at("answered_at"),
        sa.PrimaryKeyConstraint("request_id", "inquiry_type", name="pk_request_inquiry"),
        sa.ForeignKeyConstraint(
            ["request_id"],
            [f"{SCHEMA}.request.id"],
            name="fk_request_inquiry_request_id_request",
            ondelete="CASCADE",
        ),
        schema=SCHEMA,
    )
    op.create_table(
        "document",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("request_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("service_code", sa.Text, nullable=False),
        sa.Column("holder_masked", sa.Text, nullable=False),
        sa.Column("payload", postgresql.JSONB, nullable=False),
        sa.Column("jws", sa.Text, nullable=False),
        _at("issued_at", nullable=False),
        _at("valid_until"),
        sa.PrimaryKeyConstraint("id", name="pk_document"),
        sa.UniqueConstraint("request_id", name="uq_document_request_id"),
        sa.ForeignKeyConstraint(
            ["request_id"],
            [f"{SCHEMA}.request.id"],
            name="fk_document_request_id_request",
            ondelete="CASCADE",
        ),
        schema=SCHEMA,
    )
    op.create_table(
        "decision_receipt",
        sa.Column("request_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("payload", postgresql.JSONB, nullable=False),
        sa.Column("jws", sa.Text, nullable=False),
        _at("created_at", nullable=False),
        sa.PrimaryKeyConstraint("request_id", name="pk_decision_receipt"),
        sa.ForeignKeyConstraint(
            ["request_id"],
            [f"{SCHEMA}.request.id"],
            name="fk_decision_receipt_request_id_request",
            ondelete="CASCADE",
        ),
        schema=SCHEMA,
    )
    op.create_table(
        "signing_key",
        sa.Column("kid", sa.Text, nullable=False),
        sa.Column("private_key_pem", sa.Text, nullable=False),
        sa.Column("public_jwk", postgresql.JSONB, nullable=False),
        _at("created_at", nullable=False, default=True),
        sa.PrimaryKeyConstraint("kid", name="pk_signing_key"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("signing_key", schema=SCHEMA)
    op.drop_table("decision_receipt", schema=SCHEMA)
    op.drop_table("document", schema=SCHEMA)
    op.drop_table("request_inquiry", schema=SCHEMA)
    op.drop_index("ix_request_transition_request", table_name="request_transition", schema=SCHEMA)
    op.drop_table("request_transition", schema=SCHEMA)
    for index in (
        "ix_request_open_due",
        "ix_request_due_step",
        "ix_request_agency_status",
        "ix_request_citizen",
    ):
        op.drop_index(index, table_name="request", schema=SCHEMA)
    op.drop_table("request", schema=SCHEMA)
    op.drop_table("card_version", schema=SCHEMA)
    drop_idempotency_table_v1(SCHEMA)
