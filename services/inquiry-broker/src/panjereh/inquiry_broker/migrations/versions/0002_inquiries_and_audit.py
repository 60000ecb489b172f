"""Inquiry types registry (seeded), access grants, card replica, inquiries, audit log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from panjereh.inquiry_broker.models import SCHEMA

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NO_PARAMS: dict[str, Any] = {"type": "object", "additionalProperties": False}


def _result(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": sorted(properties),
        "additionalProperties": False,
    }


_NULLABLE_TEXT = {"type": ["string", "null"]}

# The registry as first published; later changes are new migrations, never edits here.
INQUIRY_TYPES: list[dict[str, Any]] = [
    {
        "name": "civil-registry.person",
        "provider_agency": "civil-registry",
        "title": {"fa": "استعلام هویت فرد از ثبت احوال", "en": "Person from the civil registry"},
        "input_schema": _NO_PARAMS,
        "output_schema": _result(
            {
                "first_name": {"type": "string"},
                "last_name": {"type": "string"},
                "birth_date": {"type": "string", "format": "date"},
                "alive": {"type": "boolean"},
                "gender": {"enum": ["male", "female"]},
            }
        ),
        "cache_ttl_seconds": 86400,
        "personal_data_class": "identity",
    },
    {
        "name": "mobile-registry.ownership",
        "provider_agency": "mobile-registry",
        "title": {"fa": "استعلام مالکیت خط تلفن همراه (شاهکار)", "en": "Mobile line ownership"},
        "input_schema": {
            "type": "object",
            "properties": {"mobile": {"type": "string", "pattern": "^09[0-9]{9}$"}},
            "required": ["mobile"],
            "additionalProperties": False,
        },
        "output_schema": _result({"owned": {"type": "boolean"}}),
        "cache_ttl_seconds": 300,
        "personal_data_class": "contact",
    },
    {
        "name": "tax.clearance",
        "provider_agency": "tax",
        "title": {"fa": "استعلام مفاصاحساب مالیاتی", "en": "Tax clearance"},
        "input_schema": _NO_PARAMS,
        "output_schema": _result(
            {"has_debt": {"type": "boolean"}, "debt_amount": {"type": "integer", "minimum": 0}}
        ),
        "cache_ttl_seconds": 3600,
        "personal_data_class": "financial",
    },
    {
        "name": "police.clean-record",
        "provider_agency": "police",
        "title": {"fa": "استعلام سوء پیشینه", "en": "Criminal record check"},
        "input_schema": _NO_PARAMS,
        "output_schema": _result({"has_record": {"type": "boolean"}}),
        "cache_ttl_seconds": 3600,
        "personal_data_class": "judicial",
    },
    {
        "name": "social-security.insurance-record",
        "provider_agency": "social-security",
        "title": {"fa": "استعلام سابقه بیمه", "en": "Social insurance record"},
        "input_schema": _NO_PARAMS,
        "output_schema": _result(
            {"insured": {"type": "boolean"}, "months": {"type": "integer", "minimum": 0}}
        ),
        "cache_ttl_seconds": 3600,
        "personal_data_class": "employment",
    },
    {
        "name": "vehicle-registry.ownership",
        "provider_agency": "vehicle-registry",
        "title": {"fa": "استعلام خودروهای به نام فرد", "en": "Vehicles owned"},
        "input_schema": _NO_PARAMS,
        "output_schema": _result(
            {
                "vehicles": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "plate": {"type": "string"},
                            "model": {"type": "string"},
                            "year": {"type": "integer"},
                        },
                        "required": ["plate", "model", "year"],
                    },
                }
            }
        ),
        "cache_ttl_seconds": 3600,
        "personal_data_class": "property",
    },
    {
        "name": "education.degree",
        "provider_agency": "education",
        "title": {"fa": "استعلام مدرک تحصیلی", "en": "Highest degree"},
        "input_schema": _NO_PARAMS,
        "output_schema": _result(
            {
                "degree": {
                    "enum": ["none", "diploma", "associate", "bachelor", "master", "doctorate"]
                },
                "field": _NULLABLE_TEXT,
                "university": _NULLABLE_TEXT,
            }
        ),
        "cache_ttl_seconds": 86400,
        "personal_data_class": "education",
    },
]

# Access no service card covers: the identity service verifies a citizen at registration.
GRANTS = [
    {
        "id": "8a3c7a52-3f0e-4a57-9f59-2c8b8f0f6a01",
        "principal": "service:identity",
        "inquiry_type": "mobile-registry.ownership",
        "legal_basis": "مصوبه شورای عالی فضای مجازی: احراز هویت با تطبیق شماره همراه (شاهکار)",
    },
    {
        "id": "8a3c7a52-3f0e-4a57-9f59-2c8b8f0f6a02",
        "principal": "service:identity",
        "inquiry_type": "civil-registry.person",
        "legal_basis": "قانون ثبت احوال، ماده ۱ و آیین‌نامه ثبت‌نام در پنجره واحد خدمات",
    },
]


def _timestamps() -> list[sa.Column[Any]]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_sent_at", sa.DateTime(timezone=True)),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True)),
    ]


def upgrade() -> None:
    jsonb = postgresql.JSONB
    inquiry_type = op.create_table(
        "inquiry_type",
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("provider_agency", sa.Text, nullable=False),
        sa.Column("title", jsonb, nullable=False),
        sa.Column("subject_kind", sa.Text, nullable=False),
        sa.Column("input_schema", jsonb, nullable=False),
        sa.Column("output_schema", jsonb, nullable=False),
        sa.Column("delivery", sa.Text, nullable=False),
        sa.Column("connector_url", sa.Text),
        sa.Column("timeout_ms", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("cache_ttl_seconds", sa.Integer, nullable=False),
        sa.Column("personal_data_class", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_inquiry_type"),
        sa.CheckConstraint("delivery IN ('kafka', 'http')", name="ck_inquiry_type_delivery"),
        schema=SCHEMA,
    )
    access_grant = op.create_table(
        "access_grant",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("principal", sa.Text, nullable=False),
        sa.Column("inquiry_type", sa.Text, nullable=False),
        sa.Column("legal_basis", sa.Text, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="pk_access_grant"),
        sa.UniqueConstraint(
            "principal", "inquiry_type", name="uq_access_grant_principal_inquiry_type"
        ),
        schema=SCHEMA,
    )
    op.create_table(
        "published_card",
        sa.Column("service_code", sa.Text, nullable=False),
        sa.Column("agency", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("inquiry_types", postgresql.ARRAY(sa.Text), nullable=False),
        sa.Column("legal_basis", sa.Text),
        sa.Column("retired", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("service_code", name="pk_published_card"),
        schema=SCHEMA,
    )
    op.create_table(
        "inquiry",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("provider_agency", sa.Text, nullable=False),
        sa.Column("connector_url", sa.Text),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("subject_hash", sa.Text, nullable=False),
        sa.Column("params", jsonb, nullable=False),
        sa.Column("cache_key", sa.Text, nullable=False),
        sa.Column("caller", sa.Text, nullable=False),
        sa.Column("caller_role", sa.Text, nullable=False),
        sa.Column("caller_agency", sa.Text),
        sa.Column("service_code", sa.Text),
        sa.Column("tracking_code", sa.Text),
        sa.Column("legal_basis", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("result", jsonb),
        sa.Column("error", sa.Text),
        sa.Column("signature", sa.Text),
        sa.Column("cached_from", postgresql.UUID(as_uuid=True)),
        sa.Column("idempotency_key", sa.Text),
        sa.Column("request_hash", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_inquiry"),
        sa.CheckConstraint(
            "status IN ('pending', 'answered', 'not_found', 'failed', 'timed_out')",
            name="ck_inquiry_status",
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_inquiry_pending_deadline",
        "inquiry",
        ["deadline_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_inquiry_pending_next_attempt",
        "inquiry",
        ["next_attempt_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_inquiry_cache_key_answered_at", "inquiry", ["cache_key", "answered_at"], schema=SCHEMA
    )
    op.create_index(
        "uq_inquiry_caller_idempotency_key",
        "inquiry",
        ["caller", "idempotency_key"],
        unique=True,
        schema=SCHEMA,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.create_table(
        "audit_entry",
        sa.Column("seq", sa.BigInteger, sa.Identity(always=True), nullable=False),
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decision", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("inquiry_id", postgresql.UUID(as_uuid=True)),
        sa.Column("inquiry_type", sa.Text, nullable=False),
        sa.Column("provider_agency", sa.Text),
        sa.Column("caller", sa.Text, nullable=False),
        sa.Column("caller_role", sa.Text),
        sa.Column("caller_agency", sa.Text),
        sa.Column("subject_hash", sa.Text, nullable=False),
        sa.Column("service_code", sa.Text),
        sa.Column("tracking_code", sa.Text),
        sa.Column("legal_basis", sa.Text),
        sa.Column("prev_hash", sa.Text, nullable=False),
        sa.Column("entry_hash", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_entry"),
        sa.UniqueConstraint("id", name="uq_audit_entry_id"),
        schema=SCHEMA,
    )
    op.create_index("ix_audit_entry_subject_hash", "audit_entry", ["subject_hash"], schema=SCHEMA)
    op.bulk_insert(
        inquiry_type,
        [
            {
                "subject_kind": "national_code",
                "delivery": "kafka",
                "connector_url": None,
                "timeout_ms": 5000,
                "max_attempts": 3,
                **entry,
            }
            for entry in INQUIRY_TYPES
        ],
    )
    op.bulk_insert(access_grant, [{**grant, "id": uuid.UUID(grant["id"])} for grant in GRANTS])


def downgrade() -> None:
    op.drop_index("ix_audit_entry_subject_hash", table_name="audit_entry", schema=SCHEMA)
    op.drop_table("audit_entry", schema=SCHEMA)
    op.drop_index("uq_inquiry_caller_idempotency_key", table_name="inquiry", schema=SCHEMA)
    op.drop_index("ix_inquiry_cache_key_answered_at", table_name="inquiry", schema=SCHEMA)
    op.drop_index("ix_inquiry_pending_next_attempt", table_name="inquiry", schema=SCHEMA)
    op.drop_index("ix_inquiry_pending_deadline", table_name="inquiry", schema=SCHEMA)
    op.drop_table("inquiry", schema=SCHEMA)
    op.drop_table("published_card", schema=SCHEMA)
    op.drop_table("access_grant", schema=SCHEMA)
    op.drop_table("inquiry_type", schema=SCHEMA)
