"""Idempotency keys move from the inquiry table to the kernel's ``idempotency_record``.

The keys callers already used are carried over (with the inquiry each one created, and the
request hash the broker still computes the same way), so a retry that spans the upgrade is
replayed rather than asked a second time. The downgrade puts them back on their inquiries.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from panjereh.common.messaging.migration_ops import (
    create_idempotency_table_v1,
    drop_idempotency_table_v1,
)
from panjereh.inquiry_broker.models import SCHEMA

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The operation the broker remembers ``POST /api/v1/inquiries`` under (frozen here: a later
#: rename in the code must not change what this migration wrote).
_OPERATION = "inquiry.ask"
_INDEX = "uq_inquiry_caller_idempotency_key"


def upgrade() -> None:
    create_idempotency_table_v1(SCHEMA)
    op.execute(
        f"""
        INSERT INTO "{SCHEMA}".idempotency_record
            (actor, key, operation, request_hash, status_code, response, created_at)
        SELECT caller, idempotency_key, '{_OPERATION}', request_hash,
               CASE status WHEN 'pending' THEN 202 ELSE 200 END,
               jsonb_build_object('inquiry_id', id::text), created_at
        FROM "{SCHEMA}".inquiry
        WHERE idempotency_key IS NOT NULL AND request_hash IS NOT NULL
        """  # noqa: S608 - only this migration's constants are formatted in
    )
    op.drop_index(_INDEX, table_name="inquiry", schema=SCHEMA)
    op.drop_column("inquiry", "request_hash", schema=SCHEMA)
    op.drop_column("inquiry", "idempotency_key", schema=SCHEMA)


def downgrade() -> None:
    op.add_column("inquiry", sa.Column("idempotency_key", sa.Text), schema=SCHEMA)
    op.add_column("inquiry", sa.Column("request_hash", sa.Text), schema=SCHEMA)
    op.execute(
        f"""
        UPDATE "{SCHEMA}".inquiry AS inquiry
        SET idempotency_key = record.key, request_hash = record.request_hash
        FROM "{SCHEMA}".idempotency_record AS record
        WHERE record.operation = '{_OPERATION}'
          AND record.actor = inquiry.caller
          AND record.response ->> 'inquiry_id' = inquiry.id::text
        """  # noqa: S608 - only this migration's constants are formatted in
    )
    op.create_index(
        _INDEX,
        "inquiry",
        ["caller", "idempotency_key"],
        unique=True,
        schema=SCHEMA,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    drop_idempotency_table_v1(SCHEMA)
