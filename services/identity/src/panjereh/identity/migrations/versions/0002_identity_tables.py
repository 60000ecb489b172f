"""Identity tables: citizens, staff roles, machine clients, OTP challenges, refresh-token
families, signing keys, the SMS queue, the dev SMS outbox and rate-limit counters.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "citizen",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("national_code", sa.Text(), nullable=False),
        sa.Column("mobile", sa.Text(), nullable=False),
        sa.Column("first_name", sa.Text(), nullable=False),
        sa.Column("last_name", sa.Text(), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column(
            "registered_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "last_login_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_citizen")),
        sa.UniqueConstraint("national_code", name=op.f("uq_citizen_national_code")),
        schema="identity",
    )
    op.create_table(
        "dev_sms",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("mobile", sa.Text(), nullable=False),
        sa.Column("template", sa.Text(), nullable=False),
        sa.Column("tokens", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column(
            "sent_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dev_sms")),
        schema="identity",
    )
    op.create_index(
        op.f("ix_identity_dev_sms_mobile"), "dev_sms", ["mobile"], unique=False, schema="identity"
    )
    op.create_table(
        "machine_client",
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("secret_hash", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("secret_rotated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('agency', 'service')", name=op.f("ck_machine_client_kind")),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_machine_client")),
        schema="identity",
    )
    op.create_table(
        "otp_challenge",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("national_code", sa.Text(), nullable=False),
        sa.Column("mobile", sa.Text(), nullable=False),
        sa.Column("code_hash", sa.Text(), nullable=False),
        sa.Column("failed_attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("consumed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_otp_challenge")),
        schema="identity",
    )
    op.create_index(
        "ix_otp_challenge_mobile_created_at",
        "otp_challenge",
        ["mobile", "created_at"],
        unique=False,
        schema="identity",
    )
    op.create_table(
        "rate_limit_counter",
        sa.Column("bucket", sa.Text(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "window_start", name=op.f("pk_rate_limit_counter")),
        schema="identity",
    )
    op.create_index(
        op.f("ix_identity_rate_limit_counter_expires_at"),
        "rate_limit_counter",
        ["expires_at"],
        unique=False,
        schema="identity",
    )
    op.create_table(
        "signing_key",
        sa.Column("kid", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("private_key_pem", sa.Text(), nullable=False),
        sa.Column("public_jwk", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('next', 'current', 'retired')", name=op.f("ck_signing_key_status")
        ),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_signing_key")),
        schema="identity",
    )
    op.create_index(
        "uq_signing_key_one_current",
        "signing_key",
        ["status"],
        unique=True,
        schema="identity",
        postgresql_where=sa.text("status = 'current'"),
    )
    op.create_table(
        "sms_message",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("mobile", sa.Text(), nullable=False),
        sa.Column("template", sa.Text(), nullable=False),
        sa.Column("sealed_tokens", sa.LargeBinary(), nullable=True),
        sa.Column("status", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("provider_message_id", sa.Text(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'failed', 'expired')", name=op.f("ck_sms_message_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_message")),
        schema="identity",
    )
    op.create_index(
        "ix_sms_message_due",
        "sms_message",
        ["next_attempt_at"],
        unique=False,
        schema="identity",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "staff_role",
        sa.Column("national_code", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("granted_by", sa.Text(), nullable=False),
        sa.Column(
            "granted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("national_code", "role", name=op.f("pk_staff_role")),
        schema="identity",
    )
    op.create_table(
        "refresh_token_family",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("citizen_id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoke_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["citizen_id"],
            ["identity.citizen.id"],
            name=op.f("fk_refresh_token_family_citizen_id_citizen"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_token_family")),
        schema="identity",
    )
    op.create_index(
        op.f("ix_identity_refresh_token_family_citizen_id"),
        "refresh_token_family",
        ["citizen_id"],
        unique=False,
        schema="identity",
    )
    op.create_table(
        "refresh_token",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("family_id", sa.UUID(), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("access_token_id", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["family_id"],
            ["identity.refresh_token_family.id"],
            name=op.f("fk_refresh_token_family_id_refresh_token_family"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_token")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_refresh_token_token_hash")),
        schema="identity",
    )
    op.create_index(
        op.f("ix_identity_refresh_token_access_token_id"),
        "refresh_token",
        ["access_token_id"],
        unique=False,
        schema="identity",
    )
    op.create_index(
        op.f("ix_identity_refresh_token_family_id"),
        "refresh_token",
        ["family_id"],
        unique=False,
        schema="identity",
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_identity_refresh_token_access_token_id"),
        table_name="refresh_token",
        schema="identity",
    )
    op.drop_index(
        op.f("ix_identity_refresh_token_family_id"), table_name="refresh_token", schema="identity"
    )
    op.drop_table("refresh_token", schema="identity")
    op.drop_index(
        op.f("ix_identity_refresh_token_family_citizen_id"),
        table_name="refresh_token_family",
        schema="identity",
    )
    op.drop_table("refresh_token_family", schema="identity")
    op.drop_table("staff_role", schema="identity")
    op.drop_index(
        "ix_sms_message_due",
        table_name="sms_message",
        schema="identity",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_table("sms_message", schema="identity")
    op.drop_index(
        "uq_signing_key_one_current",
        table_name="signing_key",
        schema="identity",
        postgresql_where=sa.text("status = 'current'"),
    )
    op.drop_table("signing_key", schema="identity")
    op.drop_index(
        op.f("ix_identity_rate_limit_counter_expires_at"),
        table_name="rate_limit_counter",
        schema="identity",
    )
    op.drop_table("rate_limit_counter", schema="identity")
    op.drop_index(
        "ix_otp_challenge_mobile_created_at", table_name="otp_challenge", schema="identity"
    )
    op.drop_table("otp_challenge", schema="identity")
    op.drop_table("machine_client", schema="identity")
    op.drop_index(op.f("ix_identity_dev_sms_mobile"), table_name="dev_sms", schema="identity")
    op.drop_table("dev_sms", schema="identity")
    op.drop_table("citizen", schema="identity")
