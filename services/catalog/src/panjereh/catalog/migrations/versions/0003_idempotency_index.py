"""The kernel's index on ``idempotency_record.created_at`` (pruning old keys).

The catalog made ``idempotency_record`` in 0002, before the kernel owned idempotency; the
table already has the kernel's shape, so only the index is missing.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from panjereh.catalog.models import SCHEMA
from panjereh.common.messaging.migration_ops import (
    create_idempotency_index_v1,
    drop_idempotency_index_v1,
)

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_idempotency_index_v1(SCHEMA)


def downgrade() -> None:
    drop_idempotency_index_v1(SCHEMA)
