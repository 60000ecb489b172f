"""Agencies, service cards (draft, immutable versions, transitions), search listing.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from panjereh.catalog.models import SCHEMA

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, *, nullable: bool = False, default: bool = False) -> sa.Column[object]:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        nullable=nullable,
        server_default=sa.func.now() if default else None,
    )


def upgrade() -> None:
    # pg_trgm is a trusted contrib extension: the database owner may create it
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")

    op.create_table(
        "agency",
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("name_fa", sa.Text, nullable=False),
        sa.Column("name_en", sa.Text),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("parent_code", sa.Text),
        sa.Column("spatial", sa.Text, nullable=False, server_default="national"),
        sa.Column(
            "contact", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")
        ),
        _timestamp("last_seen_at", nullable=True),
        _timestamp("created_at", default=True),
        sa.PrimaryKeyConstraint("code", name="pk_agency"),
        sa.ForeignKeyConstraint(
            ["parent_code"], [f"{SCHEMA}.agency.code"], name="fk_agency_parent_code_agency"
        ),
        schema=SCHEMA,
    )

    op.create_table(
        "service_card",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("agency_code", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("latest_version", sa.Integer, nullable=False, server_default="0"),
        _timestamp("created_at", default=True),
        sa.Column("created_by", sa.Text, nullable=False),
        _timestamp("retired_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_service_card"),
        sa.UniqueConstraint("code", name="uq_service_card_code"),
        sa.ForeignKeyConstraint(
            ["agency_code"], [f"{SCHEMA}.agency.code"], name="fk_service_card_agency_code_agency"
        ),
        sa.CheckConstraint(
            "status IN ('unpublished', 'published', 'retired')",
            name="ck_service_card_status",
        ),
        schema=SCHEMA,
    )
    op.create_index("ix_service_card_agency_code", "service_card", ["agency_code"], schema=SCHEMA)

    op.create_table(
        "service_card_draft",
        sa.Column("card_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("content", postgresql.JSONB, nullable=False),
        sa.Column("rejection_reason", sa.Text),
        _timestamp("updated_at"),
        sa.Column("updated_by", sa.Text, nullable=False),
        _timestamp("submitted_at", nullable=True),
        sa.PrimaryKeyConstraint("card_id", name="pk_service_card_draft"),
        sa.ForeignKeyConstraint(
            ["card_id"],
            [f"{SCHEMA}.service_card.id"],
            name="fk_service_card_draft_card_id_service_card",
        ),
        sa.CheckConstraint(
            "state IN ('editing', 'submitted', 'approved', 'rejected')",
            name="ck_service_card_draft_state",
        ),
        schema=SCHEMA,
    )

    op.create_table(
        "service_card_version",
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), nullable=False),
        sa.Column("card_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("content", postgresql.JSONB, nullable=False),
        sa.Column("approved_by", sa.Text, nullable=False),
        sa.Column("approving_organisation", sa.Text, nullable=False),
        _timestamp("approved_at"),
        sa.Column("submitted_by", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_service_card_version"),
        sa.UniqueConstraint("card_id", "version", name="uq_service_card_version_card_id"),
        sa.ForeignKeyConstraint(
            ["card_id"],
            [f"{SCHEMA}.service_card.id"],
            name="fk_service_card_version_card_id_service_card",
        ),
        sa.CheckConstraint("version >= 1", name="ck_service_card_version_positive"),
        schema=SCHEMA,
    )
    # A published version is a public, citable record: no code path may change or remove it.
    op.execute(
        f"""
        CREATE FUNCTION "{SCHEMA}".refuse_published_version_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'published service card versions are immutable'
                USING ERRCODE = 'integrity_constraint_violation';
        END
        $$
        """
    )
    op.execute(
        f"""
        CREATE TRIGGER service_card_version_immutable
        BEFORE UPDATE OR DELETE ON "{SCHEMA}".service_card_version
        FOR EACH ROW EXECUTE FUNCTION "{SCHEMA}".refuse_published_version_change()
        """
    )
    op.execute(
        f"""
        CREATE TRIGGER service_card_version_no_truncate
        BEFORE TRUNCATE ON "{SCHEMA}".service_card_version
        FOR EACH STATEMENT EXECUTE FUNCTION "{SCHEMA}".refuse_published_version_change()
        """
    )

    op.create_table(
        "card_transition",
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), nullable=False),
        sa.Column("card_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("from_state", sa.Text),
        sa.Column("to_state", sa.Text, nullable=False),
        sa.Column("version", sa.Integer),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        _timestamp("at"),
        sa.PrimaryKeyConstraint("id", name="pk_card_transition"),
        sa.ForeignKeyConstraint(
            ["card_id"],
            [f"{SCHEMA}.service_card.id"],
            name="fk_card_transition_card_id_service_card",
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_card_transition_card_id_at", "card_transition", ["card_id", "at"], schema=SCHEMA
    )

    op.create_table(
        "service_listing",
        sa.Column("card_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("agency_code", sa.Text, nullable=False),
        sa.Column("category", sa.Text, nullable=False),
        sa.Column("life_events_mask", sa.Integer, nullable=False),
        sa.Column("channels_mask", sa.Integer, nullable=False),
        sa.Column("audience_mask", sa.Integer, nullable=False),
        sa.Column("maturity", sa.SmallInteger, nullable=False),
        sa.Column("documents_required", sa.Integer, nullable=False),
        sa.Column("in_person_visits", sa.Integer, nullable=False),
        sa.Column("summary", postgresql.JSONB, nullable=False),
        sa.Column("search_vector", postgresql.TSVECTOR, nullable=False),
        _timestamp("published_at"),
        sa.PrimaryKeyConstraint("card_id", name="pk_service_listing"),
        sa.UniqueConstraint("code", name="uq_service_listing_code"),
        sa.ForeignKeyConstraint(
            ["card_id"],
            [f"{SCHEMA}.service_card.id"],
            name="fk_service_listing_card_id_service_card",
        ),
        sa.CheckConstraint("maturity BETWEEN 0 AND 5", name="ck_service_listing_maturity"),
        schema=SCHEMA,
    )
    for column in ("agency_code", "category", "maturity"):
        op.create_index(f"ix_service_listing_{column}", "service_listing", [column], schema=SCHEMA)
    op.create_index(
        "ix_service_listing_search_vector",
        "service_listing",
        ["search_vector"],
        schema=SCHEMA,
        postgresql_using="gin",
    )
    op.create_table(
        "search_word",
        sa.Column("word", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("word", name="pk_search_word"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_search_word_word_trgm",
        "search_word",
        ["word"],
        schema=SCHEMA,
        postgresql_using="gin",
        postgresql_ops={"word": "gin_trgm_ops"},
    )

    op.create_table(
        "idempotency_record",
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("operation", sa.Text, nullable=False),
        sa.Column("request_hash", sa.Text, nullable=False),
        sa.Column("status_code", sa.SmallInteger, nullable=False),
        sa.Column("response", postgresql.JSONB, nullable=False),
        _timestamp("created_at", default=True),
        sa.PrimaryKeyConstraint("actor", "key", name="pk_idempotency_record"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("idempotency_record", schema=SCHEMA)
    op.drop_table("search_word", schema=SCHEMA)
    op.drop_table("service_listing", schema=SCHEMA)
    op.drop_table("card_transition", schema=SCHEMA)
    op.drop_table("service_card_version", schema=SCHEMA)
    op.execute(f'DROP FUNCTION "{SCHEMA}".refuse_published_version_change()')
    op.drop_table("service_card_draft", schema=SCHEMA)
    op.drop_table("service_card", schema=SCHEMA)
    op.drop_table("agency", schema=SCHEMA)
    # pg_trgm stays: other schemas in the same database may use it
